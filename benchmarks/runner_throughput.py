"""Evaluations per second the runner sustains with the tabular evaluator (nb201), TensorBoard off and on.

With a table lookup costing microseconds, this measures the runner's own per-evaluation overhead
(asking, validating, history line, logging). Progress bar off; each run in a fresh directory.

    .venv/bin/python benchmarks/runner_throughput.py              # 10,000 evaluations per setting
    .venv/bin/python benchmarks/runner_throughput.py -n 5000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path


def run_once(n: int, tensorboard: bool, out: Path, strategy: str = "random", profile: bool = False) -> float:
    """Evaluations per second of one run of `n` evaluations (construction excluded)."""
    from nasframe.config import merge_config
    from nasframe.runner import Runner

    cfg = merge_config({"space": {"name": "nb201"}, "evaluator": {"name": "tabular"},
                        "strategy": {"name": strategy}},
                       run={"max_evaluations": n, "seed": 0, "out": str(out), "progress": False,
                            "tensorboard": tensorboard, "device": "cpu"})
    runner = Runner.create(cfg, quiet=True)
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    summary = runner.run()
    if prof:
        prof.disable()
    seconds = time.perf_counter() - t0
    if summary.evaluations != n:
        raise SystemExit(f"run stopped after {summary.evaluations} evaluations ({summary.stopped_because})")
    if prof:
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(18)
    return n / seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=10_000, help="evaluations per run (random search deduplicates, so "
                   "keep it well below 15,625)")
    p.add_argument("--repeat", type=int, default=3, help="runs per setting; the best is reported")
    p.add_argument("--strategy", default="random")
    p.add_argument("--profile", action="store_true", help="print a cProfile of one run per setting")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_once(200, False, Path(tmp) / "warmup", args.strategy)  # imports, table load
        for tb in (False, True):
            rates = [run_once(args.n, tb, Path(tmp) / f"tb{int(tb)}-{k}", args.strategy) for k in range(args.repeat)]
            print(f"tensorboard={'on ' if tb else 'off'}: {max(rates):,.0f} evaluations/s "
                  f"(best of {args.repeat} runs of {args.n:,}; all: {', '.join(f'{r:,.0f}' for r in rates)})")
            if args.profile:
                run_once(args.n, tb, Path(tmp) / f"prof{int(tb)}", args.strategy, profile=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
