"""The one-shot protocol: weight-sharing work a strategy requests and the runner executes.

A strategy's `ask()` returns architectures and `Request`s. A bare `Arch` means "evaluate it with
the run's evaluator" (`Evaluate` says the same explicitly). The other requests ask for work on
shared weights: train them with paths drawn from a `PathSampler` (`TrainShared`), score a path
with the weights as they are (`ScoreShared`), save base weights and measure ABS angles
(`SaveBaseWeights`, `MeasureAngles`). The runner executes every request: it seeds it from (run
seed, work index), charges its cost to the budget, logs it, checkpoints between pieces (a long
`TrainShared` is cut into chunks of at most `run.work_chunk_epochs`), and tells the outcome back:
evaluations and scores through `Strategy.tell(arch, result)`, work through
`Strategy.tell_work(request, report)`. So a strategy never holds an evaluator, never touches a
global RNG and never writes files, and a one-shot search resumes exactly after a kill in any phase.

Every request names the evaluator capability it needs (`needs`); a strategy lists those in its
`requires`, and the runner refuses a request whose capability the strategy did not declare.
Requests and samplers are plain data (`to_state` / `request_from_state`), so pending work is
part of the checkpoint.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nasframe.errors import ConfigError, RunDirError
from nasframe.evaluator import (
    AlphaOptimizer,
    AngleMetric,
    BNRecalibration,
    BranchImportance,
    Budget,
    Capability,
    Differentiable,
    Distillation,
    ImportanceSettings,
    SharedWeights,
)
from nasframe.space import Arch, Choice, SearchSpace

if TYPE_CHECKING:
    from nasframe.costs import ArchCosts

Restriction = tuple[tuple[str, tuple[Choice, ...]], ...]


def _pairs(arch: Arch) -> list[list[Any]]:
    return [[k, v] for k, v in arch.items()]


def _arch(pairs: Sequence[Sequence[Any]]) -> Arch:
    return Arch([(str(k), v) for k, v in pairs])


def restriction_of(space: SearchSpace) -> Restriction | None:
    """The restricted decisions of `space` as plain data (None for an unrestricted space)."""
    allowed = space.restriction()
    if not allowed:
        return None
    return tuple((name, tuple(choices)) for name, choices in allowed.items())


def _restriction_state(r: Restriction | None) -> list[list[Any]] | None:
    return None if r is None else [[n, list(c)] for n, c in r]


def _restriction_from(state: Any) -> Restriction | None:
    return None if state is None else tuple((str(n), tuple(c)) for n, c in state)


# ---- path samplers -----------------------------------------------------------------------------
class PathSampler(ABC):
    """How `TrainShared` draws the path of each training step (plain data; the runner binds it)."""

    kind: ClassVar[str]
    #: whether `bind` needs the run's parameter/MAC counts
    needs_costs: ClassVar[bool] = False

    @abstractmethod
    def bind(self, space: SearchSpace, costs: ArchCosts | None) -> Callable[[np.random.Generator], Arch]:
        """A draw function over `space` (the run's full space); called once per request."""

    @abstractmethod
    def to_state(self) -> dict[str, Any]:
        """Plain data for checkpoints; `sampler_from_state` reverses it."""


def _view(space: SearchSpace, restriction: Restriction | None) -> SearchSpace:
    return space.restrict({n: list(c) for n, c in restriction}) if restriction else space


@dataclass(frozen=True)
class UniformPaths(PathSampler):
    """One uniform choice per decision, over the space or a restriction of it (SPOS, ABS)."""

    restriction: Restriction | None = None
    kind: ClassVar[str] = "uniform"

    @classmethod
    def over(cls, space: SearchSpace) -> UniformPaths:
        """Uniform over `space` as the strategy sees it (keeping any restriction)."""
        return cls(restriction_of(space))

    def bind(self, space: SearchSpace, costs: ArchCosts | None) -> Callable[[np.random.Generator], Arch]:
        return _view(space, self.restriction).sample

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "restriction": _restriction_state(self.restriction)}


