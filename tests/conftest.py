"""Shared test fixtures: the core toy plugin and helpers to run the CLI in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tiny CPU models run fastest on one thread, and a loaded 2-core CI machine makes two OpenMP
# threads contend badly (seen: 0.05 s forwards taking 3-6 s). Set once here for every test file.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
CORE_TOY = str(ROOT / "tests" / "plugins" / "core_toy.py")


def toy_argv(core_toy: str, *extra: object) -> list[str]:
    """`nasframe run` of random search on the core toy space with its scripted evaluator, quiet."""
    return ["run", "--plugin", core_toy, "--strategy", "random", "--space", "core_toy", "--evaluator",
            "core_toy_eval", "--quiet", *map(str, extra)]  # fmt: skip


def run_to_the_end(run_argv: list[str], run_dir: Path) -> None:
    """`nasframe run ... --out run_dir` in a subprocess, uninterrupted (the reference for a kill test)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nasframe.app.cli", "run", *run_argv, "--out", str(run_dir)]
    subprocess.run(cmd, check=True, capture_output=True, env=env)


def run_outcome(run_dir: Path) -> tuple[list[dict], list[dict], dict]:
    """What a resumed run must reproduce: history.jsonl and work.jsonl without times, costs and the run
    identity (which differs where only speed settings do, such as a test evaluator's `sleep`; the
    ownership tests check it), and best.json's `final` and `best_evaluated`."""
    import json

    def logged(name: str) -> list[dict]:
        path = Path(run_dir) / name
        records = read_jsonl(path) if path.exists() else []
        return [{k: v for k, v in r.items() if k not in ("time", "cost", "run")} for r in records]

    best = json.loads((Path(run_dir) / "best.json").read_text())
    final = {k: v for k, v in best["final"].items() if k != "final_evaluation"}
    return logged("history.jsonl"), logged("work.jsonl"), {"final": final, "best": best["best_evaluated"]}


def read_jsonl(path: Path) -> list[dict]:
    """The JSON records of a .jsonl file (history.jsonl, work.jsonl)."""
    import json

    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture
def core_toy() -> str:
    """Path of the toy plugin (space `core_toy`, evaluator `core_toy_eval`), already loaded."""
    from nasframe.common.plugins import load_plugin

    load_plugin(CORE_TOY)
    return CORE_TOY


@pytest.fixture(scope="session")
def digits():
    """The default data set's search split handle (loads once per session)."""
    from nasframe.data import DataOptions, DataSource

    return DataSource(DataOptions(name="digits"), seed=0)


@pytest.fixture
def cli(capsys):
    """Run `nasframe ...` in-process; returns (exit code, stdout, stderr)."""
    from nasframe.app.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def kill_then_resume(
    run_argv: list[str],
    run_dir: Path,
    after_lines: int,
    timeout: float = 300.0,
    log: str = "history.jsonl",
    before_lines: int | None = None,
) -> None:
    """Start `nasframe run ... --out run_dir` in a subprocess, SIGKILL it once `after_lines` lines are
    in `log` (history.jsonl: evaluations; work.jsonl: pieces of supernet work) and a checkpoint exists,
    check it died mid-run (and, with `before_lines`, before history.jsonl reached that many lines, i.e.
    in the phase the test means), then `nasframe resume` it to the end. The timeout is generous:
    a loaded CI machine can be many times slower than an idle one."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "nasframe.app.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models; a shared CI box must not oversubscribe
    proc = subprocess.Popen(
        cmd + ["run", *run_argv, "--out", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.time() + timeout
    watched = run_dir / log
    history = run_dir / "history.jsonl"
    while time.time() < deadline and proc.poll() is None:
        lines = watched.read_text().count("\n") if watched.exists() else 0
        if (run_dir / "checkpoint.pt").exists() and lines >= after_lines:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "best.json").exists(), "the run ended before it could be killed"
    if before_lines is not None:
        logged = history.read_text().count("\n") if history.exists() else 0
        assert logged < before_lines, f"killed too late: {logged} evaluations were already logged"
    done = subprocess.run(cmd + ["resume", str(run_dir), "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
