"""short_train: train each candidate from scratch for a few epochs and score it on search-val.

The cheapest honest estimate of an architecture's quality: no weight sharing, so one candidate
cannot help or hurt another. Expected failures (loss becoming NaN/inf, running out of GPU
memory) come back as failed results and the search goes on.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from nasframe.common.options import option
from nasframe.core.evaluator import Budget, Cost, Evaluator, Result
from nasframe.core.registry import register_evaluator
from nasframe.core.space import Arch, SearchSpace
from nasframe.training.step_options import TrainingOptions

if TYPE_CHECKING:  # the training library imports torch: loaded when training, so `nasframe list` runs without it
    import torch

    from nasframe.data import DataSource, HeldOutData
    from nasframe.data.augment import BatchTransform
    from nasframe.data.batches import Batches
    from nasframe.training.measure import Scores
    from nasframe.training.steps import StepRunner


@dataclass(frozen=True)
class ShortTrainOptions(TrainingOptions):
    """The shared training options (their defaults are this evaluator's, but for fewer BatchNorm
    recalibration batches) plus torch.compile."""

    # 4 batches estimate the statistics as well as 10 after a short training: on digits, 12 sampled DARTS
    # cells scored the same mean search-val accuracy (93.3 % / 93.2 %) with 6 forward passes (~5 %) less each
    bn_recalibration_batches: int = option(
        4,
        "before validating, re-estimate BatchNorm statistics from this many "
        "train batches (a few epochs leave them stale; 0: off)",
        min=0,
    )
    compile: bool = option(False, "torch.compile each candidate (pays off only for long trainings)")
    test_metrics: bool = option(
        True,
        "after the search, train the answer once more as its evaluation did and report its accuracy on the "
        "data set's test split (test_acc; never seen by the strategy); false: skip that training",
    )


@register_evaluator("short_train")
class ShortTrain(Evaluator[ShortTrainOptions]):
    """Trains each candidate from scratch for a few epochs (SGD, cosine) and reports search-val accuracy."""

    Options = ShortTrainOptions
    holds_state = False  # every candidate trains from scratch

    def __init__(
        self,
        space: SearchSpace,
        options: ShortTrainOptions | None = None,
        *,
        data: DataSource | None = None,
        device: torch.device | str = "cpu",
    ):
        super().__init__(space, options, data=data, device=device)
        self._batches: Batches | None = None
        self._transform: BatchTransform | None = None

    def _setup(self) -> tuple[Batches, BatchTransform]:
        if self._batches is None:
            from nasframe.training.steps import search_data

            self._batches, self._transform = search_data("short_train", self.data, self.options, self.device)
        return self._batches, self._transform  # type: ignore[return-value]

    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        from nasframe.common.model_stats import count_macs, count_parameters
        from nasframe.training.measure import attempt, evaluation_result
        from nasframe.training.step_options import deterministic_mode, resolve_deterministic
        from nasframe.training.steps import count_steps

        start = time.perf_counter()
        batches, _ = self._setup()
        o = self.options
        spe = batches.steps_per_epoch(o.batch_size)
        steps = count_steps(budget, spe, o.epochs)
        cost = Cost(0.0, steps / spe)
        if o.compile:  # loaded first, so that deterministic_mode also sets the compiler's own flag
            importlib.import_module("torch._inductor.config")
        with deterministic_mode(resolve_deterministic(o, self.device)):
            model = self.space.build(arch, batches.spec)
            params = count_parameters(model) if o.model_stats else None
            macs = count_macs(model, batches.spec.input_shape) if o.model_stats else None
            outcome = attempt(partial(self._train_and_validate, model, steps, spe))
        del model  # an out-of-memory failure frees the device memory once nothing holds the network
        return evaluation_result(outcome, cost, start, self.device, params=params, macs=macs)

    def final_metrics(self, arch: Arch) -> dict[str, float]:
        """`arch`'s accuracy on the data set's own test split after the training every candidate of the
        search got (`epochs` on search-train). The runner seeds torch as it seeded the evaluation whose
        numbers best.json reports, so on the CPU this is that very network. Empty for a data set without a
        test split, or with `test_metrics: false`."""
        from nasframe.training.measure import Failure, attempt, free_memory
        from nasframe.training.step_options import deterministic_mode, resolve_deterministic
        from nasframe.training.steps import count_steps

        test = self.data.test() if (self.options.test_metrics and self.data is not None) else None
        if test is None:
            return {}
        batches, _ = self._setup()
        o = self.options
        spe = batches.steps_per_epoch(o.batch_size)
        steps = count_steps(None, spe, o.epochs)
        with deterministic_mode(resolve_deterministic(o, self.device)):
            model = self.space.build(arch, batches.spec)
            outcome = attempt(partial(self._train_and_validate, model, steps, spe, test))
        del model
        if isinstance(outcome, Failure) or not math.isfinite(outcome.val_loss):
            if isinstance(outcome, Failure) and outcome.out_of_memory:
                free_memory(self.device)
            return {}  # the training failed: no figure rather than a wrong one (the search's numbers stand)
        return {"test_acc": outcome.val_acc, "test_loss": outcome.val_loss}

    def held_out_split(self) -> str | None:
        test = self.data.test() if (self.options.test_metrics and self.data is not None) else None
        if test is None:
            return None
        name = self.data.options.name if self.data is not None else "the data set"
        return (
            f"{name} test split ({test.size:,} images, never searched on), after the search's training "
            f"({self.options.epochs:g} epochs on search-train)"
        )

    def _train_and_validate(
        self, model: torch.nn.Module, steps: int, spe: int, test: HeldOutData | None = None
    ) -> Scores:
        """SGD with a per-step cosine from scratch, BatchNorm recalibration, then search-val (or `test`)."""
        import torch

        from nasframe.training.measure import Scores, recalibrate_bn, validate
        from nasframe.training.step_options import device_generator, step_settings
        from nasframe.training.steps import StepRunner, cosine_lr

        batches, transform = self._setup()
        o = self.options
        model = model.to(self.device)
        if o.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # fused: one kernel for all parameters instead of ~3 small ops each (2.7 -> 0.4 ms per DARTS step)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, fused=True
        )
        run_model = cast(torch.nn.Module, torch.compile(model)) if o.compile else model
        settings = step_settings(o, model, self.device)
        runner = StepRunner(run_model, optimizer, transform, settings, self.device)
        generator = device_generator(self.device)
        stats = runner.run(
            batches.train(o.batch_size, generator),
            steps,
            lambda i: cosine_lr(i, steps, o.lr),
            generator=generator,
            window=spe,
            params_for=_drop_path_ramp(model, runner, spe, steps),
        )
        if o.bn_recalibration_batches:
            recalibrate_bn(
                run_model,
                batches.train(o.batch_size, generator),
                transform,
                o.bn_recalibration_batches,
                self.device,
                settings.amp,
                generator,
            )
        held = batches.val(o.eval_batch_size) if test is None else _test_batches(test, o.eval_batch_size)
        val_acc, val_loss = validate(run_model, held, transform, self.device, settings.amp)
        return Scores(val_acc, val_loss, stats.mean_loss)


def _test_batches(test: HeldOutData, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The test split once, in order, as (x_uint8, y) batches on the device."""
    for start in range(0, test.size, batch_size):
        yield test.x[start : start + batch_size], test.y[start : start + batch_size]


def _drop_path_ramp(model: torch.nn.Module, runner: StepRunner, steps_per_epoch: int, steps: int) -> Any:
    """DARTS' drop-path schedule, p = drop_path_prob * epoch / epochs, for models that have one."""
    p_max = float(getattr(model, "drop_path_prob", 0.0) or 0.0)
    if p_max == 0.0:
        return None
    epochs = steps / steps_per_epoch

    def hook(i: int) -> list[torch.Tensor]:
        setattr(model, "drop_path_prob", p_max * (i // steps_per_epoch) / epochs)  # noqa: B010
        return runner.all_params

    return hook
