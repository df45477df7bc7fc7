"""Training and validation loop pieces shared by the `short_train` and `supernet` evaluators.

One implementation of the SGD step, the schedule, the divergence check and the validation pass,
so both evaluators train the same way. The step never waits for the host: losses go into a
device buffer and are checked for NaN/inf every `check_every` steps with one sync.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nasframe.data.augment import BatchTransform
from nasframe.errors import DataError


@dataclass(frozen=True)
class StepSettings:
    """How one optimisation step is computed (taken from an evaluator's options)."""

    grad_clip: float | None = 5.0
    auxiliary_weight: float = 0.4
    label_smoothing: float = 0.0
    amp: bool = False  # bf16 autocast; only ever switched on for CUDA
    check_every: int = 50


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
    """Switch torch's deterministic algorithms on for the block (and cuDNN autotuning off)."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    change = saved[:2] != (enabled, True)
    if change:  # the first call imports torch._inductor (seconds), so only call when it changes something
        torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        if change:
            torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def free_memory(device: torch.device) -> None:
    """After an out-of-memory error: drop garbage and return cached blocks to the driver."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def oom_reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "CUDA out of memory"
    return f"out of GPU memory: {first[:200]}"


def classification_loss(out: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor,
                        settings: StepSettings) -> torch.Tensor:
    """Cross-entropy; a (logits, aux) output adds `auxiliary_weight` x the auxiliary head's loss."""
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
    gets no update at all: no momentum, no weight decay, no new optimizer state.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, transform: BatchTransform,
                 settings: StepSettings, device: torch.device):
        if len(optimizer.param_groups) != 1:
            raise ValueError("StepRunner expects an optimizer with one parameter group")
        self.model = model
        self.optimizer = optimizer
        self.transform = transform
        self.settings = settings
        self.device = device
        self.all_params: list[torch.Tensor] = list(optimizer.param_groups[0]["params"])

    def run(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], steps: int,
            lr_at: Callable[[int], float], *, params_for: Callable[[int], Sequence[torch.Tensor]] | None = None,
            generator: torch.Generator | None = None, window: int | None = None) -> TrainStats:
        """Train `steps` steps; raise Diverged at the first check that finds a non-finite loss.

        `lr_at(i)` gives the learning rate of step i (0-based within this call); `window` is how
        many final steps the returned mean loss covers (default: all).
        """
        model, opt, s = self.model, self.optimizer, self.settings
        group = opt.param_groups[0]  # looked up per call: Optimizer.load_state_dict replaces the groups
        losses = torch.zeros(max(steps, 1), device=self.device)
        checked = 0
        model.train()
        try:
            for i in range(steps):
                params = params_for(i) if params_for is not None else self.all_params
                x, y = next(batches)
                x = self.transform.train(x, generator)
                with autocast(self.device, s.amp):
                    out = model(x)
                    loss = classification_loss(out, y, s)
                loss.backward()
                if s.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, s.grad_clip, foreach=True)
                group["lr"] = lr_at(i)
                group["params"] = params
                try:
                    opt.step()
                finally:
                    group["params"] = self.all_params
                for p in params:
                    p.grad = None
                losses[i] = loss.detach()
                if i + 1 - checked >= s.check_every or i + 1 == steps:
                    _raise_if_nonfinite(losses, checked, i + 1)
                    checked = i + 1
        finally:
            for p in self.all_params:  # nothing may carry a gradient into the next call
                p.grad = None
        if steps == 0:
            return TrainStats(0, float("nan"))
        last = losses[max(0, steps - (window or steps)):steps]
        return TrainStats(steps, float(last.mean()))


def _raise_if_nonfinite(losses: torch.Tensor, start: int, stop: int) -> None:
    part = losses[start:stop]
    if bool(torch.isfinite(part).all()):  # the one host sync per check
        return
    first = int((~torch.isfinite(part)).nonzero()[0, 0])
    raise Diverged(start + first + 1, float(part[first]))


@torch.no_grad()
def validate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], transform: BatchTransform,
             device: torch.device, amp: bool) -> tuple[float, float]:
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
def recalibrate_bn(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
                   transform: BatchTransform, num_batches: int, device: torch.device, amp: bool,
                   generator: torch.Generator | None = None) -> None:
    """SPOS-style BatchNorm recalibration: reset running statistics and re-estimate them from
    `num_batches` train batches in train mode, without gradients.

    The estimate is a cumulative average (momentum None) rather than SPOS' EMA, so a few batches
    suffice. BatchNorms that the forward did not reach (ops off the current path) get their old
    statistics back, so recalibrating one path leaves every other path untouched.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or num_batches <= 0:
        return
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
             for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    try:
        for _ in range(num_batches):
            x, _y = next(batches)
            with autocast(device, amp):
                model(transform.train(x, generator))
    finally:
        model.train(was_training)
        reached = torch.stack([m.num_batches_tracked for m in bns]).gt(0).tolist()
        for m, (mean, var, count, momentum), ran in zip(bns, saved, reached):
            m.momentum = momentum
            if not ran:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
