"""Reliability: one run per folder under concurrency, damaged files fall back or fail in one line,
the recorded thread count is applied on resume, a full disk stops cleanly, numbers are finite and
user structures bounded."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import toy_argv

from nasframe.common.checkpoint import RunLock
from nasframe.common.errors import ConfigError, InvalidArchitecture, RunDirError
from nasframe.common.options import build_options, option
from nasframe.search.config import merge_config
from nasframe.search.rundir import RunDir
from nasframe.search.runner import Runner


def toy_cfg(out: Path | None, plugin: str, **run) -> dict:
    base = {
        "plugins": [plugin],
        "strategy": {"name": "random"},
        "space": {"name": "core_toy"},
        "evaluator": {"name": "core_toy_eval"},
        "run": {"progress": False, "checkpoint_every": 1, "tensorboard": False, **run},
    }
    if out is not None:
        base["run"]["out"] = str(out)
    return merge_config(base)


def outcome(run_dir: Path) -> tuple:
    """History without times and costs, and best.json's answer: what a resumed run must reproduce."""
    lines = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    best = json.loads((run_dir / "best.json").read_text())
    return (
        [{k: v for k, v in r.items() if k not in ("time", "cost")} for r in lines],
        best["final"],
        best["best_evaluated"],
    )


# ---- one run per folder --------------------------------------------------------------------------------------------
def test_a_runner_created_before_another_took_the_folder_does_not_overwrite_it(tmp_path, core_toy):
    first = Runner.create(toy_cfg(tmp_path / "r", core_toy, max_evaluations=3, seed=1))
    second = Runner.create(toy_cfg(tmp_path / "r", core_toy, max_evaluations=3, seed=2))  # checked before: empty
    first.run()
    files = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    with pytest.raises(RunDirError, match="already holds a run"):
        second.run()
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()} == files


def test_a_run_refused_by_the_lock_leaves_the_other_runs_files(tmp_path, core_toy):
    first = Runner.create(toy_cfg(tmp_path / "r", core_toy, max_evaluations=3))
    same = Runner.create(toy_cfg(tmp_path / "r", core_toy, max_evaluations=3))
    other = Runner.create(toy_cfg(tmp_path / "r", core_toy, max_evaluations=3, seed=2))
    first.run()
    (tmp_path / "r" / "best.json").unlink()  # as if the first were still running
    with RunLock(tmp_path / "r"):
        with pytest.raises(RunDirError, match="is in use by pid"):
            same.run()
        with pytest.raises(RunDirError, match="already holds a run with other settings"):  # its marker: first
            other.run()
        assert (tmp_path / "r" / "config.yaml").exists() and (tmp_path / "r" / "checkpoint.pt").exists()
    assert len((tmp_path / "r" / "history.jsonl").read_text().splitlines()) == 3


