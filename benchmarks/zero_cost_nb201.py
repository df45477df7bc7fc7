"""Zero-cost proxies against NAS-Bench-201's 200-epoch test accuracy (Abdelfattah et al., ICLR 2021, Table 1).

For each cell (all 15,625, or a seeded subset with `--limit`), builds the benchmark's network with a
fresh PyTorch default initialisation (torch seeded from `--seed` and the cell's index), computes the
proxies, and prints Spearman's rho between each proxy and the 200-epoch test accuracy of CIFAR-10,
CIFAR-100 and ImageNet16-120 beside the published figures. Cells are visited in a seeded random order
and rows are appended to `--out` as they come, so any prefix of a run is itself a seeded random subset
(`--from-csv` recomputes the table from such a file, complete or not).

Data-free proxies (synflow, params, macs) use each benchmark data set's network: 10/100/120 classes,
32x32 input for CIFAR and 16x16 for ImageNet16-120. The data proxies need images of the benchmark's
data sets, which are not available here: they run on one fixed batch of `--data` (default digits,
8x8 grey, so the network has one input channel and 10 classes) and are correlated with all three
tables; that measures something else than the paper did and is labelled so.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zero_cost_nb201.py --proxies synflow,params,macs \\
        --out /tmp/zc_free.csv
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zero_cost_nb201.py --limit 500 --seed 0 \\
        --proxies grad_norm,snip,grasp,fisher,jacov,naswot --out /tmp/zc_data.csv
    .venv/bin/python benchmarks/zero_cost_nb201.py --from-csv /tmp/zc_free.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nasframe.core.costs import ArchCosts
from nasframe.data import DataSpec
from nasframe.evaluators.zero_cost import DATA_FREE, PROXIES, batch_of, score
from nasframe.spaces.nb201 import NB201Space, load_table

#: benchmark data set -> (network's data spec for the data-free proxies, table column)
BENCHMARK = {
    "cifar10": (DataSpec("cifar10", 3, 32, 32, 10), "cifar10_test_200"),
    "cifar100": (DataSpec("cifar100", 3, 32, 32, 100), "cifar100_test_200"),
    "imagenet16-120": (DataSpec("imagenet16-120", 3, 16, 16, 120), "imagenet16-120_test_200"),
}
#: Spearman's rho (absolute value) of Abdelfattah et al.'s Table 1, from their notebook
#: notebooks/nasbench201_correlations.ipynb (all 15,625 cells, 200-epoch test accuracy, batch 64)
PUBLISHED = {
    "cifar10": {"grad_norm": 0.594, "snip": 0.596, "grasp": 0.514, "fisher": 0.36, "synflow": 0.737, "jacov": 0.731},
    "cifar100": {"grad_norm": 0.637, "snip": 0.637, "grasp": 0.547, "fisher": 0.385, "synflow": 0.763, "jacov": 0.704},
    "imagenet16-120": {
        "grad_norm": 0.578,
        "snip": 0.578,
        "grasp": 0.549,
        "fisher": 0.327,
        "synflow": 0.751,
        "jacov": 0.701,
    },
}


def cell_order(seed: int, limit: int | None) -> list[int]:
    """Benchmark indices in a seeded random order (the first `limit` of them)."""
    order = np.random.default_rng(seed).permutation(len(load_table()))
    return [int(i) for i in (order if limit is None else order[:limit])]


def columns(proxies: list[str]) -> list[str]:
    """CSV score columns: `<proxy>@<benchmark data set>` for data-free proxies, `<proxy>@data` otherwise."""
    cols = []
    for p in proxies:
        cols.extend([f"{p}@{d}" for d in BENCHMARK] if p in DATA_FREE else [f"{p}@data"])
    return cols


def run(args: argparse.Namespace) -> Path:
    space = NB201Space()
    table = load_table()
    proxies = args.proxies
    data_proxies = [p for p in proxies if p not in DATA_FREE]
    batch = None
    data_spec = None
    if data_proxies:
        from nasframe.data import DataOptions, DataSource

        source = DataSource(DataOptions(name=args.data), seed=args.seed)
        batch = batch_of(source, args.batch_size, args.seed)
        data_spec = source.spec
    costs = {d: ArchCosts(space, spec) for d, (spec, _) in BENCHMARK.items()}
    for c in costs.values():
        c.prepare_table()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = columns(proxies)
    done: set[int] = set()
    if out.exists() and args.resume:
        with out.open() as fh:
            done = {int(r["index"]) for r in csv.DictReader(fh)}
    fresh = not out.exists() or not args.resume
    order = [i for i in cell_order(args.seed, args.limit) if i not in done]
    start = time.perf_counter()
    with out.open("w" if fresh else "a", newline="") as fh:
        writer = csv.writer(fh)
        if fresh:
            writer.writerow(["index", "arch", *cols])
        for n, index in enumerate(order):
            arch = table.archs[index]
            row: list[object] = [index, space.to_string(arch)]
            for p in proxies:
                if p in DATA_FREE:
                    for d, (spec, _) in BENCHMARK.items():
                        row.append(_one(space, arch, p, spec, None, args.seed, index, costs[d]))
                else:
                    assert data_spec is not None
                    row.append(_one(space, arch, p, data_spec, batch, args.seed, index, None))
            writer.writerow(row)
            if (n + 1) % 50 == 0 or n + 1 == len(order):
                fh.flush()
                rate = (n + 1) / (time.perf_counter() - start)
                print(f"{n + 1}/{len(order)} cells, {rate:.2f} cells/s", file=sys.stderr, flush=True)
    return out


def _one(space, arch, proxy, spec, batch, seed, index, costs) -> float:
    if proxy == "params":
        return float(costs.params(arch))
    if proxy == "macs":
        return float(costs.macs(arch))
    torch.manual_seed(seed * 1_000_003 + index)
    return score(proxy, space.build(arch, spec), spec, batch)


def report(path: Path, limit: int | None = None) -> None:
    """Spearman's rho of every score column of `path` against the table, beside the published figures.

    NaN scores (jacov of a cell whose output ignores its input) are left out, as the reference's
    `nan_policy='omit'` does; infinite ones (naswot's singular kernel: -inf) rank last and stay in."""
    from scipy.stats import spearmanr

    table = load_table()
    with path.open() as fh:
        rows = list(csv.DictReader(fh))[:limit]
    if not rows:
        print(f"{path}: no rows")
        return
    idx = np.array([int(r["index"]) for r in rows])
    score_cols = [c for c in rows[0] if c not in ("index", "arch")]
    print(f"{path}: {len(rows)} cells; Spearman rho with the 200-epoch test accuracy, ours | published |rho|")
    print(f"{'proxy':<10} {'network':<16} " + " ".join(f"{d:>16}" for d in BENCHMARK))
    notes = []
    for col in score_cols:
        proxy, on = col.split("@")
        values = np.array([float(r[col]) for r in rows])
        ok = ~np.isnan(values)
        if (~ok).any():
            notes.append(f"{proxy}: {(~ok).sum()} NaN scores left out")
        cells = {}
        for d, (_, key) in BENCHMARK.items():
            if on not in ("data", d):
                continue
            acc = table.columns[key][idx]
            rho = spearmanr(values[ok], acc[ok]).statistic if ok.sum() > 2 else math.nan
            theirs = PUBLISHED[d].get(proxy)
            cells[d] = f"{rho:+.3f} | " + (f"{theirs:.3f}" if theirs is not None else "  -  ")
        label = "data batch" if on == "data" else on
        print(f"{proxy:<10} {label:<16} " + " ".join(f"{cells.get(d, ''):>16}" for d in BENCHMARK))
    for note in dict.fromkeys(notes):
        print(note)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", default="synflow,params,macs", help=f"comma list of {', '.join(PROXIES)}")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N cells of the seeded order")
    parser.add_argument("--seed", type=int, default=0, help="cell order, network initialisation and data batch")
    parser.add_argument("--data", default="digits", help="data set of the data proxies' batch")
    parser.add_argument("--batch-size", type=int, default=64, help="images in the data proxies' batch")
    parser.add_argument("--out", default="zero_cost_nb201.csv", help="CSV of per-cell scores (appended as it runs)")
    parser.add_argument("--resume", action="store_true", help="skip cells already in --out and append")
    parser.add_argument(
        "--from-csv", default=None, help="only print the table of an existing CSV (of its first --limit rows)"
    )
    args = parser.parse_args(argv)
    if args.from_csv:
        report(Path(args.from_csv), args.limit)
        return
    args.proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    unknown = [p for p in args.proxies if p not in PROXIES]
    if unknown:
        parser.error(f"unknown proxy {unknown[0]!r}; choose from {', '.join(PROXIES)}")
    report(run(args))


if __name__ == "__main__":
    main()
