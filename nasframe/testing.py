"""Helpers for testing strategies and evaluators without a run directory.

`InMemoryRun` executes what a strategy asks for against an evaluator the way the runner does —
the same seeding of every evaluation and piece of work, the same tells — but keeps everything in
memory, so a unit test (a plugin author's included) can drive a one-shot strategy step by step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from nasframe.costs import ArchCosts
from nasframe.errors import CapabilityError
from nasframe.evaluator import Cost, Evaluator, Result, WorkReport
from nasframe.oneshot import Evaluate, MeasureAngles, Request, SaveBaseWeights, ScoreShared, TrainShared, as_request
from nasframe.runner import evaluation_seed, path_rng, work_seed
from nasframe.space import Arch
from nasframe.strategy import Strategy


class InMemoryRun:
    """Executes a strategy's requests with an evaluator in memory, seeded like the runner.

    Args:
        strategy: the strategy under test.
        evaluator: what executes its requests (any `Evaluator`; one-shot requests need the
            capability they name).
        seed: the run seed the runner would use.
        costs: counts for samplers that need them (`BinnedPaths`).
        judge: optional replacement for `evaluator.evaluate` on architectures, e.g. a scripted score.
    """

    def __init__(self, strategy: Strategy, evaluator: Evaluator, *, seed: int = 0, costs: ArchCosts | None = None,
                 judge: Callable[[Arch, int], Result] | None = None):
        self.strategy = strategy
        self.evaluator = evaluator
        self.seed = seed
        self.costs = costs
        self.judge = judge
        self.evaluations: list[tuple[Arch, Result]] = []
        self.work: list[tuple[Request, WorkReport]] = []

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
            if isinstance(request, (Evaluate, ScoreShared)):
                evaluated.append(self._evaluate(request))
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

    def _evaluate(self, request: Evaluate | ScoreShared) -> Arch:
        arch = self.evaluator.space.validate(request.arch)
        index = len(self.evaluations)
        torch.manual_seed(evaluation_seed(self.seed, index))
        if self.judge is not None:
            result = self.judge(arch, index)
        elif isinstance(request, ScoreShared):
            result = self.evaluator.score_path(arch, request.recalibration)  # type: ignore[attr-defined]
        else:
            result = self.evaluator.evaluate(arch, request.budget)
        self.strategy.tell(arch, result)
        self.evaluations.append((arch, result))
        return arch

    def _work(self, request: Request) -> None:
        w = len(self.work)
        torch.manual_seed(work_seed(self.seed, w, 0))
        ev = self.evaluator
        if isinstance(request, TrainShared):
            rng: np.random.Generator = path_rng(self.seed, w)
            draw = request.paths.bind(ev.space, self.costs)
            report = ev.train_paths(request.epochs, lambda: draw(rng))  # type: ignore[attr-defined]
        elif isinstance(request, SaveBaseWeights):
            ev.save_base_weights()  # type: ignore[attr-defined]
            report = WorkReport(Cost())
        elif isinstance(request, MeasureAngles):
            report = WorkReport(Cost(), values=list(ev.path_angles(list(request.archs))))  # type: ignore
        else:
            raise CapabilityError(f"InMemoryRun cannot execute request kind {request.kind!r}")
        self.strategy.tell_work(request, report)
        self.work.append((request, report))