def test_default_folders_of_runs_started_in_the_same_second_differ(tmp_path, core_toy, monkeypatch):
    import nasframe.search.runner as runner_module

    class Frozen:
        @staticmethod
        def now():
            from datetime import datetime

            return datetime(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(runner_module, "datetime", Frozen)
    a = Runner.create(toy_cfg(None, core_toy, runs_root=str(tmp_path)))
    b = Runner.create(toy_cfg(None, core_toy, runs_root=str(tmp_path)))
    assert a.run_dir.name == "20260102-030405-random-core_toy-core_toy_eval"
    assert b.run_dir.name == a.run_dir.name + "-2" and a.run_dir.is_dir() and b.run_dir.is_dir()


@pytest.mark.slow
def test_two_runs_started_at_once_on_one_out_exactly_one_proceeds(tmp_path, core_toy):
    out = tmp_path / "r"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {
        seed: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nasframe.app.cli",
                *toy_argv(core_toy, "--budget", 4, "--seed", seed, "--out", out),
                "--set",
                "evaluator.sleep=0.05",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for seed in (1, 2)
    }
    results = {seed: (p.wait(), p.stdout.read(), p.stderr.read()) for seed, p in procs.items()}
    winners = [seed for seed, (code, _, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (loser,) = set(results) - set(winners)
    code, _, err = results[loser]
    assert code == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("nasframe: error: ")
    assert "is in use by pid" in err or "already holds a run" in err
    best = json.loads((out / "best.json").read_text())
    assert best["seed"] == winners[0] and best["evaluations"] == 4
    assert len((out / "history.jsonl").read_text().splitlines()) == 4


# ---- damaged files -------------------------------------------------------------------------------------------------
def interrupted_run(out: Path, plugin: str, monkeypatch, after: int = 4) -> None:
    """A 6-evaluation run stopped while the strategy takes evaluation `after` + 1: checkpoints cover
    `after` (checkpoint.pt) and `after` - 1 (checkpoint.prev.pt) evaluations."""
    from nasframe.strategies.random_search import RandomSearch

    calls = {"n": 0}
    real = RandomSearch.tell

    def tell(self, arch, result):
        calls["n"] += 1
        if calls["n"] == after + 1:
            raise KeyboardInterrupt
        return real(self, arch, result)

    with monkeypatch.context() as m:
        m.setattr(RandomSearch, "tell", tell)
        with pytest.raises(KeyboardInterrupt):
            Runner.create(toy_cfg(out, plugin, max_evaluations=6)).run()
    assert len((out / "history.jsonl").read_text().splitlines()) == after


@pytest.mark.parametrize("damage", ["checkpoint bytes", "checkpoint structure", "last covered history line"])
def test_resume_falls_back_to_the_previous_checkpoint_and_ends_identically(tmp_path, core_toy, monkeypatch, damage):
    Runner.create(toy_cfg(tmp_path / "full", core_toy, max_evaluations=6)).run()
    run = tmp_path / "damaged"
    interrupted_run(run, core_toy, monkeypatch)
    if damage == "checkpoint bytes":
        data = (run / "checkpoint.pt").read_bytes()
        (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    elif damage == "checkpoint structure":
        torch.save(
            {"version": 2, "loop": {"evaluations": "four"}, "strategy": {}, "evaluator": {}}, run / "checkpoint.pt"
        )
    else:
        lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
        (run / "history.jsonl").write_text("".join(lines[:3]) + '{"index": 3, "arch": \n')
    damaged = (run / ("history.jsonl" if "history" in damage else "checkpoint.pt")).read_bytes()
    resumed = Runner.resume(run)
    resumed.run()
    assert outcome(run) == outcome(tmp_path / "full")
    kept = run / ("history.jsonl.damaged" if "history" in damage else "checkpoint.pt.damaged")
    assert kept.read_bytes() == damaged  # never deleted


def test_resume_names_the_damage_when_no_checkpoint_can_be_used(cli, core_toy, tmp_path, monkeypatch):
    run = tmp_path / "r"
    interrupted_run(run, core_toy, monkeypatch)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = cli("resume", run)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith(f"nasframe: error: {run / 'checkpoint.pt'}: unreadable checkpoint")
    assert "checkpoint.prev.pt cannot be used either" in last and "weights_only" not in err
    assert (run / "checkpoint.pt").read_bytes() == b"PK\x03\x04 not really a zip"  # left as it was


def test_a_finished_runs_damaged_result_is_computed_again(cli, core_toy, tmp_path):
    assert cli(*toy_argv(core_toy, "--budget", 4, "--out", tmp_path / "r"))[0] == 0
    best = tmp_path / "r" / "best.json"
    before = json.loads(best.read_text())
    cut = best.read_text()[:100]
    best.write_text(cut)  # cut mid-string
    code, out, err = cli("resume", tmp_path / "r")
    assert code == 0, err
    assert "best.json: damaged" in err and "kept as best.json.damaged, computing the run's result again" in err
    after = json.loads(best.read_text())
    for key in ("final", "best_evaluated", "evaluations", "stopped_because", "alternatives"):
        assert after[key] == before[key]
    assert (tmp_path / "r" / "best.json.damaged").read_text() == cut  # kept, not deleted


def test_an_edited_config_is_named_in_one_line(cli, core_toy, tmp_path):
    assert cli(*toy_argv(core_toy, "--budget", 2, "--out", tmp_path / "r"))[0] == 0
    (tmp_path / "r" / "best.json").unlink()
    config = tmp_path / "r" / "config.yaml"
    config.write_text(config.read_text().replace("name: random", "name: evolution"))
    code, _, err = cli("resume", tmp_path / "r")
    assert code == 2 and err.count("nasframe: error:") == 1
    assert "checkpoint.pt was written by strategy 'random' but config.yaml now names 'evolution'" in err


def test_show_leaves_out_a_damaged_last_line_and_says_so(cli, core_toy, tmp_path):
    assert cli(*toy_argv(core_toy, "--budget", 3, "--out", tmp_path / "r"))[0] == 0
    (tmp_path / "r" / "best.json").unlink()
    with open(tmp_path / "r" / "history.jsonl", "a") as fh:
        fh.write("\x00garbage\n")
    code, out, err = cli("show", tmp_path / "r")
    assert code == 0 and "3 evaluations logged" in out
    assert "history.jsonl line 4: not a JSON record" in err and "the line is left out" in err


def test_run_files_share_one_mode(cli, core_toy, tmp_path):
    old = os.umask(0o027)
    try:
        assert cli(*toy_argv(core_toy, "--budget", 2, "--out", tmp_path / "r"))[0] == 0
    finally:
        os.umask(old)
    names = ("config.yaml", "run.json", "history.jsonl", "work.jsonl", "checkpoint.pt", "best.json")
    modes = {name: stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) for name in names}
    assert set(modes.values()) == {0o640}, modes


# ---- threads -------------------------------------------------------------------------------------------------------
def test_resume_applies_the_recorded_thread_count(cli, core_toy, tmp_path, monkeypatch):
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert cli(*toy_argv(core_toy, "--budget", 2, "--out", tmp_path / "r"))[0] == 0
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        code, _, err = cli("resume", tmp_path / "r", "--budget", 3)
        assert code == 0, err
        assert "continuing with 2 CPU threads as this run recorded (not 1)" in err
        assert torch.get_num_threads() == 2
        sessions = json.loads((tmp_path / "r" / "run.json").read_text())["sessions"]
        assert [s["threads"] for s in sessions] == [2, 2] and sessions[0]["cpu"] == sessions[1]["cpu"]
    finally:
        torch.set_num_threads(1)


def test_resume_says_when_the_numerics_changed(cli, core_toy, tmp_path):
    assert cli(*toy_argv(core_toy, "--budget", 2, "--out", tmp_path / "r"))[0] == 0
    info_path = tmp_path / "r" / "run.json"
    info = json.loads(info_path.read_text())
    info["sessions"][0].update(torch="1.0.0", cpu="AVX2" if info["sessions"][0]["cpu"] != "AVX2" else "AVX512")
    info_path.write_text(json.dumps(info))
    code, _, err = cli("resume", tmp_path / "r", "--budget", 3)
    notes = [line for line in err.splitlines() if line.startswith("note: this run continues with")]
    assert code == 0 and len(notes) == 1
    assert f"torch 1.0.0 -> {torch.__version__}" in notes[0] and "CPU kernels" in notes[0]


# ---- a full disk ---------------------------------------------------------------------------------------------------
def test_a_full_disk_while_logging_stops_in_one_line_and_resumes_identically(cli, core_toy, tmp_path, monkeypatch):
    argv = [*toy_argv(core_toy, "--budget", 6), "--set", "run.checkpoint_every=1", "--set", "run.tensorboard=false"]
    assert cli(*argv, "--out", tmp_path / "full")[0] == 0

    class FullAfter:
        """history.jsonl whose 4th line finds the disk full."""

        def __init__(self, handle):
            self.handle, self.lines = handle, 0

        def write(self, text):
            self.lines += 1
            if self.lines == 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(text)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    real = RunDir.open_log
    with monkeypatch.context() as m:
        m.setattr(
            RunDir,
            "open_log",
            lambda self, name: FullAfter(real(self, name)) if name == "history.jsonl" else real(self, name),
        )
        code, _, err = cli(*argv, "--out", tmp_path / "r")
    assert code == 2 and err.count("nasframe: error:") == 1 and "Traceback" not in err
    assert (
        err.splitlines()[-1].startswith("nasframe: error: ")
        and "the disk is full; the run stopped: its last checkpoint (3 evaluations) and logs are intact" in err
    )
    assert len((tmp_path / "r" / "history.jsonl").read_text().splitlines()) == 3
    assert cli("resume", tmp_path / "r", "--quiet")[0] == 0
    assert outcome(tmp_path / "r") == outcome(tmp_path / "full")


# ---- values and structures -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Limits:
    rates: list[float] = option(default_factory=lambda: [0.1], help="")
    layout: dict = option(default_factory=dict, help="")
    ceiling: float = option(1.0, "", nonfinite=True)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"rates": [0.1, float("nan")]}, "limits.rates[1]: nan is not a finite number"),
        ({"rates": "0.1, inf"}, "limits.rates[1]: inf is not a finite number"),
        ({"layout": {"a": [1, float("-inf")]}}, "limits.layout: -inf is not a finite number"),
    ],
)
def test_non_finite_numbers_are_refused_inside_lists_and_mappings(values, message):
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        build_options(Limits, values, "limits")


