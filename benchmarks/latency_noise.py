"""How noisy a latency measurement is on this machine: one architecture measured N times, as the machine is
and with busy processes of its own beside it, for each clock and runtime asked for.

Each measurement is `nasframe.measure_latency` (warm-up, rounds until the median is stable); this prints the
median of each of the N measurements, their spread (max - min over the median of medians), the mean IQR
within one measurement, the spread of the N minima, and the 1-minute load average before and after each
series. The busy processes are pure-Python loops (`while True: pass`), started before the loaded series and
stopped after it.

    .venv/bin/python benchmarks/latency_noise.py                                   # mobilenetv2 at 224 px
    .venv/bin/python benchmarks/latency_noise.py --repeat 10 --busy 2 --clocks wall,cpu --runtimes torch,onnxruntime
    .venv/bin/python benchmarks/latency_noise.py --space mobilenet --arch proxyless_cpu --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """`n` CPU-bound processes for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def series(args: argparse.Namespace, runtime: str, clock: str) -> dict:
    import nasframe

    before = os.getloadavg()[0]
    report = nasframe.measure_latency(
        args.space, args.arch, data=args.data, runtime=runtime, clock=clock, threads=1, repeat=args.repeat
    )
    medians = [m["median_ms"] for m in report["measurements"]]
    mins = [m["min_ms"] for m in report["measurements"]]
    mid = statistics.median(medians)
    return {
        "runtime": runtime,
        "clock": clock,
        "medians_ms": [round(m, 3) for m in medians],
        "median_of_medians_ms": round(mid, 3),
        "spread_percent": round((max(medians) - min(medians)) / mid * 100, 1),
        "stdev_percent": round(statistics.stdev(medians) / mid * 100, 1) if len(medians) > 1 else 0.0,
        "mean_iqr_ms": round(statistics.mean(m["iqr_ms"] for m in report["measurements"]), 3),
        "min_spread_percent": round((max(mins) - min(mins)) / statistics.median(mins) * 100, 1),
        "unstable": sum(not m["stable"] for m in report["measurements"]),
        "load": [round(before, 2), round(os.getloadavg()[0], 2)],
        "machine": report["environment"]["cpu"],
    }


def describe(runtime: str, clock: str, extra: int, row: dict) -> str:
    return (
        f"{runtime:11s} {clock:4s} clock, {extra} busy: median of medians {row['median_of_medians_ms']} ms, "
        f"range {row['spread_percent']}%, sd {row['stdev_percent']}%, mean IQR {row['mean_iqr_ms']} ms, "
        f"range of the minima {row['min_spread_percent']}%, "
        f"{row['unstable']} unstable; load {row['load'][0]} -> {row['load'][1]}; medians {row['medians_ms']}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet")
    p.add_argument("--arch", default="mobilenetv2")
    p.add_argument("--data", default="imagenet")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--busy", type=int, default=2, help="busy processes in the loaded series")
    p.add_argument("--clocks", default="wall,cpu")
    p.add_argument("--runtimes", default="torch")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args()
    rows = []
    for runtime in args.runtimes.split(","):
        for clock in args.clocks.split(","):
            for extra in (0, args.busy):
                with busy(extra):
                    row = {"busy": extra, **series(args, runtime, clock)}
                rows.append(row)
                print(describe(runtime, clock, extra, row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"space": args.space, "arch": args.arch, "data": args.data, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
