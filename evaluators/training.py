"""Training and validation loop pieces shared by the `short_train` and `supernet` evaluators.

One implementation of the options, the data setup, the SGD step, the schedule, the divergence
check and the validation pass, so both evaluators train the same way. The step never waits for
the host: losses go into a device buffer and are checked for NaN/inf every `check_every` steps
with one sync.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from nasframe import distributed
from nasframe.data import DataSource
from nasframe.data.augment import AUGMENT_CHOICES, BatchTransform, choose_policy
from nasframe.data.batches import Batches
from nasframe.errors import ConfigError, DataError
from nasframe.evaluator import Budget, Cost, Result
from nasframe.evaluators.sliced import SlicedPath
from nasframe.options import option
from nasframe.space import EnsembleLogits


@dataclass(frozen=True)
class TrainingOptions:
    """Options every SGD-training evaluator shares (defaults and help: training a network from scratch).

    Subclasses redeclare a field to change its default or help; a redeclared field keeps its place
    in the listing.
    """

    epochs: float = option(
        2.0, "epochs over search-train per candidate (a budget's epochs or steps override it)", min=0.001
    )
    batch_size: int = option(64, "training mini-batch size", min=1)
    eval_batch_size: int = option(512, "validation batch size (no effect on the result)", min=1)
    lr: float = option(0.1, "initial SGD learning rate, annealed to 0 by a per-step cosine", min=0)
    momentum: float = option(0.9, "SGD momentum", min=0, max=1)
    weight_decay: float = option(3e-4, "SGD weight decay (L2) on the parameters being trained", min=0)
    grad_clip: float | None = option(5.0, "clip the gradient norm to this (null or 0: off)", min=0)
    auxiliary_weight: float = option(
        0.4,
        "weight of the auxiliary head's loss when the model returns "
        "(logits, aux) in train mode and has no `auxiliary_weight` of its "
        "own",
        min=0,
    )
    label_smoothing: float = option(0.0, "cross-entropy label smoothing", min=0, max=1)
    bn_recalibration_batches: int = option(
        10,
        "before validating, re-estimate BatchNorm statistics from this "
        "many train batches (a few epochs leave them stale; 0: off)",
        min=0,
    )
    augment: str = option(
        "auto",
        "train-batch augmentation on the device; auto: crop+flip for small colour images, none otherwise",
        choices=AUGMENT_CHOICES,
    )
    cutout: int = option(0, "cutout square side in pixels after augmentation (0: off; DARTS uses 16)", min=0)
    amp: bool = option(True, "CUDA only: bf16 autocast for forward and loss")
    channels_last: bool = option(
        True,
        "NHWC memory format for model and batches (CUDA: tensor cores; CPU: oneDNN's "
        "depthwise and pooling kernels skip a layout conversion per call)",
    )
    model_stats: bool = option(True, "count parameters and MACs of each candidate (MACs cost one traced forward pass)")
    deterministic: bool | None = option(None, "torch deterministic algorithms (null: on for CPU, off for CUDA)")
    check_every: int = option(50, "steps between NaN/inf checks of the loss (each check is one host sync)", min=1)


@dataclass(frozen=True)
class StepSettings:
    """How one optimisation step is computed (taken from an evaluator's options)."""

    grad_clip: float | None = 5.0
    auxiliary_weight: float = 0.4
    label_smoothing: float = 0.0
    amp: bool = False  # bf16 autocast; only ever switched on for CUDA
    check_every: int = 50


def distillation_loss(
    logits: torch.Tensor, teacher_probs: torch.Tensor, y: torch.Tensor, m: float, label_smoothing: float
) -> torch.Tensor:
    """Cream's supernet loss (reference 9.5): (m KD + (2 - m) CE) / 2, where KD is the cross-entropy
    with the teacher's softmax as soft targets, mean over the batch of sum_c -p_c log q_c, and CE the
    label-smoothed cross-entropy with the labels."""
    ce = torch.nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing)
    kd = -(teacher_probs * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    return (m * kd + (2.0 - m) * ce) / 2.0


class Diverged(Exception):
    """The training loss became NaN or infinite (caught by the evaluators, never shown raw)."""

    def __init__(self, step: int, value: float):
        self.step, self.value = step, value
        kind = "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
        super().__init__(f"loss became {kind} at step {step}")


@dataclass
class TrainStats:
    steps: int
    mean_loss: float  # over the last `window` steps


def resolve_deterministic(options: TrainingOptions, device: torch.device) -> bool:
    """`deterministic: null` means on for the CPU (reproducible tests) and off for CUDA (speed)."""
    return options.deterministic if options.deterministic is not None else device.type != "cuda"


def step_settings(options: TrainingOptions, model: nn.Module, device: torch.device) -> StepSettings:
    """The step settings for `model`; a model's own `auxiliary_weight` wins over the option."""
    return StepSettings(
        grad_clip=options.grad_clip,
        auxiliary_weight=getattr(model, "auxiliary_weight", options.auxiliary_weight),
        label_smoothing=options.label_smoothing,
        amp=options.amp and device.type == "cuda",
        check_every=options.check_every,
    )


def search_data(
    evaluator: str, data: DataSource | None, options: TrainingOptions, device: torch.device
) -> tuple[Batches, BatchTransform]:
    """Search-train/val batches on the device and the augmentation the options ask for."""
    if data is None:
        raise ConfigError(f"{evaluator} needs a data set (evaluators get one from the run's data: section)")
    search = data.search()
    batches = Batches(search)
    policy = choose_policy(options.augment, batches.spec, cutout=options.cutout, streaming=batches.streaming)
    return batches, BatchTransform(search.mean, search.std, policy, channels_last=options.channels_last)


def count_steps(budget: Budget | None, steps_per_epoch: int, epochs: float, steps: int | None = None) -> int:
    """Training steps for one evaluation: the budget's steps, else its epochs, else `steps`, else `epochs`."""
    if budget is not None and budget.steps is not None:
        return max(1, int(budget.steps))
    if budget is not None and budget.epochs is not None:
        epochs = budget.epochs
    elif steps is not None:
        return steps
    return max(1, round(epochs * steps_per_epoch))


def cosine_lr(step: int, total: int, lr_max: float, lr_min: float = 0.0) -> float:
    """Cosine annealing from lr_max at step 0 to lr_min at `total` (held there afterwards)."""
    t = min(step, total) / max(total, 1)
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * t))


