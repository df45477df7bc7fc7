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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nasframe.common.errors import ConfigError, RunDirError
from nasframe.core.capabilities import (
    AlphaOptimizer,
    AngleMetric,
    BNRecalibration,
    BranchImportance,
    Capability,
    Differentiable,
    Distillation,
    ImportanceSettings,
    SharedWeights,
)
from nasframe.core.evaluator import Budget
from nasframe.core.paths import PathSampler, UniformPaths, sampler_from_state
from nasframe.core.space import Arch

if TYPE_CHECKING:
    pass


def _pairs(arch: Arch) -> list[list[Any]]:
    return [[k, v] for k, v in arch.items()]


def _arch(pairs: Sequence[Sequence[Any]]) -> Arch:
    return Arch([(str(k), v) for k, v in pairs])


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


class Evaluation(Request):
    """A request whose outcome is one evaluation of `arch`: a history line, told with `Strategy.tell`."""

    arch: Arch
    is_evaluation: ClassVar[bool] = True


class Training(Request):
    """Work that trains the shared weights for `epochs`, in pieces the runner checkpoints between."""

    epochs: float

    def path_sampler(self) -> PathSampler | None:
        """How each step draws its single path (None: the request does not train single paths)."""
        return None


@dataclass(frozen=True)
class Evaluate(Evaluation):
    """Evaluate `arch` with the run's evaluator (what a bare `Arch` from `ask` means)."""

    arch: Arch
    budget: Budget | None = None
    phase: str = "evaluation"
    kind: ClassVar[str] = "evaluate"

    def to_state(self) -> dict[str, Any]:
        budget = None if self.budget is None else {"epochs": self.budget.epochs, "steps": self.budget.steps}
        return {"kind": self.kind, "arch": _pairs(self.arch), "budget": budget, "phase": self.phase}


@dataclass(frozen=True)
class ScoreShared(Evaluation):
    """Score `arch` with the shared weights as they are, after BatchNorm recalibration (SPOS)."""

    arch: Arch
    recalibration: BNRecalibration | None = None
    phase: str = "scoring"
    kind: ClassVar[str] = "score_shared"
    needs: ClassVar[type[Capability] | None] = SharedWeights

    def to_state(self) -> dict[str, Any]:
        r = self.recalibration
        recal = None if r is None else {"batches": r.batches, "momentum": r.momentum, "batch_size": r.batch_size}
        return {"kind": self.kind, "arch": _pairs(self.arch), "recalibration": recal, "phase": self.phase}


@dataclass(frozen=True)
class TrainShared(Training):
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

    def path_sampler(self) -> PathSampler | None:
        return self.paths

    def describe(self) -> str:
        return f"{self.phase} ({self.epochs:g} epochs)"


@dataclass(frozen=True)
class TrainDistilled(TrainShared):
    """Train the shared weights like `TrainShared`, each step's student distilled from a teacher path
    that `board` picks, and offer each student to the board (Cream). `board` is a
    `nasframe.core.board.PrioritizedBoard` as plain data (`to_state`); the report's `state` gives it back
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
class TrainMixed(Training):
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

    def path_sampler(self) -> PathSampler | None:
        return self.paths


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
    raise ConfigError(f"ask() returned {type(item).__name__}; expected an Arch or a nasframe.core.requests Request")
