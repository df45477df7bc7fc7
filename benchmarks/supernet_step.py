"""One supernet single-path training step against the same child trained as a stand-alone network.

Both sides run the same training code (`nasframe.training.steps.StepRunner`: augmentation
off, SGD, clipping, no host sync per step) on the same batches; they differ only in the network:
the supernet evaluator's path (with its per-call weight snapshot and the optimizer narrowed to
the path's parameters) versus `space.build(arch)`. A third line trains the same supernet path
with a plain StepRunner of its own (separating the evaluator's overhead from the network's), a
fourth times `train_paths` with uniform paths (what the runner executes for a `TrainShared` request),
which also switches to a fresh random path at every step.
Timings alternate in one process; ratios use the best run of each side (load only ever adds
time) and the median over adjacent pairs.

    .venv/bin/python benchmarks/supernet_step.py                 # DARTS C=8, 5 cells, 3x16x16, batch 64
    .venv/bin/python benchmarks/supernet_step.py --steps 40 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

clock = time.perf_counter


def make_space(args):
    from nasframe.common.plugins import load_plugin
    from nasframe.core.registry import spaces

    if "darts" in spaces.names():
        cls = spaces.get("darts")
        space = cls(cls.Options(C=args.C, layers=args.layers, supernet_C=args.C, supernet_layers=args.layers))
        return space, space.parse_arch(args.arch), f"darts C={args.C} layers={args.layers}, {args.arch}"
    load_plugin(str(Path(__file__).resolve().parent.parent / "tests" / "plugins" / "supernet_toy.py"))
    space = spaces.get("supernet_toy")()
    return space, space.validate({d.name: "conv3x3" for d in space.decisions}), "supernet_toy, conv3x3"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--C", type=int, default=8, help="DARTS initial channels (supernet and child)")
    p.add_argument("--layers", type=int, default=5, help="DARTS cells (supernet and child)")
    p.add_argument("--size", type=int, default=16, help="synthetic image side (3 channels)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="steps per timed run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side (alternating); best is used")
    p.add_argument("--arch", default="DARTS_V2", help="DARTS architecture name or mapping (DARTS space only)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (steadier on a busy machine; use with --threads 1)",
    )
    args = p.parse_args(argv)
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)

    from nasframe.data import DataOptions, DataSource
    from nasframe.data.augment import AugmentPolicy, BatchTransform
    from nasframe.data.batches import Batches
    from nasframe.evaluators.supernet import SupernetEvaluator
    from nasframe.training.step_options import StepSettings
    from nasframe.training.steps import StepRunner

    space, arch, label = make_space(args)
    data = DataSource(
        DataOptions(
            name="synthetic", synthetic_shape=[3, args.size, args.size], synthetic_size=4 * args.batch_size * args.steps
        ),
        seed=0,
    )
    search = data.search()
    device = torch.device("cpu")
    ev = SupernetEvaluator(
        space,
        SupernetEvaluator.Options(batch_size=args.batch_size, augment="none", deterministic=False),
        data=data,
        device=device,
    )
    torch.manual_seed(0)
    ev._build()
    ev.supernet.set_path(arch)
    path = ev.path_params(arch)

    child = space.build(arch, search.spec)
    opt = torch.optim.SGD(child.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    settings = StepSettings(grad_clip=5.0, auxiliary_weight=0.4)
    runner = StepRunner(child, opt, BatchTransform(search.mean, search.std, AugmentPolicy()), settings, device)
    batches = Batches(search)
    # the same supernet path under a plain StepRunner of its own: no snapshot, no narrowed optimizer
    plain_opt = torch.optim.SGD(path, lr=0.025, momentum=0.9, weight_decay=3e-4)
    plain = StepRunner(
        ev.supernet, plain_opt, BatchTransform(search.mean, search.std, AugmentPolicy()), settings, device
    )

    def supernet_run() -> float:
        ev.supernet.set_path(arch)  # uniform training leaves a random path selected
        t = clock()
        ev._train(args.steps, lambda i: path, lambda: path)
        return (clock() - t) / args.steps

    def child_run() -> float:
        t = clock()
        runner.run(batches.train(args.batch_size), args.steps, lambda i: 0.025)
        return (clock() - t) / args.steps

    def plain_run() -> float:
        ev.supernet.set_path(arch)
        t = clock()
        plain.run(batches.train(args.batch_size), args.steps, lambda i: 0.025)
        return (clock() - t) / args.steps

    def uniform_run() -> float:
        t = clock()
        rng = np.random.default_rng(0)
        cost = ev.train_paths(args.steps, lambda: space.sample(rng)).cost
        steps = round(cost.epochs * batches.steps_per_epoch(args.batch_size))
        return (clock() - t) / steps

    for fn in (supernet_run, child_run, plain_run, uniform_run):  # warm-up
        fn()
    sup, alone, bare, uni = [], [], [], []
    for _ in range(args.repeats):
        alone.append(child_run())
        sup.append(supernet_run())
        bare.append(plain_run())
        uni.append(uniform_run())
    # best of the runs: machine load only ever adds time, so the minimum is the least noisy estimate
    a, s, u, b = min(alone), min(sup), min(uni), min(bare)
    n_path = sum(p.numel() for p in path)
    n_child = sum(p.numel() for p in child.parameters())
    print(
        f"{label}; synthetic 3x{args.size}x{args.size}, batch {args.batch_size}; {args.steps} steps x "
        f"{args.repeats} runs; {torch.get_num_threads()} CPU threads; {args.clock} clock"
    )
    print(
        f"path parameters {n_path:,} (supernet holds {sum(p.numel() for p in ev._params.values()):,}); "
        f"stand-alone child {n_child:,}"
    )
    print(f"stand-alone child:     {1000 * a:8.2f} ms/step   runs: " + ", ".join(f"{1000 * x:.2f}" for x in alone))
    print(f"supernet, fixed path:  {1000 * s:8.2f} ms/step   runs: " + ", ".join(f"{1000 * x:.2f}" for x in sup))
    print(f"supernet path, plain loop: {1000 * b:8.2f} ms/step   runs: " + ", ".join(f"{1000 * x:.2f}" for x in bare))
    print(
        f"supernet, train_paths uniform (new path each step): {1000 * u:8.2f} ms/step   runs: "
        + ", ".join(f"{1000 * x:.2f}" for x in uni)
    )
    print(f"ratio supernet step / stand-alone step = {s / a:.3f}  (goal <= 1.10)")
    print(
        f"ratio supernet step / same path in a plain loop = {s / b:.3f}  (the evaluator's own overhead; the "
        f"rest is the search ops, e.g. DARTS' BN after pooling)"
    )
    print(
        f"ratio uniform train_paths step / stand-alone step = {u / a:.3f}  (uniform paths are not this child: on "
        f"DARTS they run ~12 of 14 edges per cell, a genotype 8)"
    )

    def paired(xs: list[float], ys: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(xs, ys))

    print(
        f"same ratios as the median of adjacent pairs (steadiest under load): {paired(sup, alone):.3f}, "
        f"{paired(sup, bare):.3f}, {paired(uni, alone):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
