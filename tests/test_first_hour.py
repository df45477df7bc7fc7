"""What a new user meets in the first hour: the answer carries numbers, no dead ends after a failed
start, honest `show`/`resume` messages, a record of what produced a run, sane file modes, the
Python API from a run folder to a network, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import toy_argv

import nasframe
from nasframe.common.checkpoint import RunLock


def toy(core_toy, *extra):
    return toy_argv(core_toy, *extra)


def tabular_mdenas(out: Path, budget: int = 3) -> list[str]:
    return [
        "run",
        "--strategy",
        "mdenas",
        "--space",
        "nb201",
        "--evaluator",
        "tabular",
        "--quiet",
        "--budget",
        str(budget),
        "--out",
        str(out),
        "--set",
        "run.tensorboard=false",
    ]


def test_the_answer_has_counts_and_an_evaluation_at_the_end(cli, tmp_path):
    code, out, err = cli(*tabular_mdenas(tmp_path / "r", budget=2))
    assert code == 0, err
    best = json.loads((tmp_path / "r" / "best.json").read_text())
    final = best["final"]
    # MDENAS' answer is its most likely architecture: after 2 epochs, likely never evaluated
    assert final["source"] == "strategy" and final["params"] > 0 and final["macs"] > 0
    history = [json.loads(x) for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    if final["arch"] not in [h["arch"] for h in history]:
        assert final["final_evaluation"]["status"] == "ok" and final["final_evaluation"]["metrics"]["val_acc"] > 0
        # the answer's numbers sit in `metrics` whichever way they were obtained, their source beside them
        assert final["metrics"] == final["final_evaluation"]["metrics"]
        assert final["metrics_source"] == "final_evaluation" and final["metrics_index"] is None
    assert final["held_out"]["test_acc"] > 0
    assert "params:" in out and "MACs:" in out and "answer: mdenas's own final architecture" in out


def test_final_evaluation_never_and_always(cli, tmp_path):
    assert cli(*tabular_mdenas(tmp_path / "never"), "--set", "run.final_evaluation=never")[0] == 0
    assert json.loads((tmp_path / "never" / "best.json").read_text())["final"]["final_evaluation"] is None
    assert cli(*tabular_mdenas(tmp_path / "always"), "--set", "run.final_evaluation=always")[0] == 0
    assert json.loads((tmp_path / "always" / "best.json").read_text())["final"]["final_evaluation"]["status"] == "ok"


def test_a_run_that_fails_before_its_first_evaluation_leaves_no_folder(cli, tmp_path):
    argv = [
        "run",
        "--strategy",
        "random",
        "--space",
        "darts",
        "--evaluator",
        "short_train",
        "--data",
        "cifar10",
        "--set",
        f"data.root={tmp_path / 'missing'}",
        "--quiet",
        "--out",
        tmp_path / "r",
    ]
    code, _, err = cli(*argv)
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "r").exists()
    code, _, err = cli(*argv)  # the same command again meets the same data error, not "already holds a run"
    assert code == 2 and "already holds a run" not in err


def test_resume_may_fix_where_the_data_is_but_not_what_the_search_is(cli, core_toy, tmp_path):
    assert cli(*toy(core_toy, "--budget", "2", "--out", tmp_path / "r"))[0] == 0
    code, _, err = cli("resume", tmp_path / "r", "--set", "data.root=/elsewhere", "--budget", "3")
    assert code == 0, err
    assert "root: /elsewhere" in (tmp_path / "r" / "config.yaml").read_text()
    code, _, err = cli("resume", tmp_path / "r", "--set", "strategy.dedup=false")
    assert code == 2 and "only settings that cannot change results so far may change" in err


def test_resume_of_a_finished_run_says_nothing_ran(cli, core_toy, tmp_path):
    assert cli(*toy(core_toy, "--budget", "2", "--out", tmp_path / "r"))[0] == 0
    code, out, err = cli("resume", tmp_path / "r", "--quiet")
    assert code == 0 and "nothing to do" in err and "nothing ran" in err
    assert "evaluations: 2" in out


def test_show_says_a_live_run_is_running(cli, core_toy, tmp_path):
    assert cli(*toy(core_toy, "--budget", "2", "--out", tmp_path / "r"))[0] == 0
    (tmp_path / "r" / "best.json").unlink()
    with RunLock(tmp_path / "r"):
        code, out, _ = cli("show", tmp_path / "r")
    assert code == 0 and "running (pid " in out and "continue with" not in out
    code, out, _ = cli("show", tmp_path / "r")
    assert "unfinished" in out and "continue with: nasframe resume" in out


def test_run_json_records_what_produced_the_run(cli, core_toy, tmp_path):
    assert cli(*toy(core_toy, "--budget", "2", "--out", tmp_path / "r"))[0] == 0
    assert cli("resume", tmp_path / "r", "--budget", "3", "--quiet")[0] == 0
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["format"] == 2 and len(info["sessions"]) == 2
    first = info["sessions"][0]
    assert first["nasframe"] == nasframe.__version__ and first["torch"] == torch.__version__
    assert first["device"] == "cpu" and first["threads"] >= 1  # `auto` resolved to what was used
    assert "run" in first["command"] and "resume" in info["sessions"][1]["command"]
    best = json.loads((tmp_path / "r" / "best.json").read_text())
    assert best["produced_by"]["device"] == "cpu"


def test_an_old_run_folder_is_refused_in_one_line(cli, core_toy, tmp_path):
    assert cli(*toy(core_toy, "--budget", "2", "--out", tmp_path / "r"))[0] == 0
    (tmp_path / "r" / "run.json").unlink()  # what a nasframe 0.1 folder looks like
    code, _, err = cli("resume", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and "run-directory format 1" in err


def test_damaged_files_are_one_line_errors(cli, core_toy, tmp_path):
    assert cli(*toy(core_toy, "--budget", "3", "--out", tmp_path / "r"))[0] == 0
    best = tmp_path / "r" / "best.json"
    best.write_text(best.read_text()[:40])  # cut mid-string
    code, _, err = cli("show", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and "best.json: damaged" in err
    best.unlink()
    history = tmp_path / "r" / "history.jsonl"
    lines = history.read_text().splitlines()
    history.write_text("\n".join([lines[0], "garbage", lines[2]]) + "\n")
    code, _, err = cli("show", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and "history.jsonl line 2: not a JSON record" in err
    code, _, err = cli("resume", tmp_path / "r", "--budget", "4")
    assert code == 2 and "history.jsonl line 2: not a JSON record" in err


def test_bad_values_and_files_are_one_line(cli, core_toy, tmp_path):
    code, _, err = cli(*toy(core_toy, "--set", "evaluator.noise=.nan", "--out", tmp_path / "r"))
    assert code == 2 and "evaluator.noise: nan is not a finite number" in err
    binary = tmp_path / "bad.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    code, _, err = cli("run", "--config", binary)
    assert code == 2 and "not UTF-8 text" in err and err.count("\n") == 1
    code, _, err = cli("inspect", "--space", "nb201", "--arch-file", binary)
    assert code == 2 and "not UTF-8 text" in err
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = cli(*toy(core_toy, "--out", afile))
    assert code == 2 and "is a file, not a folder" in err


def test_counts_accept_suffixes(cli, core_toy, tmp_path):
    code, _, err = cli(*toy(core_toy, "--budget", "2", "--out", tmp_path / "r", "--set", "constraints.max_macs=1.5k"))
    assert code == 0, err
    assert "max_macs: 1500" in (tmp_path / "r" / "config.yaml").read_text()


def test_inspect_reads_the_derived_architecture_from_best_json(cli, tmp_path):
    code, _, err = cli("run", "--strategy", "mdenas", "--space", "darts", "--evaluator", "tabular", "--quiet")
    assert code == 2  # (tabular needs a table: a one-line error, nothing created)
    code, _, err = cli(
        "run",
        "--strategy",
        "mdenas",
        "--space",
        "darts",
        "--evaluator",
        "supernet",
        "--quiet",
        "--budget",
        "2",
        "--out",
        tmp_path / "r",
        "--set",
        "space.supernet_C=4",
        "--set",
        "space.supernet_layers=2",
        "--set",
        "evaluator.steps=1",
        "--set",
        "data.limit=200",
        "--set",
        "run.tensorboard=false",
        "--set",
        "run.final_evaluation=never",
    )
    assert code == 0, err
    code, out, err = cli(
        "inspect", "--space", "darts", "--arch-file", tmp_path / "r" / "best.json", "--json", "--no-macs"
    )
    assert code == 0, err
    info = json.loads(out)
    best = json.loads((tmp_path / "r" / "best.json").read_text())
    assert info["read"].endswith("final.export.derived_arch (the space's derived architecture)")
    assert info["arch"] == best["final"]["export"]["derived_arch"]


def test_python_api_runs_and_builds_the_network(tmp_path):
    result = nasframe.run(
        {
            "strategy": "random",
            "space": "nb201",
            "evaluator": "tabular",
            "run": {"max_evaluations": 5, "out": str(tmp_path / "r"), "tensorboard": False},
        }
    )
    assert result.evaluations == 5 and result.final is not None and result.final.held_out["test_acc"] > 0
    assert nasframe.load_result(tmp_path / "r").final.arch == result.final.arch
    net = nasframe.build_network(tmp_path / "r")
    x = torch.zeros(2, 1, 8, 8)  # the run's data set: digits
    assert net(x).shape == (2, 10)
    assert sum(p.numel() for p in net.parameters()) == result.final.params
    more = nasframe.resume(tmp_path / "r", budget=7)
    assert more.evaluations == 7


def test_a_run_whose_strategy_ran_out_stays_finished(cli, tmp_path):
    """Random search over the 2 architectures of a 1-decision space stops with space_exhausted: a plain
    resume runs nothing, and a larger budget cannot extend it."""
    from conftest import CORE_TOY

    from nasframe.common.plugins import load_plugin

    load_plugin(CORE_TOY)
    argv = [
        "run",
        "--plugin",
        CORE_TOY,
        "--strategy",
        "random",
        "--space",
        "core_toy",
        "--evaluator",
        "core_toy_eval",
        "--quiet",
        "--out",
        tmp_path / "r",
        "--budget",
        "10",
        "--set",
        "space.decisions=1",
        "--set",
        "space.choices=2",
        "--set",
        "strategy.max_tries=20",
    ]
    assert cli(*argv)[0] == 0
    best = json.loads((tmp_path / "r" / "best.json").read_text())
    assert best["stopped_because"].startswith("space_exhausted") and best["evaluations"] == 2
    code, _, err = cli("resume", tmp_path / "r", "--quiet")
    assert code == 0 and "nothing ran" in err and "Raise --budget" not in err
    code, _, err = cli("resume", tmp_path / "r", "--budget", "20", "--quiet")
    assert code == 2 and "the strategy has nothing more to propose" in err
    assert len((tmp_path / "r" / "history.jsonl").read_text().splitlines()) == 2


def test_resume_says_from_where_it_continues(cli, core_toy, tmp_path):
    """`resume` names the evaluation it continues after (of the budget), the strategy's phase and, inside
    a piece of supernet work, the epoch reached."""
    from nasframe.core.requests import TrainShared
    from nasframe.search.executor import WorkProgress
    from nasframe.search.loop_state import LoopState, resume_point

    assert cli(*toy(core_toy, "--budget", "2", "--out", tmp_path / "r"))[0] == 0
    code, _, err = cli("resume", tmp_path / "r", "--budget", "3")
    assert code == 0, err
    assert "continuing from the checkpoint after evaluation 2 of 3, phase: search" in err
    state = LoopState(evaluations=0, pending=[TrainShared(epochs=4.0)])
    state.partial = WorkProgress(steps=40, steps_per_epoch=10, done=15)
    line = resume_point(state, 50, "spos: supernet training", True)
    assert line.startswith("continuing from the checkpoint after evaluation 0 of 50, phase: spos: supernet training")
    assert "supernet training (work request 1): epoch 1.5 of 4" in line, line
    assert resume_point(state, None, "search", False).startswith("continuing from the start")


def test_a_finished_run_keeps_one_checkpoint(cli, core_toy, tmp_path):
    """The fallback checkpoint matters while a run goes on; a finished run keeps only the one that
    `resume --budget` extends it from (a supernet's weights once, not twice)."""
    run = tmp_path / "r"
    assert cli(*toy(core_toy, "--budget", "3", "--out", run, "--set", "run.checkpoint_every=1"))[0] == 0
    assert (run / "checkpoint.pt").is_file() and not (run / "checkpoint.prev.pt").exists()
    code, out, err = cli("resume", run, "--budget", "5", "--quiet")
    assert code == 0, err
    assert "evaluations: 5" in out and not (run / "checkpoint.prev.pt").exists()
