"""One search or training run as several processes under `torchrun` (data parallel, one model per process).

torchrun starts the same command once per process and tells each its place in the environment:
WORLD_SIZE (processes in all), RANK (this one, 0-based) and LOCAL_RANK (its index on this machine).
`start()` reads them and joins the processes into one torch.distributed group (gloo for CPU tensors,
NCCL too for CUDA ones); without WORLD_SIZE, or with WORLD_SIZE=1, nothing here does anything and a run
is exactly the single-process run.

How a run stays one run:

- Every process runs the same strategy with the same seed and the same requests, and so draws the
  same supernet paths: the runner seeds torch and the path generator from (run seed, work, piece), never
  from the process. The weights start equal (built from the same seed), every update is the same
  averaged gradient, and so weights, BatchNorm statistics, architecture weights, Cream's board and every
  score stay identical on every process; the strategies never need to talk to each other.
- Batches: `batch_size` is the global batch. Every process draws the same global batch (same seed) and
  augments it, then trains on its own slice of batch_size / WORLD_SIZE samples (`shard`); the averaged
  gradient is then the gradient of the global batch's mean loss, so a run gives the weights of the
  single-process run with the same config, up to float rounding.
- Gradients: `average_gradients` all-reduces the gradients of the parameters a step trains as one flat
  buffer. A single-path supernet step trains a different small subset of the parameters each step:
  DistributedDataParallel would have to search the autograd graph for unused parameters every step
  (find_unused_parameters) and all-reduce every parameter of the supernet. A fixed network
  (`nasframe train`) uses DistributedDataParallel itself.
- BatchNorm: batch statistics over the global batch (`synchronize_batchnorm`), or the single-process
  equality fails and the processes' running statistics drift apart (and with them every score).
  torch's SyncBatchNorm refuses CPU tensors, so nasframe's own version sums (sum, sum of squares) over
  the processes in one all-reduce per BatchNorm per forward, and back again in the backward pass. It is
  active only in sharded training steps; elsewhere (recalibration, validation) every process computes
  on the same whole batches and the layers behave as plain BatchNorm.
- Files: rank 0 alone writes (run folder, checkpoints, TensorBoard, weights) and prints; the other
  processes read the same folder (it must be on a file system they all see) when they resume.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nasframe.common.errors import ConfigError, NotSupported

#: the environment variables torchrun sets for every process
ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0


def world_from_env(env: dict[str, str] | None = None) -> World:
    """The World torchrun describes in the environment (a single process when WORLD_SIZE is unset)."""
    env = dict(os.environ if env is None else env)
    if not env.get("WORLD_SIZE", "").strip():
        return World()
    values: dict[str, int] = {}
    for name in ENV:
        text = env.get(name, "0" if name == "LOCAL_RANK" else "").strip()
        if not text.isdigit():
            raise ConfigError(
                f"environment variable {name}={text!r}: expected a whole number (set by torchrun with WORLD_SIZE, "
                f"RANK and LOCAL_RANK)"
            )
        values[name] = int(text)
    size, rank = values["WORLD_SIZE"], values["RANK"]
    if size < 1 or rank >= size:
        raise ConfigError(f"environment: RANK={rank} with WORLD_SIZE={size}; expected 0 <= RANK < WORLD_SIZE")
    return World(size, rank, values["LOCAL_RANK"])


def start() -> World:
    """Join the process group torchrun describes (once per process; no-op for a single process).

    A group the caller initialised already (torch.distributed.init_process_group) is used as it is.
    """
    if active():
        return World(dist.get_world_size(), dist.get_rank(), world_from_env().local_rank)
    world = world_from_env()
    if world.size == 1:
        return world
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={world.size} but this torch build has no torch.distributed")
    cuda = torch.cuda.is_available() and dist.is_nccl_available()
    if cuda:
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    # env:// rendezvous: MASTER_ADDR and MASTER_PORT come from torchrun
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", rank=world.rank, world_size=world.size)
    return world


def shutdown() -> None:
    """Leave the process group (at the end of a command; torch warns about groups left open)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    if active():
        return dist.get_rank()
    return world_from_env().rank if os.environ.get("WORLD_SIZE") else 0


def is_writer() -> bool:
    """Whether this process writes files and prints: rank 0, or the only process."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op for a single process)."""
    if active():
        dist.barrier()


def place(device: torch.device) -> torch.device:
    """The device of this process: cuda:LOCAL_RANK for CUDA under torchrun, else `device`."""
    if device.type == "cuda" and device.index is None and world_from_env().size > 1:
        return torch.device("cuda", world_from_env().local_rank % torch.cuda.device_count())
    return device


def agree_text(text: str) -> str:
    """Rank 0's `text` on every process (e.g. the run folder's name, which holds the time of day)."""
    if not active():
        return text
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)
    length = torch.tensor([data.numel()], dtype=torch.int64)
    dist.broadcast(length, 0)
    buffer = data if is_writer() else torch.zeros(int(length), dtype=torch.uint8)
    dist.broadcast(buffer, 0)
    return bytes(buffer.tolist()).decode("utf-8")


def agree_flag(flag: bool) -> bool:
    """Rank 0's `flag` on every process: a decision that depends on the clock (run.max_seconds) must be one
    decision, or the processes would part ways (one stopping, one waiting for it in the next step)."""
    if not active():
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.uint8)
    dist.broadcast(value, 0)
    return bool(value.item())


