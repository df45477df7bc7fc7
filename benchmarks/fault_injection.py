"""Fault injection: kill -9 at random points of tiny runs of every built-in strategy, of `compare` and of
`nasframe train`, then resume, and check that the result is identical to the uninterrupted run's;
SIGINT and SIGTERM at random points of run, resume, train and compare (one line, exit 130 or 143, then
the same end); `export` killed (also mid-write) or run twice at once on one --out (the file whole, no
temporary file left); a full disk while checkpointing; and the property sweep over generated inputs
(tests/test_properties.py: configs, --set items, architecture texts, damaged run folders, checkpoints,
output folders' contents, plugin faults, streams).

    python benchmarks/fault_injection.py                      # everything, the figures of docs/reliability.md
    python benchmarks/fault_injection.py --kills 3 --strategies random,abs --no-properties
    python benchmarks/fault_injection.py --kills 0 --compare-kills 0 --thread-kills 0 --no-disk \
        --examples 300 --properties "folder_that_is_not or plugin_fault or stream or damaged"  # second pass

Each kill trial: the uninterrupted reference run of the strategy (once per strategy), then the same
command killed with SIGKILL once its logs hold a random number of lines (drawn from the reference's
count, seeded) plus a random delay, then `nasframe resume` (or the same `run` again when the kill
came before the folder held a run), then a comparison of history.jsonl, work.jsonl and best.json
without times and costs. Runs use one thread (OMP_NUM_THREADS=1), as the CPU guarantee is per thread
count. tests/test_fault_injection.py runs a seeded handful of these trials in CI.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NASFRAME = [sys.executable, "-m", "nasframe.app.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# Tiny CPU runs of every built-in strategy: a few seconds each, but every phase of the strategy
# (supernet training in pieces, shrinking steps, evolution, selection) happens, and a checkpoint
# after every evaluation and every piece of work gives the kills many states to land between.
COMMON = ["--quiet", "--set", "run.tensorboard=false", "--set", "run.checkpoint_every=1", "--set", "data.limit=240"]
SUPERNET = ["--evaluator", "supernet", "--set", "evaluator.batch_size=32", "--set", "run.work_chunk_epochs=0.5"]
NB201 = ["--space", "nb201", "--set", "space.C=4", "--set", "space.N=1"]
DARTS = ["--space", "darts", "--set", "space.supernet_C=4", "--set", "space.supernet_layers=2"]
RUNS: dict[str, list[str]] = {
    "random": ["--strategy", "random", *NB201, "--evaluator", "short_train", "--set", "evaluator.epochs=1",
               "--set", "evaluator.batch_size=32", "--budget", "5"],
    "evolution": ["--strategy", "evolution", *NB201, "--evaluator", "short_train", "--set", "evaluator.epochs=1",
                  "--set", "evaluator.batch_size=32", "--set", "strategy.population=3", "--set",
                  "strategy.sample_size=2", "--budget", "6"],
    "mdenas": ["--strategy", "mdenas", *DARTS, "--evaluator", "short_train", "--set", "evaluator.epochs=1",
               "--set", "evaluator.batch_size=32", "--set", "space.C=4", "--set", "space.layers=2", "--budget", "5"],
    "abs": ["--strategy", "abs", *NB201, *SUPERNET, "--set", "strategy.warmup_epochs=1",
            "--set", "strategy.epochs_between_steps=0.5", "--set", "strategy.samples_per_operator=2",
            "--set", "strategy.max_steps=2", "--set", "strategy.score_bn_batches=1", "--budget", "4"],
    "spos": ["--strategy", "spos", *NB201, *SUPERNET, "--set", "strategy.supernet_epochs=1",
             "--set", "strategy.population=3", "--set", "strategy.parents=2", "--set", "strategy.mutations=1",
             "--set", "strategy.crossovers=1", "--set", "strategy.generations=1", "--set", "strategy.bn_batches=1",
             "--set", "strategy.bn_batch_size=32", "--budget", "5"],
    "darts": ["--strategy", "darts", *NB201, *SUPERNET, "--set", "strategy.epochs=2",
              "--set", "strategy.score_bn_batches=1"],
    "setn": ["--strategy", "setn", *NB201, *SUPERNET, "--set", "strategy.epochs=2", "--set", "strategy.candidates=3"],
    "cream": ["--strategy", "cream", *DARTS, *SUPERNET, "--set", "strategy.epochs=2", "--set",
              "strategy.warmup_epochs=1", "--set", "strategy.board_size=2", "--set", "strategy.score_bn_batches=1"],
}  # fmt: skip
COMPARE = ["compare", "--strategies", "random,evolution,mdenas", "--seeds", "2", "--budget", "12",
           "--space", "nb201", "--evaluator", "tabular", "--no-plot", "--no-tensorboard"]  # fmt: skip
TRAIN = ["train", "--space", "nb201", "--arch", "resnet", "--set", "space.C=4", "--set", "space.N=1", "--set",
         "recipe.epochs=4", "--set", "data.limit=320", "--set", "recipe.batch_size=32", "--quiet"]  # fmt: skip


# ---- one run, one kill ---------------------------------------------------------------------------------------------
def outcome(run_dir: Path) -> tuple:
    """What a resumed run must reproduce: its logs without times and costs, and best.json's answer."""

    def logged(name: str) -> list[dict]:
        path = run_dir / name
        lines = path.read_text().splitlines() if path.exists() else []
        return [{k: v for k, v in json.loads(x).items() if k not in ("time", "cost")} for x in lines]

    best = json.loads((run_dir / "best.json").read_text())
    final = {k: v for k, v in (best["final"] or {}).items() if k != "final_evaluation"}
    end = (best["final"] or {}).get("final_evaluation") or {}
    return logged("history.jsonl"), logged("work.jsonl"), final, best["best_evaluated"], end.get("metrics")


