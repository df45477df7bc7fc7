"""Runner: budgets, run files, failures, locking, and resume after kill -9 to the identical end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasframe.common.checkpoint import RunLock
from nasframe.common.errors import CapabilityError, RunDirError
from nasframe.search.config import merge_config
from nasframe.search.runner import Runner


def toy_cfg(out: Path, plugin: str, **run) -> dict:
    base = {
        "plugins": [plugin],
        "strategy": {"name": "random"},
        "space": {"name": "core_toy"},
        "evaluator": {"name": "core_toy_eval"},
        "run": {"out": str(out), "progress": False, "checkpoint_every": 1, **run},
    }
    return merge_config(base)


def history(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]


def test_run_writes_config_history_best_checkpoint_and_tensorboard(tmp_path, core_toy):
    summary = Runner.create(toy_cfg(tmp_path / "r", core_toy, max_evaluations=5)).run()
    r = tmp_path / "r"
    assert summary.evaluations == 5 and summary.stopped_because == "max_evaluations"
    assert {"config.yaml", "history.jsonl", "best.json", "checkpoint.pt", "tensorboard"} <= set(os.listdir(r))
    h = history(r)
    assert [x["index"] for x in h] == [0, 1, 2, 3, 4]
    assert h[-1]["best_val_acc"] == max(x["metrics"]["val_acc"] for x in h)
    best = json.loads((r / "best.json").read_text())
    top = max(h, key=lambda x: x["metrics"]["val_acc"])
    assert best["best_evaluated"]["index"] == top["index"]
    assert best["final"]["arch"] == top["arch"]  # random returns its best evaluated architecture
    assert best["final"]["held_out"]["test_acc"] == top["metrics"]["test_acc"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(r / "tensorboard"))
    assert not [n for n in os.listdir(r) if n.endswith(".tmp")]  # atomic writes leave no temp files


def test_epoch_budget_and_failures_recorded(tmp_path, core_toy):
    cfg = toy_cfg(tmp_path / "r", core_toy, max_evaluations=None, max_epochs=6)
    cfg["evaluator"]["fail_on"] = "c2"
    summary = Runner.create(cfg).run()
    h = history(tmp_path / "r")
    assert summary.stopped_because == "max_epochs" and len(h) == 6  # one epoch per evaluation
    failed = [x for x in h if x["status"] == "failed"]
    assert failed and all(x["reason"] == "scripted failure" and x["arch"]["d0"] == "c2" for x in failed)
    assert all(x["arch"]["d0"] != "c2" for x in h if x["status"] == "ok")


def test_space_exhausted_stops_cleanly(tmp_path, core_toy):
    cfg = toy_cfg(tmp_path / "r", core_toy, max_evaluations=10)
    cfg["space"].update(decisions=1, choices=2)
    cfg["strategy"]["max_tries"] = 50
    summary = Runner.create(cfg).run()
    assert summary.evaluations == 2  # both architectures, each once
    assert summary.stopped_because.startswith("space_exhausted")


def test_same_seed_same_run_other_seed_differs(tmp_path, core_toy):
    a = Runner.create(toy_cfg(tmp_path / "a", core_toy, max_evaluations=6, seed=1)).run()
    b = Runner.create(toy_cfg(tmp_path / "b", core_toy, max_evaluations=6, seed=1)).run()
    c = Runner.create(toy_cfg(tmp_path / "c", core_toy, max_evaluations=6, seed=2)).run()
    strip = lambda h: [(x["arch"], x["metrics"]) for x in h]  # noqa: E731
    assert strip(history(a.run_dir)) == strip(history(b.run_dir))
    assert strip(history(a.run_dir)) != strip(history(c.run_dir))


def test_existing_run_dir_is_not_overwritten(tmp_path, core_toy):
    Runner.create(toy_cfg(tmp_path / "r", core_toy, max_evaluations=2)).run()
    before = (tmp_path / "r" / "history.jsonl").read_text()
    with pytest.raises(RunDirError, match="already holds a run; use `nasframe resume"):
        Runner.create(toy_cfg(tmp_path / "r", core_toy, max_evaluations=2))
    assert (tmp_path / "r" / "history.jsonl").read_text() == before


def test_second_process_cannot_use_a_run_dir_in_use(tmp_path, core_toy):
    runner = Runner.create(toy_cfg(tmp_path / "r", core_toy, max_evaluations=2))
    (tmp_path / "r").mkdir()
    folder = str(tmp_path / "r")
    code = f"from nasframe.common.checkpoint import RunLock; lk = RunLock({folder!r}).acquire(); print('locked')"
    holder = subprocess.Popen(
        [sys.executable, "-c", code + "; import time; time.sleep(30)"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=r"is in use by pid \d+"):
            runner.run()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path / "r"):  # released when its owner died
        pass


def test_strategy_needing_a_capability_fails_at_build(tmp_path, core_toy):
    from nasframe import SharedWeights, Strategy, register_strategy

    @register_strategy("needs_sharing_for_test")
    class NeedsSharing(Strategy):
        """Test strategy that requires weight sharing."""

        requires = (SharedWeights,)

        def ask(self):
            raise AssertionError("never asked")

        def tell(self, arch, result):
            raise AssertionError("never told")

    cfg = toy_cfg(tmp_path / "r", core_toy, max_evaluations=2)
    cfg["strategy"] = {"name": "needs_sharing_for_test"}
    expected = "needs an evaluator with shared weights; 'core_toy_eval' has none. Evaluators that offer it: .*supernet"
    with pytest.raises(CapabilityError, match=expected):
        Runner.create(cfg)
    assert not (tmp_path / "r").exists()


def test_resume_in_process_continues_identically(tmp_path, core_toy):
    full = Runner.create(toy_cfg(tmp_path / "full", core_toy, max_evaluations=8, seed=4)).run()
    part = Runner.create(toy_cfg(tmp_path / "part", core_toy, max_evaluations=3, seed=4)).run()
    assert part.evaluations == 3
    resumed = Runner.resume(tmp_path / "part", overrides={"max_evaluations": 8}).run()
    assert resumed.evaluations == 8
    assert [x["arch"] for x in history(full.run_dir)] == [x["arch"] for x in history(resumed.run_dir)]
    assert (
        json.loads((full.run_dir / "best.json").read_text())["final"]
        == json.loads((resumed.run_dir / "best.json").read_text())["final"]
    )


def test_resume_after_kill_9_gives_the_identical_result(tmp_path, core_toy):
    """Kill a CLI run mid-search with SIGKILL, resume it, and compare with an uninterrupted run."""
    from conftest import kill_then_resume

    args = [
        "--plugin",
        core_toy,
        "--strategy",
        "random",
        "--space",
        "core_toy",
        "--evaluator",
        "core_toy_eval",
        "--budget",
        "12",
        "--seed",
        "7",
        "--quiet",
        "--set",
        "run.checkpoint_every=2",
    ]
    subprocess.run(
        [sys.executable, "-m", "nasframe.app.cli", "run", *args, "--out", str(tmp_path / "full")],
        check=True,
        capture_output=True,
    )
    kill_then_resume(args + ["--set", "evaluator.sleep=0.15"], tmp_path / "killed", after_lines=5)
    full_h, res_h = history(tmp_path / "full"), history(tmp_path / "killed")
    assert [(x["arch"], x["metrics"]) for x in full_h] == [(x["arch"], x["metrics"]) for x in res_h]
    full_best = json.loads((tmp_path / "full" / "best.json").read_text())
    res_best = json.loads((tmp_path / "killed" / "best.json").read_text())
    assert full_best["final"] == res_best["final"] and res_best["evaluations"] == 12
