"""ABS: shrink the search space by the angle metric, then hand it to another strategy.

Hu et al., "Angle-based Search Space Shrinking for Neural Architecture Search" (ECCV 2020),
reference section 2. A weight-sharing supernet is trained by uniform single-path sampling over
the current space; each operator (decision, choice) is scored by the mean angle its child models
have turned away from the base weights (`angle.py`), and the lowest-scored operators are dropped.
When the space is small enough, the shrunk space (`space.restrict`, nothing special) goes to a
base strategy named by option, which searches it on the remaining budget and whose results ABS
returns.

ABS never touches the supernet itself: it requests the work through the one-shot protocol and
the runner executes it. A shrinking step is: train the shared weights with uniform paths of the
current space (`TrainShared`), measure the angles of the sampled children (`MeasureAngles`), drop
the lowest-scored operators (and, once, replace the base weights: `SaveBaseWeights`), then
propose one uniform architecture of the new space, so every step is also one evaluation in
history.jsonl, carrying the step's drops in its `strategy` metrics. The runner checkpoints
between those pieces, so a killed shrinking run resumes exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options, option
from nasframe.core.capabilities import AngleMetric, BNRecalibration, Capability
from nasframe.core.evaluator import Result, WorkReport
from nasframe.core.paths import UniformPaths
from nasframe.core.registry import register_strategy, strategies
from nasframe.core.requests import MeasureAngles, Request, SaveBaseWeights, ScoreShared, TrainShared
from nasframe.core.space import Arch, Choice, Decision, SearchSpace
from nasframe.core.strategy import Strategy, arch_from_pairs, arch_to_pairs
from nasframe.strategies.angle import drop_global, drop_per_decision, operator_scores, recount, sample_children

Schedule = Literal["auto", "per_decision", "global"]


@dataclass(frozen=True)
class AbsOptions:
    base: str = option("random", "strategy that searches the shrunk space (any registered strategy but abs)")
    base_options: dict[str, Any] = option(
        default_factory=dict, help="options of the base strategy (its own `strategy:` keys)"
    )
    schedule: Schedule = option(
        "auto",
        "per_decision: drop every decision's lowest operator per step (DARTS, FairNAS); global: drop "
        "the drop_per_step lowest operators overall (SPOS, ProxylessNAS); auto: per_decision when all "
        "decisions offer the same choices, else global",
    )
    samples_per_operator: int = option(1000, "distinct child models averaged into an operator's score", min=1)
    drop_per_step: int = option(7, "global schedule: operators dropped per step (K)", min=1)
    min_choices: int = option(2, "per_decision schedule: choices every decision keeps (global keeps 1)", min=1)
    target_size: int = option(
        1_000_000, "stop once the space holds at most this many architectures (checked before each step)", min=1
    )
    max_steps: int | None = option(None, "stop after this many steps (null: no limit)", min=0)
    warmup_epochs: float = option(
        100.0, "uniform supernet training before the first step (reference: SPOS 100, DARTS 150)", min=0
    )
    epochs_between_steps: float = option(
        5.0, "uniform supernet training before each later step (reference: SPOS 5, DARTS 20)", min=0
    )
    base_after_epochs: float = option(
        0.0,
        "uniform training before the base weights are saved (0: the "
        "initialisation, as SPOS; DARTS saved them after its warm-up)",
        min=0,
    )
    reset_base: bool = option(
        True,
        "replace the base weights by the current ones once, after the step that "
        "takes the dropped operators above reset_base_after (reference SPOS, FairNAS); "
        "false: never (reference DARTS)",
    )
    reset_base_after: int = option(50, "dropped operators that trigger the one base replacement", min=0)
    final_epochs: float = option(
        0.0, "uniform training on the shrunk space before the base strategy starts (reference SPOS: 100)", min=0
    )
    score_bn_batches: int = option(
        10,
        "each step's proposal is scored with the shared weights (no training) after re-estimating its "
        "BatchNorm statistics over this many train batches (cumulative average; 0: off)",
        min=0,
    )


def resolve_schedule(schedule: str, decisions: Sequence[Decision]) -> str:
    """`auto` is per_decision when every decision offers the same choices (DARTS edges, FairNAS
    layers), else global (SPOS / ProxylessNAS, where only some layers offer identity)."""
    if schedule != "auto":
        return schedule
    return "per_decision" if len({d.choices for d in decisions}) <= 1 else "global"


#: what ABS does next (`_todo`), in order: the base weights, then steps, then the base strategy
_TRAIN_BASE, _SAVE_BASE, _STEP, _MEASURE, _RESET, _PROPOSE, _TRAIN_FINAL, _START_BASE, _BASE = (
    "train_base",
    "save_base",
    "step",
    "measure",
    "reset",
    "propose",
    "train_final",
    "start_base",
    "base",
)
#: waiting for the outcome of the request just made
_WAIT = "wait"


def _base_class(name: str) -> type[Strategy]:
    cls = strategies.get(name)
    if issubclass(cls, AbsShrinking):
        raise ConfigError(f"strategy.base: {name!r} is ABS itself; choose another strategy, e.g. random or mdenas")
    return cls


@register_strategy("abs")
class AbsShrinking(Strategy[AbsOptions]):
    """ABS: angle-based search-space shrinking on a supernet, then a base strategy on the shrunk space."""

    Options = AbsOptions
    requires = (AngleMetric,)

    def __init__(self, space: SearchSpace, options: AbsOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        o = self.options
        self._base_cls = _base_class(o.base)
        self._base_options = build_options(self._base_cls.Options, o.base_options, "strategy.base_options")
        self.schedule = resolve_schedule(o.schedule, space.decisions)
        self.current = space
        self._base: Strategy | None = None
        self._base_seed: int | None = None
        self._base_best: tuple[Arch, float] | None = None  # the best result told to the base strategy
        self._todo = _TRAIN_BASE
        self.step = 0
        self.base_saved = False
        self.base_reset = False
        self.dropped_total = 0
        self.supernet_epochs = 0.0
        self.steps: list[dict[str, Any]] = []  # one record per step: dropped operators, size, scores
        self._last_scores: dict[str, dict[Choice, float]] = {}
        self._report: dict[str, Any] | None = None

    @classmethod
    def required_capabilities(cls, options: AbsOptions) -> tuple[type[Capability], ...]:
        """The angle metric, plus whatever the base strategy needs."""
        base = _base_class(options.base)
        base_options = build_options(base.Options, options.base_options, "strategy.base_options")
        return tuple(dict.fromkeys(cls.requires + tuple(base.required_capabilities(base_options))))

    @property
    def base_strategy(self) -> Strategy | None:
        """The base strategy, once shrinking has ended."""
        return self._base

    @property
    def shrinking(self) -> bool:
        return self._base is None

    @property
    def phase(self) -> str:
        return f"abs step {self.step + 1}" if self._base is None else f"abs base: {self._base.phase}"

    def plan(self) -> str:
        o = self.options
        return (
            f"{o.warmup_epochs:g} warm-up epochs, then steps of {o.epochs_between_steps:g} epochs + "
            f"{o.samples_per_operator} children per operator until <= {o.target_size:,} architectures remain, "
            f"then {o.base!r} on the shrunk space. For a quick CPU run: --set strategy.warmup_epochs=1 "
            f"--set strategy.epochs_between_steps=0.2 --set strategy.samples_per_operator=8"
        )

    def planned_training_epochs(self) -> float:
        """At least the training before the base weights, the warm-up and the final training."""
        o = self.options
        return o.base_after_epochs + o.warmup_epochs + o.final_epochs

    # ---- ask / tell --------------------------------------------------------------------------------
    def ask(self) -> list[Arch | Request]:
        """The next piece of shrinking (training, angle measurement, a base replacement, the step's
        proposal), then the base strategy's proposals."""
        o = self.options
        while True:
            todo = self._todo
            if todo == _TRAIN_BASE:
                self._todo = _SAVE_BASE
                if o.base_after_epochs > 0:
                    return [self._training(o.base_after_epochs, "abs: training before the base weights")]
            elif todo == _SAVE_BASE:
                self._todo = _WAIT
                return [SaveBaseWeights(phase="abs: saving the base weights")]
            elif todo == _STEP:
                if self.finished():
                    self._todo = _TRAIN_FINAL
                    continue
                self._todo = _MEASURE
                epochs = o.warmup_epochs if self.step == 0 else o.epochs_between_steps
                if epochs > 0:
                    label = "abs: warm-up" if self.step == 0 else f"abs: training before step {self.step + 1}"
                    return [self._training(epochs, label)]
            elif todo == _MEASURE:
                decisions = self.current.decisions
                sample = sample_children(decisions, self._scored(), o.samples_per_operator, self.rng)
                self._todo = _WAIT
                return [MeasureAngles(tuple(sample.children), phase=f"abs: scoring step {self.step + 1}")]
            elif todo == _RESET:
                self._todo = _WAIT
                return [SaveBaseWeights(phase="abs: replacing the base weights")]
            elif todo == _PROPOSE:
                proposal = ScoreShared(self.current.sample(self.rng), self._recalibration(), phase="abs: step proposal")
                self._todo = _WAIT
                return [proposal]
            elif todo == _TRAIN_FINAL:
                self._todo = _START_BASE
                if o.final_epochs > 0:
                    return [self._training(o.final_epochs, "abs: training the shrunk space")]
            elif todo == _START_BASE:
                self._base_seed = int(self.rng.integers(2**31 - 1))
                self._base = self._make_base(self._base_seed)
                self._todo = _BASE
            elif todo == _BASE:
                return list(self._require_base().ask())
            else:
                raise RuntimeError(f"abs: asked while waiting for an outcome ({todo})")

    def _recalibration(self) -> BNRecalibration | None:
        return BNRecalibration.cumulative(self.options.score_bn_batches)

    def final_evaluation(self, arch: Arch) -> Arch | Request:
        """The base strategy's way of evaluating; before it exists, a score like the step proposals'."""
        if self._base is not None:
            return self._base.final_evaluation(arch)
        return ScoreShared(arch, self._recalibration(), phase="abs: final score")

    def _training(self, epochs: float, label: str) -> TrainShared:
        return TrainShared(float(epochs), UniformPaths.over(self.current), phase=label)

    def _scored(self) -> list[str]:
        return [d.name for d in self.current.decisions if len(d.choices) > self._floor()]

    def tell(self, arch: Arch, result: Result) -> None:
        if self._base is not None:
            self._base.tell(arch, result)
            acc = result.accuracy
            if acc is not None and (self._base_best is None or acc > self._base_best[1]):
                self._base_best = (arch, acc)
            self._report = None
            return
        if result.status == "infeasible":  # the step's proposal broke the run's constraints: draw another
            self._todo = _PROPOSE
            return
        self._report = self.steps[-1] if self.steps else None
        self._todo = _STEP

    def tell_work(self, request: Request, report: WorkReport) -> None:
        if self._base is not None and self._todo == _BASE:
            self._base.tell_work(request, report)
            return
        if isinstance(request, TrainShared):
            self.supernet_epochs += request.epochs
        elif isinstance(request, SaveBaseWeights):
            if not self.base_saved:
                self.base_saved = True
                self._todo = _STEP
            else:
                self._todo = _PROPOSE
        elif isinstance(request, MeasureAngles):
            self._drop(request.archs, np.asarray(report.values if report.values is not None else [], dtype=float))

    @property
    def done(self) -> bool:
        return self._base is not None and self._base.done

    # ---- shrinking -----------------------------------------------------------------------------------
    def _floor(self) -> int:
        """Choices a decision keeps at least under the schedule."""
        return self.options.min_choices if self.schedule == "per_decision" else 1

    def finished(self) -> bool:
        """Whether the next step would not run (checked before each step, as the reference does)."""
        o = self.options
        if o.max_steps is not None and self.step >= o.max_steps:
            return True
        if self.current.size() <= o.target_size:
            return True
        return all(len(d.choices) <= self._floor() for d in self.current.decisions)

    def _drop(self, children: tuple[Arch, ...], values: np.ndarray) -> None:
        """Score the operators from the children's angles, drop the lowest, and restrict the space."""
        o = self.options
        decisions = self.current.decisions
        sample = recount(decisions, self._scored(), children, o.samples_per_operator)
        scores, counts = operator_scores(sample, values)
        if self.schedule == "per_decision":
            dropped = drop_per_decision(sample.operators, scores, decisions, o.min_choices)
        else:
            dropped = drop_global(sample.operators, scores, decisions, o.drop_per_step)
        by_decision: dict[str, list[Choice]] = {}
        for name, choice in dropped:
            by_decision.setdefault(name, []).append(choice)
        self.current = self.current.restrict(
            {n: [c for c in self.current.decision(n).choices if c not in gone] for n, gone in by_decision.items()}
        )
        self.step += 1
        self.dropped_total += len(dropped)
        reset = o.reset_base and not self.base_reset and self.dropped_total > o.reset_base_after
        if reset:
            self.base_reset = True
        table: dict[str, dict[Choice, float]] = {}
        for (name, choice), score in zip(sample.operators, scores):
            table.setdefault(name, {})[choice] = float(score)
        self._last_scores.update(table)
        self.steps.append(
            {
                "step": self.step,
                "dropped": {n: list(c) for n, c in by_decision.items()},
                "dropped_count": len(dropped),
                "log10_size": self.current.log10_size(),
                "children": len(sample.children),
                "mean_angle": float(values.mean()) if values.size else None,
                "base_reset": reset,
                "scores": {n: [[c, sc] for c, sc in row.items()] for n, row in table.items()},
                "min_count": int(counts.min()) if counts.size else 0,
            }
        )
        self._todo = _RESET if reset else _PROPOSE

    def _require_base(self) -> Strategy:
        if self._base is None:
            raise RuntimeError("abs: the base strategy exists only once shrinking has ended")
        return self._base

    def _make_base(self, seed: int) -> Strategy:
        return self._base_cls(self.current, self._base_options, seed=seed)

    # ---- results -----------------------------------------------------------------------------------
    def final(self) -> Arch | None:
        """The base strategy's answer, else the best architecture it evaluated (both inside the shrunk
        space); None before the base strategy exists (the runner then returns its best evaluated)."""
        if self._base is None:
            return None
        found = self._base.final()
        if found is not None:
            return found
        return self._base_best[0] if self._base_best is not None else None

    def restriction(self) -> dict[str, list[Choice]]:
        """The remaining choices of every decision."""
        return {d.name: list(d.choices) for d in self.current.decisions}

    def final_weights(self) -> dict[str, list[float]]:
        """Per decision of the unshrunk space: 0 for dropped choices; for kept ones the base strategy's
        weights if it has any, else their latest angle scores (normalised), else uniform."""
        base_weights: Mapping[str, Sequence[float]] = {}
        if self._base is not None:
            base_weights = self._base.final_weights() or {}
        out = {}
        for d in self.space.decisions:
            kept = self.current.decision(d.name).choices
            if d.name in base_weights:
                w = dict(zip(kept, map(float, base_weights[d.name])))
            else:
                scores = self._last_scores.get(d.name, {})
                raw = [scores.get(c, float("nan")) for c in kept]
                total = sum(raw)
                if len(kept) > 1 and np.isfinite(total) and total > 0:
                    w = {c: s / total for c, s in zip(kept, raw)}
                else:
                    w = {c: 1.0 / len(kept) for c in kept}
            out[d.name] = [w.get(c, 0.0) for c in d.choices]
        return out

    def metrics(self) -> dict[str, Any]:
        """Every line: step count, log10 size, supernet epochs. A step's line adds its drops, the
        remaining choices and the operator scores; the base strategy's lines add its own metrics."""
        out: dict[str, Any] = {
            "abs_steps": self.step,
            "abs_log10_size": self.current.log10_size(),
            "abs_supernet_epochs": self.supernet_epochs,
        }
        if self._report is not None:
            r = self._report
            out.update(
                {
                    "abs_dropped": r["dropped"],
                    "abs_dropped_count": r["dropped_count"],
                    "abs_remaining": self.restriction(),
                    "abs_remaining_counts": [len(d.choices) for d in self.current.decisions],
                    "abs_scores": {n: {str(c): s for c, s in row} for n, row in r["scores"].items()},
                    "abs_mean_angle": r["mean_angle"],
                    "abs_children": r["children"],
                }
            )
        if self._base is not None:
            out.update(self._base.metrics())
        return out

    # ---- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        best = self._base_best
        return {
            **super().state_dict(),
            "abs": {
                "schedule": self.schedule,
                "todo": self._todo,
                "step": self.step,
                "base_saved": self.base_saved,
                "base_reset": self.base_reset,
                "dropped_total": self.dropped_total,
                "supernet_epochs": self.supernet_epochs,
                "restriction": [[d.name, list(d.choices)] for d in self.current.decisions],
                "steps": self.steps,
                "last_scores": [[n, [[c, sc] for c, sc in row.items()]] for n, row in self._last_scores.items()],
                "base_seed": self._base_seed,
                "base_best": None if best is None else [arch_to_pairs(best[0]), best[1]],
                "report": self._report is not None,
            },
            "base": self._base.state_dict() if self._base is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        a = state["abs"]
        names = [d.name for d in self.space.decisions]
        saved = [n for n, _ in a["restriction"]]
        if saved != names or a["schedule"] != self.schedule:
            raise ConfigError(
                "abs: checkpoint was saved for a space with other decisions or another schedule; "
                "resume it with the options it was started with"
            )
        super().load_state_dict(state)
        self._todo = str(a["todo"])
        self.step, self.base_saved, self.base_reset = int(a["step"]), bool(a["base_saved"]), bool(a["base_reset"])
        self.dropped_total, self.supernet_epochs = int(a["dropped_total"]), float(a["supernet_epochs"])
        self.current = self.space.restrict({n: list(c) for n, c in a["restriction"]})
        self.steps = list(a["steps"])
        self._last_scores = {n: {c: float(sc) for c, sc in row} for n, row in a["last_scores"]}
        self._base_seed = a["base_seed"]
        best = a["base_best"]
        self._base_best = None if best is None else (arch_from_pairs(best[0]), float(best[1]))  # type: ignore
        self._report = self.steps[-1] if a["report"] and self.steps else None
        self._base = None
        if state.get("base") is not None:
            self._base = self._make_base(int(self._base_seed))
            self._base.load_state_dict(state["base"])