@dataclass(frozen=True)
class BinnedPaths(PathSampler):
    """SPOS' released sampler: pick a bin of a cost uniformly, then draw uniform paths until one
    falls in it (at most `max_draws`); if none does, a fresh unconstrained uniform path is used.

    Bins are consecutive intervals between `edges` ([e0, e1), [e1, e2), ..., the last one closed);
    SPOS used MACs bins of 10M from 290M to 360M. The cost is the stand-alone network's at the
    run's input size.
    """

    edges: tuple[float, ...] = ()
    metric: str = "macs"
    max_draws: int = 500
    restriction: Restriction | None = None
    kind: ClassVar[str] = "binned"
    needs_costs: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if len(self.edges) < 2 or any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ConfigError(f"binned paths: bin edges must be at least two increasing numbers, got {self.edges}")
        if self.metric not in ("macs", "params"):
            raise ConfigError(f"binned paths: metric {self.metric!r} is not allowed; choose macs or params")
        if self.max_draws < 1:
            raise ConfigError("binned paths: max_draws must be at least 1")

    def bind(self, space: SearchSpace, costs: ArchCosts | None) -> Callable[[np.random.Generator], Arch]:
        if costs is None or not costs.prepare_table():
            raise ConfigError(
                f"binned paths need counts that add up over decisions, so that hundreds of draws per step stay "
                f"cheap; space {space.name!r} does not declare additive_costs: use uniform paths"
            )
        view = _view(space, self.restriction)
        edges, last = self.edges, len(self.edges) - 2
        measure = costs.macs if self.metric == "macs" else costs.params

        def draw(rng: np.random.Generator) -> Arch:
            b = int(rng.integers(last + 1))
            lo, hi = edges[b], edges[b + 1]
            for _ in range(self.max_draws):
                arch = view.sample(rng)
                value = measure(arch)
                if lo <= value < hi or (b == last and value == hi):
                    return arch
            return view.sample(rng)

        return draw

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "edges": list(self.edges),
            "metric": self.metric,
            "max_draws": self.max_draws,
            "restriction": _restriction_state(self.restriction),
        }


@dataclass(frozen=True)
class CategoricalPaths(PathSampler):
    """One independent categorical draw per decision from probabilities a strategy holds
    (aligned with each decision's choices in the full space; zeros exclude a choice)."""

    probabilities: tuple[tuple[str, tuple[float, ...]], ...] = ()
    kind: ClassVar[str] = "categorical"

    @classmethod
    def of(cls, probabilities: Mapping[str, Sequence[float]]) -> CategoricalPaths:
        return cls(tuple((n, tuple(float(p) for p in ps)) for n, ps in probabilities.items()))

    def bind(self, space: SearchSpace, costs: ArchCosts | None) -> Callable[[np.random.Generator], Arch]:
        table = dict(self.probabilities)
        decisions = space.decisions
        rows = []
        for d in decisions:
            p = np.asarray(table.get(d.name, [1.0] * len(d.choices)), dtype=np.float64)
            if p.shape != (len(d.choices),) or not np.all(np.isfinite(p)) or p.min() < 0 or p.sum() <= 0:
                raise ConfigError(
                    f"categorical paths: probabilities of {d.name} must be {len(d.choices)} "
                    f"non-negative numbers with a positive sum"
                )
            rows.append(np.cumsum(p / p.sum()))

        def draw(rng: np.random.Generator) -> Arch:
            u = rng.random(len(rows))
            return Arch(
                [
                    (d.name, d.choices[min(int(np.searchsorted(c, x, side="right")), len(d.choices) - 1)])
                    for d, c, x in zip(decisions, rows, u)
                ]
            )

        return draw

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "probabilities": [[n, list(p)] for n, p in self.probabilities]}


def sampler_from_state(state: Mapping[str, Any]) -> PathSampler:
    kind = state.get("kind")
    if kind == UniformPaths.kind:
        return UniformPaths(_restriction_from(state["restriction"]))
    if kind == BinnedPaths.kind:
        return BinnedPaths(
            tuple(float(e) for e in state["edges"]),
            str(state["metric"]),
            int(state["max_draws"]),
            _restriction_from(state["restriction"]),
        )
    if kind == CategoricalPaths.kind:
        return CategoricalPaths(tuple((str(n), tuple(float(x) for x in p)) for n, p in state["probabilities"]))
    raise RunDirError(f"checkpoint holds an unknown path sampler {kind!r}")


# ---- requests ----------------------------------------------------------------------------------
class Request(ABC):
    """Something a strategy asks the runner to do. Subclasses are frozen dataclasses."""

    kind: ClassVar[str]
    #: the evaluator capability the request needs (None: any evaluator)
    needs: ClassVar[type[Capability] | None] = None
    #: whether the outcome is an evaluation (a history line, told with `tell`) rather than work
    is_evaluation: ClassVar[bool] = False
    phase: str

    @abstractmethod
    def to_state(self) -> dict[str, Any]:
        """Plain data for checkpoints; `request_from_state` reverses it."""

    def describe(self) -> str:
        """A short label for logs and the progress bar."""
        return self.phase


