"""The accuracy-ranking hypothesis behind MDENAS (paper Fig. 4): is the ranking of architectures
after each training epoch the same as their final ranking?

Trains K sampled architectures stand-alone for E epochs each (the `short_train` evaluator's SGD
step and cosine schedule, one schedule over all E epochs), records search-val accuracy after
every epoch, and prints Kendall's tau between each epoch's ranking and the final one, with the
mean over epochs 1..E-1 (the paper reports a mean of 0.47 on CIFAR-10). With `--nb201` it
instead compares NAS-Bench-201's 12-epoch validation table with its 200-epoch test table for all
15,625 cells (no training; tau 0.594 on CIFAR-10).

    .venv/bin/python benchmarks/ranking_hypothesis.py --archs 8 --epochs 8    # digits, CPU, minutes
    .venv/bin/python benchmarks/ranking_hypothesis.py --nb201
    .venv/bin/python benchmarks/ranking_hypothesis.py --data cifar10 --archs 10 --epochs 20 \\
        --set space.C=16 --set space.layers=8 --device cuda --json tau.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (scipy); 0 when either ranking is constant (no information, not NaN)."""
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return 0.0 if tau is None or not np.isfinite(tau) else float(tau)


def taus_to_final(acc: np.ndarray) -> np.ndarray:
    """acc: (archs, epochs). Kendall's tau of each epoch's column against the last column."""
    return np.array([kendall(acc[:, e], acc[:, -1]) for e in range(acc.shape[1])])


def sample_archs(space: Any, k: int, rng: np.random.Generator, cells: str) -> list:
    """K distinct architectures: uniform single paths, or (DARTS-like spaces with the genotype
    rule) genotypes derived from random per-decision weights, i.e. two inputs per node."""
    archs, seen = [], set()
    derive = getattr(space, "derive_genotype", None)
    for _ in range(1000 * k):
        if cells == "genotype" and derive is not None:
            weights = {d.name: rng.random(len(d.choices)).tolist() for d in space.decisions}
            arch = space.validate(derive(weights).to_arch())
        else:
            arch = space.sample(rng)
        if arch.key() not in seen:
            seen.add(arch.key())
            archs.append(arch)
            if len(archs) == k:
                return archs
    raise SystemExit(f"could not draw {k} distinct architectures")


def train_curves(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from nasframe.common.device import resolve_device
    from nasframe.common.options import build_options
    from nasframe.core.registry import spaces
    from nasframe.data import DataOptions, DataSource
    from nasframe.data.augment import BatchTransform, choose_policy
    from nasframe.data.batches import Batches
    from nasframe.search.config import parse_set
    from nasframe.training.measure import validate
    from nasframe.training.step_options import StepSettings, device_generator
    from nasframe.training.steps import StepRunner, cosine_lr

    sections: dict[str, dict[str, Any]] = {"space": {}, "data": {"name": args.data}}
    for item in args.set:
        section, key, value = parse_set(item)
        if section not in sections:
            raise SystemExit(f"--set {item}: only space.* and data.* options apply here")
        sections[section][key] = value
    space_cls = spaces.get(args.space)
    space = space_cls(build_options(space_cls.Options, sections["space"], "space"))
    device = resolve_device(args.device)
    source = DataSource(build_options(DataOptions, sections["data"], "data"), seed=args.seed, device=device)
    search = source.search()
    batches = Batches(search)
    transform = BatchTransform(search.mean, search.std, choose_policy("auto", batches.spec))
    spe = batches.steps_per_epoch(args.batch_size)
    total = spe * args.epochs
    archs = sample_archs(space, args.archs, np.random.default_rng(args.seed), args.cells)

    acc = np.zeros((len(archs), args.epochs))
    start = time.perf_counter()
    for k, arch in enumerate(archs):
        torch.manual_seed(args.seed * 1_000_003 + k)
        model = space.build(arch, batches.spec).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=3e-4)
        runner = StepRunner(model, opt, transform, StepSettings(grad_clip=5.0, amp=False), device)
        generator = device_generator(device)
        stream = batches.train(args.batch_size, generator)
        for e in range(args.epochs):
            runner.run(stream, spe, lambda i, e=e: cosine_lr(e * spe + i, total, args.lr), generator=generator)
            acc[k, e] = validate(model, batches.val(512), transform, device, False)[0]
        print(
            f"arch {k + 1}/{len(archs)}: "
            + " ".join(f"{a:5.1f}" for a in acc[k])
            + f"  ({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    taus = taus_to_final(acc)
    return {
        "space": args.space,
        "data": args.data,
        "archs": [a.to_dict() for a in archs],
        "accuracy": acc.tolist(),
        "tau_to_final": taus.tolist(),
        "mean_tau": float(taus[:-1].mean()) if len(taus) > 1 else float("nan"),
        "seconds": time.perf_counter() - start,
    }


def nb201_taus(args: argparse.Namespace) -> dict[str, Any]:
    """Tau between the 12-epoch validation and 200-epoch test accuracies, all cells and K-samples."""
    from nasframe.spaces.nb201 import DATASETS, load_table

    table = load_table()
    rng = np.random.default_rng(args.seed)
    out: dict[str, Any] = {"cells": len(table)}
    for ds in DATASETS:
        early, final = table.column(ds, "val", 12), table.column(ds, "test", 200)
        draws = [
            kendall(early[i], final[i])
            for i in (rng.choice(len(table), size=args.archs, replace=False) for _ in range(200))
        ]
        out[ds] = {
            "tau_all": kendall(early, final),
            f"tau_{args.archs}_mean": float(np.mean(draws)),
            f"tau_{args.archs}_std": float(np.std(draws)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", default="darts", help="search space to sample from (default darts)")
    p.add_argument("--data", default="digits", help="data set (default digits)")
    p.add_argument("--archs", type=int, default=8, metavar="K", help="architectures to train (default 8)")
    p.add_argument("--epochs", type=int, default=8, metavar="E", help="epochs per architecture (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cells",
        choices=["genotype", "path"],
        default="genotype",
        help="genotype: DARTS-rule cells (2 inputs per node) where the space has the rule; path: uniform single paths",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="initial SGD learning rate, cosine to 0 over E epochs")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="space or data option, e.g. --set space.C=8 --set data.limit=600",
    )
    p.add_argument("--nb201", action="store_true", help="compare NAS-Bench-201's 12- and 200-epoch tables instead")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.archs < 2 or args.epochs < 1:
        p.error("need --archs >= 2 and --epochs >= 1")

    if args.nb201:
        res = nb201_taus(args)
        print(f"NAS-Bench-201, {res['cells']} cells: Kendall tau, 12-epoch val vs 200-epoch test accuracy")
        for ds, r in res.items():
            if isinstance(r, dict):
                print(
                    f"  {ds:15s} all cells {r['tau_all']:.3f}   {args.archs} random cells "
                    f"{r[f'tau_{args.archs}_mean']:.3f} +- {r[f'tau_{args.archs}_std']:.3f} (200 draws)"
                )
    else:
        res = train_curves(args)
        taus = res["tau_to_final"]
        print(
            f"{args.space} on {args.data}: {args.archs} architectures x {args.epochs} epochs ({res['seconds']:.0f} s)"
        )
        print("epoch          " + " ".join(f"{e + 1:6d}" for e in range(len(taus))))
        print("tau to final   " + " ".join(f"{t:6.3f}" for t in taus))
        print(f"mean tau over epochs 1..{len(taus) - 1}: {res['mean_tau']:.3f}  (paper, CIFAR-10: 0.47)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
