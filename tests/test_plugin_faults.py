"""A fault inside a plugin is one line naming the component, the method and the problem (exit 2; 130 for
an interrupt), `--debug` shows its traceback, and the run's last checkpoint stays usable: resumed
without the fault, the run ends exactly as one that never had it. Also what an evaluator returns is
checked (type, finite numbers, a cost >= 0).

The misbehaving components are tests/plugins/fault_toy.py's; the fault comes from NASFRAME_FAULT.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_outcome

from nasframe.common.errors import PluginError

FAULT_TOY = str(ROOT / "tests" / "plugins" / "fault_toy.py")
COMPONENTS = [
    "--plugin",
    FAULT_TOY,
    "--strategy",
    "fault_random",
    "--space",
    "fault_space",
    "--evaluator",
    "fault_eval",
]
RUN = [*COMPONENTS, "--quiet", "--budget", "6", "--set", "run.checkpoint_every=1", "--set", "run.tensorboard=false"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple:
    """The run without any fault: what every faulted run, once resumed, must end as."""
    from nasframe.app.cli import main

    out = tmp_path_factory.mktemp("reference") / "r"
    os.environ.pop("NASFRAME_FAULT", None)
    assert main(["run", *RUN, "--out", str(out)]) == 0
    return run_outcome(out)


def faulted(cli, monkeypatch, out: Path, fault: str, *extra: str) -> tuple[int, str]:
    monkeypatch.setenv("NASFRAME_FAULT", fault)
    code, _, err = cli("run", *RUN, "--out", out, *extra)
    monkeypatch.delenv("NASFRAME_FAULT")
    return code, err


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("nasframe: error:")]
    assert len(lines) == 1, err
    return lines[0]


# ---- defect 5: SystemExit inside a plugin ------------------------------------------------------------------------
def test_a_plugin_calling_sys_exit_while_imported_is_one_line_and_exit_2(tmp_path):
    for kind, said in [
        ("exit", "it called sys.exit('fault_toy: giving up while importing')"),
        ("exit0", "sys.exit(0)"),
    ]:
        env = {**os.environ, "NASFRAME_FAULT": f"import:{kind}:1", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "nasframe.app.cli", "run", *RUN, "--out", str(tmp_path / kind)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert done.returncode == 2, done.stderr
        assert said in one_line(done.stderr) and "failed to import" in done.stderr
        assert not (tmp_path / kind).exists()


@pytest.mark.parametrize("fault", ["evaluator.evaluate:exit0:3", "strategy.tell:exit:4", "strategy.ask:exit0:2"])
def test_sys_exit_inside_a_run_is_exit_2_and_the_run_resumes_to_the_same_end(
    cli, monkeypatch, tmp_path, reference, fault
):
    code, err = faulted(cli, monkeypatch, tmp_path / "r", fault)
    component, method = fault.split(":")[0].split(".")
    assert code == 2
    line = one_line(err)
    assert (
        f"{component} 'fault_{'eval' if component == 'evaluator' else 'random'}': {method}() called sys.exit(" in line
    )
    assert "the run's last checkpoint is intact" in line
    assert cli("resume", tmp_path / "r", "--quiet")[0] == 0
    assert run_outcome(tmp_path / "r") == reference


# ---- defect 6: exceptions and wrong answers inside a plugin -----------------------------------------------------
@pytest.mark.parametrize(
    "fault, expected",
    [
        ("strategy.ask:raise:3", "strategy 'fault_random': ask() raised ValueError: injected fault in ask"),
        ("strategy.tell:raise:2", "strategy 'fault_random': tell() raised ValueError: injected fault in tell"),
        ("strategy.state_dict:numpy:3", "strategy 'fault_random': state_dict() holds something a checkpoint cannot"),
        ("evaluator.state_dict:object:2", "evaluator 'fault_eval': state_dict() holds something a checkpoint cannot"),
        ("evaluator.evaluate:string-metric:4", "evaluator 'fault_eval': evaluate() returned a Result with metric"),
        ("evaluator.evaluate:dict:2", "evaluator 'fault_eval': evaluate() returned dict, not a Result"),
        ("space.validate:raise:3", "space 'fault_space': validate() raised ValueError: injected fault in validate"),
        ("strategy.ask:garbage:2", "strategy 'fault_random': ask() returned NoneType; expected an Arch"),
        ("strategy.ask:outside:2", "strategy 'fault_random': ask() proposed an architecture outside the space"),
        ("strategy.ask:none:2", "strategy 'fault_random': ask() returned NoneType, not a list"),  # not "done"
        ("evaluator.final_metrics:nan:1", "final_metrics() returned metric 'test_acc' = nan (held-out metrics are"),
    ],
)
def test_a_fault_inside_a_plugin_is_one_line_and_the_run_resumes_to_the_same_end(
    cli, monkeypatch, tmp_path, reference, fault, expected
):
    code, err = faulted(cli, monkeypatch, tmp_path / "r", fault)
    assert code == 2
    assert expected in one_line(err)
    code, _, err = cli("resume", tmp_path / "r", "--quiet")
    assert code == 0, err
    assert run_outcome(tmp_path / "r") == reference


def test_debug_shows_the_plugins_own_traceback(monkeypatch, tmp_path):
    from nasframe.app.cli import main

    monkeypatch.setenv("NASFRAME_FAULT", "strategy.tell:raise:2")
    with pytest.raises(PluginError, match="tell\\(\\) raised ValueError") as caught:
        main(["run", *RUN, "--out", str(tmp_path / "r"), "--debug"])
    assert isinstance(caught.value.__cause__, ValueError)


def test_a_component_that_cannot_be_built_names_itself(cli, monkeypatch, tmp_path):
    code, err = faulted(cli, monkeypatch, tmp_path / "r", "evaluator.__init__:raise:1")
    assert code == 2 and "evaluator 'fault_eval': __init__() raised ValueError" in one_line(err)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_a_keyboard_interrupt_from_a_plugin_is_130_and_resumes(cli, monkeypatch, tmp_path, reference):
    code, err = faulted(cli, monkeypatch, tmp_path / "r", "evaluator.evaluate:interrupt:4")
    assert code == 130 and "Traceback" not in err and f"continue with: nasframe resume {tmp_path / 'r'}" in err
    assert cli("resume", tmp_path / "r", "--quiet")[0] == 0
    assert run_outcome(tmp_path / "r") == reference


def test_a_fault_in_the_first_evaluation_leaves_no_files(cli, monkeypatch, tmp_path):
    code, err = faulted(cli, monkeypatch, tmp_path / "r", "evaluator.evaluate:raise:1")
    assert code == 2 and "evaluate() raised ValueError" in one_line(err)
    assert not (tmp_path / "r").exists()  # nothing was recorded: the same command simply runs again


# ---- defect 7: non-finite and impossible values ------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault, expected",
    [
        ("evaluator.evaluate:nan:3", "metric 'val_acc' = nan (an ok result's metrics are finite"),
        ("evaluator.evaluate:inf:3", "metric 'val_acc' = inf"),
        ("evaluator.evaluate:nan-cost:3", "cost.seconds=nan (a cost is a finite number >= 0)"),
        ("evaluator.evaluate:negative-cost:3", "cost.epochs=-1.0 (a cost is a finite number >= 0)"),
        ("evaluator.evaluate:negative-params:3", "params=-5"),
        ("evaluator.final_metrics:nan:1", "evaluator 'fault_eval': final_metrics() returned metric 'test_acc' = nan"),
    ],
)
def test_a_non_finite_or_impossible_value_is_refused_naming_the_evaluator(
    cli, monkeypatch, tmp_path, reference, fault, expected
):
    code, err = faulted(cli, monkeypatch, tmp_path / "r", fault)
    assert code == 2 and expected in one_line(err)
    assert not (tmp_path / "r" / "best.json").exists()  # nothing that `show` would call damaged
    assert cli("resume", tmp_path / "r", "--quiet")[0] == 0
    assert run_outcome(tmp_path / "r") == reference