@dataclass(frozen=True)
class Evaluate(Request):
    """Evaluate `arch` with the run's evaluator (what a bare `Arch` from `ask` means)."""

    arch: Arch
    budget: Budget | None = None
    phase: str = "evaluation"
    kind: ClassVar[str] = "evaluate"
    is_evaluation: ClassVar[bool] = True

    def to_state(self) -> dict[str, Any]:
        budget = None if self.budget is None else {"epochs": self.budget.epochs, "steps": self.budget.steps}
        return {"kind": self.kind, "arch": _pairs(self.arch), "budget": budget, "phase": self.phase}


@dataclass(frozen=True)
class ScoreShared(Request):
    """Score `arch` with the shared weights as they are, after BatchNorm recalibration (SPOS)."""

    arch: Arch
    recalibration: BNRecalibration | None = None
    phase: str = "scoring"
    kind: ClassVar[str] = "score_shared"
    needs: ClassVar[type[Capability] | None] = SharedWeights
    is_evaluation: ClassVar[bool] = True

    def to_state(self) -> dict[str, Any]:
        r = self.recalibration
        recal = None if r is None else {"batches": r.batches, "momentum": r.momentum, "batch_size": r.batch_size}
        return {"kind": self.kind, "arch": _pairs(self.arch), "recalibration": recal, "phase": self.phase}


@dataclass(frozen=True)
class TrainShared(Request):
    """Train the shared weights for `epochs`, one path per step drawn from `paths`."""

    epochs: float
    paths: PathSampler = field(default_factory=UniformPaths)
    phase: str = "supernet training"
    kind: ClassVar[str] = "train_shared"
    needs: ClassVar[type[Capability] | None] = SharedWeights

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ConfigError(f"TrainShared: epochs must be a positive number, got {self.epochs}")

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "epochs": self.epochs, "paths": self.paths.to_state(), "phase": self.phase}

    def describe(self) -> str:
        return f"{self.phase} ({self.epochs:g} epochs)"


@dataclass(frozen=True)
class TrainDistilled(TrainShared):
    """Train the shared weights like `TrainShared`, each step's student distilled from a teacher path
    that `board` picks, and offer each student to the board (Cream). `board` is a
    `nasframe.board.PrioritizedBoard` as plain data (`to_state`); the report's `state` gives it back
    updated, and the runner threads it from piece to piece."""

    board: dict[str, Any] = field(default_factory=lambda: {"size": 10, "acc_gap": 5.0, "entries": []})
    label_smoothing: float = 0.1
    phase: str = "distilled supernet training"
    kind: ClassVar[str] = "train_distilled"
    needs: ClassVar[type[Capability] | None] = Distillation

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 <= self.label_smoothing < 1):
            raise ConfigError(f"TrainDistilled: label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_state(self) -> dict[str, Any]:
        return {**super().to_state(), "board": self.board, "label_smoothing": self.label_smoothing}


@dataclass(frozen=True)
class TrainMixed(Request):
    """Bilevel training for `epochs` (DARTS, SETN): each step, an architecture step on search-val, then a
    shared-weight step on search-train, through the mixed forward (`paths` None) or on the single path
    `paths` draws. `state` carries the strategy's architecture weights and their optimizer's state
    ({"choices", "alphas", "adam"}, see `Differentiable.train_mixed`); the report's `state` gives them
    back updated, and the runner threads it from piece to piece."""

    epochs: float
    state: dict[str, Any]
    order: int = 1
    optimizer: AlphaOptimizer = field(default_factory=AlphaOptimizer)
    paths: PathSampler | None = None
    phase: str = "bilevel training"
    kind: ClassVar[str] = "train_mixed"
    needs: ClassVar[type[Capability] | None] = Differentiable

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ConfigError(f"TrainMixed: epochs must be a positive number, got {self.epochs}")
        if self.order not in (1, 2):
            raise ConfigError(f"TrainMixed: order must be 1 or 2, got {self.order}")

    def to_state(self) -> dict[str, Any]:
        o = self.optimizer
        return {
            "kind": self.kind,
            "epochs": self.epochs,
            "state": self.state,
            "order": self.order,
            "optimizer": {"lr": o.lr, "betas": list(o.betas), "weight_decay": o.weight_decay},
            "paths": None if self.paths is None else self.paths.to_state(),
            "phase": self.phase,
        }

    def describe(self) -> str:
        return f"{self.phase} ({self.epochs:g} epochs)"


@dataclass(frozen=True)
class TrainImportance(TrainMixed):
    """One round of NSE's supernet training (`BranchImportance.train_importance`): weight steps on random
    multi-branch paths over the active ops, interleaved with Adam steps on per-op importance logits.
    A `TrainMixed` whose architecture weights are the importance logits: `state` (see the capability)
    is threaded from piece to piece and comes back updated in the report."""

    settings: ImportanceSettings = field(default_factory=lambda: ImportanceSettings(1.0))
    phase: str = "importance training"
    kind: ClassVar[str] = "train_importance"
    needs: ClassVar[type[Capability] | None] = BranchImportance

    def to_state(self) -> dict[str, Any]:
        s = self.settings
        settings = {f: getattr(s, f) for f in s.__dataclass_fields__}
        return {**super().to_state(), "settings": settings}


@dataclass(frozen=True)
class SaveBaseWeights(Request):
    """Make the current shared weights the base of later angle measurements (ABS)."""

    phase: str = "saving base weights"
    kind: ClassVar[str] = "save_base_weights"
    needs: ClassVar[type[Capability] | None] = AngleMetric

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "phase": self.phase}


