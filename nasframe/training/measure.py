"""Measuring a trained network: validation, BatchNorm recalibration, and turning an attempt that
diverged or ran out of memory into a failed `Result` with the reason."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from nasframe.common.errors import DataError
from nasframe.core.evaluator import Cost, Result
from nasframe.data.augment import BatchTransform
from nasframe.training.step_options import autocast
from nasframe.training.steps import Diverged


def free_memory(device: torch.device) -> None:
    """After an out-of-memory error: drop garbage and return cached blocks to the driver."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def oom_reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "CUDA out of memory"
    return f"out of GPU memory: {first[:200]}"


@torch.no_grad()
def validate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    transform: BatchTransform,
    device: torch.device,
    amp: bool,
) -> tuple[float, float]:
    """(top-1 accuracy in percent, mean cross-entropy) over the batches, in eval mode; one host sync."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    n = 0
    try:
        for x, y in batches:
            with autocast(device, amp):
                out = model(transform.eval(x))
            logits = (out[0] if isinstance(out, (tuple, list)) else out).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += y.shape[0]
    finally:
        model.train(was_training)
    if n == 0:
        raise DataError("search-val is empty: lower data.search_split or raise data.limit")
    return 100.0 * int(correct) / n, float(loss_sum) / n


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    transform: BatchTransform,
    num_batches: int,
    device: torch.device,
    amp: bool,
    generator: torch.Generator | None = None,
    momentum: float | None = None,
) -> None:
    """SPOS-style BatchNorm recalibration: reset running statistics and re-estimate them from
    `num_batches` train batches in train mode, without gradients.

    `momentum` None (the default) makes the estimate a cumulative average, so a few batches
    suffice; SPOS' code keeps the usual exponential average (momentum 0.1) over 200 batches.
    BatchNorms that the forward did not reach (ops off the current path) get their old
    statistics back, so recalibrating one path leaves every other path untouched.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or num_batches <= 0:
        return
    stats = [
        (
            cast(torch.Tensor, m.running_mean),
            cast(torch.Tensor, m.running_var),
            cast(torch.Tensor, m.num_batches_tracked),
        )
        for m in bns
    ]  # tracked statistics: never None here
    saved = [(mean.clone(), var.clone(), count.clone(), m.momentum) for (mean, var, count), m in zip(stats, bns)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = momentum
    was_training = model.training
    model.train()
    try:
        for _ in range(num_batches):
            x, _y = next(batches)
            with autocast(device, amp):
                model(transform.train(x, generator))
    finally:
        model.train(was_training)
        reached = torch.stack([count for _, _, count in stats]).gt(0).tolist()
        for m, (mean, var, count), (mean0, var0, count0, momentum), ran in zip(bns, stats, saved, reached):
            m.momentum = momentum
            if not ran:
                mean.copy_(mean0)
                var.copy_(var0)
                count.copy_(count0)


# ---- the outcome of one evaluation ------------------------------------------------------------------
T = TypeVar("T")


@dataclass
class Scores:
    """What a trained-then-validated candidate scored."""

    val_acc: float
    val_loss: float
    train_loss: float | None = None


@dataclass
class Failure:
    """An expected failure of training: divergence or running out of memory."""

    reason: str
    out_of_memory: bool = False


def attempt(work: Callable[[], T], diverged_note: str = "") -> T | Failure:
    """`work()`, or the Failure it ran into (NaN/inf loss, out of memory). Everything `work` built
    (models, activations) is released when it returns, so memory can be freed right after."""
    try:
        return work()
    except Diverged as exc:
        return Failure(f"{exc}{diverged_note}")
    except torch.OutOfMemoryError as exc:
        return Failure(oom_reason(exc), out_of_memory=True)


def evaluation_result(
    outcome: Scores | Failure,
    cost: Cost,
    start: float,
    device: torch.device,
    *,
    params: int | None = None,
    macs: int | None = None,
) -> Result:
    """The Result of an evaluation that trained then validated, with its wall time: failed with the
    failure's reason (after freeing memory when it ran out), failed when the validation loss is not
    finite, else ok with val_acc, val_loss and train_loss."""
    if isinstance(outcome, Failure) and outcome.out_of_memory:
        free_memory(device)
    cost.seconds = time.perf_counter() - start
    if isinstance(outcome, Failure):
        return Result.failed(outcome.reason, cost)
    if not math.isfinite(outcome.val_loss):
        return Result.failed("validation loss is not finite (training loss stayed finite)", cost)
    metrics = {"val_acc": outcome.val_acc, "val_loss": outcome.val_loss}
    if outcome.train_loss is not None:
        metrics["train_loss"] = outcome.train_loss
    return Result("ok", metrics, params=params, macs=macs, cost=cost)


def to_cpu(obj: Any) -> Any:
    """An optimizer state_dict with its tensors on the CPU (checkpoints stay device-independent)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return obj
