"""`nasframe train --recipe quick` on a shared CPU: its time idle and beside busy processes, per thread setting.

The README's training command (`nasframe train RUN --recipe quick`, the answer of a NAS-Bench-201
random search on digits) runs as a fresh process for every entry of `--threads` (`default`: no
flag, i.e. the rule `auto`; a number: `--threads N`), first on the machine as it is ("idle") and
then beside `--load` CPU-bound processes of this script's own ("loaded"). With `--baseline PYTHON`
(another checkout's interpreter, e.g. the commit before `train` followed `run.threads`) its default
runs alternately with this checkout's, so both see the same load. It prints the median wall and
CPU seconds per setting and the ratios loaded/idle and setting/this checkout's default.

    .venv/bin/python benchmarks/train_threads.py                                   # default vs --threads 2
    .venv/bin/python benchmarks/train_threads.py --baseline ../before/.venv/bin/python --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_load import Load, load_average, machine  # a module beside this script

clock = time.perf_counter


def train_once(python: str, run_dir: Path, threads: str, work: Path) -> dict:
    """One `nasframe train RUN --recipe quick` as a fresh process: wall and CPU seconds, test accuracy."""
    out = work / f"train-{threads}"
    shutil.rmtree(out, ignore_errors=True)
    argv = [python, "-m", "nasframe", "train", str(run_dir), "--recipe", "quick", "--out", str(out), "--quiet"]
    argv += ["--no-tensorboard"] + ([] if threads in ("default", "baseline") else ["--threads", threads])
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the rule decides, not the shell
    t0 = clock()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=work, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = clock() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {err.strip()[-500:]}")
    meta = json.loads((out / "model.json").read_text())
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "acc": meta["metrics"]["test_acc"]}


def median(runs: list[dict], key: str = "wall") -> float:
    return statistics.median(r[key] for r in runs)


def measure(settings: dict[str, str], run_dir: Path, work: Path, repeats: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {s: [] for s in settings}
    for _ in range(repeats):
        for label, python in settings.items():
            out[label].append(train_once(python, run_dir, label, work))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="default,2", help="comma-separated: default (the rule) or a count")
    p.add_argument("--baseline", metavar="PYTHON", help="another checkout's interpreter, run with its default")
    p.add_argument("--repeats", type=int, default=3, help="runs per setting and phase (median shown)")
    p.add_argument("--load", type=int, default=2, help="busy processes for the loaded phase (default 2; 0: skip)")
    args = p.parse_args()

    settings = {t: sys.executable for t in args.threads.split(",")}
    if args.baseline:
        settings = {"baseline": args.baseline, **settings}
    print(f"machine: {machine()}; `nasframe train RUN --recipe quick`, median of {args.repeats} runs per setting")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_dir = work / "nb201"
        search = [sys.executable, "-m", "nasframe", "run", "--strategy", "random", "--space", "nb201"]
        search += ["--evaluator", "tabular", "--budget", "50", "--out", str(run_dir), "--quiet"]
        subprocess.run(search, check=True, cwd=work, stdout=subprocess.DEVNULL)
        phases = {"idle": None, f"{args.load} busy": args.load} if args.load else {"idle": None}
        results: dict[str, dict[str, list[dict]]] = {}
        for phase, n in phases.items():
            start_load = load_average()
            if n:
                with Load(n, seconds=3600):
                    results[phase] = measure(settings, run_dir, work, args.repeats)
            else:
                results[phase] = measure(settings, run_dir, work, args.repeats)
            print(f"\n{phase} (load average before: {start_load})")
            print(f"{'setting':<14}{'wall':>10}{'CPU':>10}{'test acc':>10}{'vs default':>12}")
            base = statistics.median(
                r["wall"] for r in results[phase].get("default", results[phase][next(iter(settings))])
            )
            for label, runs in results[phase].items():
                wall = statistics.median(r["wall"] for r in runs)
                cpu = statistics.median(r["cpu"] for r in runs)
                print(f"{label:<14}{wall:>8.1f} s{cpu:>8.1f} s{runs[0]['acc']:>9.2f}%{wall / base:>11.2f}x")
        if len(phases) == 2:
            idle, loaded = results["idle"], results[f"{args.load} busy"]
            ratios = ", ".join(f"{s} {median(loaded[s]) / median(idle[s]):.2f}x" for s in settings)
            print(f"\nloaded/idle wall: {ratios}")


if __name__ == "__main__":
    main()