# ---- data parallel steps ------------------------------------------------------------------------------------
def check_batch(batch_size: int, what: str) -> None:
    """Refuse a global batch the processes cannot split evenly (each takes batch_size / WORLD_SIZE)."""
    n = world_size()
    if batch_size % n:
        raise ConfigError(
            f"{what}={batch_size} under torchrun with {n} processes: the global batch is split evenly, so it "
            f"must be a multiple of {n}"
        )


def shard(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's slice of a global batch (views, no copy)."""
    n, size = world_size(), int(x.shape[0])
    if size % n:
        raise ConfigError(
            f"a batch of {size} cannot be split evenly over {n} processes (a data set smaller than one batch?): "
            f"choose a batch size that is a multiple of {n} and at most the number of training images"
        )
    part = size // n
    r = dist.get_rank()
    return x[r * part : (r + 1) * part], y[r * part : (r + 1) * part]


def average_(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` replaced in place by its mean over the processes (unchanged for a single process)."""
    if active():
        dist.all_reduce(tensor)
        tensor.div_(dist.get_world_size())
    return tensor


def total_(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` replaced in place by its sum over the processes (unchanged for a single process)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def average_gradients(params: Sequence[torch.Tensor]) -> None:
    """Replace the gradients of `params` by their mean over the processes, in one all-reduce.

    Every process trains the same path, so every process holds gradients for the same parameters in
    the same order; parameters without a gradient (unreached by the step) are skipped on all of them.
    """
    average_flat([p.grad for p in params if p.grad is not None])


def average_batchnorm_statistics(module: nn.Module) -> None:
    """Replace the running mean and variance of every BatchNorm in `module` by their mean over the processes,
    in one all-reduce (for BatchNorms that normalise each process's slice by its own statistics)."""
    if not active():
        return
    stats = [
        t
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        for t in (m.running_mean, m.running_var)
        if t is not None
    ]
    average_flat(stats)


def average_flat(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor in place by its mean over the processes, all of them in one all-reduce."""
    if not tensors or not active():
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat.div_(dist.get_world_size())
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


# ---- BatchNorm over the global batch ------------------------------------------------------------------------
_synced = False  # True inside `synced_batchnorm(True)`: the BatchNorms of synchronised modules use global stats


@contextlib.contextmanager
def synced_batchnorm(enabled: bool) -> Iterator[None]:
    """Within the block, synchronised BatchNorms in train mode use the statistics of the global batch."""
    global _synced
    saved, _synced = _synced, enabled and active()
    try:
        yield
    finally:
        _synced = saved


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: with gradients averaged afterwards,
    that gives every process the gradient of the mean of the processes' losses."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNormMixin:
    """Put in front of a BatchNorm class: inside `synced_batchnorm(True)`, in train mode, normalise with the
    mean and variance of the global batch and update the running statistics with them; elsewhere the
    BatchNorm's own forward, unchanged."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        bn: Any = self
        if not (_synced and bn.training):
            return super().forward(input)  # type: ignore[misc]
        bn._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        channels = input.shape[1]
        x = input.float()
        local = torch.cat([x.sum(dims), (x * x).sum(dims)])
        total = _SumOverProcesses.apply(local)
        count = input.numel() // channels * dist.get_world_size()
        mean = total[:channels] / count
        var = (total[channels:] / count - mean * mean).clamp_min(0.0)
        if bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
                unbiased = var.detach() * (count / max(count - 1, 1))
                bn.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                bn.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        shape = [1, channels] + [1] * (input.dim() - 2)
        scale = torch.rsqrt(var + bn.eps)
        out = (x - mean.view(shape)) * scale.view(shape)
        if bn.affine:
            out = out * bn.weight.view(shape) + bn.bias.view(shape)
        return out.to(input.dtype)


class ChannelSlicedBatchNorm:
    """Marks a BatchNorm whose forward normalises a slice of its channels (`nasframe.nn.BatchNorm2d` with
    choice widths): `synchronize_batchnorm` refuses it, since the global-statistics forward it puts in front
    computes over every channel. (A BatchNorm with a forward of its own over all channels, such as DARTS'
    affine-free one, is synchronised: the mixin computes the same thing with global statistics.)"""


_synced_classes: dict[type, type] = {}


def synchronize_batchnorm(module: nn.Module) -> nn.Module:
    """Make every BatchNorm in `module` use global batch statistics inside `synced_batchnorm(True)`.

    Each BatchNorm keeps its object, parameters, buffers and names (its class becomes a subclass with
    `GlobalBatchNormMixin` in front): optimizers, state dicts and any reference a network keeps to its
    layers stay valid, and outside the synchronised block the layer computes exactly what it did.
    """
    for m in module.modules():
        cls = type(m)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, GlobalBatchNormMixin):
            if isinstance(m, ChannelSlicedBatchNorm):  # the mixin's forward would drop its channel slicing
                raise NotSupported(
                    f"{cls.__module__}.{cls.__qualname__} normalises a slice of its channels (a BatchNorm with "
                    f"choice widths), so its statistics cannot be synchronised over processes"
                )
            if cls not in _synced_classes:
                _synced_classes[cls] = type(f"Global{cls.__name__}", (GlobalBatchNormMixin, cls), {})
            m.__class__ = _synced_classes[cls]
    return module


__all__ = [
    "ENV",
    "ChannelSlicedBatchNorm",
    "GlobalBatchNormMixin",
    "World",
    "active",
    "agree_flag",
    "agree_text",
    "average_",
    "average_batchnorm_statistics",
    "average_flat",
    "average_gradients",
    "barrier",
    "check_batch",
    "is_writer",
    "place",
    "rank",
    "shard",
    "shutdown",
    "start",
    "synced_batchnorm",
    "total_",
    "synchronize_batchnorm",
    "world_from_env",
    "world_size",
]
