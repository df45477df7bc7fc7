"""Shared weights and scoring (`SharedWeights`): the supernet, its shared SGD, the schedule, training
with divergence snapshots, `evaluate`, `train_paths`, `score_path` and the checkpoint.

`SharedSupernet` is the base every capability of the supernet evaluator builds on (the other files
of this package add one capability each). It is one-shot by itself: the hooks a few-shot supernet
needs (`_wrap_supernet`, `_steps_to_split`, `_split_all`, `_few_shot_state`, `_load_few_shot`,
`_shot_metrics`) do nothing here and are filled in by `fewshot.FewShotSplitting`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from nasframe.common import distributed
from nasframe.common.errors import NasframeError, NotSupported
from nasframe.common.model_stats import count_macs, count_parameters
from nasframe.core.capabilities import BNRecalibration, SharedWeights
from nasframe.core.evaluator import Budget, Cost, Evaluator, Result, WorkReport
from nasframe.core.space import Arch, SearchSpace
from nasframe.data import DataSource
from nasframe.data.augment import BatchTransform
from nasframe.data.batches import Batches
from nasframe.evaluators.supernet.evaluator import no_supernet_message
from nasframe.evaluators.supernet.options import DEFAULT_SCHEDULE_EPOCHS, SupernetOptions
from nasframe.training.measure import (
    Failure,
    Scores,
    attempt,
    evaluation_result,
    free_memory,
    oom_reason,
    recalibrate_bn,
    validate,
)
from nasframe.training.sliced import SlicedPath, keep_unused_statistics, path_parameters
from nasframe.training.step_options import (
    StepSettings,
    deterministic_mode,
    device_generator,
    resolve_deterministic,
    step_settings,
)
from nasframe.training.steps import Diverged, StepRunner, TrainStats, cosine_lr, count_steps, search_data


class SharedSupernet(Evaluator[SupernetOptions], SharedWeights):
    """One weight-sharing supernet trained path by path with one SGD optimizer: the shared state and
    the `SharedWeights` capability (`evaluate`, `train_paths`, `score_path`)."""

    Options = SupernetOptions

    def __init__(
        self,
        space: SearchSpace,
        options: SupernetOptions | None = None,
        *,
        data: DataSource | None = None,
        device: torch.device | str = "cpu",
    ):
        super().__init__(space, options, data=data, device=device)
        if not space.supports_supernet:  # refused when the run is built, before anything trains
            raise NotSupported(no_supernet_message(space))
        self.supernet: Any = None
        self.optimizer: torch.optim.SGD | None = None
        self.base: dict[str, torch.Tensor] = {}
        self._flat: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.step = 0  # position in the learning-rate schedule, over all training of the supernet
        self._planned_epochs: float | None = None  # the strategy's plan (`plan_training`)
        self._batches: Batches | None = None
        self._transform: BatchTransform | None = None
        self._runner: StepRunner | None = None
        self._params: dict[str, torch.nn.Parameter] = {}
        #: notes for the current call's report (a few-shot split)
        self._notes: list[str] = []

    # ---- construction ------------------------------------------------------------------------
    def _settings(self) -> StepSettings:
        return step_settings(self.options, self.supernet, self.device)

    def _data(self) -> tuple[Batches, BatchTransform]:
        if self._batches is None:
            self._batches, self._transform = search_data("supernet", self.data, self.options, self.device)
        return self._batches, self._transform  # type: ignore[return-value]

    def _build(self) -> None:
        """Build the supernet and its optimizer at first use (the weights come from torch's global RNG)."""
        if self.supernet is not None:
            return
        batches, transform = self._data()
        o = self.options
        net = cast(torch.nn.Module, self.space.build_supernet(batches.spec)).to(self.device)
        if o.channels_last:  # CPU too: batches are NHWC there as well (nasframe/training/steps.py)
            net = net.to(memory_format=torch.channels_last)
        net = self._wrap_supernet(net)
        if distributed.active():  # torchrun: one global batch over the processes (nasframe/common/distributed.py)
            distributed.check_batch(o.batch_size, "evaluator.batch_size")
            if o.sync_batchnorm:
                try:
                    distributed.synchronize_batchnorm(net)
                except NotSupported as exc:
                    raise NotSupported(
                        f"{exc}; set evaluator.sync_batchnorm=false (each process then keeps its own statistics, "
                        f"averaged after training)"
                    ) from None
        self.supernet = net
        self._new_optimizer()
        self._set_base({name: p.detach().clone() for name, p in self._params.items()})

    def _new_optimizer(self) -> None:
        """The shared SGD over every parameter of the supernet (again after a split), and its step runner."""
        o = self.options
        self._params = dict(self.supernet.named_parameters())
        self.optimizer = torch.optim.SGD(
            list(self._params.values()),
            lr=o.lr,
            momentum=o.momentum,
            weight_decay=o.weight_decay,
            nesterov=o.nesterov and o.momentum > 0,
        )
        _, transform = self._data()
        self._runner = StepRunner(
            self.supernet, self.optimizer, transform, self._settings(), self.device, data_parallel=True
        )

    def _set_base(self, base: dict[str, torch.Tensor]) -> None:
        """Store the base weights (ABS' angles compare against them; `angles.py`), plus flat views of base
        and current weights for `path_vectors` (a view of a contiguous parameter follows its in-place
        updates; others are flattened per call)."""
        self.base = base
        self._flat = {
            name: (base[name].reshape(-1), p.detach().view(-1) if p.is_contiguous() else None)
            for name, p in self._params.items()
        }

    def _steps_per_epoch(self) -> int:
        batches, _ = self._data()
        return batches.steps_per_epoch(self.options.batch_size)

    def schedule_epochs(self) -> float:
        """The cosine schedule's length: `schedule_epochs`, else the strategy's plan, else the default."""
        if self.options.schedule_epochs is not None:
            return self.options.schedule_epochs
        return self._planned_epochs if self._planned_epochs else DEFAULT_SCHEDULE_EPOCHS

    def _schedule_steps(self) -> int:
        return max(1, round(self.schedule_epochs() * self._steps_per_epoch()))

    def _lr_at(self, first: int) -> Any:
        total, o = self._schedule_steps(), self.options
        return lambda i: cosine_lr(first + i, total, o.lr, o.lr_min)

    def path_params(self, arch: Arch) -> list[torch.nn.Parameter] | SlicedPath:
        """The parameters `arch`'s path trains, in the supernet's own order (with the parts of them it uses,
        where it uses parts: nasframe/training/sliced.py)."""
        return path_parameters(self.supernet, arch, self._params)

    # ---- few-shot hooks (a one-shot supernet never splits; fewshot.FewShotSplitting) -----------
    def _wrap_supernet(self, net: torch.nn.Module) -> torch.nn.Module:
        """The network the evaluator trains, given the space's supernet (here: that supernet)."""
        return net

    def _steps_to_split(self) -> float:
        """Steps until the next split point (0: due now; inf: none)."""
        return math.inf

    def _split_all(self, generator: torch.Generator | None) -> None:
        """Split the supernet where a split is due (called when `_steps_to_split` is 0)."""

    def _shot_metrics(self) -> dict[str, float]:
        """Metrics about the sub-supernets for a work report."""
        return {}

    def _few_shot_state(self) -> dict[str, Any] | None:
        """The checkpoint's record of the sub-supernets (None: a one-shot supernet)."""
        return None

    def _load_few_shot(self, few_shot: dict[str, Any] | None) -> None:
        """Rebuild the sub-supernets a checkpoint recorded (`_few_shot_state`) before its weights load."""

    # ---- training ----------------------------------------------------------------------------
    def _train(
        self,
        steps: int,
        params_for: Any,
        touched: Callable[[], Sequence[torch.Tensor]],
        *,
        make_runner: Callable[[], StepRunner] | None = None,
        batches: Any = None,
        loss_for: Callable[[int, torch.Tensor, Any, torch.Tensor], torch.Tensor] | None = None,
        after_step: Callable[[int, Any, torch.Tensor], None] | None = None,
    ) -> Any:
        """Run `steps` shared-weight steps (with `make_runner()`, default the single-path runner, on
        `batches`, default fresh search-train batches); on divergence or OOM restore `touched()` (every
        parameter the steps may update), all buffers and the optimizer state of `touched()`, then
        re-raise. A few-shot supernet splits when the schedule reaches a split point, between steps;
        the steps between splits are pieces, and a divergence restores the weights as they were at
        the start of its piece. The returned mean loss covers all `steps`."""
        generator = device_generator(self.device)
        if batches is None:
            batches = self._data()[0].train(self.options.batch_size, generator)
        loss_sum, done = 0.0, 0
        while done < steps:
            if self._steps_to_split() == 0:
                self._split_all(generator)
                continue
            piece = int(min(steps - done, self._steps_to_split()))
            snapshot = self._snapshot(touched())
            runner = make_runner() if make_runner is not None else self._runner
            assert runner is not None  # built together with the supernet
            try:
                stats = runner.run(
                    batches,
                    piece,
                    self._lr_at(self.step),
                    params_for=_shifted(params_for, done),
                    generator=generator,
                    loss_for=None if loss_for is None else _shifted(loss_for, done),
                    after_step=None if after_step is None else _shifted(after_step, done),
                )
            except (Diverged, torch.OutOfMemoryError):
                self._restore(snapshot)
                raise
            if not self.options.sync_batchnorm:  # under torchrun: every process scores with the same statistics
                distributed.average_batchnorm_statistics(self.supernet)
            self.step += piece
            done += piece
            loss_sum += stats.mean_loss * piece
        return TrainStats(steps, loss_sum / steps if steps else float("nan"))

    @torch.no_grad()
    def _snapshot(self, params: Sequence[torch.Tensor]) -> dict[str, Any]:
        """Copies of `params`, their momentum buffers and every buffer (BN statistics): a diverged path
        must not poison the weights that every later candidate shares."""
        state = self.optimizer.state  # type: ignore[union-attr]
        return {
            "params": [
                (
                    p,
                    p.detach().clone(),
                    state[p]["momentum_buffer"].clone() if "momentum_buffer" in state.get(p, {}) else None,
                )
                for p in params
            ],
            "buffers": [(b, b.clone()) for b in self.supernet.buffers()],
        }

    @torch.no_grad()
    def _restore(self, snapshot: dict[str, Any]) -> None:
        state = self.optimizer.state  # type: ignore[union-attr]
        for p, value, momentum in snapshot["params"]:
            p.copy_(value)
            if momentum is None:
                state.pop(p, None)
            else:
                state[p]["momentum_buffer"] = momentum
        for b, value in snapshot["buffers"]:
            b.copy_(value)

    def _work_report(self, start: float, steps: int, spe: int, stats: Any) -> WorkReport:
        """The report of single-path training (`train_paths`, `train_distilled`): its cost, mean loss and
        the learning rate the schedule has reached."""
        cost = Cost(time.perf_counter() - start, steps / spe)
        o = self.options
        lr = cosine_lr(self.step, self._schedule_steps(), o.lr, o.lr_min)
        metrics = {"train_loss": stats.mean_loss, "steps": float(steps), "lr": lr, **self._shot_metrics()}
        return WorkReport(cost, metrics, notes=list(self._notes))

    # ---- evaluate: train the path for the budget, then score it ------------------------------
    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        """Train `arch`'s path for the budget with the shared optimizer, then score it on search-val."""
        start = time.perf_counter()
        o = self.options
        self._notes = []
        with deterministic_mode(resolve_deterministic(o, self.device)):
            self._build()
            spe = self._steps_per_epoch()
            steps = count_steps(budget, spe, o.epochs, o.steps)
            cost = Cost(0.0, steps / spe)
            self.supernet.set_path(arch)
            outcome = attempt(
                lambda: self._train_and_validate(steps, arch), diverged_note=" (the path's weights were restored)"
            )
        params_n = macs = None
        if o.model_stats and not isinstance(outcome, Failure):
            params_n, macs = self._model_stats(arch)
        result = evaluation_result(outcome, cost, start, self.device, params=params_n, macs=macs)
        result.notes = list(self._notes)
        return result

    def _model_stats(self, arch: Arch) -> tuple[int, int]:
        """Parameters and MACs of `arch` built as a stand-alone network (`model_stats`)."""
        batches, _ = self._data()
        child = self.space.build(arch, batches.spec)
        return count_parameters(child), count_macs(child, batches.spec.input_shape)

    def _train_and_validate(self, steps: int, arch: Arch) -> Scores:
        o = self.options
        batches, transform = self._data()
        params = self.path_params(arch)
        if o.few_shot == "none":
            stats = self._train(steps, lambda i: params, lambda: params)
        else:  # a split on the way moves the path into a child sub-supernet: route it every step

            def params_for(i: int) -> Sequence[torch.Tensor]:
                self.supernet.set_path(arch)
                return self.path_params(arch)

            stats = self._train(steps, params_for, lambda: self.path_params(arch))
            self.supernet.set_path(arch)
        if o.bn_recalibration_batches:
            generator = device_generator(self.device)
            with keep_unused_statistics(self.supernet, arch):  # sliced BatchNorms keep their other channels
                recalibrate_bn(
                    self.supernet,
                    batches.train(o.batch_size, generator),
                    transform,
                    o.bn_recalibration_batches,
                    self.device,
                    self._settings().amp,
                    generator,
                )
        val_acc, val_loss = validate(
            self.supernet, batches.val(o.eval_batch_size), transform, self.device, self._settings().amp
        )
        return Scores(val_acc, val_loss, stats.mean_loss)

    # ---- SharedWeights -----------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch()

    def plan_training(self, planned_epochs: float | None) -> None:
        self._planned_epochs = planned_epochs

    def training_plan_note(self, planned_epochs: float) -> str | None:
        o, length = self.options, self.schedule_epochs()
        if planned_epochs <= length:
            return None
        return (
            f"the supernet's learning-rate schedule is {length:g} epochs (evaluator.schedule_epochs) "
            f"but the strategy plans at least {planned_epochs:g}: the learning rate stays at lr_min "
            f"{o.lr_min:g} after epoch {length:g}; set --set evaluator.schedule_epochs="
            f"{planned_epochs:g} (or more, or null to follow the plan) for a schedule over the whole training"
        )

    def train_paths(self, steps: int, next_path: Callable[[], Arch]) -> WorkReport:
        """Train `steps` steps, the path of each from `next_path()` (drawn lazily, one per step)."""
        start = time.perf_counter()
        self._notes = []
        with deterministic_mode(resolve_deterministic(self.options, self.device)):
            self._build()
            spe = self._steps_per_epoch()

            def params_for(i: int) -> Sequence[torch.Tensor]:
                arch = next_path()
                self.supernet.set_path(arch)
                return self.path_params(arch)

            try:
                stats = self._train(steps, params_for, lambda: list(self._params.values()))
            except Diverged as exc:
                raise diverged_error(exc) from None
            except torch.OutOfMemoryError as exc:
                reason = oom_reason(exc)
                free_memory(self.device)
                raise NasframeError(f"supernet training ran {reason}; lower evaluator.batch_size") from None
        return self._work_report(start, steps, spe, stats)

    def score_path(self, arch: Arch, recalibration: BNRecalibration | None) -> Result:
        """Validation accuracy of `arch` with the shared weights, after BatchNorm recalibration when asked
        (the statistics of BatchNorms off the path are left as they were)."""
        start = time.perf_counter()
        o = self.options
        with deterministic_mode(resolve_deterministic(o, self.device)):
            self._build()
            batches, transform = self._data()
            self.supernet.set_path(arch)
            try:
                if recalibration is not None and recalibration.batches > 0:
                    self._recalibrate(arch, recalibration)
                val_acc, val_loss = validate(
                    self.supernet, batches.val(o.eval_batch_size), transform, self.device, self._settings().amp
                )
            except torch.OutOfMemoryError as exc:
                free_memory(self.device)
                return Result.failed(oom_reason(exc), Cost(time.perf_counter() - start, 0.0))
        cost = Cost(time.perf_counter() - start, 0.0)
        if not math.isfinite(val_loss):
            return Result.failed("validation loss is not finite with the shared weights", cost)
        params_n = macs = None
        if o.model_stats:
            params_n, macs = self._model_stats(arch)
        return Result("ok", {"val_acc": val_acc, "val_loss": val_loss}, params=params_n, macs=macs, cost=cost)

    def _recalibrate(self, arch: Arch, recalibration: BNRecalibration) -> None:
        """Re-estimate the BatchNorm statistics of `arch`, the current path, as `recalibration` says (the
        channels of sliced BatchNorms that the path does not use keep theirs)."""
        batches, transform = self._data()
        generator = device_generator(self.device)
        size = recalibration.batch_size or self.options.batch_size
        with keep_unused_statistics(self.supernet, arch):
            recalibrate_bn(
                self.supernet,
                batches.train(size, generator),
                transform,
                recalibration.batches,
                self.device,
                self._settings().amp,
                generator,
                momentum=recalibration.momentum,
            )

    # ---- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Weights, buffers, optimizer state, schedule position and base weights (tensors and plain
        numbers only, so `torch.load(weights_only=True)` reads it)."""
        if self.supernet is None:
            return {"built": False}
        return {
            "built": True,
            "weights": {k: v.detach().clone() for k, v in self.supernet.state_dict().items()},
            # a copy: the optimizer's own dict shares its momentum tensors, which training changes in place
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # type: ignore[union-attr]
            "step": self.step,
            "base": {k: v.clone() for k, v in self.base.items()},
            "few_shot": self._few_shot_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state.get("built"):
            return
        self._build()
        self._load_few_shot(state.get("few_shot"))
        self.supernet.load_state_dict(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[union-attr]
        self.step = int(state["step"])
        self._set_base({k: v.to(self.device) for k, v in state["base"].items()})

    def close(self) -> None:
        self.supernet = self.optimizer = self._runner = None
        self._params, self.base, self._flat = {}, {}, {}
        free_memory(self.device)


def diverged_error(exc: Diverged) -> NasframeError:
    """The error of diverged shared-weight training (the weights were restored by `_train`)."""
    return NasframeError(
        f"supernet training diverged: {exc}; the weights were restored; lower evaluator.lr (in a new run)"
    )


def _shifted(per_step: Callable[..., Any], offset: int) -> Callable[..., Any]:
    """A per-step callback for a piece of a longer run: step i of the piece is step offset + i of the run."""
    return lambda i, *rest: per_step(offset + i, *rest)
