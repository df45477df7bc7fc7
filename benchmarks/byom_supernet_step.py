"""A supernet built from `nasframe.nn` mutables against the hand-written one: NAS-Bench-201's single-path step.

The hand-written `nb201` supernet (spaces/nb201_supernet.py: planned cells that skip `none` and dead edges)
and the same network written as a user's model with mutables (tests/plugins/model_nb201.py: a `LayerChoice`
per edge, the cell's forward summing every edge, `none` a `nasframe.nn.Zero`; with the hand-written
supernet's affine-free cell BatchNorms) are trained side by side in one process by the `supernet` evaluator's
`train_paths` (what SPOS' and ABS' supernet training runs): the same uniform paths (a new one every step, so
`set_path` and the path's parameters are paid every step), the same batches, the same SGD.
Timed runs alternate between the two; the ratio uses the best run of each (load only ever adds time) and the
median over adjacent pairs. `--busy N` repeats the measurement with N busy processes
(`python -c "while True: pass"`) competing for the CPU, as on a shared machine.

    .venv/bin/python benchmarks/byom_supernet_step.py                      # C=16 N=5, 3x32x32, batch 64, 1 thread
    .venv/bin/python benchmarks/byom_supernet_step.py --busy 2             # idle, then with two busy processes
    .venv/bin/python benchmarks/byom_supernet_step.py --busy 2 --clock cpu # the same in CPU time
    .venv/bin/python benchmarks/byom_supernet_step.py --unpruned           # without skipping dead code
    .venv/bin/python benchmarks/byom_supernet_step.py --C 4 --N 1 --steps 2 --repeats 2   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """`n` processes spinning on the CPU for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5 if n else 0.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _exit_on_sigterm() -> None:
    """A terminated benchmark still stops its busy processes (the `busy` block's `finally`)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--C", type=int, default=16, help="channels of the first stage")
    p.add_argument("--N", type=int, default=5, help="cells per stage")
    p.add_argument("--size", type=int, default=32, help="synthetic image side (3 channels)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="steps per timed run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side (alternating)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--busy", type=int, default=0, help="also measure with this many busy processes")
    p.add_argument("--warm", type=int, default=400, help="paths set on each side before timing (fills the caches)")
    p.add_argument(
        "--unpruned",
        action="store_true",
        help="run the model space's supernet without skipping a path's dead code (nasframe/nn/pruning.py)",
    )
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (steadier on a busy machine; one thread)",
    )
    args = p.parse_args(argv)
    _exit_on_sigterm()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)

    from nasframe.common.options import build_options
    from nasframe.common.plugins import load_plugin
    from nasframe.core.registry import spaces
    from nasframe.core.space import Arch
    from nasframe.data import DataOptions, DataSource
    from nasframe.evaluators.supernet import SupernetEvaluator

    load_plugin(str(ROOT / "tests" / "plugins" / "model_nb201.py"))
    sizes = {"C": args.C, "N": args.N}
    hand = spaces.get("nb201")(build_options(spaces.get("nb201").Options, sizes, "space"))
    search_cells = {**sizes, "affine": False}  # the hand-written supernet's cells: affine-free BatchNorms
    mutables = spaces.get("model_nb201")(build_options(spaces.get("model_nb201").Options, search_cells, "space"))
    shape = [3, args.size, args.size]
    data = DataSource(DataOptions(name="synthetic", synthetic_shape=shape, synthetic_size=8 * args.batch_size), seed=0)
    options = SupernetEvaluator.Options(batch_size=args.batch_size, augment="none")
    evaluators = {}
    for name, space in (("hand-written nb201", hand), ("nasframe.nn model_nb201", mutables)):
        ev = SupernetEvaluator(space, options, data=data)
        torch.manual_seed(0)
        ev._build()
        evaluators[name] = ev
    if args.unpruned:  # every path runs the user's own forward: zero edges added, dead nodes computed
        evaluators["nasframe.nn model_nb201"].supernet._pruner.graph = None

    def timed(name: str, seed: int) -> float:
        ev = evaluators[name]
        rng = np.random.default_rng(seed)
        paths = [hand.sample(rng) for _ in range(args.steps)]  # the same cells on both sides
        it = iter(paths)
        torch.manual_seed(seed)
        start = clock()
        ev.train_paths(args.steps, lambda: Arch(next(it).to_dict()))
        return (clock() - start) / args.steps

    names = list(evaluators)
    print(
        f"NAS-Bench-201 supernet, C={args.C} N={args.N}, synthetic 3x{args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.threads} thread(s); train_paths with a new uniform path every step; {args.steps} steps x "
        f"{args.repeats} runs per side; {args.clock} clock; {_cpus()} CPUs, load average {os.getloadavg()[0]:.1f}"
        + ("; model space unpruned" if args.unpruned else "")
    )
    # steady state: the model space's supernet builds one pruned graph per pattern of zero edges a path selects
    # (NAS-Bench-201: 2^6 = 64 patterns, once each; nasframe/nn/pruning.py); visit them all before timing
    rng = np.random.default_rng(123)
    start = time.process_time()
    for name in names:
        for _ in range(400):
            evaluators[name].supernet.set_path(Arch(hand.sample(rng).to_dict()))
    patterns = 0 if args.unpruned else len(evaluators[names[1]].supernet._pruner._cache)
    print(
        f"warm-up: 400 paths set on each side, {patterns} pruned graphs built ({time.process_time() - start:.1f} s CPU)"
    )
    for load in sorted({0, args.busy}):
        with busy(load):
            for name in names:  # warm-up
                timed(name, 99)
            runs: dict[str, list[float]] = {n: [] for n in names}
            for r in range(args.repeats):
                for name in names if r % 2 == 0 else reversed(names):
                    runs[name].append(timed(name, r))
        hand_runs, ours = runs[names[0]], runs[names[1]]
        print(f"-- {load} busy processes --")
        for name in names:
            print(
                f"{name:>26}: {1000 * min(runs[name]):8.1f} ms/step   runs: "
                + ", ".join(f"{1000 * x:.1f}" for x in runs[name])
            )
        paired = statistics.median(a / b for a, b in zip(ours, hand_runs))
        best = min(ours) / min(hand_runs)
        print(f"ratio mutables / hand-written = {best:.3f} (best runs), {paired:.3f} (median of pairs)")
    return 0


def _cpus() -> int:
    return os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
