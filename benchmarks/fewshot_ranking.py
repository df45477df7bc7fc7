"""Does splitting the supernet rank architectures better? Kendall's tau against stand-alone training.

Trains N sampled NAS-Bench-201 cells stand-alone (the `short_train` evaluator, the same seed for
each) for the ground-truth ranking, then, per seed, trains a supernet with uniform single paths for
the same total number of epochs in each variant:

- `one-shot`: one supernet;
- `gm`: GM-NAS few-shot, split by gradient matching at `--split-epochs` (each split halves every
  sub-supernet);
- `exhaustive`: few-shot NAS, one sub-supernet per op of one edge, split at the first split epoch;
- `cream`: one supernet trained as Cream trains it after `--split-epochs[0]` plain epochs (a
  prioritized board of 10 paths, the board's best distilling into each student);

and scores every cell with the shared weights after BatchNorm recalibration (`score_path`). Prints
Kendall's tau (scipy) of each variant's ranking against the stand-alone one, per seed and as mean
± standard deviation, and against the cells' parameter counts (what a ranking by size alone
gives). With `--truth-repeats 2` every cell is also trained stand-alone a second
time with another seed: the tau between the two stand-alone rankings is the ceiling any supernet
can reach on this ground truth, and the truth is their mean. Everything is seeded; on the CPU the
figures are reproducible.

    .venv/bin/python benchmarks/fewshot_ranking.py          # Fashion-MNIST (3,000 images), CPU, ~20 min
    .venv/bin/python benchmarks/fewshot_ranking.py --archs 24 --seeds 3 --epochs 12 --json tau.json
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

VARIANTS = ("one-shot", "gm", "exhaustive", "cream")


def kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return 0.0 if tau is None or not np.isfinite(tau) else float(tau)


def main(argv: list[str] | None = None) -> None:
    from nasframe.common.options import build_options
    from nasframe.core.capabilities import BNRecalibration
    from nasframe.core.registry import evaluators, spaces
    from nasframe.data import DataOptions, DataSource

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="fashion_mnist", help="digits is too easy: every cell scores 97-99 %%")
    ap.add_argument("--limit", type=int, default=3000, help="train images used (seeded subset)")
    ap.add_argument("--archs", type=int, default=20, help="cells ranked (N)")
    ap.add_argument("--seeds", type=int, default=3, help="supernet seeds per variant")
    ap.add_argument("--epochs", type=float, default=12, help="supernet epochs in every variant")
    ap.add_argument("--split-epochs", type=float, nargs="+", default=[4, 8], help="GM split points")
    ap.add_argument("--split-batches", type=int, default=20, help="gradient-matching batches per distance")
    ap.add_argument("--train-epochs", type=float, default=6, help="stand-alone epochs per cell")
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--N", type=int, default=1)
    ap.add_argument("--truth-repeats", type=int, default=1, help="stand-alone trainings per cell (seeds)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--truth-from", help="reuse the stand-alone accuracies of an earlier --json (same cells)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    space_cls = spaces.get("nb201")
    space = space_cls(build_options(space_cls.Options, {"C": args.C, "N": args.N}, "space"))
    rng = np.random.default_rng(0)
    archs, seen = [], set()
    while len(archs) < args.archs:
        arch = space.sample(rng)
        if arch.key() not in seen:
            seen.add(arch.key())
            archs.append(arch)

    start = time.perf_counter()
    st_cls = evaluators.get("short_train")
    st_options = build_options(st_cls.Options, {"epochs": args.train_epochs, "model_stats": False}, "evaluator")
    repeats = json.load(open(args.truth_from))["truth"] if args.truth_from else []
    for r in range(len(repeats), args.truth_repeats):
        accs = []
        for i, arch in enumerate(archs):
            data = DataSource(DataOptions(name=args.data, limit=args.limit), seed=0)
            torch.manual_seed(1000 * (r + 1) + i)
            accs.append(float(st_cls(space, st_options, data=data, device="cpu").evaluate(arch).metrics["val_acc"]))
        repeats.append(accs)
    truth = [float(np.mean(col)) for col in zip(*repeats)]
    print(f"stand-alone: {len(archs)} cells x {args.train_epochs:g} epochs x {args.truth_repeats} seeds in "
          f"{time.perf_counter() - start:.0f} s; val_acc {min(truth):.1f} .. {max(truth):.1f}")  # fmt: skip
    from nasframe.core.costs import ArchCosts

    costs = ArchCosts(space, DataSource(DataOptions(name=args.data, limit=args.limit), seed=0).spec)
    params = [float(costs.params(a)) for a in archs]
    print(f"stand-alone vs parameters: tau {kendall(truth, params):+.3f}")
    ceiling = kendall(repeats[0], repeats[1]) if len(repeats) > 1 else None
    if ceiling is not None:
        print(f"stand-alone seed 1 vs seed 2: tau {ceiling:+.3f} (the noise ceiling of this ground truth)")

    sn_cls = evaluators.get("supernet")
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    figures: dict[str, Any] = {v: [] for v in variants}
    for seed in range(args.seeds):
        for variant in variants:
            few = {
                "one-shot": {},
                "cream": {},
                "gm": {"few_shot": "gradient", "split_epochs": args.split_epochs, "split_batches": args.split_batches},
                "exhaustive": {"few_shot": "exhaustive", "split_epochs": args.split_epochs[:1]},
            }[variant]
            options = build_options(
                sn_cls.Options, {"schedule_epochs": args.epochs, "model_stats": False, **few}, "evaluator"
            )
            ev = sn_cls(
                space, options, data=DataSource(DataOptions(name=args.data, limit=args.limit), seed=seed), device="cpu"
            )
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            paths = np.random.default_rng(seed)
            steps = round(args.epochs * ev.steps_per_epoch())
            if variant == "cream":
                report = train_cream(ev, space, paths, steps, round(args.split_epochs[0] * ev.steps_per_epoch()))
            else:
                report = ev.train_paths(steps, lambda paths=paths: space.sample(paths))
            scores = []
            for i, arch in enumerate(archs):
                torch.manual_seed(10_000 * seed + i)
                scores.append(float(ev.score_path(arch, BNRecalibration(10, None, None)).metrics["val_acc"]))
            tau, by_size = kendall(scores, truth), kendall(scores, params)
            shots = int(report.metrics.get("sub_supernets", 1))
            figures[variant].append({"seed": seed, "tau": tau, "tau_params": by_size, "scores": scores,
                                     "sub_supernets": shots, "seconds": time.perf_counter() - t0})  # fmt: skip
            print(f"seed {seed} {variant:>10}: tau {tau:+.3f}, vs parameters {by_size:+.3f}  ({shots} sub-supernets, "
                  f"{time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip

    print(f"\n{'variant':>10}  tau mean ± sd over {args.seeds} seeds  (per seed)")
    for variant in variants:
        taus = [f["tau"] for f in figures[variant]]
        print(f"{variant:>10}  {np.mean(taus):+.3f} ± {np.std(taus, ddof=1) if len(taus) > 1 else 0.0:.3f}  "
              f"({', '.join(f'{t:+.2f}' for t in taus)})")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "truth": repeats, "ceiling": ceiling, "figures": figures}, f, indent=1)


def train_cream(ev: Any, space: Any, paths: np.random.Generator, steps: int, warmup: int) -> Any:
    """Cream's supernet training: `warmup` plain uniform steps, then distilled steps with a prioritized
    board of 10 paths (top-1 on the training batch, MACs from the space's additive table)."""
    from nasframe.core.board import PrioritizedBoard
    from nasframe.core.costs import ArchCosts

    ev.train_paths(warmup, lambda: space.sample(paths))
    board = PrioritizedBoard.for_space(space, 10, 5.0)
    costs = ArchCosts(space, ev.data.spec)
    return ev.train_distilled(
        steps - warmup,
        lambda: space.sample(paths),
        board.teacher,
        lambda arch, prec1: board.offer(arch, prec1, lambda a: float(costs.macs(a))),
        0.1,
    )


if __name__ == "__main__":
    main()
