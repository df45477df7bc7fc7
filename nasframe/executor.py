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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch

from nasframe.board import PrioritizedBoard
from nasframe.costs import ArchCosts
from nasframe.errors import CapabilityError
from nasframe.evaluator import (
    AngleMetric,
    BranchImportance,
    Cost,
    Differentiable,
    Distillation,
    Evaluator,
    Result,
    SharedWeights,
    WorkReport,
)
from nasframe.oneshot import (
    Evaluate,
    MeasureAngles,
    Request,
    SaveBaseWeights,
    ScoreShared,
    TrainDistilled,
    TrainImportance,
    TrainMixed,
    TrainShared,
)
from nasframe.space import Arch, SearchSpace


def evaluation_seed(seed: int, index: int) -> int:
    """Seed of evaluation `index`: independent of how the run was split by resumes."""
    return (seed * 1_000_003 + index * 7919 + 17) % (2**63 - 1)


def work_seed(seed: int, work: int, piece: int) -> int:
    """Seed of piece `piece` of work request `work` (a stream apart from the evaluations')."""
    return (seed * 1_000_033 + work * 104_729 + piece * 7_727 + 2**40 + 91) % (2**63 - 1)


def path_rng(seed: int, work: int) -> np.random.Generator:
    """The generator a training request draws its paths from."""
    return np.random.default_rng([seed, 0x5A17, work])


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
    def evaluate(self, request: Evaluate | ScoreShared, index: int) -> Result:
        """Evaluation `index`: the evaluator's own evaluation, or a score with the shared weights."""
        ev = self.evaluator
        if ev.uses_torch_rng or isinstance(request, ScoreShared):
            torch.manual_seed(evaluation_seed(self.seed, index))
        start = time.perf_counter()
        if isinstance(request, ScoreShared):
            result = self._shared().score_path(request.arch, request.recalibration)
        else:
            result = ev.evaluate(request.arch, request.budget)
        if result.status not in ("ok", "failed"):
            result = Result.failed(f"evaluator returned status {result.status!r}", result.cost)
        if result.cost.seconds == 0.0:
            result.cost.seconds = time.perf_counter() - start
        return result

    # ---- work ------------------------------------------------------------------------------------------
    def measure(self, request: Request, work: int) -> WorkReport:
        """A work request that runs in one piece (saving base weights, measuring angles)."""
        torch.manual_seed(work_seed(self.seed, work, 0))
        start = time.perf_counter()
        if isinstance(request, SaveBaseWeights):
            self._angles().save_base_weights()
            return WorkReport(Cost(time.perf_counter() - start, 0.0))
        if isinstance(request, MeasureAngles):
            values = [float(v) for v in self._angles().path_angles(list(request.archs))]
            finite = [v for v in values if math.isfinite(v)]
            mean = float(np.mean(finite)) if finite else math.nan
            return WorkReport(
                Cost(time.perf_counter() - start, 0.0), {"paths": float(len(values)), "mean_angle": mean}, values
            )
        raise CapabilityError(f"nasframe cannot execute request kind {request.kind!r}")

    def start_training(self, request: TrainShared | TrainMixed, work: int) -> dict[str, Any]:
        """The progress record of a training request before its first piece (plain data, checkpointed)."""
        spe = self._shared().steps_per_epoch()
        progress = {
            "steps": max(1, round(request.epochs * spe)),
            "done": 0,
            "piece": 0,
            "steps_per_epoch": spe,
            "rng": path_rng(self.seed, work).bit_generator.state,
            "seconds": 0.0,
            "epochs": 0.0,
            "metrics": {},
        }
        if isinstance(request, TrainMixed):
            progress["state"] = request.state  # the architecture weights, updated piece by piece
        if isinstance(request, TrainDistilled):
            progress["state"] = request.board  # the prioritized board, updated piece by piece
        return progress

    def train_piece(
        self, request: TrainShared | TrainMixed, work: int, progress: dict[str, Any]
    ) -> tuple[WorkReport, dict[str, Any]]:
        """The next piece of a training request: its report and the updated progress record (the
        request is finished when progress["done"] == progress["steps"])."""
        spe = progress["steps_per_epoch"]
        steps = min(max(1, round(self.chunk_epochs * spe)), progress["steps"] - progress["done"])
        rng = np.random.default_rng()
        rng.bit_generator.state = progress["rng"]
        draw = request.paths.bind(self.space, self.costs) if request.paths is not None else None
        next_path = (lambda: draw(rng)) if draw is not None else None
        torch.manual_seed(work_seed(self.seed, work, progress["piece"]))
        start = time.perf_counter()
        if isinstance(request, TrainImportance):
            importance = cast(BranchImportance, self.evaluator)
            report = importance.train_importance(steps, progress["state"], request.settings, request.optimizer)
        elif isinstance(request, TrainMixed):
            report = self._differentiable().train_mixed(
                steps, progress["state"], request.order, request.optimizer, next_path
            )
        elif isinstance(request, TrainDistilled):
            assert next_path is not None  # TrainShared always has a sampler
            report = self._distilled(request, steps, next_path, progress["state"])
        else:
            assert next_path is not None  # TrainShared always has a sampler
            report = self._shared().train_paths(steps, next_path)
        if report.cost.seconds == 0.0:
            report.cost.seconds = time.perf_counter() - start
        updated = {
            **progress,
            "done": progress["done"] + steps,
            "piece": progress["piece"] + 1,
            "rng": rng.bit_generator.state,
            "seconds": progress["seconds"] + report.cost.seconds,
            "epochs": progress["epochs"] + report.cost.epochs,
            "metrics": dict(report.metrics),
        }
        if isinstance(request, (TrainMixed, TrainDistilled)):
            updated["state"] = report.state
        return report, updated

    def _distilled(
        self, request: TrainDistilled, steps: int, next_path: Callable[[], Arch], board_state: dict[str, Any]
    ) -> WorkReport:
        """A piece of Cream training: the board picks each step's teacher and is offered each student;
        the report's state is the board afterwards."""
        board = PrioritizedBoard.from_state(board_state)
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
        report.state = board.to_state()
        report.metrics = {**report.metrics, "board_entries": float(entered), "board_size": float(len(board.entries))}
        if board.entries:
            report.metrics["board_best_prec1"] = board.entries[0].prec1
        return report

    @staticmethod
    def training_report(progress: dict[str, Any]) -> WorkReport:
        """The whole request's report, told to the strategy when its last piece is done."""
        return WorkReport(
            Cost(progress["seconds"], progress["epochs"]), dict(progress["metrics"]), state=progress.get("state")
        )

    def _shared(self) -> SharedWeights:
        return cast(SharedWeights, self.evaluator)  # the runner checked the capability when it admitted the request

    def _angles(self) -> AngleMetric:
        return cast(AngleMetric, self.evaluator)

    def _differentiable(self) -> Differentiable:
        return cast(Differentiable, self.evaluator)
