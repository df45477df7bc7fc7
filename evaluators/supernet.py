"""supernet: one weight-sharing network for the whole search.

`evaluate(arch)` selects the single path of `arch` (`Supernet.set_path`), trains it for the
budget on search-train with the shared SGD optimizer, and scores it on search-val (MDENAS'
per-epoch step). Parameters off the path get no update at all, as in SPOS: the optimizer's
group is narrowed to the path's parameters for every step, so their weights, momentum buffers
and weight decay stay untouched.

It declares `AngleMetric` (and so `SharedWeights`), the one-shot protocol's capabilities: the
runner asks it to train the shared weights with paths a strategy's sampler draws
(`train_paths`), to score a path with the weights as they are after BatchNorm recalibration
(`score_path`, SPOS), and to save base weights and measure path angles (ABS).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch

from nasframe import distributed
from nasframe.angles import angle
from nasframe.data import DataSource
from nasframe.data.augment import BatchTransform
from nasframe.data.batches import Batches
from nasframe.errors import ConfigError, NasframeError, NotSupported
from nasframe.evaluator import (
    AlphaOptimizer,
    AngleMetric,
    BNRecalibration,
    BranchImportance,
    Budget,
    Capability,
    Cost,
    Differentiable,
    Distillation,
    Evaluator,
    ImportanceSettings,
    Result,
    WorkReport,
)
from nasframe.evaluators.bilevel import MixedForward, Peekable, first_order, second_order
from nasframe.evaluators.branch_importance import train_importance
from nasframe.evaluators.fewshot import FewShotSupernet, gradient_distances, partition_min_within
from nasframe.evaluators.sliced import SlicedPath, keep_unused_statistics, path_parameters, slice_vectors
from nasframe.evaluators.training import (
    Diverged,
    Failure,
    Scores,
    StepRunner,
    StepSettings,
    TrainingOptions,
    TrainStats,
    attempt,
    cosine_lr,
    count_steps,
    deterministic_mode,
    device_generator,
    distillation_loss,
    evaluation_result,
    free_memory,
    oom_reason,
    recalibrate_bn,
    resolve_deterministic,
    search_data,
    step_settings,
    to_cpu,
    validate,
)
from nasframe.model_stats import count_macs, count_parameters
from nasframe.options import option
from nasframe.registry import register_evaluator
from nasframe.space import Arch, ParamSlice, SearchSpace


@dataclass(frozen=True)
class SupernetOptions(TrainingOptions):
    """The shared training options with the DARTS search defaults, plus the global schedule."""

    # redeclared: a different default from short_train's
    epochs: float = option(1.0, "epochs of path training per evaluation (MDENAS: one)", min=0.001)
    lr: float = option(0.025, "initial SGD learning rate (DARTS search: 0.025)", min=0)
    model_stats: bool = option(False, "also build each path as a stand-alone network to report its parameters and MACs")
    # supernet only
    steps: int | None = option(None, "train this many steps per evaluation instead of `epochs`", min=1)
    schedule_epochs: float = option(
        50.0,
        "length of the cosine learning-rate schedule in epochs (the planned total of supernet training)",
        min=0.001,
    )
    lr_min: float = option(0.001, "learning rate at the end of the cosine schedule (DARTS: 0.001)", min=0)
    nesterov: bool = option(
        False, "Nesterov momentum for the shared weights (SETN and NAS-Bench-201's search baselines: true)"
    )
    sync_batchnorm: bool = option(
        True,
        "under torchrun: BatchNorm statistics of the global batch (the single-process result; two all-reduces "
        "per BatchNorm layer and step); false: of each process's slice, running statistics averaged over the "
        "processes after each piece of training (faster where all-reduces are slow)",
    )
    # few-shot supernets (evaluators/fewshot.py)
    few_shot: Literal["none", "gradient", "exhaustive"] = option(
        "none",
        "split the supernet into sub-supernets at split_epochs: gradient (GM-NAS: two groups of a decision's "
        "choices by gradient matching) or exhaustive (few-shot NAS: one sub-supernet per choice)",
    )
    split_epochs: list[float] = option(
        default_factory=list,
        help="supernet training epochs after which every sub-supernet splits once (GM-NAS: [15, 30] on "
        "NAS-Bench-201, [2, 4, 6] on DARTS)",
    )
    split_batches: int = option(100, "mini-batches averaged per gradient-matching distance (GM-NAS: 100)", min=1)
    split_select: Literal["min_within", "max_cross"] = option(
        "min_within",
        "the decision gradient matching splits: least within-group distance (GM-NAS' DARTS and ProxylessNAS "
        "code) or largest cross-group distance (its NAS-Bench-201 code)",
    )
    split_decisions: list[str] | None = option(
        None,
        "decisions that may be split, in order of preference for exhaustive (null: all of them; GM-NAS' DARTS "
        "code splits only normal-cell edges)",
    )

    def __post_init__(self) -> None:
        if self.few_shot == "none" and self.split_epochs:
            raise ConfigError("evaluator.split_epochs needs evaluator.few_shot: gradient or exhaustive")
        if self.few_shot != "none" and not self.split_epochs:
            raise ConfigError(
                f"evaluator.few_shot: {self.few_shot} needs evaluator.split_epochs, e.g. [15, 30] (epochs of "
                f"supernet training after which to split)"
            )
        if any(not (math.isfinite(e) and e > 0) for e in self.split_epochs):
            raise ConfigError(f"evaluator.split_epochs: expected positive numbers, got {self.split_epochs}")


@register_evaluator("supernet")
class SupernetEvaluator(Evaluator[SupernetOptions], AngleMetric, Differentiable, Distillation, BranchImportance):
    """Single-path weight-sharing supernet: train the candidate's path, score it on search-val."""

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
            raise NotSupported(_no_supernet(space))
        names = [d.name for d in space.decisions]
        wanted = self.options.split_decisions
        if wanted is not None and (not wanted or any(n not in names for n in wanted)):
            bad = [n for n in wanted if n not in names]
            what = f"unknown decision(s) {', '.join(map(repr, bad))}" if bad else "an empty list"
            raise ConfigError(
                f"evaluator.split_decisions: {what}; give null (all) or names among {', '.join(names[:8])}"
                f"{', ...' if len(names) > 8 else ''}"
            )
        self.supernet: Any = None
        self.optimizer: torch.optim.SGD | None = None
        self.base: dict[str, torch.Tensor] = {}
        self._flat: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.step = 0  # position in the learning-rate schedule, over all training of the supernet
        self._batches: Batches | None = None
        self._transform: BatchTransform | None = None
        self._runner: StepRunner | None = None
        self._params: dict[str, torch.nn.Parameter] = {}
        #: few-shot: split points passed, what each split did, and notes for the current call's report
        self.splits_done = 0
        self.splits: list[dict[str, Any]] = []
        self._notes: list[str] = []

    @classmethod
    def check_space(cls, space: SearchSpace, needed: Sequence[type[Capability]]) -> None:
        """Refuse, when the run is built, a space whose supernet lacks what the strategy's requests need:
        a supernet at all, its angle terms (ABS) or its mixed forward (DARTS, SETN), naming what to add."""
        if not space.supports_supernet:
            raise NotSupported(_no_supernet(space))
        for capability, extra, users in (
            (AngleMetric, "angle_terms", "ABS' angle metric"),
            (Differentiable, "forward_mixed", "a differentiable search (DARTS, SETN)"),
        ):
            if any(issubclass(c, capability) for c in needed) and extra not in space.supernet_extras:
                raise NotSupported(
                    f"{users} needs the supernet's {extra}, which space {space.name!r} does not declare: "
                    f"{space.supernet_extra_hint(extra)}"
                )

    # ---- construction ------------------------------------------------------------------------
    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda"

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
        if o.channels_last:  # CPU too: batches are NHWC there as well (evaluators/training.py)
            net = net.to(memory_format=torch.channels_last)
        if o.few_shot != "none":
            net = FewShotSupernet(net, self.space.decisions)
        if distributed.active():  # torchrun: one global batch over the processes (nasframe/distributed.py)
            distributed.check_batch(o.batch_size, "evaluator.batch_size")
            if o.sync_batchnorm:
                distributed.synchronize_batchnorm(net)
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

    def _steps_per_epoch(self) -> int:
        batches, _ = self._data()
        return batches.steps_per_epoch(self.options.batch_size)

    def _schedule_steps(self) -> int:
        return max(1, round(self.options.schedule_epochs * self._steps_per_epoch()))

    def _lr_at(self, first: int) -> Any:
        total, o = self._schedule_steps(), self.options
        return lambda i: cosine_lr(first + i, total, o.lr, o.lr_min)

    def path_params(self, arch: Arch) -> list[torch.nn.Parameter] | SlicedPath:
        """The parameters `arch`'s path trains, in the supernet's own order (with the parts of them it uses,
        where it uses parts: hook, evaluators/sliced.py)."""
        return path_parameters(self.supernet, arch, self._params)

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

    # ---- few-shot splitting (evaluators/fewshot.py) ------------------------------------------
    def _steps_to_split(self) -> float:
        """Steps until the next split point (0: due now; inf: none left or few-shot off)."""
        o = self.options
        if o.few_shot == "none" or self.splits_done >= len(o.split_epochs):
            return math.inf
        at = round(sorted(o.split_epochs)[self.splits_done] * self._steps_per_epoch())
        return max(0, at - self.step)

    def _split_all(self, generator: torch.Generator | None) -> None:
        """Split every sub-supernet once (GM-NAS splits each of them at every split point)."""
        net = cast(FewShotSupernet, self.supernet)
        epoch = sorted(self.options.split_epochs)[self.splits_done]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))  # seeded by the runner's piece seed
        for shot in reversed(range(len(net.masks))):  # children are inserted after their parent
            choice = self._choose_split(net, shot, generator, rng)
            if choice is None:
                continue
            decision, groups, within, cross = choice
            source = net.split(shot, decision, groups)
            self._inherit(source)
            record = {"epoch": epoch, "sub_supernet": shot, "decision": decision, "groups": groups}
            if within is not None:
                record |= {"within": within, "cross": cross}
            self.splits.append(record)
            detail = "" if within is None else f" (within-group distance {within:.4f}, cross-group {cross:.4f})"
            self._notes.append(
                f"epoch {epoch:g}: sub-supernet {shot} split on {decision} into "
                f"{' | '.join(','.join(map(str, g)) for g in groups)}{detail}; {len(net.masks)} sub-supernets"
            )
        self.splits_done += 1

    def _choose_split(
        self, net: FewShotSupernet, shot: int, generator: torch.Generator | None, rng: np.random.Generator
    ) -> tuple[str, list[list[Any]], float | None, float | None] | None:
        o = self.options
        wanted = o.split_decisions or [d.name for d in self.space.decisions]
        by_name = {d.name: d for d in self.space.decisions}
        candidates = [
            by_name[n] for n in wanted if n not in net.masks[shot] and len(net.owned_choices(shot, by_name[n])) > 1
        ]
        if not candidates:
            return None
        if o.few_shot == "exhaustive":
            d = candidates[0]
            return d.name, [[c] for c in net.owned_choices(shot, d)], None, None
        batches, transform = self._data()
        stream = ((transform.train(x, generator), y) for x, y in batches.stream("train", o.batch_size, generator))
        best: tuple[float, str, list[list[Any]], float, float] | None = None
        for d in candidates:
            distances = gradient_distances(net, shot, d, stream, o.split_batches, rng, _loss_of_logits)
            groups, within, cross = partition_min_within(distances)
            key = within if o.split_select == "min_within" else -cross
            if best is None or key < best[0]:
                choices = net.owned_choices(shot, d)
                best = (key, d.name, [[choices[i] for i in g] for g in groups], within, cross)
        assert best is not None
        return best[1], best[2], best[3], best[4]

    def _inherit(self, source: Callable[[str], str]) -> None:
        """After a split: a new optimizer over the children's parameters, each child's momentum and
        base weights copied from the parameter it was copied from (GM-NAS' children inherit weights
        and optimizer state)."""
        old_params, old_state = self._params, cast(torch.optim.SGD, self.optimizer).state
        self._new_optimizer()
        state = cast(torch.optim.SGD, self.optimizer).state
        for name, p in self._params.items():
            buf = old_state.get(old_params[source(name)], {}).get("momentum_buffer")
            if buf is not None:
                state[p]["momentum_buffer"] = buf.clone()
        self._set_base({name: self.base[source(name)].clone() for name in self._params})

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
            batches, _ = self._data()
            child = self.space.build(arch, batches.spec)
            params_n, macs = count_parameters(child), count_macs(child, batches.spec.input_shape)
        result = evaluation_result(outcome, cost, start, self.device, params=params_n, macs=macs)
        result.notes = list(self._notes)
        return result

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
            with keep_unused_statistics(self.supernet, arch):  # hook: sliced BatchNorms (evaluators/sliced.py)
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

    # ---- SharedWeights / AngleMetric --------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch()

    def training_plan_note(self, planned_epochs: float) -> str | None:
        o = self.options
        if planned_epochs <= o.schedule_epochs:
            return None
        return (
            f"the supernet's learning-rate schedule is {o.schedule_epochs:g} epochs (evaluator.schedule_epochs) "
            f"but the strategy plans at least {planned_epochs:g}: the learning rate stays at lr_min "
            f"{o.lr_min:g} after epoch {o.schedule_epochs:g}; set --set evaluator.schedule_epochs="
            f"{planned_epochs:g} (or more) for a schedule over the whole training"
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
                raise NasframeError(
                    f"supernet training diverged: {exc}; the weights were restored; lower evaluator.lr (in a new run)"
                ) from None
            except torch.OutOfMemoryError as exc:
                reason = oom_reason(exc)
                free_memory(self.device)
                raise NasframeError(f"supernet training ran {reason}; lower evaluator.batch_size") from None
        cost = Cost(time.perf_counter() - start, steps / spe)
        o = self.options
        lr = cosine_lr(self.step, self._schedule_steps(), o.lr, o.lr_min)
        metrics = {"train_loss": stats.mean_loss, "steps": float(steps), "lr": lr, **self._shot_metrics()}
        return WorkReport(cost, metrics, notes=list(self._notes))

    def train_distilled(
        self,
        steps: int,
        next_path: Callable[[], Arch],
        teacher: Callable[[], tuple[Arch, float] | None],
        observe: Callable[[Arch, float], None],
        label_smoothing: float,
    ) -> WorkReport:
        """Cream's supernet step (reference 9.5): the student path trains on (m KD + (2 - m) CE) / 2,
        KD from the teacher path's softmax on the same batch, computed by the same supernet in train
        mode without gradient; plain label-smoothed CE while there is no teacher. Each student's
        top-1 on its batch goes to `observe` after its step (one host sync per step: the board needs it)."""
        start = time.perf_counter()
        self._notes = []
        students: dict[int, tuple[Arch, tuple[Arch, float] | None]] = {}
        with deterministic_mode(resolve_deterministic(self.options, self.device)):
            self._build()
            spe = self._steps_per_epoch()

            def params_for(i: int) -> Sequence[torch.Tensor]:
                arch = next_path()
                students[i] = (arch, teacher())
                self.supernet.set_path(arch)
                return self.path_params(arch)

            def loss_for(i: int, x: torch.Tensor, out: Any, y: torch.Tensor) -> torch.Tensor:
                student, picked = students[i]
                logits = (out[0] if isinstance(out, (tuple, list)) else out).float()  # auxiliary logits: not distilled
                if picked is None:
                    return torch.nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing)
                teacher_arch, m = picked
                self.supernet.set_path(teacher_arch)
                with torch.no_grad():
                    t_out = self.supernet(x)
                    t_logits = t_out[0] if isinstance(t_out, (tuple, list)) else t_out
                    soft = torch.softmax(t_logits.float(), dim=-1)
                self.supernet.set_path(student)
                return distillation_loss(logits, soft, y, m, label_smoothing)

            def after_step(i: int, out: Any, y: torch.Tensor) -> None:
                logits = out[0] if isinstance(out, (tuple, list)) else out
                correct = (logits.argmax(dim=-1) == y).float().mean()
                # under torchrun: the global batch's top-1, so the board stays the same on every process
                observe(students.pop(i)[0], float(distributed.average_(correct)) * 100.0)

            try:
                stats = self._train(
                    steps, params_for, lambda: list(self._params.values()), loss_for=loss_for, after_step=after_step
                )
            except Diverged as exc:
                raise NasframeError(
                    f"supernet training diverged: {exc}; the weights were restored; lower evaluator.lr (in a new run)"
                ) from None
        cost = Cost(time.perf_counter() - start, steps / spe)
        o = self.options
        lr = cosine_lr(self.step, self._schedule_steps(), o.lr, o.lr_min)
        metrics = {"train_loss": stats.mean_loss, "steps": float(steps), "lr": lr, **self._shot_metrics()}
        return WorkReport(cost, metrics, notes=list(self._notes))

    def _shot_metrics(self) -> dict[str, float]:
        if self.options.few_shot == "none":
            return {}
        return {"sub_supernets": float(len(cast(FewShotSupernet, self.supernet).masks))}

    # ---- Differentiable (DARTS, SETN) -------------------------------------------------------------
    def train_mixed(
        self,
        steps: int,
        state: dict[str, Any],
        order: int,
        optimizer: AlphaOptimizer,
        next_path: Callable[[], Arch] | None,
    ) -> WorkReport:
        """Bilevel steps: an Adam step on the strategy's alphas from a search-val batch (first or second
        order), then an SGD step on the shared weights from a search-train batch, through the mixed
        forward (DARTS) or on the single path `next_path` draws (SETN)."""
        start = time.perf_counter()
        o = self.options
        if order == 2 and o.nesterov and o.momentum > 0:
            raise NotSupported(
                "second-order DARTS unrolls a plain-momentum SGD step; set evaluator.nesterov=false (or use order 1)"
            )
        self._notes = []
        with deterministic_mode(resolve_deterministic(o, self.device)):
            self._build()
            spe = self._steps_per_epoch()
            batches, transform = self._data()
            alphas, adam, to_weights = self._alpha_setup(state, optimizer)
            mixed = MixedForward(self.supernet)
            generator = device_generator(self.device)
            train = Peekable(batches.train(o.batch_size, generator))
            val = batches.stream("val", o.batch_size, generator)
            first, losses = self.step, []
            lr_at = self._lr_at(first)

            def before_step(i: int) -> Sequence[torch.Tensor]:
                if isinstance(self.supernet, FewShotSupernet):  # sub-supernets take the mixed steps in turn
                    self.supernet.mixed_shot = (first + i) % len(self.supernet.masks)
                xv, yv = next(val)
                batch_val = (transform.train(xv, generator), yv)
                adam.zero_grad()
                if order == 2:
                    xt, yt = train.peek()
                    batch_train = (transform.train(xt, generator), yt)
                    grads, loss = second_order(
                        mixed,
                        alphas,
                        to_weights,
                        batch_train,
                        batch_val,
                        lr_at(i),
                        o.momentum,
                        o.weight_decay,
                        self._momentum_buffers(),
                    )
                else:
                    grads, loss = first_order(mixed, alphas, to_weights, batch_val)
                for name, g in grads.items():
                    alphas[name].grad = g
                adam.step()
                losses.append(loss)
                if next_path is None:
                    mixed.weights = {k: v.detach() for k, v in to_weights(alphas).items()}
                    return list(self._params.values())
                arch = next_path()
                self.supernet.set_path(arch)
                return self.path_params(arch)

            def make_runner() -> StepRunner:
                return StepRunner(
                    mixed if next_path is None else self.supernet,
                    cast(torch.optim.SGD, self.optimizer),
                    transform,
                    self._settings(),
                    self.device,
                    data_parallel=True,
                )

            stats = self._train(
                steps, before_step, lambda: list(self._params.values()), make_runner=make_runner, batches=train
            )
        report_state = {
            "choices": state["choices"],
            "alphas": {n: a.detach().cpu().clone() for n, a in alphas.items()},
            "adam": to_cpu(adam.state_dict()),
        }
        metrics = {
            "train_loss": stats.mean_loss,
            "arch_val_loss": float(sum(losses) / max(1, len(losses))),
            "steps": float(steps),
            **self._shot_metrics(),
        }
        return WorkReport(
            Cost(time.perf_counter() - start, steps / spe), metrics, state=report_state, notes=list(self._notes)
        )

    # ---- BranchImportance (NSE) ------------------------------------------------------------------
    def train_importance(
        self, steps: int, state: dict[str, Any], settings: ImportanceSettings, optimizer: AlphaOptimizer
    ) -> WorkReport:
        """One piece of an NSE round (evaluators/branch_importance.py) on this supernet."""
        with deterministic_mode(resolve_deterministic(self.options, self.device)):
            self._build()
            return train_importance(self, steps, state, settings, optimizer)

    def _alpha_setup(
        self, state: dict[str, Any], optimizer: AlphaOptimizer
    ) -> tuple[dict[str, torch.Tensor], torch.optim.Adam, Any]:
        """Leaf alphas on the device, their Adam (state restored), and alphas -> mixed-forward weights:
        softmax over the strategy's choices, placed at those choices' positions in each decision of the
        supernet's space (zero for choices outside the strategy's space, e.g. dropped by ABS)."""
        decisions = {d.name: d.choices for d in self.space.decisions}
        choices = {n: tuple(c) for n, c in state["choices"].items()}
        unknown = [n for n in choices if n not in decisions]
        if unknown or set(choices) != set(decisions):
            raise NotSupported(
                f"architecture weights must cover exactly the space's decisions; got "
                f"{sorted(set(choices) ^ set(decisions))[:3]}"
            )
        positions = {
            n: torch.tensor([decisions[n].index(c) for c in cs], device=self.device) for n, cs in choices.items()
        }
        sizes = {n: len(decisions[n]) for n in decisions}
        alphas = {
            n: state["alphas"][n].detach().to(self.device, torch.float32).clone().requires_grad_(True)
            for n in decisions
        }
        adam = torch.optim.Adam(
            list(alphas.values()), lr=optimizer.lr, betas=optimizer.betas, weight_decay=optimizer.weight_decay
        )
        if state.get("adam"):
            adam.load_state_dict(state["adam"])

        def to_weights(a: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            out = {}
            for n, logits in a.items():
                full = torch.zeros(sizes[n], device=logits.device, dtype=logits.dtype)
                out[n] = full.index_put((positions[n],), torch.softmax(logits, dim=-1))
            return out

        return alphas, adam, to_weights

    def _momentum_buffers(self) -> dict[str, torch.Tensor]:
        """SGD momentum buffers by parameter name as MixedForward names them ("net." + name)."""
        state = cast(torch.optim.SGD, self.optimizer).state
        return {
            f"net.{n}": state[p]["momentum_buffer"]
            for n, p in self._params.items()
            if "momentum_buffer" in state.get(p, {})
        }

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
                    generator = device_generator(self.device)
                    size = recalibration.batch_size or o.batch_size
                    with keep_unused_statistics(self.supernet, arch):  # hook: sliced BatchNorms (evaluators/sliced.py)
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
            child = self.space.build(arch, batches.spec)
            params_n, macs = count_parameters(child), count_macs(child, batches.spec.input_shape)
        return Result("ok", {"val_acc": val_acc, "val_loss": val_loss}, params=params_n, macs=macs, cost=cost)

    @torch.no_grad()
    def path_angles(self, archs: Sequence[Arch]) -> list[float]:
        """ABS angles of the paths, computed on the device and read back once."""
        angles = [angle(*self.path_vectors(a)) for a in archs]
        return torch.stack(angles).cpu().tolist() if angles else []

    def save_base_weights(self) -> None:
        self._build()
        self._set_base({name: p.detach().clone() for name, p in self._params.items()})

    @torch.no_grad()
    def path_vectors(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        self._build()
        base, current = [], []
        flat = self._flat
        for term in self.supernet.angle_terms(arch):
            if isinstance(term, ParamSlice):  # hook: part of a parameter (evaluators/sliced.py)
                part_base, part_now = slice_vectors(term, self.base, self._params)
                base.append(part_base)
                current.append(part_now)
            elif isinstance(term, str):
                entry = flat.get(term)
                if entry is None:
                    raise NotSupported(f"angle term names unknown parameter {term!r}")
                base.append(entry[0])
                current.append(entry[1] if entry[1] is not None else self._params[term].detach().reshape(-1))
            else:
                const = term.detach().reshape(-1).to(self.device, torch.float32)
                base.append(const)
                current.append(const)
        if not base:
            empty = torch.zeros(0, device=self.device)
            return empty, empty.clone()
        return torch.cat(base), torch.cat(current)

    def _set_base(self, base: dict[str, torch.Tensor]) -> None:
        """Store the base weights, plus flat views of base and current weights for `path_vectors`
        (a view of a contiguous parameter follows its in-place updates; others are flattened per call)."""
        self.base = base
        self._flat = {
            name: (base[name].reshape(-1), p.detach().view(-1) if p.is_contiguous() else None)
            for name, p in self._params.items()
        }

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

    def _few_shot_state(self) -> dict[str, Any] | None:
        if not isinstance(self.supernet, FewShotSupernet):
            return None
        return {
            "layout": self.supernet.layout(),
            "splits_done": self.splits_done,
            "splits": list(self.splits),
            "split_epochs": sorted(self.options.split_epochs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state.get("built"):
            return
        self._build()
        few_shot = state.get("few_shot")
        if few_shot is not None:
            if not isinstance(self.supernet, FewShotSupernet):
                raise ConfigError(
                    "the checkpoint holds a few-shot supernet; resume with the evaluator.few_shot it was started with"
                )
            if [float(e) for e in few_shot["split_epochs"]] != sorted(self.options.split_epochs):
                raise ConfigError(
                    f"the checkpoint's supernet splits at epochs {few_shot['split_epochs']}; resume with that "
                    f"evaluator.split_epochs"
                )
            self.supernet.restore_layout(few_shot["layout"])
            self._new_optimizer()
            self.splits_done, self.splits = int(few_shot["splits_done"]), list(few_shot["splits"])
        elif isinstance(self.supernet, FewShotSupernet):
            raise ConfigError("the checkpoint holds a one-shot supernet; resume without evaluator.few_shot")
        self.supernet.load_state_dict(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[union-attr]
        self.step = int(state["step"])
        self._set_base({k: v.to(self.device) for k, v in state["base"].items()})

    def close(self) -> None:
        self.supernet = self.optimizer = self._runner = None
        self._params, self.base, self._flat = {}, {}, {}
        free_memory(self.device)


def _shifted(per_step: Callable[..., Any], offset: int) -> Callable[..., Any]:
    """A per-step callback for a piece of a longer run: step i of the piece is step offset + i of the run."""
    return lambda i, *rest: per_step(offset + i, *rest)


def _loss_of_logits(out: Any, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a supernet's logits (the first output when it also returns auxiliary logits)."""
    logits = out[0] if isinstance(out, tuple) else out
    return torch.nn.functional.cross_entropy(logits.float(), y)


def _no_supernet(space: SearchSpace) -> str:
    return (
        f"space {space.name!r} has no weight-sharing supernet; spaces with one: {', '.join(supernet_spaces())} "
        f"(a space offers one by implementing build_supernet(data) and setting supports_supernet = True on its "
        f"class, as nasframe.nn.ModelSpace does; or evaluate each architecture on its own with short_train and a "
        f"multi-trial strategy)"
    )


def supernet_spaces() -> list[str]:
    """Installed spaces that build a weight-sharing supernet (for messages)."""
    from nasframe.registry import spaces

    found = []
    for name in spaces.installed():
        try:
            if spaces.get(name).supports_supernet:
                found.append(name)
        except NasframeError:  # a broken third-party space must not hide the message being built
            continue
    return found
