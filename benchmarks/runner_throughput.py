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


def run_once(
    n: int, tensorboard: bool, out: Path, strategy: str = "random", profile: bool = False, options: dict | None = None
) -> float:
    """Evaluations per second of one run of `n` evaluations (construction excluded)."""
    from nasframe.search.config import merge_config
    from nasframe.search.runner import Runner

    cfg = merge_config(
        {
            "space": {"name": "nb201"},
            "evaluator": {"name": "tabular"},
            "strategy": {"name": strategy, **(options or {})},
        },
        run={
            "max_evaluations": n,
            "seed": 0,
            "out": str(out),
            "progress": False,
            "tensorboard": tensorboard,
            "device": "cpu",
        },
    )
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


def breakdown(n: int, strategy: str = "random") -> None:
    """Cost of each step of the runner's loop body, timed in isolation on the same objects (us per call)."""
    import json
    import timeit

    from torch.utils.tensorboard import SummaryWriter

    from nasframe.search.config import merge_config, resolve
    from nasframe.search.runner import build_components

    cfg = resolve(
        merge_config(
            {
                "space": {"name": "nb201"},
                "evaluator": {"name": "tabular"},
                "strategy": {"name": strategy, **({"dedup": False} if strategy == "random" else {})},
            }
        )
    )
    parts = build_components(cfg, "cpu")
    space, ev, st = parts.space, parts.evaluator, parts.strategy
    arch = space.validate(st.ask()[0])
    result = ev.evaluate(arch)
    line = {
        "index": 1,
        "arch": arch.to_dict(),
        "status": result.status,
        "metrics": result.metrics,
        "params": result.params,
        "macs": result.macs,
        "cost": {"seconds": result.cost.seconds, "epochs": result.cost.epochs},
        "reason": result.reason,
        "best_val_acc": 80.0,
        "time": 1.2345,
    }
    with tempfile.TemporaryDirectory() as tmp:
        fh = open(Path(tmp) / "h.jsonl", "a", buffering=1 << 16)
        writer = SummaryWriter(str(Path(tmp) / "tb"))
        text = json.dumps(line) + "\n"
        steps = {
            "strategy.ask() (random, dedup off: one sample)": lambda: st.ask(),
            "space.validate(arch)": lambda: space.validate(arch),
            "evaluator.evaluate(arch)": lambda: ev.evaluate(arch),
            "strategy.tell(arch, result)": lambda: st.tell(arch, result),
            "result.accuracy": lambda: result.accuracy,
            "strategy.metrics()": lambda: st.metrics(),
            "arch.to_dict()": lambda: arch.to_dict(),
            "arch.key() (random's ask, dedup on; 1.0-1.6 per evaluation)": lambda: arch.key(),
            "json.dumps(history line)": lambda: json.dumps(line),
            "history.write(line)": lambda: fh.write(text),
            "time.monotonic() (x3 per evaluation)": lambda: time.monotonic(),
            "4 x writer.add_scalar (tensorboard on)": lambda: [writer.add_scalar("a", 1.0, 1) for _ in range(4)],
        }
        print(f"per-call cost of the loop's steps (best of 5 x {n:,} calls):")
        for name, fn in steps.items():
            best = min(timeit.repeat(fn, number=n, repeat=5)) / n
            print(f"  {best * 1e6:8.2f} us  {name}")
        writer.close()
        fh.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "-n",
        type=int,
        default=10_000,
        help="evaluations per run (random search deduplicates, so keep it well below 15,625)",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per setting; the best is reported")
    p.add_argument("--strategy", default="random")
    p.add_argument("--no-dedup", action="store_true", help="random search may repeat architectures (no dedup key)")
    p.add_argument("--profile", action="store_true", help="print a cProfile of one run per setting")
    p.add_argument("--breakdown", action="store_true", help="also time each step of the loop body in isolation")
    args = p.parse_args(argv)
    if args.breakdown:
        breakdown(20_000, args.strategy)
    with tempfile.TemporaryDirectory() as tmp:
        run_once(200, False, Path(tmp) / "warmup", args.strategy)  # imports, table load
        for tb in (False, True):
            opts = {"dedup": False} if args.no_dedup else {}
            rates = [
                run_once(args.n, tb, Path(tmp) / f"tb{int(tb)}-{k}", args.strategy, options=opts)
                for k in range(args.repeat)
            ]
            print(
                f"tensorboard={'on ' if tb else 'off'}: {max(rates):,.0f} evaluations/s "
                f"(best of {args.repeat} runs of {args.n:,}; all: {', '.join(f'{r:,.0f}' for r in rates)})"
            )
            if args.profile:
                run_once(args.n, tb, Path(tmp) / f"prof{int(tb)}", args.strategy, profile=True, options=opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
