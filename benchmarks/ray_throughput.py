"""Local vs Ray executor on this machine: evaluations per second and the cost of one Ray task.

Two measurements, each side by side in one process (one Ray instance started up front and kept):
  1. short_train on digits (random search over a small DARTS network, 1 epoch per candidate):
     the local executor (one evaluation at a time) vs Ray with --workers slots (`run.parallel`);
     the ratio is the speed-up Ray gives on this machine's cores.
  2. tabular NAS-Bench-201 lookups (microseconds each): one slot, local vs Ray; the difference per
     evaluation is Ray's round trip per task (submit, run in the worker, fetch the result).
Runs alternate (local, ray, local, ray, ...) so a change in machine load hits both; the wall time of
each whole run is reported, workers' start included (that is what a user waits for), and, for 1.,
also without the pool's start (`search only`).

    .venv/bin/python benchmarks/ray_throughput.py                 # 2 workers, 12 candidates, 3 repeats
    .venv/bin/python benchmarks/ray_throughput.py --workers 2 --candidates 16 --repeats 3 --load 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def spin(stop_at: float) -> None:
    """Busy loop: one core's worth of load from another program."""
    while time.time() < stop_at:
        pass


def run(cfg_sections: dict[str, Any], run_options: dict[str, Any], out: Path) -> tuple[float, float, int]:
    """(wall seconds of the whole run, seconds of the pool's start, evaluations)."""
    from nasframe.search import loop as loop_module
    from nasframe.search import pool_choice
    from nasframe.search.config import merge_config
    from nasframe.search.runner import Runner

    started_pool: list[float] = []
    original = pool_choice.open_pool

    def timed_open(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        opened = original(*args, **kwargs)
        started_pool.append(time.perf_counter() - t)
        return opened

    cfg = merge_config(cfg_sections, run={"seed": 0, "out": str(out), "progress": False, "tensorboard": False,
                                          "device": "cpu", "threads": 1, **run_options})  # fmt: skip
    runner = Runner.create(cfg, quiet=True)
    loop_module.open_pool = timed_open  # type: ignore[assignment]
    try:
        t0 = time.perf_counter()
        summary = runner.run()
        wall = time.perf_counter() - t0
    finally:
        loop_module.open_pool = original  # type: ignore[assignment]
    return wall, started_pool[0] if started_pool else 0.0, summary.evaluations


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="Ray slots (run.parallel) for short_train")
    p.add_argument("--candidates", type=int, default=12, help="short_train evaluations per run")
    p.add_argument("--lookups", type=int, default=200, help="tabular evaluations per run (task overhead)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--load", type=int, default=0, help="busy processes running meanwhile (a loaded machine)")
    args = p.parse_args()

    import torch

    from nasframe.search.ray_pool import init_ray, ray_module

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="nf-ray-"))
    ray = ray_module()
    init_ray(None, args.workers, temp_dir=str(tmp / "ray"))  # the instance `run.executor: ray` starts
    spinners = [multiprocessing.Process(target=spin, args=(time.time() + 3600,)) for _ in range(args.load)]
    for s in spinners:
        s.start()
    try:
        train = {"strategy": {"name": "random"}, "space": {"name": "darts", "C": 8, "layers": 3},
                 "evaluator": {"name": "short_train", "epochs": 1}, "data": {"name": "digits"}}  # fmt: skip
        table = {"strategy": {"name": "random"}, "space": {"name": "nb201"}, "evaluator": {"name": "tabular"}}
        rows: dict[str, list[tuple[float, float]]] = {"local": [], "ray": [], "local_tab": [], "ray_tab": []}
        for r in range(args.repeats):
            for kind, options in (("local", {}), ("ray", {"executor": "ray", "parallel": args.workers})):
                wall, pool_start, n = run(train, {"max_evaluations": args.candidates, **options}, tmp / f"{kind}{r}")
                assert n == args.candidates
                rows[kind].append((wall, pool_start))
            for kind, options in (("local_tab", {}), ("ray_tab", {"executor": "ray", "parallel": 1})):
                wall, pool_start, n = run(table, {"max_evaluations": args.lookups, **options}, tmp / f"{kind}{r}")
                rows[kind].append((wall, pool_start))
    finally:
        for s in spinners:
            s.terminate()
        ray.shutdown()

    def per_second(kind: str, n: int, exclude_start: bool) -> float:
        return statistics.median(n / (w - (s if exclude_start else 0.0)) for w, s in rows[kind])

    cores = os.cpu_count()
    print(f"machine: {cores} cores, {args.load} busy processes besides; median of {args.repeats} alternating runs")
    for exclude in (False, True):
        what = "search only (pool start excluded)" if exclude else "whole run (workers' start included)"
        local = per_second("local", args.candidates, exclude)
        remote = per_second("ray", args.candidates, exclude)
        print(f"short_train, {what}: local {local:.3f} eval/s, ray x{args.workers} {remote:.3f} eval/s, "
              f"ratio ray/local {remote / local:.2f}")  # fmt: skip
    start = statistics.median(s for _, s in rows["ray"])
    print(f"ray pool start ({args.workers} workers building space, data, evaluator): {start:.2f} s")
    local_tab = statistics.median((w - s) / args.lookups for w, s in rows["local_tab"])
    ray_tab = statistics.median((w - s) / args.lookups for w, s in rows["ray_tab"])
    print(f"per-task overhead (tabular, one slot): local {local_tab * 1e3:.2f} ms/eval, ray {ray_tab * 1e3:.2f} "
          f"ms/eval, Ray's round trip {1e3 * (ray_tab - local_tab):.2f} ms per task")  # fmt: skip


if __name__ == "__main__":
    main()
