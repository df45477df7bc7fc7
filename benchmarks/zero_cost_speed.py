"""Proxies per second of the zero_cost evaluator on the CPU, for NB201 and DARTS cells.

Each timed call (after one untimed warm-up call) is what one evaluation does: build the network
(fresh initialisation), then score it (params and MACs: count the network on the meta device).
The batch is random CIFAR-shaped noise (3x32x32, 10 classes, `--batch-size` images): timing does
not depend on the pixels. Threads: whatever torch uses (OMP_NUM_THREADS=1 for one core).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zero_cost_speed.py --space nb201 --archs 10
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zero_cost_speed.py --space darts --archs 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nasframe.common.options import build_options
from nasframe.core.costs import count_network
from nasframe.core.registry import spaces
from nasframe.data import DataSpec
from nasframe.evaluators.zero_cost import PROXIES, score

CIFAR = DataSpec("cifar10", 3, 32, 32, 10)


def one(space, arch, proxy: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    """What one evaluation does: build and score, or count."""
    if proxy in ("params", "macs"):
        count_network(space, arch, CIFAR)
    else:
        score(proxy, space.build(arch, CIFAR), CIFAR, batch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="nb201", help="nb201 or darts (any space with build works)")
    parser.add_argument("--archs", type=int, default=10, help="sampled architectures timed per proxy")
    parser.add_argument("--proxies", default=",".join(PROXIES), help="comma list")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--set", action="append", default=[], help="space option KEY=VALUE (e.g. C=16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cls = spaces.get(args.space)
    values = dict(s.split("=", 1) for s in args.set)
    space = cls(build_options(cls.Options, values, "space"))
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    gen = torch.Generator().manual_seed(args.seed)
    batch = (torch.randn(args.batch_size, *CIFAR.input_shape, generator=gen), torch.randint(0, 10, (args.batch_size,)))
    print(f"{args.space} {values or 'defaults'}, {args.archs} sampled architectures, batch {args.batch_size}, "
          f"{torch.get_num_threads()} thread(s)")  # fmt: skip
    print(f"{'proxy':<10} {'proxies/s':>10} {'ms each':>9}")
    for proxy in [p.strip() for p in args.proxies.split(",") if p.strip()]:
        torch.manual_seed(args.seed)
        one(space, archs[0], proxy, batch)  # warm-up: first-call costs (imports, allocator) are not timed
        start = time.perf_counter()
        for arch in archs:
            one(space, arch, proxy, batch)
        seconds = (time.perf_counter() - start) / len(archs)
        print(f"{proxy:<10} {1 / seconds:>10.2f} {1000 * seconds:>9.1f}")


if __name__ == "__main__":
    main()
