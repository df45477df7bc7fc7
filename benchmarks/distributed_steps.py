"""Supernet training steps per second with 1 and 2 processes on this machine (nasframe/distributed.py).

Three measurements, each the best of `--repeats` timed runs of `--steps` steps after a warm-up:

1. `SupernetEvaluator.train_paths` (uniform single paths, what the runner executes for TrainShared)
   in 1 process with the global batch, and in 2 processes (gloo) with half of it each: the headline
   steps/s of the global batch; with 2 processes also with `sync_batchnorm: false`.
2. The two ways of averaging a single-path step's gradients over 2 processes, in the same plain loop
   on the same supernet: nasframe's all-reduce of the path's gradients as one flat buffer, against
   DistributedDataParallel with find_unused_parameters=True (which searches the autograd graph for
   unused parameters every step and all-reduces every parameter of the supernet); and the flat
   all-reduce with BatchNorm statistics per process instead of global ones (what the two all-reduces
   per BatchNorm and step cost; nasframe always uses global statistics).

The machine's load average is printed before and after: on shared cores the second process competes
with everything else, so read the figures with it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distributed_steps.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distributed_steps.py --C 8 --N 2 --batch-size 64 --steps 30
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp


def _setup(args: argparse.Namespace, sync_batchnorm: bool = True) -> tuple[Any, Any]:
    from nasframe.common.options import build_options
    from nasframe.core.registry import evaluators, spaces
    from nasframe.data import DataOptions, DataSource

    space_cls = spaces.get("nb201")
    space = space_cls(build_options(space_cls.Options, {"C": args.C, "N": args.N}, "space"))
    data = DataSource(DataOptions(name="digits"), seed=0)
    ev_cls = evaluators.get("supernet")
    values = {"batch_size": args.batch_size, "lr": 0.05, "sync_batchnorm": sync_batchnorm}
    options = build_options(ev_cls.Options, values, "evaluator")
    return space, ev_cls(space, options, data=data, device="cpu")


def _evaluator_rate(args: argparse.Namespace, sync_batchnorm: bool = True) -> float:
    """Steps/s of train_paths (the runner's TrainShared piece) in this process's group."""
    from nasframe.training.step_options import deterministic_mode

    space, ev = _setup(args, sync_batchnorm)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ev.train_paths(3, lambda: space.sample(rng))  # build and warm up
    best = float("inf")
    with deterministic_mode(True):
        for _ in range(args.repeats):
            start = time.perf_counter()
            ev.train_paths(args.steps, lambda: space.sample(rng))
            best = min(best, time.perf_counter() - start)
    return args.steps / best


def _loop_rate(args: argparse.Namespace, mode: str) -> float:
    """Steps/s of a plain single-path loop whose gradients are averaged by `mode`: flat (nasframe's), ddp,
    or local_bn (flat, with each process's BatchNorm on its own half batch: what global BatchNorm costs)."""
    from torch.nn.parallel import DistributedDataParallel

    from nasframe.common import distributed

    space, ev = _setup(args)
    torch.manual_seed(0)
    ev._build()
    net, params = ev.supernet, ev._params
    model: Any = net
    if mode == "ddp":  # buffers stay equal through global BatchNorm: no broadcast per forward, as in nasframe train
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = DistributedDataParallel(net, find_unused_parameters=True, broadcast_buffers=False)
    opt = torch.optim.SGD(list(params.values()), lr=0.05, momentum=0.9)
    batches, transform = ev._data()
    stream = batches.train(args.batch_size)
    rng = np.random.default_rng(0)

    def step() -> None:
        arch = space.sample(rng)
        net.set_path(arch)
        path = ev.path_params(arch)
        x, y = next(stream)
        x, y = distributed.shard(transform.train(x), y)
        with distributed.synced_batchnorm(mode != "local_bn"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if mode in ("flat", "local_bn"):
            distributed.average_gradients(path)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        best = min(best, time.perf_counter() - start)
    return args.steps / best


def _group_main(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    from nasframe.common import distributed

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.start()
    rates = {"train_paths": _evaluator_rate(args)}
    if world > 1:
        rates["train_paths_local_bn"] = _evaluator_rate(args, sync_batchnorm=False)
        rates |= {mode: _loop_rate(args, mode) for mode in ("flat", "ddp", "local_bn")}
    distributed.shutdown()
    if rank == 0:
        torch.save(rates, Path(out) / "rates.pt")


def _in_group(world: int, args: argparse.Namespace) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_group_main, args=(world, port, args, out), nprocs=world, join=True)
        return torch.load(Path(out) / "rates.pt", weights_only=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--C", type=int, default=8, help="nb201 supernet channels")
    p.add_argument("--N", type=int, default=2, help="nb201 cells per stage")
    p.add_argument("--batch-size", type=int, default=64, help="global batch")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()}; cores: {os.cpu_count()}; torch {torch.__version__}")
    one = _in_group(1, args)["train_paths"]
    two = _in_group(2, args)
    print(f"nb201 C={args.C} N={args.N} supernet, digits 8x8, global batch {args.batch_size}, 1 thread per process")
    print(f"train_paths, 1 process:  {one:7.1f} steps/s")
    print(f"train_paths, 2 processes: {two['train_paths']:7.1f} steps/s ({two['train_paths'] / one:.2f}x)")
    local = two["train_paths_local_bn"]
    print(f"train_paths, 2 processes, sync_batchnorm false: {local:7.1f} steps/s ({local / one:.2f}x)")
    print(f"plain loop, 2 processes, flat all-reduce of the path's gradients: {two['flat']:7.1f} steps/s")
    print(f"plain loop, 2 processes, DDP find_unused_parameters=True:       {two['ddp']:7.1f} steps/s")
    print(f"plain loop, 2 processes, flat all-reduce, BatchNorm per process: {two['local_bn']:7.1f} steps/s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