def test_an_option_may_allow_non_finite_numbers():
    assert build_options(Limits, {"ceiling": "inf"}, "limits").ceiling == float("inf")


@pytest.mark.parametrize(
    "text, message",
    [
        ("run:\n  seed: " + "9" * 5000, "not valid YAML (a number has more than 4300 digits)"),
        ("a: " + "[" * 5000 + "]" * 5000, "nested too deeply to read"),
        ("a: " + "[" * 40 + "]" * 40, "nested more than 32 levels deep"),
        (
            "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n"
            + "".join(
                f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
            ),
            "holds more than 1,000,000 values",
        ),  # fmt: skip
        ("\x1f", "not valid YAML (unacceptable character #x001f: special characters are not allowed)"),
    ],
)
def test_a_config_beyond_the_bounds_is_one_line(cli, tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, _, err = cli("run", "--config", path)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_architecture_text_beyond_the_bounds_is_one_error():
    from nasframe.common.loading import MAX_VALUE_CHARS
    from nasframe.core.registry import spaces

    space = spaces.get("nb201")(build_options(spaces.get("nb201").Options, {}, "space"))
    for text, message in [
        ("{a: " * 100 + "}" * 100, "nested"),
        ("x" * (MAX_VALUE_CHARS + 1), "too long"),
        ("9" * 40, "cannot read architecture"),
        ("²", "cannot read architecture"),
    ]:
        with pytest.raises(InvalidArchitecture, match=message):
            space.parse_arch(text)


def test_a_run_folder_copied_for_a_damage_test_is_left_alone_by_show(cli, core_toy, tmp_path):
    """`show` reads, never writes: a damaged folder is exactly as it was afterwards."""
    assert cli(*toy_argv(core_toy, "--budget", 2, "--out", tmp_path / "r"))[0] == 0
    (tmp_path / "r" / "run.json").write_bytes(b"\xff\xfe")
    shutil.copytree(tmp_path / "r", tmp_path / "copy")
    code, _, err = cli("show", tmp_path / "r")
    assert code == 2 and "run.json: damaged (not UTF-8 text (byte 0 is 0xff))" in err
    for path in (tmp_path / "copy").rglob("*"):
        if path.is_file():
            assert (tmp_path / "r" / path.relative_to(tmp_path / "copy")).read_bytes() == path.read_bytes()
