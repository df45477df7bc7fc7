"""CLI: every command has --help; every usage or input error is one line on stderr with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import toy_argv

from nasframe.app.cli import COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_everywhere(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0 and "usage: nasframe" in out


def toy(core_toy, *extra):
    return toy_argv(core_toy, *extra)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "--strategy", "rnadom"], "unknown strategy 'rnadom'; did you mean 'random'?"),
        (["run", "--space", "dartz"], "unknown space 'dartz'; did you mean 'darts'?"),
        (["run", "--set", "strategy.lr"], "expected section.key=value"),
        (["run", "--set", "rnu.seed=1"], "unknown config section 'rnu'; did you mean 'run'?"),
        (["run", "--config", "/nonexistent.yaml"], "config file '/nonexistent.yaml' does not exist"),
        (["run", "--plugin", "/nonexistent_plugin.py"], "plugin file '/nonexistent_plugin.py' does not exist"),
        (["run", "--seed", "abc"], "argument --seed: expected a whole number, got 'abc'"),
        (["run", "--budget", "-3"], "argument --budget: must be at least 1, got -3"),
        (["run", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["resume", "/nonexistent_run"], "/nonexistent_run: not a run directory"),
        (["show", "/nonexistent_run"], "/nonexistent_run: not a run directory"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_errors_are_one_line_with_exit_2(cli, argv, expected):
    code, out, err = cli(*argv)
    assert code == 2
    assert err.startswith("nasframe: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err


def test_option_errors_name_the_key(cli, core_toy, tmp_path):
    code, _, err = cli(*toy(core_toy, "--set", "strategy.dedupp=true", "--out", tmp_path / "r"))
    assert code == 2 and "unknown option strategy.dedupp; did you mean strategy.dedup?" in err
    code, _, err = cli(*toy(core_toy, "--set", "run.max_evaluations=-3", "--out", tmp_path / "r"))
    assert code == 2 and "run.max_evaluations: -3 is below the minimum 1" in err
    assert not (tmp_path / "r").exists()  # nothing written on bad input


def test_bad_yaml_config_is_one_line(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: [unclosed\n")
    code, _, err = cli("run", "--config", bad)
    assert code == 2 and "is not valid YAML" in err and err.count("\n") == 1


def test_debug_shows_the_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "nasframe", "run", "--strategy", "nope", "--debug"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_run_show_and_list(cli, core_toy, tmp_path):
    code, out, err = cli(*toy(core_toy, "--budget", "4", "--out", tmp_path / "r"))
    assert code == 0, err
    assert "evaluations: 4  stopped: max_evaluations" in out
    code, out, _ = cli("show", tmp_path / "r")
    assert code == 0 and "random / core_toy / core_toy_eval on digits, seed 0" in out
    code, out, _ = cli("show", tmp_path / "r", "--json")
    assert json.loads(out)["evaluations"] == 4
    code, out, _ = cli("list", "--plugin", core_toy)
    assert code == 0
    assert "  random: Uniform random sampling over the space; returns the best architecture it evaluated." in out
    assert "      dedup (bool, default True): never evaluate the same architecture twice" in out
    assert "  core_toy: Decisions d0..dN with choices c0..cK; builds a one-layer net for stats tests." in out


def test_resume_can_extend_a_finished_run(cli, core_toy, tmp_path):
    assert cli(*toy(core_toy, "--budget", "3", "--out", tmp_path / "r"))[0] == 0
    code, out, err = cli("resume", tmp_path / "r", "--budget", "5", "--quiet")
    assert code == 0, err
    assert "evaluations: 5" in out
    assert len((tmp_path / "r" / "history.jsonl").read_text().splitlines()) == 5


def test_inspect_counts_parameters_and_names(cli, core_toy):
    code, out, err = cli(
        "inspect", "--plugin", core_toy, "--space", "core_toy", "--arch", "all_first", "--json", "--data", "digits"
    )
    assert code == 0, err
    info = json.loads(out)
    # Flatten -> Linear(64, 1) -> Linear(1, 10): 64 + 1 + 10 + 10 parameters, 74 MACs
    assert info["name"] == "all_first" and info["params"] == 85 and info["macs"] == 74
    code, _, err = cli("inspect", "--plugin", core_toy, "--space", "core_toy", "--arch", '{"d0": "c0"}')
    assert code == 2 and "architecture misses decision 'd1' (3 missing)" in err
    bad = '{"d0": "c9", "d1": "c0", "d2": "c0", "d3": "c0"}'
    code, _, err = cli("inspect", "--plugin", core_toy, "--space", "core_toy", "--arch", bad)
    assert code == 2 and "d0='c9' is not allowed; choose one of c0, c1, c2" in err


def test_resume_cannot_extend_a_run_stopped_by_another_limit(cli, core_toy, tmp_path):
    assert (
        cli(*toy(core_toy, "--set", "run.max_evaluations=null", "--set", "run.max_epochs=3", "--out", tmp_path / "r"))[
            0
        ]
        == 0
    )
    code, _, err = cli("resume", tmp_path / "r", "--budget", "10")
    assert code == 2 and "already finished (max_epochs); the new budget does not extend it" in err


def test_show_reads_a_killed_runs_history(cli, core_toy, tmp_path):
    assert cli(*toy(core_toy, "--budget", "3", "--out", tmp_path / "r"))[0] == 0
    (tmp_path / "r" / "best.json").unlink()
    with open(tmp_path / "r" / "history.jsonl", "a") as fh:
        fh.write('{"index": 3, "arch": {"d0"')  # the half line a kill -9 can leave
    code, out, _ = cli("show", tmp_path / "r")
    assert code == 0 and "unfinished, 3 evaluations logged" in out


def test_unusable_inputs_are_one_line(cli, core_toy, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = cli("inspect", "--plugin", core_toy, "--space", "core_toy", "--arch-file", bad)
    assert code == 2 and "not valid JSON" in err and err.count("\n") == 1
    code, _, err = cli(*toy(core_toy, "--budget", "1", "--out", "/dev/null/run"))
    assert code == 2 and err.splitlines()[-1] == "nasframe: error: Not a directory: /dev/null/run"
    assert "Traceback" not in err
