"""BANANAS' predictor training: the NumPy ensemble against the same ensemble in torch, side by side.

    python benchmarks/bananas_predictor.py                 # the figures of docs/strategies/bananas.md
    python benchmarks/bananas_predictor.py --repeats 1 --rows 20 --epochs 2

Trains one ensemble (5 members, `--layers` x `--width`, Adam, mean absolute error) on `--rows` random
path encodings, once with nasframe's NumPy implementation and once as batched torch tensors with
autograd and torch.optim.Adam (the same shapes, batch order and step count), alternating the two,
best of `--repeats`. Then it times one whole training of the predictor at the paper's settings and at
nasframe's defaults, which is what a BANANAS iteration costs. One thread (as the runs use).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nasframe.strategies.bananas_predictor import EnsembleMLP, PredictorSettings  # noqa: E402


def numpy_fit(x: np.ndarray, y: np.ndarray, settings: PredictorSettings, seed: int) -> float:
    rng = np.random.default_rng(seed)
    model = EnsembleMLP(x.shape[1], settings, rng)
    start = time.perf_counter()
    model.fit(x, y, rng)
    return time.perf_counter() - start


def torch_fit(x: np.ndarray, y: np.ndarray, settings: PredictorSettings, seed: int) -> float:
    """The same ensemble as batched torch tensors, trained with autograd and torch.optim.Adam."""
    g = torch.Generator().manual_seed(seed)
    s = settings
    dims = [x.shape[1]] + [s.width] * s.layers + [1]
    weights = [
        (torch.rand(s.members, a, b, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
        for a, b in zip(dims, dims[1:])
    ]
    biases = [torch.zeros(s.members, 1, b, dtype=torch.float64, requires_grad=True) for b in dims[1:]]
    optimizer = torch.optim.Adam(weights + biases, lr=s.lr, betas=s.betas, eps=s.eps)
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    n = len(yt)
    size = n if s.batch_size is None else s.batch_size
    start = time.perf_counter()
    for _ in range(s.epochs):
        order = torch.stack([torch.randperm(n, generator=g) for _ in range(s.members)])
        for first in range(0, n, size):
            rows = order[:, first : first + size]
            h = xt[rows]
            for i, (w, b) in enumerate(zip(weights, biases)):
                h = torch.baddbmm(b, h, w)
                if i < len(weights) - 1:
                    h = torch.relu(h)
            loss = (h[..., 0] - yt[rows]).abs().mean(dim=1).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rows", type=int, default=100, help="evaluated architectures the predictor trains on")
    p.add_argument("--features", type=int, default=30, help="encoding length (nb201, paths of up to 2 steps: 30)")
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--width", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20, help="epochs of the side-by-side comparison")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = (rng.random((args.rows, args.features)) < 0.1).astype(float)
    y = 80.0 + 5.0 * rng.random(args.rows)
    same = PredictorSettings(layers=args.layers, width=args.width, epochs=args.epochs, batch_size=32)
    mine, theirs = [], []
    for r in range(args.repeats):
        mine.append(numpy_fit(x, y, same, r))
        theirs.append(torch_fit(x, y, same, r))
    print(f"{args.rows} rows, 5 x {args.layers} layers of {args.width}, batch 32, {args.epochs} epochs, best of "
          f"{args.repeats}:")  # fmt: skip
    print(f"  numpy {min(mine) * 1000:.1f} ms, torch {min(theirs) * 1000:.1f} ms: torch / numpy = "
          f"{min(theirs) / min(mine):.2f}")  # fmt: skip
    paper = PredictorSettings(layers=10, width=20, epochs=150, batch_size=32)
    default = PredictorSettings(layers=3, width=20, epochs=20, batch_size=None)
    for name, settings in (("paper settings (10 x 20, 150 epochs, batch 32)", paper),
                           ("nasframe defaults (3 x 20, 20 epochs, one batch)", default)):  # fmt: skip
        best = min(numpy_fit(x, y, settings, r) for r in range(max(1, args.repeats // 2)))
        print(f"  one predictor training on {args.rows} rows, {name}: {best * 1000:.0f} ms")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f}; {os.cpu_count()} CPUs; one thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