@dataclass(frozen=True)
class MeasureAngles(Request):
    """The ABS angle of each architecture's path since the base weights; the report's `values`
    hold one angle (radians) per architecture, in order."""

    archs: tuple[Arch, ...]
    phase: str = "angle scoring"
    kind: ClassVar[str] = "measure_angles"
    needs: ClassVar[type[Capability] | None] = AngleMetric

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "archs": [_pairs(a) for a in self.archs], "phase": self.phase}

    def describe(self) -> str:
        return f"{self.phase} ({len(self.archs)} paths)"


def request_from_state(state: Mapping[str, Any]) -> Request:
    """The request `to_state` described (raises RunDirError for a checkpoint it cannot read)."""
    try:
        kind = state["kind"]
        phase = str(state["phase"])
        if kind == Evaluate.kind:
            b = state["budget"]
            budget = None if b is None else Budget(b["epochs"], b["steps"])
            return Evaluate(_arch(state["arch"]), budget, phase)
        if kind == ScoreShared.kind:
            r = state["recalibration"]
            recal = None if r is None else BNRecalibration(int(r["batches"]), r["momentum"], r["batch_size"])
            return ScoreShared(_arch(state["arch"]), recal, phase)
        if kind == TrainShared.kind:
            return TrainShared(float(state["epochs"]), sampler_from_state(state["paths"]), phase)
        if kind == TrainDistilled.kind:
            return TrainDistilled(
                float(state["epochs"]),
                sampler_from_state(state["paths"]),
                phase,
                dict(state["board"]),
                float(state["label_smoothing"]),
            )
        if kind == TrainMixed.kind:
            o = state["optimizer"]
            paths = None if state["paths"] is None else sampler_from_state(state["paths"])
            return TrainMixed(
                float(state["epochs"]),
                dict(state["state"]),
                int(state["order"]),
                AlphaOptimizer(float(o["lr"]), tuple(o["betas"]), float(o["weight_decay"])),
                paths,
                phase,
            )
        if kind == TrainImportance.kind:
            o = state["optimizer"]
            return TrainImportance(
                float(state["epochs"]),
                dict(state["state"]),
                optimizer=AlphaOptimizer(float(o["lr"]), tuple(o["betas"]), float(o["weight_decay"])),
                phase=phase,
                settings=ImportanceSettings(**state["settings"]),
            )
        if kind == SaveBaseWeights.kind:
            return SaveBaseWeights(phase)
        if kind == MeasureAngles.kind:
            return MeasureAngles(tuple(_arch(a) for a in state["archs"]), phase)
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(f"checkpoint holds a malformed request ({type(exc).__name__}: {exc})") from None
    raise RunDirError(f"checkpoint holds an unknown request kind {state.get('kind')!r}")


def as_request(item: Arch | Request) -> Request:
    """What the runner executes for one item of `ask()`'s answer."""
    if isinstance(item, Request):
        return item
    if isinstance(item, Mapping):
        return Evaluate(item if isinstance(item, Arch) else Arch(item))
    raise ConfigError(f"ask() returned {type(item).__name__}; expected an Arch or a nasframe.oneshot Request")