def log_lines(run_dir: Path) -> int:
    total = 0
    for name in ("history.jsonl", "work.jsonl"):
        path = run_dir / name
        try:
            total += path.read_bytes().count(b"\n")
        except OSError:
            pass
    return total


def run_through(argv: list[str], run_dir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([*NASFRAME, "run", *argv, "--out", str(run_dir)], check=True, capture_output=True, env=ENV)
    return time.perf_counter() - started


def kill_and_resume(argv: list[str], run_dir: Path, lines: int, delay: float, timeout: float = 600) -> str:
    """Kill `run` once its logs hold `lines` lines and `delay` more seconds passed; resume. Returns
    'killed' (then resumed) or 'finished' (the run ended before the kill came)."""
    proc = subprocess.Popen(
        [*NASFRAME, "run", *argv, "--out", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline and log_lines(run_dir) < lines:
        time.sleep(0.005)
    time.sleep(delay)
    if proc.poll() is not None:
        return "finished"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if (run_dir / "config.yaml").exists():
        cmd = [*NASFRAME, "resume", str(run_dir), "--quiet"]
    else:  # killed before the folder held a run: the same command starts it again
        cmd = [*NASFRAME, "run", *argv, "--out", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if done.returncode != 0:
        raise RuntimeError(f"resume failed: {done.stderr.strip().splitlines()[-1:]}")
    return "killed"


def kill_trials(name: str, kills: int, rng: random.Random, work: Path) -> Counter:
    """`kills` random kills of one strategy's tiny run, each resumed and compared with the reference."""
    argv = RUNS[name]
    reference = work / f"{name}-reference"
    seconds = run_through(argv, reference)
    expected, total = outcome(reference), log_lines(reference)
    counts: Counter = Counter()
    for k in range(kills):
        run_dir = work / f"{name}-kill-{k}"
        lines, delay = rng.randrange(total), rng.uniform(0.0, 0.25)
        how = kill_and_resume(argv, run_dir, lines, delay)
        counts[how] += 1
        if how == "killed":
            counts["identical" if outcome(run_dir) == expected else "DIFFERENT"] += 1
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"{name}: reference {seconds:.1f} s, {total} log lines; {dict(counts)}", flush=True)
    return counts


def compare_outcome(folder: Path) -> list[dict]:
    import csv

    with open(folder / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: v for k, v in r.items() if "seconds" not in k and k != "run_dir"} for r in rows]


def compare_trials(kills: int, rng: random.Random, work: Path) -> Counter:
    """Kill `nasframe compare` at random times and run the same command again: the same runs.csv."""
    reference = work / "compare-reference"
    started = time.perf_counter()
    subprocess.run([*NASFRAME, *COMPARE, "--out", str(reference)], check=True, capture_output=True, env=ENV)
    seconds = time.perf_counter() - started
    expected = compare_outcome(reference)
    counts: Counter = Counter()
    for k in range(kills):
        folder = work / f"compare-kill-{k}"
        proc = subprocess.Popen([*NASFRAME, *COMPARE, "--out", str(folder)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=ENV)  # fmt: skip
        time.sleep(rng.uniform(0.3, seconds))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            counts["killed"] += 1
        proc.wait()
        subprocess.run([*NASFRAME, *COMPARE, "--out", str(folder)], check=True, capture_output=True, env=ENV)
        counts["identical" if compare_outcome(folder) == expected else "DIFFERENT"] += 1
        shutil.rmtree(folder, ignore_errors=True)
    print(f"compare: reference {seconds:.1f} s; {dict(counts)}", flush=True)
    return counts


# ---- nasframe train -------------------------------------------------------------------------------------------------
def train_outcome(folder: Path) -> tuple:
    """What a resumed training must reproduce: the weights, bit for bit, and the test metrics. (Tensor by
    tensor: the order of the safetensors header's metadata differs from one process to the next.)"""
    from safetensors.torch import load_file

    meta = json.loads((folder / "model.json").read_text())
    weights = {
        k: (v.dtype, tuple(v.shape), v.numpy().tobytes()) for k, v in load_file(folder / "model.safetensors").items()
    }
    return weights, meta["metrics"], meta["epochs"]


def train_kill_trials(kills: int, rng: random.Random, work: Path) -> Counter:
    """`nasframe train` killed with SIGKILL at a random time (and, every other trial, just after its weights
    appear: the moment between model.safetensors and the completion marker model.json), then continued with
    `train --resume` (or the same command when the kill came before train.json): the same weights."""
    reference = work / "train-reference"
    started = time.perf_counter()
    subprocess.run([*NASFRAME, *TRAIN, "--out", str(reference)], check=True, capture_output=True, env=ENV)
    seconds = time.perf_counter() - started
    expected = train_outcome(reference)
    counts: Counter = Counter()
    for k in range(kills):
        folder = work / f"train-kill-{k}"
        proc = subprocess.Popen([*NASFRAME, *TRAIN, "--out", str(folder)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=ENV)  # fmt: skip
        if k % 2:  # at the weights: the end state must be "continue" or "finished", never neither
            while proc.poll() is None and not (folder / "model.safetensors").exists():
                time.sleep(0.001)
        else:
            time.sleep(rng.uniform(0.2, seconds))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            counts["killed"] += 1
        proc.wait()
        if (folder / "model.json").exists():
            counts["finished before the kill" if proc.returncode == 0 else "killed after model.json"] += 1
        else:
            cmd = [*NASFRAME, "train", "--resume", str(folder), "--quiet"]
            if not (folder / "train.json").exists():
                cmd = [*NASFRAME, *TRAIN, "--out", str(folder)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
            if done.returncode != 0:
                counts["NOT CLEAN"] += 1
                print(f"  train kill {k}: {done.stderr.strip().splitlines()[-1:]}")
                continue
        counts["identical" if train_outcome(folder) == expected else "DIFFERENT"] += 1
        shutil.rmtree(folder, ignore_errors=True)
    print(f"train: reference {seconds:.1f} s; {dict(counts)}", flush=True)
    return counts


# ---- SIGINT and SIGTERM ---------------------------------------------------------------------------------------------
def _stopped_cleanly(proc: subprocess.Popen, sig: int, done: Path) -> bool:
    """Exit 130 (SIGINT) or 143 (SIGTERM), no traceback, one last line saying how to continue. A command
    whose work was complete (`done` exists) when the signal came may also end by it: Python's own
    handler is back once the command has returned, for the last milliseconds of the process."""
    _, err = proc.communicate()
    if proc.returncode == 0 or (proc.returncode == -sig and done.exists()):
        return True  # it finished before the signal came
    last = err.strip().splitlines()[-1] if err.strip() else ""
    word = "interrupted" if sig == signal.SIGINT else "terminated (SIGTERM)"
    code = 130 if sig == signal.SIGINT else 143
    # killed by the signal itself after saying so (CPython re-raises an interrupt it saw pass through code
    # it ran on a C library's behalf): a shell reports the same 130 or 143
    clean = proc.returncode in (code, -sig) and "Traceback" not in err and word in last
    if not clean:
        print(f"  {signal.Signals(sig).name}: exit {proc.returncode}, last line {last[:300]!r}", flush=True)
    return clean


def signal_trials(kills: int, rng: random.Random, work: Path) -> Counter:
    """SIGINT or SIGTERM at a random time of `run`, `resume` (of a run stopped before), `train` and
    `compare`: one line and exit 130/143, then resume (or the same command) to the uninterrupted end."""
    argv = RUNS["random"]
    reference = work / "signal-run-reference"
    seconds = run_through(argv, reference)
    expected = outcome(reference)
    train_ref = work / "signal-train-reference"
    subprocess.run([*NASFRAME, *TRAIN, "--out", str(train_ref)], check=True, capture_output=True, env=ENV)
    counts: Counter = Counter()
    for k in range(kills):
        command = ["run", "resume", "train", "compare"][k % 4]
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        folder = work / f"signal-{k}"
        if command == "train":
            cmd = [*NASFRAME, *TRAIN, "--out", str(folder)]
        elif command == "compare":
            cmd = [*NASFRAME, *COMPARE, "--out", str(folder)]
        else:
            cmd = [*NASFRAME, "run", *argv, "--out", str(folder)]
        if command == "resume":  # stopped once already: the signal comes during the resume
            kill_at = log_lines(reference) // 2
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
            while proc.poll() is None and log_lines(folder) < kill_at:
                time.sleep(0.005)
            proc.send_signal(signal.SIGINT)
            proc.wait()
            cmd = [*NASFRAME, "resume", str(folder), "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        lock = "*/seed-*/.lock" if command == "compare" else ".lock"  # held while it works: it has started
        while proc.poll() is None and not any(folder.glob(lock)):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, seconds / 2))
        if proc.poll() is None:
            proc.send_signal(sig)
        end = {"train": "model.json", "compare": "runs.csv"}.get(command, "best.json")
        clean = _stopped_cleanly(proc, sig, folder / end)
        if command == "train":
            again = [*NASFRAME, "train", "--resume", str(folder), "--quiet"]
            if not (folder / "train.json").exists():
                again = cmd
            elif (folder / "model.json").exists():
                again = []
        elif command == "compare":
            again = cmd
        else:
            again = [*NASFRAME, "resume", str(folder), "--quiet"] if (folder / "config.yaml").exists() else cmd
        if again:
            done = subprocess.run(again, capture_output=True, text=True, env=ENV)
            if done.returncode != 0:
                print(f"  {command} again: {done.stderr.strip().splitlines()[-1:]}")
            clean = clean and done.returncode == 0
        same = True
        if command == "train":
            same = train_outcome(folder) == train_outcome(train_ref)
        elif command != "compare":
            same = outcome(folder) == expected
        if not same:
            print(f"  {command} after {signal.Signals(sig).name}: a different end", flush=True)
            shutil.copytree(folder, work.parent / f"nasframe-signal-{command}-{k}", dirs_exist_ok=True)
        clean = clean and same
        counts["clean" if clean else "NOT CLEAN"] += 1
        shutil.rmtree(folder, ignore_errors=True)
    print(f"SIGINT/SIGTERM of run, resume, train, compare: {dict(counts)}", flush=True)
    return counts


# ---- exports -----------------------------------------------------------------------------------------------------
def _export_complete(path: Path, fmt: str) -> bool:
    """The exported file is whole: it loads and runs (a cut file does not)."""
    import warnings

    import torch

    try:
        warnings.simplefilter("ignore", FutureWarning)  # torch announces TorchScript's deprecation
        if fmt == "onnx":
            import onnxruntime

            onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        else:
            torch.jit.load(str(path), map_location="cpu")
    except Exception:
        return False
    return True


def export_trials(trials: int, rng: random.Random, work: Path) -> Counter:
    """`nasframe export` of a finished training: killed with SIGKILL at a random time (every other kill
    just as its temporary file appears: mid-write), then run again; or two exports started at once to
    one --out. Clean: exit 0 in the end, the file whole, no temporary file left in the folder."""
    folder = work / "export-train"
    subprocess.run([*NASFRAME, *TRAIN, "--out", str(folder)], check=True, capture_output=True, env=ENV)
    counts: Counter = Counter()
    seconds: dict[str, float] = {}
    for fmt in ("torchscript", "onnx"):
        started = time.perf_counter()
        ref = work / f"export-reference.{fmt}"
        subprocess.run([*NASFRAME, "export", str(folder), "--format", fmt, "--out", str(ref)], check=True,
                       capture_output=True, env=ENV)  # fmt: skip
        seconds[fmt] = time.perf_counter() - started
    for k in range(trials):
        fmt = ("torchscript", "onnx")[(k // 3) % 2]
        where = work / f"export-{k}"
        where.mkdir()
        out = where / "model.out"
        cmd = [*NASFRAME, "export", str(folder), "--format", fmt, "--out", str(out)]
        codes = []
        if k % 3 == 2:  # two at once
            procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
                     for _ in range(2)]  # fmt: skip
            codes = [p.wait() for p in procs]
            counts["two at once"] += 1
        else:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
            if k % 3 == 1:  # mid-write: the moment its temporary file exists
                while proc.poll() is None and not any(p.name.endswith(".tmp") for p in where.iterdir()):
                    time.sleep(0.0005)
            else:
                time.sleep(rng.uniform(0.0, seconds[fmt]))
            killed = proc.poll() is None
            if killed:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            counts["killed mid-write" if k % 3 == 1 and killed else "killed" if killed else "finished first"] += 1
            left = sorted(p.name for p in where.iterdir() if p.name != "model.out")
            if left:
                counts["temporary file after the kill"] += 1
            if out.exists() and not _export_complete(out, fmt):
                counts["PARTIAL FILE after the kill"] += 1
                print(f"  export kill {k}: a partial {out.name}", flush=True)
            codes = [subprocess.run(cmd, capture_output=True, env=ENV).returncode]
        left = sorted(p.name for p in where.iterdir() if p.name != "model.out")
        clean = all(c == 0 for c in codes) and not left and _export_complete(out, fmt)
        if not clean:
            print(f"  export {k} ({fmt}): exit {codes}, left {left}", flush=True)
        counts["clean" if clean else "NOT CLEAN"] += 1
        shutil.rmtree(where, ignore_errors=True)
    print(f"export ({', '.join(f'{f} {s:.1f} s' for f, s in seconds.items())}): {dict(counts)}", flush=True)
    return counts


# ---- a full disk -------------------------------------------------------------------------------------------------
def disk_full_trials(work: Path) -> Counter:
    """ENOSPC while writing a checkpoint (injected at the n-th checkpoint write) and while appending
    a history line: the run stops with one line, the previous checkpoint and the logs before it are
    intact, and a resume after space is freed ends exactly as the uninterrupted run."""
    import torch

    from nasframe.app.cli import main as cli_main
    from nasframe.common import checkpoint

    torch.set_num_threads(1)
    toy = ["--plugin", str(ROOT / "tests" / "plugins" / "core_toy.py"), "--strategy", "random", "--space",
           "core_toy", "--evaluator", "core_toy_eval", "--quiet", "--budget", "8", "--set", "run.checkpoint_every=1",
           "--set", "run.tensorboard=false"]  # fmt: skip

    def main(argv: list[str]) -> int:  # the CLI in this process, its output hidden
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return cli_main(argv)

    reference = work / "disk-reference"
    assert main(["run", *toy, "--out", str(reference)]) == 0
    expected = outcome(reference)
    counts: Counter = Counter()
    real = checkpoint.atomic_write_bytes
    for n in range(1, 9):
        run_dir = work / f"disk-full-{n}"
        calls = {"n": 0}

        def full_at_n(path, data, n=n, calls=calls, **options):
            if Path(path).name == "checkpoint.pt":
                calls["n"] += 1
                if calls["n"] == n:
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, data, **options)

        checkpoint.atomic_write_bytes = full_at_n
        try:
            code = main(["run", *toy, "--out", str(run_dir)])
        finally:
            checkpoint.atomic_write_bytes = real
        before = (run_dir / "checkpoint.pt").read_bytes() if (run_dir / "checkpoint.pt").exists() else None
        clean = code == 2 and not (run_dir / "best.json").exists()
        if before is not None:
            clean = clean and main(["resume", str(run_dir), "--quiet"]) == 0 and outcome(run_dir) == expected
        counts["clean" if clean else "NOT CLEAN"] += 1
    print(f"disk full while checkpointing: {dict(counts)}", flush=True)
    return counts


def disk_full_tmpfs_trials(work: Path, sizes_kb: tuple[int, ...] = (24, 32, 40, 48, 64, 96)) -> Counter:
    """A real full disk: the toy run on a tmpfs of `sizes_kb`, which fills at different writes (a history
    line, a checkpoint, run.json); then the tmpfs grows and `resume` must end as the uninterrupted run.
    Needs permission to mount (root); skipped otherwise."""
    toy = ["--plugin", str(ROOT / "tests" / "plugins" / "core_toy.py"), "--strategy", "random", "--space",
           "core_toy", "--evaluator", "core_toy_eval", "--quiet", "--budget", "300", "--set", "run.checkpoint_every=1",
           "--set", "run.tensorboard=false", "--set", "space.decisions=8"]  # fmt: skip
    reference = work / "tmpfs-reference"
    subprocess.run([*NASFRAME, "run", *toy, "--out", str(reference)], check=True, capture_output=True, env=ENV)
    expected = outcome(reference)
    counts: Counter = Counter()
    for size in sizes_kb:
        mount = work / f"tmpfs-{size}"
        mount.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", str(mount)]).returncode != 0:
            print("disk full on a tmpfs: skipped (cannot mount)")
            return counts
        try:
            run_dir = mount / "r"
            done = subprocess.run([*NASFRAME, "run", *toy, "--out", str(run_dir)], capture_output=True, text=True,
                                  env=ENV)  # fmt: skip
            lines = done.stderr.strip().splitlines()
            one_line = done.returncode == 2 and "Traceback" not in done.stderr and "disk is full" in lines[-1]
            subprocess.run(["mount", "-o", "remount,size=4m", str(mount)], check=True)
            resumed = subprocess.run([*NASFRAME, "resume", str(run_dir), "--quiet"], capture_output=True, env=ENV)
            clean = one_line and resumed.returncode == 0 and outcome(run_dir) == expected
            counts["clean" if clean else "NOT CLEAN"] += 1
            if not clean:
                print(f"  tmpfs {size} kB: {lines[-1:]}")
        finally:
            subprocess.run(["umount", str(mount)])
    print(f"disk full on a tmpfs ({', '.join(map(str, sizes_kb))} kB): {dict(counts)}", flush=True)
    return counts


# ---- threads -------------------------------------------------------------------------------------------------------
def threads_trials(kills: int, rng: random.Random, work: Path) -> Counter:
    """A run on 2 threads killed and resumed in an environment asking for 1 (OMP_NUM_THREADS=1): resume
    applies the recorded 2, so the result is identical to the uninterrupted 2-thread run. Also reports
    whether 1 and 2 threads give different numbers at all (they do for convolutions)."""
    global ENV
    argv = RUNS["random"]
    one, two = {**ENV, "OMP_NUM_THREADS": "1"}, {**ENV, "OMP_NUM_THREADS": "2"}
    counts: Counter = Counter()
    try:
        ENV = two
        run_through(argv, work / "threads-2")
        ENV = one
        run_through(argv, work / "threads-1")
        counts["1 and 2 threads differ" if outcome(work / "threads-1") != outcome(work / "threads-2") else "same"] += 1
        expected, total = outcome(work / "threads-2"), log_lines(work / "threads-2")
        for k in range(kills):
            run_dir = work / f"threads-kill-{k}"
            ENV = two
            proc = subprocess.Popen([*NASFRAME, "run", *argv, "--out", str(run_dir)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=ENV)  # fmt: skip
            lines = rng.randrange(1, total)
            while proc.poll() is None and log_lines(run_dir) < lines:
                time.sleep(0.005)
            if proc.poll() is not None:
                counts["finished"] += 1
                continue
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            subprocess.run([*NASFRAME, "resume", str(run_dir), "--quiet"], check=True, capture_output=True, env=one)
            counts["identical" if outcome(run_dir) == expected else "DIFFERENT"] += 1
    finally:
        ENV = one
    print(f"threads (run on 2, resumed where OMP_NUM_THREADS=1): {dict(counts)}", flush=True)
    return counts


# ---- the property sweep ------------------------------------------------------------------------------------------
def property_sweep(examples: int, work: Path, select: str = "") -> Counter:
    log = work / "properties.log"
    env = {**ENV, "NASFRAME_HYPOTHESIS_PROFILE": "sweep", "NASFRAME_HYPOTHESIS_EXAMPLES": str(examples),
           "NASFRAME_PROPERTY_LOG": str(log)}  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_properties.py"),
         *(["-k", select] if select else [])],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    counts = Counter(line.strip() for line in log.read_text().splitlines()) if log.exists() else Counter()
    status = "passed" if proc.returncode == 0 else "FAILED"
    print(f"property sweep ({examples} examples per property, {time.perf_counter() - started:.0f} s): {status}")
    for key, value in sorted(counts.items()):
        print(f"  {key}: {value}")
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        counts["FAILED"] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per strategy (default 10)")
    parser.add_argument("--compare-kills", type=int, default=6, help="kills of `nasframe compare` (default 6)")
    parser.add_argument("--strategies", default=",".join(RUNS), help="comma-separated (default: all built-ins)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    parser.add_argument("--examples", type=int, default=1000, help="property sweep: examples per property")
    parser.add_argument("--thread-kills", type=int, default=4, help="kills of a 2-thread run resumed on 1 (default 4)")
    parser.add_argument("--train-kills", type=int, default=10, help="kills of `nasframe train` (default 10)")
    parser.add_argument("--signal-kills", type=int, default=12, help="SIGINT/SIGTERM trials (default 12)")
    parser.add_argument("--export-kills", type=int, default=9, help="export trials (default 9)")
    parser.add_argument("--no-disk", action="store_true", help="skip the full-disk trials")
    parser.add_argument("--no-properties", action="store_true", help="skip the property sweep")
    parser.add_argument("--properties", default="", metavar="EXPR", help="only the properties pytest -k EXPR selects")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="nasframe-faults-"))
    failures = 0
    try:
        for name in args.strategies.split(",") if args.kills else []:
            counts = kill_trials(name, args.kills, rng, work)
            failures += counts["DIFFERENT"]
        if args.compare_kills:
            failures += compare_trials(args.compare_kills, rng, work)["DIFFERENT"]
        if args.train_kills:
            counts = train_kill_trials(args.train_kills, rng, work)
            failures += counts["DIFFERENT"] + counts["NOT CLEAN"]
        if args.signal_kills:
            failures += signal_trials(args.signal_kills, rng, work)["NOT CLEAN"]
        if args.export_kills:
            counts = export_trials(args.export_kills, rng, work)
            failures += counts["NOT CLEAN"] + counts["PARTIAL FILE after the kill"]
        if not args.no_disk:
            failures += disk_full_trials(work)["NOT CLEAN"]
            failures += disk_full_tmpfs_trials(work)["NOT CLEAN"]
        if args.thread_kills:
            failures += threads_trials(args.thread_kills, rng, work)["DIFFERENT"]
        if not args.no_properties:
            failures += property_sweep(args.examples, work, args.properties)["FAILED"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("all identical and clean" if not failures else f"{failures} FAILURES")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