def device_generator(device: torch.device) -> torch.Generator | None:
    """The generator for shuffling and augmentation on `device`.

    On the CPU it is the global generator (None), which the runner seeds before each evaluation.
    On CUDA it is a fresh generator seeded from one draw of that same global CPU generator, so
    GPU data order is reproducible, and resumable, from the CPU RNG state the runner checkpoints.
    """
    if device.type == "cpu":
        return None
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Switch torch's deterministic algorithms on for the block (and cuDNN autotuning off).

    torch's companion setting `fill_uninitialized_memory` is switched off for the block: it is a
    debugging aid that writes NaN into every new tensor (about 2,000 extra fills per DARTS
    training step on digits, within a few per cent of the step's time on a CPU) and changes no
    result of a correct kernel.
    """
    det: Any = torch.utils.deterministic  # fill_uninitialized_memory is missing from torch's type stubs
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        det.fill_uninitialized_memory,
    )
    change = saved[:2] != (enabled, True)
    if change:
        _set_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    det.fill_uninitialized_memory = False
    try:
        yield
    finally:
        if change:
            _set_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        det.fill_uninitialized_memory = saved[4]


def _set_deterministic_algorithms(enabled: bool, *, warn_only: bool) -> None:
    """`torch.use_deterministic_algorithms`, without its import of torch._inductor where that is not loaded.

    The public function imports torch._inductor only to copy the flag into the compiler's config:
    2.5-4 s at a run's first evaluation on a 2-core machine, for a compiler nothing has loaded.
    Once torch._inductor is loaded (torch.compile ran or is about to), the public function is used.
    """
    if "torch._inductor" in sys.modules:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    else:
        torch._C._set_deterministic_algorithms(enabled, warn_only=warn_only)


def free_memory(device: torch.device) -> None:
    """After an out-of-memory error: drop garbage and return cached blocks to the driver."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def oom_reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "CUDA out of memory"
    return f"out of GPU memory: {first[:200]}"


def classification_loss(
    out: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor, settings: StepSettings
) -> torch.Tensor:
    """Cross-entropy; a (logits, aux) output adds `auxiliary_weight` x the auxiliary head's loss; an
    ensemble's output (`EnsembleLogits`) gives the sum of its members' cross-entropies."""
    if isinstance(out, EnsembleLogits):
        return torch.stack([F.cross_entropy(m, y, label_smoothing=settings.label_smoothing) for m in out.members]).sum()
    if isinstance(out, (tuple, list)):
        logits, aux = out[0], (out[1] if len(out) > 1 else None)
    else:
        logits, aux = out, None
    loss = F.cross_entropy(logits, y, label_smoothing=settings.label_smoothing)
    if aux is not None and settings.auxiliary_weight:
        loss = loss + settings.auxiliary_weight * F.cross_entropy(aux, y, label_smoothing=settings.label_smoothing)
    return loss


class StepRunner:
    """SGD steps of one model: forward, loss, backward, clip, step, with no host sync per step.

    `params_for(i)` may pick, before step i, the only parameters that step updates (a supernet
    path). The optimizer's single group is narrowed to them for that step, so everything else
    gets no update at all: no momentum, no weight decay, no new optimizer state. A path that uses
    parts of parameters (`evaluators.sliced.SlicedPath`) takes its own step, which leaves the rest
    of those parameters and of their momentum buffers untouched too.

    `data_parallel`: under torchrun, each process trains on its slice of every (augmented) global
    batch, with the step's gradients and the logged losses averaged over the processes and the
    model's synchronised BatchNorms on global statistics (nasframe/distributed.py). Without a
    process group it changes nothing.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        transform: BatchTransform,
        settings: StepSettings,
        device: torch.device,
        *,
        data_parallel: bool = False,
    ):
        if len(optimizer.param_groups) != 1:
            raise ValueError("StepRunner expects an optimizer with one parameter group")
        self.model = model
        self.optimizer = optimizer
        self.transform = transform
        self.settings = settings
        self.device = device
        self.all_params: list[torch.Tensor] = list(optimizer.param_groups[0]["params"])
        self.data_parallel = data_parallel and distributed.active()

    def run(
        self,
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
        steps: int,
        lr_at: Callable[[int], float],
        *,
        params_for: Callable[[int], Sequence[torch.Tensor]] | None = None,
        generator: torch.Generator | None = None,
        window: int | None = None,
        loss_for: Callable[[int, torch.Tensor, Any, torch.Tensor], torch.Tensor] | None = None,
        after_step: Callable[[int, Any, torch.Tensor], None] | None = None,
    ) -> TrainStats:
        """Train `steps` steps; raise Diverged at the first check that finds a non-finite loss.

        `lr_at(i)` gives the learning rate of step i (0-based within this call); `window` is how
        many final steps the returned mean loss covers (default: all). `loss_for(i, x, output, y)`
        replaces the classification loss (Cream's distillation); `after_step(i, output, y)` sees
        each step's output after the update (a host sync if it reads values).
        """
        model, opt, s = self.model, self.optimizer, self.settings
        group = opt.param_groups[0]  # looked up per call: Optimizer.load_state_dict replaces the groups
        losses = torch.zeros(max(steps, 1), device=self.device)
        checked = 0
        parallel = self.data_parallel
        model.train()
        try:
            for i in range(steps):
                params = params_for(i) if params_for is not None else self.all_params
                x, y = next(batches)
                x = self.transform.train(x, generator)
                if parallel:  # augmented whole, as one process would, then this process's slice
                    x, y = distributed.shard(x, y)
                synced = distributed.synced_batchnorm(True) if parallel else contextlib.nullcontext()
                with autocast(self.device, s.amp), synced:
                    out = model(x)
                    loss = classification_loss(out, y, s) if loss_for is None else loss_for(i, x, out, y)
                loss.backward()
                if parallel:
                    distributed.average_gradients(params)
                if s.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, s.grad_clip, foreach=True)
                group["lr"] = lr_at(i)
                if isinstance(params, SlicedPath):  # hook: a path using parts of parameters (evaluators/sliced.py)
                    params.step(opt, self.all_params)
                else:
                    group["params"] = params
                    try:
                        opt.step()
                    finally:
                        group["params"] = self.all_params
                for p in params:
                    p.grad = None
                losses[i] = loss.detach()
                if after_step is not None:
                    after_step(i, out, y)
                if i + 1 - checked >= s.check_every or i + 1 == steps:
                    if parallel:  # the global batch's loss, the same on every process (so is a divergence)
                        distributed.average_(losses[checked : i + 1])
                    _raise_if_nonfinite(losses, checked, i + 1)
                    checked = i + 1
        finally:
            for p in self.all_params:  # nothing may carry a gradient into the next call
                p.grad = None
        if steps == 0:
            return TrainStats(0, float("nan"))
        last = losses[max(0, steps - (window or steps)) : steps]
        return TrainStats(steps, float(last.mean()))


def _raise_if_nonfinite(losses: torch.Tensor, start: int, stop: int) -> None:
    part = losses[start:stop]
    if bool(torch.isfinite(part).all()):  # the one host sync per check
        return
    first = int((~torch.isfinite(part)).nonzero()[0, 0])
    raise Diverged(start + first + 1, float(part[first]))


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
