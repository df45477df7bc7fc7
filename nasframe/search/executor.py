"""Executing one request, seeded the way every run seeds it.

The runner (with its files, budget and logs) and `nasframe.testing.InMemoryRun` (in memory, for
unit tests) both execute a strategy's requests through an `Executor`, so the two cannot drift:
the same seeds, the same capability calls, the same pieces of supernet training.

Seeds: evaluation `index` runs with torch seeded from (run seed, index); piece `p` of work request
`w` from (run seed, w, p); the paths of a training request are drawn from a generator seeded from
(run seed, w) whose state is carried from piece to piece (and through checkpoints).

A training request of E epochs is max(1, round(E x steps per epoch)) steps, cut into pieces of
round(chunk_epochs x steps per epoch) steps; each piece draws a fresh data order from its own seed,
so the piece size (`run.work_chunk_epochs`) is part of what a run computes, like its batch size.
A measurement (saving base weights, measuring angles) is work of one piece.

Dispatch is by table: each request class maps to one handler here, and each handler makes one call
of the capability the request `needs`. The runner only tells evaluations (`Request.is_evaluation`)
from work; `WorkProgress` is what it carries (and checkpoints) between the pieces of one request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import torch

from nasframe.common.errors import CapabilityError
from nasframe.core.board import PrioritizedBoard
from nasframe.core.capabilities import AngleMetric, BranchImportance, Differentiable, Distillation, SharedWeights
from nasframe.core.costs import ArchCosts
from nasframe.core.evaluator import Cost, Evaluator, Result, WorkReport
from nasframe.core.faults import check_metrics, check_result, check_work
from nasframe.core.requests import (
    Evaluate,
    MeasureAngles,
    Request,
    SaveBaseWeights,
    ScoreShared,
    TrainDistilled,
    TrainImportance,
    Training,
    TrainMixed,
    TrainShared,
)
from nasframe.core.space import Arch, SearchSpace


def evaluation_seed(seed: int, index: int) -> int:
    """Seed of evaluation `index`: independent of how the run was split by resumes."""
    return (seed * 1_000_003 + index * 7919 + 17) % (2**63 - 1)


def work_seed(seed: int, work: int, piece: int) -> int:
    """Seed of piece `piece` of work request `work` (a stream apart from the evaluations')."""
    return (seed * 1_000_033 + work * 104_729 + piece * 7_727 + 2**40 + 91) % (2**63 - 1)


def path_rng(seed: int, work: int) -> np.random.Generator:
    """The generator a training request draws its paths from."""
    return np.random.default_rng([seed, 0x5A17, work])


@dataclass(frozen=True)
class WorkProgress:
    """How far one work request has got: what the runner carries from piece to piece and checkpoints.

    A training request runs `steps` steps in pieces; `rng` is the state of the generator its paths
    are drawn from, `state` what the request threads through its pieces (architecture weights, a
    board). A measurement is one piece of one step with no epochs (`steps_per_epoch` 0).
    """

    steps: int
    steps_per_epoch: int = 0
    done: int = 0
    piece: int = 0
    rng: dict[str, Any] | None = None
    seconds: float = 0.0
    epochs: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.done >= self.steps

    @property
    def trains(self) -> bool:
        """Whether the request trains (in epochs), as opposed to measuring once."""
        return self.steps_per_epoch > 0

    @property
    def done_epochs(self) -> float:
        return self.done / self.steps_per_epoch if self.trains else 0.0

    def to_state(self) -> dict[str, Any]:
        """Plain data for the checkpoint (`LoopState.partial`)."""
        out: dict[str, Any] = {
            "steps": self.steps,
            "done": self.done,
            "piece": self.piece,
            "steps_per_epoch": self.steps_per_epoch,
            "rng": self.rng,
            "seconds": self.seconds,
            "epochs": self.epochs,
            "metrics": self.metrics,
        }
        if self.state is not None:
            out["state"] = self.state
        return out

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> WorkProgress:
        return cls(
            steps=int(d["steps"]),
            steps_per_epoch=int(d["steps_per_epoch"]),
            done=int(d["done"]),
            piece=int(d["piece"]),
            rng=d["rng"],
            seconds=float(d["seconds"]),
            epochs=float(d["epochs"]),
            metrics=dict(d["metrics"]),
            state=d.get("state"),
        )


#: one piece of work: (executor, request, steps of this piece, the progress before it, the path draw) -> report
PieceCall = Callable[["Executor", Any, int, WorkProgress, "Callable[[], Arch] | None"], WorkReport]


class Executor:
    """Executes evaluations and pieces of work with one evaluator, for one run seed."""

    def __init__(
        self,
        evaluator: Evaluator[Any],
        space: SearchSpace[Any],
        costs: ArchCosts | None,
        seed: int,
        chunk_epochs: float = 1.0,
    ):
        self.evaluator = evaluator
        self.space = space
        self.costs = costs
        self.seed = seed
        self.chunk_epochs = chunk_epochs

    # ---- evaluations ---------------------------------------------------------------------------------
    def evaluate(self, request: Request, index: int) -> Result:
        """Evaluation `index` of an evaluation request (`Evaluate`, `ScoreShared`), by its table entry."""
        measure = _EVALUATIONS.get(type(request))
        if measure is None:
            raise CapabilityError(f"nasframe cannot evaluate request kind {request.kind!r}")
        if self.evaluator.uses_torch_rng or request.needs is not None:  # shared weights always draw
            torch.manual_seed(evaluation_seed(self.seed, index))
        start = time.perf_counter()
        result = check_result(measure(self, request), self.evaluator, _METHODS[type(request)])
        if result.status not in ("ok", "failed"):
            result = Result.failed(f"evaluator returned status {result.status!r}", result.cost)
        if result.cost.seconds == 0.0:
            result.cost.seconds = time.perf_counter() - start
        return result

    def held_out(self, arch: Arch, index: int | None) -> dict[str, float]:
        """The evaluator's held-out metrics of `arch` (`final_metrics`), with torch seeded as evaluation
        `index` was (the evaluation whose numbers are reported beside them), so they are reproducible
        and, for an evaluator that trains, describe that same network."""
        if self.evaluator.uses_torch_rng:
            torch.manual_seed(evaluation_seed(self.seed, index if index is not None else -1))
        return check_metrics(self.evaluator.final_metrics(arch), self.evaluator, "final_metrics")

    def _evaluate_own(self, request: Evaluate) -> Result:
        return self.evaluator.evaluate(request.arch, request.budget)

    def _score_shared(self, request: ScoreShared) -> Result:
        return cast(SharedWeights, self.evaluator).score_path(request.arch, request.recalibration)

    # ---- work ------------------------------------------------------------------------------------------
    def start_work(self, request: Request, work: int) -> WorkProgress:
        """The progress of work request `work` before its first piece."""
        handler = _handler(request)
        if not handler.trains:
            return WorkProgress(steps=1)
        spe = cast(SharedWeights, self.evaluator).steps_per_epoch()
        return WorkProgress(
            steps=max(1, round(cast(Training, request).epochs * spe)),
            steps_per_epoch=spe,
            rng=dict(path_rng(self.seed, work).bit_generator.state),
            state=handler.threaded_state(request),
        )

    def work_piece(self, request: Request, work: int, progress: WorkProgress) -> tuple[WorkReport, WorkProgress]:
        """The next piece of a work request: its report and the progress after it (finished when
        `progress.finished`). Piece p of request `work` runs with torch seeded from (run seed, work, p)."""
        handler = _handler(request)
        steps = 1
        if handler.trains:
            steps = min(max(1, round(self.chunk_epochs * progress.steps_per_epoch)), progress.steps - progress.done)
        rng = np.random.default_rng()
        next_path = None
        if progress.rng is not None:
            rng.bit_generator.state = progress.rng
            paths = cast(Training, request).path_sampler()
            draw = paths.bind(self.space, self.costs) if paths is not None else None
            next_path = (lambda: draw(rng)) if draw is not None else None
        torch.manual_seed(work_seed(self.seed, work, progress.piece))
        start = time.perf_counter()
        report = check_work(handler.call(self, request, steps, progress, next_path), self.evaluator, handler.method)
        if report.cost.seconds == 0.0:
            report.cost.seconds = time.perf_counter() - start
        updated = replace(
            progress,
            done=progress.done + steps,
            piece=progress.piece + 1,
            rng=dict(rng.bit_generator.state) if progress.rng is not None else None,
            seconds=progress.seconds + report.cost.seconds,
            epochs=progress.epochs + report.cost.epochs,
            metrics=dict(report.metrics),
            state=report.state if progress.state is not None else None,
        )
        return report, updated

    @staticmethod
    def work_report(request: Request, progress: WorkProgress, last: WorkReport) -> WorkReport:
        """What the strategy is told when the request's last piece is done: a training request's whole
        cost, last metrics and threaded state; a measurement's own report."""
        if not _handler(request).trains:
            return last
        return WorkReport(Cost(progress.seconds, progress.epochs), dict(progress.metrics), state=progress.state)

    # ---- the capability calls, one per request kind ---------------------------------------------------
    def _save_base_weights(self, request: SaveBaseWeights, steps: int, progress: WorkProgress, _: Any) -> WorkReport:
        start = time.perf_counter()
        cast(AngleMetric, self.evaluator).save_base_weights()
        return WorkReport(Cost(time.perf_counter() - start, 0.0))

    def _measure_angles(self, request: MeasureAngles, steps: int, progress: WorkProgress, _: Any) -> WorkReport:
        start = time.perf_counter()
        values = [float(v) for v in cast(AngleMetric, self.evaluator).path_angles(list(request.archs))]
        finite = [v for v in values if math.isfinite(v)]
        mean = float(np.mean(finite)) if finite else math.nan
        return WorkReport(
            Cost(time.perf_counter() - start, 0.0), {"paths": float(len(values)), "mean_angle": mean}, values
        )

    def _train_shared(
        self, request: TrainShared, steps: int, progress: WorkProgress, next_path: Callable[[], Arch] | None
    ) -> WorkReport:
        assert next_path is not None  # TrainShared always has a sampler
        return cast(SharedWeights, self.evaluator).train_paths(steps, next_path)

    def _train_mixed(
        self, request: TrainMixed, steps: int, progress: WorkProgress, next_path: Callable[[], Arch] | None
    ) -> WorkReport:
        assert progress.state is not None
        return cast(Differentiable, self.evaluator).train_mixed(
            steps, progress.state, request.order, request.optimizer, next_path
        )

    def _train_importance(self, request: TrainImportance, steps: int, progress: WorkProgress, _: Any) -> WorkReport:
        assert progress.state is not None
        importance = cast(BranchImportance, self.evaluator)
        return importance.train_importance(steps, progress.state, request.settings, request.optimizer)

    def _train_distilled(
        self, request: TrainDistilled, steps: int, progress: WorkProgress, next_path: Callable[[], Arch] | None
    ) -> WorkReport:
        """A piece of Cream training: the board picks each step's teacher and is offered each student;
        the report's state is the board afterwards."""
        assert next_path is not None and progress.state is not None  # TrainShared always has a sampler
        board = PrioritizedBoard.from_state(progress.state)
        costs = self.costs

        def macs_of(arch: Arch) -> float:
            if costs is None:  # InMemoryRun without counts: every path costs the same
                return 0.0
            with torch.random.fork_rng(devices=[]):  # a count that builds a network must not move the training RNG
                return float(costs.macs(arch))

        entered = 0

        def observe(arch: Arch, prec1: float) -> None:
            nonlocal entered
            entered += board.offer(arch, prec1, macs_of)

        report = cast(Distillation, self.evaluator).train_distilled(
            steps, next_path, board.teacher, observe, request.label_smoothing
        )
        check_work(report, self.evaluator, "train_distilled")
        report.state = board.to_state()
        report.metrics = {**report.metrics, "board_entries": float(entered), "board_size": float(len(board.entries))}
        if board.entries:
            report.metrics["board_best_prec1"] = board.entries[0].prec1
        return report


@dataclass(frozen=True)
class WorkHandler:
    """How the executor runs one kind of work request: its capability call, whether it trains in pieces,
    and what state (if any) the request threads from piece to piece."""

    call: PieceCall
    trains: bool
    #: the evaluator's method the call makes (named when what it returns is wrong)
    method: str
    threaded_state: Callable[[Any], dict[str, Any] | None] = lambda request: None


#: evaluation request kinds -> the call that measures one
_EVALUATIONS: dict[type[Request], Callable[[Executor, Any], Result]] = {
    Evaluate: Executor._evaluate_own,
    ScoreShared: Executor._score_shared,
}
#: evaluation request kinds -> the evaluator's method that call makes
_METHODS: dict[type[Request], str] = {Evaluate: "evaluate", ScoreShared: "score_path"}

#: work request kinds -> their handler
_WORK: dict[type[Request], WorkHandler] = {
    SaveBaseWeights: WorkHandler(Executor._save_base_weights, False, "save_base_weights"),
    MeasureAngles: WorkHandler(Executor._measure_angles, False, "path_angles"),
    TrainShared: WorkHandler(Executor._train_shared, True, "train_paths"),
    TrainDistilled: WorkHandler(Executor._train_distilled, True, "train_distilled", lambda r: r.board),
    TrainMixed: WorkHandler(Executor._train_mixed, True, "train_mixed", lambda r: r.state),
    TrainImportance: WorkHandler(Executor._train_importance, True, "train_importance", lambda r: r.state),
}


def _handler(request: Request) -> WorkHandler:
    handler = _WORK.get(type(request))
    if handler is None:
        raise CapabilityError(f"nasframe cannot execute request kind {request.kind!r}")
    return handler
