"""short_train: train each candidate from scratch for a few epochs and score it on search-val.

The cheapest honest estimate of an architecture's quality: no weight sharing, so one candidate
cannot help or hurt another. Expected failures (loss becoming NaN/inf, running out of GPU
memory) come back as failed results and the search goes on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from nasframe.data.augment import AUGMENT_CHOICES, BatchTransform, choose_policy
from nasframe.data.batches import Batches
from nasframe.errors import ConfigError
from nasframe.evaluator import Budget, Cost, Evaluator, Result
from nasframe.evaluators.training import (
    Diverged,
    StepRunner,
    StepSettings,
    cosine_lr,
    deterministic_mode,
    device_generator,
    free_memory,
    oom_reason,
    recalibrate_bn,
    validate,
)
from nasframe.model_stats import count_macs, count_parameters
from nasframe.options import option
from nasframe.registry import register_evaluator
from nasframe.space import Arch


@dataclass(frozen=True)
class ShortTrainOptions:
    epochs: float = option(2.0, "epochs over search-train per candidate (a budget's epochs or steps override "
                                "it)", min=0.001)
    batch_size: int = option(64, "training mini-batch size", min=1)
    eval_batch_size: int = option(512, "validation batch size (no effect on the result)", min=1)
    lr: float = option(0.1, "initial SGD learning rate, annealed to 0 by a per-step cosine", min=0)
    momentum: float = option(0.9, "SGD momentum", min=0, max=1)
    weight_decay: float = option(3e-4, "SGD weight decay (L2), applied to every parameter", min=0)
    grad_clip: float | None = option(5.0, "clip the gradient norm to this (null or 0: off)", min=0)
    auxiliary_weight: float = option(0.4, "weight of the auxiliary head's loss when the model returns "
                                          "(logits, aux) in train mode and has no `auxiliary_weight` of its "
                                          "own", min=0)
    label_smoothing: float = option(0.0, "cross-entropy label smoothing", min=0, max=1)
    bn_recalibration_batches: int = option(10, "before validating, re-estimate BatchNorm statistics from this "
                                               "many train batches (a few epochs leave them stale; 0: off)",
                                           min=0)
    augment: str = option("auto", "train-batch augmentation on the device; auto: crop+flip for small colour "
                                  "images, none otherwise", choices=AUGMENT_CHOICES)
    cutout: int = option(0, "cutout square side in pixels after augmentation (0: off; DARTS uses 16)", min=0)
    amp: bool = option(True, "CUDA only: bf16 autocast for forward and loss")
    channels_last: bool = option(True, "CUDA only: NHWC memory format for model and batches")
    model_stats: bool = option(True, "count parameters and MACs of each candidate (MACs cost one traced forward "
                                     "pass)")
    compile: bool = option(False, "torch.compile each candidate (pays off only for long trainings)")
    deterministic: bool | None = option(None, "torch deterministic algorithms (null: on for CPU, off for CUDA)")
    check_every: int = option(50, "steps between NaN/inf checks of the loss (each check is one host sync)",
                              min=1)


@register_evaluator("short_train")
class ShortTrain(Evaluator):
    """Trains each candidate from scratch for a few epochs (SGD, cosine) and reports search-val accuracy."""

    Options = ShortTrainOptions
    capabilities = frozenset()

    def __init__(self, space, options: ShortTrainOptions | None = None, *, data=None, device="cpu"):
        super().__init__(space, options, data=data, device=device)
        self.device = torch.device(device)
        self._batches: Batches | None = None
        self._transform: BatchTransform | None = None

    def _setup(self) -> tuple[Batches, BatchTransform]:
        if self._batches is None:
            if self.data is None:
                raise ConfigError("short_train needs a data set (evaluators get one from the run's data: section)")
            search = self.data.search()
            batches = Batches(search)
            policy = choose_policy(self.options.augment, batches.spec, cutout=self.options.cutout,
                                   streaming=batches.streaming)
            self._transform = BatchTransform(search.mean, search.std, policy, channels_last=self._channels_last)
            self._batches = batches
        return self._batches, self._transform  # type: ignore[return-value]

    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def _channels_last(self) -> bool:
        return self._cuda and self.options.channels_last

    def _steps(self, budget: Budget | None, steps_per_epoch: int) -> int:
        if budget is not None and budget.steps is not None:
            return max(1, int(budget.steps))
        epochs = budget.epochs if budget is not None and budget.epochs is not None else self.options.epochs
        return max(1, round(epochs * steps_per_epoch))

    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        start = time.perf_counter()
        batches, transform = self._setup()
        o = self.options
        spe = batches.steps_per_epoch(o.batch_size)
        steps = self._steps(budget, spe)
        cost = Cost(0.0, steps / spe)
        deterministic = o.deterministic if o.deterministic is not None else not self._cuda
        model = optimizer = runner = None
        failure, out_of_memory = None, False
        try:
            with deterministic_mode(deterministic):
                model = self.space.build(arch, batches.spec)
                params = count_parameters(model) if o.model_stats else None
                macs = count_macs(model, batches.spec.input_shape) if o.model_stats else None
                model = model.to(self.device)
                if self._channels_last:
                    model = model.to(memory_format=torch.channels_last)
                optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                                            weight_decay=o.weight_decay)
                run_model = torch.compile(model) if o.compile else model
                settings = StepSettings(grad_clip=o.grad_clip,
                                        auxiliary_weight=getattr(model, "auxiliary_weight", o.auxiliary_weight),
                                        label_smoothing=o.label_smoothing, amp=o.amp and self._cuda,
                                        check_every=o.check_every)
                runner = StepRunner(run_model, optimizer, transform, settings, self.device)
                generator = device_generator(self.device)
                stats = runner.run(batches.train(o.batch_size, generator), steps,
                                   lambda i: cosine_lr(i, steps, o.lr), generator=generator, window=spe,
                                   params_for=_drop_path_ramp(model, runner, spe, steps))
                if o.bn_recalibration_batches:
                    recalibrate_bn(run_model, batches.train(o.batch_size, generator), transform,
                                   o.bn_recalibration_batches, self.device, settings.amp, generator)
                val_acc, val_loss = validate(run_model, batches.val(o.eval_batch_size), transform, self.device,
                                             settings.amp)
        except Diverged as exc:
            failure = str(exc)
        except torch.OutOfMemoryError as exc:
            failure, out_of_memory = oom_reason(exc), True
        if failure is not None:
            # the exception (and the frames holding activations) is gone once its block ends
            model = optimizer = runner = run_model = None
            if out_of_memory:
                free_memory(self.device)
            cost.seconds = time.perf_counter() - start
            return Result.failed(failure, cost)
        cost.seconds = time.perf_counter() - start
        if not math.isfinite(val_loss):
            return Result.failed("validation loss is not finite (training loss stayed finite)", cost)
        metrics = {"val_acc": val_acc, "val_loss": val_loss, "train_loss": stats.mean_loss}
        return Result("ok", metrics, params=params, macs=macs, cost=cost)


def _drop_path_ramp(model: torch.nn.Module, runner: StepRunner, steps_per_epoch: int, steps: int) -> Any:
    """DARTS' drop-path schedule, p = drop_path_prob * epoch / epochs, for models that have one."""
    p_max = float(getattr(model, "drop_path_prob", 0.0) or 0.0)
    if p_max == 0.0:
        return None
    epochs = steps / steps_per_epoch

    def hook(i: int) -> list[torch.Tensor]:
        model.drop_path_prob = p_max * (i // steps_per_epoch) / epochs
        return runner.all_params

    return hook
