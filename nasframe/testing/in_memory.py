"""`InMemoryRun`: a strategy's requests executed the way the runner does, in memory, for unit tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import cast

import torch

from nasframe.core.capabilities import SharedWeights
from nasframe.core.costs import ArchCosts
from nasframe.core.evaluator import Evaluator, Result, WorkReport
from nasframe.core.requests import (
    Evaluation,
    Request,
    as_request,
)
from nasframe.core.space import Arch
from nasframe.core.strategy import CostAware, Strategy
from nasframe.search.executor import Executor, evaluation_seed


class InMemoryRun:
    """Executes a strategy's requests with an evaluator in memory, seeded like the runner.

    Args:
        strategy: the strategy under test.
        evaluator: what executes its requests (any `Evaluator`; one-shot requests need the
            capability they name).
        seed: the run seed the runner would use.
        costs: counts for samplers that need them (`BinnedPaths`); bound to a `CostAware` strategy, as the
            runner binds the run's.
        judge: optional replacement for `evaluator.evaluate` on architectures, e.g. a scripted score.
        chunk_epochs: the run's `run.work_chunk_epochs` (training requests run in such pieces).

    Evaluations and work go through the same `nasframe.search.executor.Executor` as a run's, so the seeds
    and capability calls are the runner's; there are no files, budget or constraints here.
    """

    def __init__(
        self,
        strategy: Strategy,
        evaluator: Evaluator,
        *,
        seed: int = 0,
        costs: ArchCosts | None = None,
        judge: Callable[[Arch, int], Result] | None = None,
        chunk_epochs: float = 1.0,
    ):
        self.strategy = strategy
        self.evaluator = evaluator
        self.seed = seed
        self.costs = costs
        self.judge = judge
        self.evaluations: list[tuple[Arch, Result]] = []
        self.work: list[tuple[Request, WorkReport]] = []
        self.executor = Executor(evaluator, evaluator.space, costs, seed, chunk_epochs)
        if isinstance(evaluator, SharedWeights):  # as `build_components` does for a run
            evaluator.plan_training(strategy.planned_training_epochs())
        if costs is not None and isinstance(strategy, CostAware):
            strategy.bind_costs(costs)

    def round(self) -> list[Arch] | None:
        """One `ask`, every item executed and told in order; the architectures evaluated (None when
        the strategy is done or asked for nothing)."""
        if self.strategy.done:
            return None
        items = self.strategy.ask()
        if not items:
            return None
        evaluated = []
        for item in items:
            request = as_request(item)
            if request.is_evaluation:
                evaluated.append(self._evaluate(cast(Evaluation, request)))
            else:
                self._work(request)
        return evaluated

    def evaluate_rounds(self, rounds: int, max_rounds: int = 10_000) -> list[Arch]:
        """Run until `rounds` rounds that evaluated something have passed; every architecture
        evaluated, in order."""
        out: list[Arch] = []
        done = 0
        for _ in range(max_rounds):
            if done >= rounds:
                return out
            evaluated = self.round()
            if evaluated is None:
                return out
            if evaluated:
                done += 1
                out.extend(evaluated)
        raise AssertionError(f"{max_rounds} rounds without {rounds} evaluation rounds")

    def _evaluate(self, request: Evaluation) -> Arch:
        arch = self.evaluator.space.validate(request.arch)
        index = len(self.evaluations)
        if self.judge is not None:
            torch.manual_seed(evaluation_seed(self.seed, index))
            result = self.judge(arch, index)
        else:
            result = self.executor.evaluate(replace(request, arch=arch), index)  # type: ignore[type-var]
        self.strategy.tell(arch, result)
        self.evaluations.append((arch, result))
        return arch

    def _work(self, request: Request) -> None:
        w = len(self.work)
        progress = self.executor.start_work(request, w)
        while not progress.finished:
            last, progress = self.executor.work_piece(request, w, progress)
        report = self.executor.work_report(request, progress, last)
        self.strategy.tell_work(request, report)
        self.work.append((request, report))
