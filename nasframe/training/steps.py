"""Training and validation loop pieces shared by the `short_train` and `supernet` evaluators.

One implementation of the options, the data setup, the SGD step, the schedule, the divergence
check and the validation pass, so both evaluators train the same way. The step never waits for
the host: losses go into a device buffer and are checked for NaN/inf every `check_every` steps
with one sync.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasframe.common import distributed
from nasframe.common.errors import ConfigError
from nasframe.core.evaluator import Budget
from nasframe.core.space import EnsembleLogits
from nasframe.data import DataSource
from nasframe.data.augment import BatchTransform, choose_policy
from nasframe.data.batches import Batches
from nasframe.training.sliced import SlicedPath, add_decay_nd
from nasframe.training.step_options import StepSettings, TrainingOptions, autocast


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
    parts of parameters (`nasframe.training.sliced.SlicedPath`) takes its own step, which leaves the
    rest of those parameters and of their momentum buffers untouched too.

    With `settings.decay_1d` False, the step adds the group's weight decay to the gradients of the
    parameters of two or more dimensions itself (after clipping, where SGD adds it) and runs the
    optimizer without decay: the update of a two-group optimizer that exempts 1-D parameters.

    `data_parallel`: under torchrun, each process trains on its slice of every (augmented) global
    batch, with the step's gradients and the logged losses averaged over the processes and the
    model's synchronised BatchNorms on global statistics (nasframe/common/distributed.py). Without a
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
        losses = torch.zeros(max(steps, 1), device=self.device)
        checked = 0
        self.model.train()
        try:
            for i in range(steps):
                params = params_for(i) if params_for is not None else self.all_params
                x, y = next(batches)
                out, y, loss = self._step(i, x, y, params, lr_at(i), generator, loss_for)
                losses[i] = loss.detach()
                if after_step is not None:
                    after_step(i, out, y)
                if i + 1 - checked >= self.settings.check_every or i + 1 == steps:
                    if self.data_parallel:  # the global batch's loss, the same on every process (so is a divergence)
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

    def _step(
        self,
        i: int,
        x: torch.Tensor,
        y: torch.Tensor,
        params: Sequence[torch.Tensor],
        lr: float,
        generator: torch.Generator | None,
        loss_for: Callable[[int, torch.Tensor, Any, torch.Tensor], torch.Tensor] | None,
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """One SGD step that updates `params` alone; the model's output, the labels it was scored
        against (under torchrun: this process's slice of the global batch) and the loss."""
        s, parallel = self.settings, self.data_parallel
        group = self.optimizer.param_groups[0]  # looked up per step: Optimizer.load_state_dict replaces the groups
        x = self.transform.train(x, generator)
        if parallel:  # augmented whole, as one process would, then this process's slice
            x, y = distributed.shard(x, y)
        synced = distributed.synced_batchnorm(True) if parallel else contextlib.nullcontext()
        with autocast(self.device, s.amp), synced:
            out = self.model(x)
            loss = classification_loss(out, y, s) if loss_for is None else loss_for(i, x, out, y)
        loss.backward()
        if parallel:
            distributed.average_gradients(params)
        if s.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, s.grad_clip, foreach=True)
        group["lr"] = lr
        if isinstance(params, SlicedPath):  # a path using parts of parameters (nasframe/training/sliced.py)
            params.step(self.optimizer, self.all_params, decay_1d=s.decay_1d)
        else:
            self._optimizer_step(params, group)
        for p in params:
            p.grad = None
        return out, y, loss

    def _optimizer_step(self, params: Sequence[torch.Tensor], group: dict[str, Any]) -> None:
        """The optimizer's step narrowed to `params` (1-D parameters exempt from decay when asked)."""
        group["params"] = params
        decay = group.get("weight_decay", 0.0)
        if decay and not self.settings.decay_1d:
            add_decay_nd(params, decay)
            group["weight_decay"] = 0.0
        try:
            self.optimizer.step()
        finally:
            group["params"] = self.all_params
            group["weight_decay"] = decay


def _raise_if_nonfinite(losses: torch.Tensor, start: int, stop: int) -> None:
    part = losses[start:stop]
    if bool(torch.isfinite(part).all()):  # the one host sync per check
        return
    first = int((~torch.isfinite(part)).nonzero()[0, 0])
    raise Diverged(start + first + 1, float(part[first]))
