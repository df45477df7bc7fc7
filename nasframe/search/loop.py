"""The search loop: ask the strategy, execute what it asked for, tell it the outcome, record it.

An evaluation (`Request.is_evaluation`) is checked against the constraints, handed to the pool
with the evaluation index (hence seed) it will be recorded under, told with `tell` and recorded in
history.jsonl; up to `run.parallel` are in flight, always a prefix of the pending list. Work is
executed piece by piece (`Executor.work_piece`), each piece charged to the budget, recorded in
work.jsonl and checkpointed; the finished request is told with `tell_work`.

`stage` says whether the state is consistent right now: None between items; "asking" while the
strategy answers; "executing" inside the evaluator's call (nothing else changed yet); "telling"
while pending list, strategy and logs take the outcome.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, cast

import torch

from nasframe.common import distributed
from nasframe.common.errors import CapabilityError, ConfigError, InvalidArchitecture, PluginError, SpaceExhausted
from nasframe.common.progress import Stopwatch
from nasframe.core.capabilities import Capability
from nasframe.core.evaluator import Cost, Result, WorkReport
from nasframe.core.requests import Evaluation, Request, Training, as_request
from nasframe.core.space import Arch
from nasframe.core.strategy import ProposesAhead
from nasframe.search.components import Components
from nasframe.search.config import ResolvedConfig
from nasframe.search.constraints import ConstraintError
from nasframe.search.executor import Executor
from nasframe.search.logs import RunLogs, say
from nasframe.search.loop_state import LoopState
from nasframe.search.pool import EvaluationPool, Ticket
from nasframe.search.pool_choice import open_pool
from nasframe.search.records import EvaluationRecord, WorkRecord


class SearchLoop:
    """Runs the loop of one session of a run over `state`, until the budget or the strategy ends."""

    def __init__(
        self,
        config: ResolvedConfig,
        parts: Components,
        executor: Executor,
        state: LoopState,
        logs: RunLogs,
        clock: Stopwatch,
        checkpoint: Callable[[], None],
    ):
        self.config = config
        self.run_opts = config.options["run"]
        self.parts = parts
        self.executor = executor
        self.state = state
        self.logs = logs
        self.clock = clock
        self.checkpoint = checkpoint
        self.declared: tuple[type[Capability], ...] = tuple(
            parts.strategy.required_capabilities(parts.strategy.options)
        )
        self.stage: str | None = None
        #: the run's identity, carried by every history record
        self.identity: str | None = None
        self._pool: EvaluationPool | None = None
        self._window: list[Ticket] = []  # evaluations handed to the pool: always a prefix of state.pending

    # ---- the loop --------------------------------------------------------------------------------
    def stop_reason(self) -> str | None:
        ro, s = self.run_opts, self.state
        if ro.max_evaluations is not None and s.evaluations >= ro.max_evaluations:
            return "max_evaluations"
        if ro.max_epochs is not None and s.total_epochs >= ro.max_epochs:
            return "max_epochs"
        if ro.max_seconds is not None and distributed.agree_flag(self.clock() >= ro.max_seconds):  # rank 0's clock
            return "max_seconds"
        if self.parts.strategy.done and not s.pending:
            return "strategy_done"
        return None

    def run(self, checkpoint_due: Callable[[], bool]) -> None:
        """Loop until a stop reason; `checkpoint_due()` says after each evaluation whether to checkpoint."""
        self._pool = open_pool(
            self.run_opts, self.executor, self.config.to_dict(), torch.get_num_threads(), self._say_unless_quiet
        )
        try:
            while True:
                reason = self.stop_reason()
                if reason:
                    self.state.stopped_because = reason
                    return
                request = self._next_request()
                if request is None:
                    return
                if self.logs.progress is not None:
                    self.logs.progress.phase(self.parts.strategy.phase if request.is_evaluation else request.phase)
                if request.is_evaluation:
                    self._evaluate_next()
                    if checkpoint_due():
                        self.checkpoint()
                    else:
                        self.logs.flush_history_now_and_then()
                else:
                    self._work(request)
                    self.checkpoint()
        finally:
            self._window = []  # evaluations still in flight stay pending: resume submits them again
            self._pool.close()  # ends them (Ray: kills the workers)
            self._pool = None

    def _next_request(self) -> Request | None:
        s = self.state
        if not s.pending:
            self.stage = "asking"  # the strategy changes as it answers: no checkpoint until it has
            try:
                items = self.parts.strategy.ask()
            except SpaceExhausted as exc:
                s.stopped_because = f"space_exhausted: {exc}"
                self.stage = None
                return None
            if items is None:  # not an empty answer: a strategy that forgot to return one
                self._admitted(items)
            if not items:
                s.stopped_because = "strategy_done"
                self.stage = None
                return None
            s.pending = self._admitted(items)
            s.ahead_refused = False
            self.stage = None
        return s.pending[0]

    def admit(self, request: Request) -> Request:
        """Validate a request's architecture and check that the strategy declared its capability."""
        needs = request.needs
        if needs is not None:
            if not any(issubclass(c, needs) for c in self.declared):
                raise CapabilityError(
                    f"strategy {self.config.names['strategy']!r} requested {request.kind} without "
                    f"declaring {needs.__name__} in its `requires`"
                )
        if request.is_evaluation:
            evaluation = cast(Evaluation, request)
            return dataclasses.replace(evaluation, arch=self.parts.space.validate(evaluation.arch))  # type: ignore[type-var]
        return request

    # ---- evaluations -------------------------------------------------------------------------------
    def _evaluate_next(self) -> None:
        """Hand out evaluations up to `run.parallel`, then tell one result: the oldest, or with
        `run.tell_order: completion` the first to finish. With one slot this is simply: check the
        constraints, evaluate, tell, record."""
        s, strategy = self.state, self.parts.strategy
        self._fill_window()
        position = self._next_to_tell()
        ticket = self._window[position]
        arch = ticket.request.arch
        constraints = self.parts.constraints
        if ticket.rejected is not None:
            assert constraints is not None
            self.stage = "telling"
            del self._window[position], s.pending[position]
            s.infeasible += 1
            s.rejection_streak += 1
            strategy.tell(arch, ticket.rejected)
            self.stage = None
            if s.rejection_streak >= constraints.options.max_rejections:
                raise ConstraintError(constraints.give_up_message(self.config.names["strategy"], s.rejection_streak))
            return
        s.rejection_streak = 0
        self.stage = "executing"
        assert self._pool is not None
        result = self._pool.result(ticket.handle)
        self.stage = "telling"
        del self._window[position], s.pending[position]
        strategy.tell(arch, result)
        self._record(arch, result)
        self.stage = None

    def _fill_window(self) -> None:
        """Submit pending evaluations (asking a `ProposesAhead` strategy for more) while slots are free.

        Each gets the evaluation index it will be recorded under in submission order, so its seed,
        and therefore its result, is the one a one-slot run computes for that index."""
        s, window = self.state, self._window
        remaining = self.run_opts.max_evaluations
        while len(window) < self.run_opts.parallel:
            submitted = sum(t.rejected is None for t in window)
            if remaining is not None and s.evaluations + submitted >= remaining:
                return
            if len(window) < len(s.pending):
                request = s.pending[len(window)]
                if not request.is_evaluation:
                    return
                window.append(self._ticket(cast(Evaluation, request), s.evaluations + submitted))
            elif not self._may_ask_ahead() or not self._ask_ahead():
                return

    def _ticket(self, request: Evaluation, index: int) -> Ticket:
        constraints = self.parts.constraints
        rejected = constraints.check(request.arch) if constraints is not None else None
        if rejected is not None:
            return Ticket(request, index, rejected=rejected)
        assert self._pool is not None
        return Ticket(request, index, handle=self._pool.submit(request, index))

    def _may_ask_ahead(self) -> bool:
        s, strategy = self.state, self.parts.strategy
        return bool(self._window) and isinstance(strategy, ProposesAhead) and not strategy.done and not s.ahead_refused

    def _ask_ahead(self) -> bool:
        """Ask for more while results are out; False (and no more asking until all is told) when the
        strategy has nothing more now."""
        s = self.state
        self.stage = "asking"
        try:
            items = self.parts.strategy.ask()
        except SpaceExhausted:
            items = []
        self.stage = None
        if items is None:
            self._admitted(items)
        if not items:
            s.ahead_refused = True
            return False
        s.pending.extend(self._admitted(items))
        return True

    def _admitted(self, items: Any) -> list[Request]:
        """The requests of `ask()`'s answer, each admitted; what is wrong with one names the strategy."""
        name = self.config.names["strategy"]
        try:
            answer = list(items)
        except TypeError:
            raise PluginError(f"strategy {name!r}: ask() returned {type(items).__name__}, not a list") from None
        admitted = []
        for item in answer:
            try:
                request = as_request(item)
            except ConfigError as exc:
                raise PluginError(f"strategy {name!r}: {exc}") from None
            try:
                admitted.append(self.admit(request))
            except InvalidArchitecture as exc:
                raise InvalidArchitecture(
                    f"strategy {name!r}: ask() proposed an architecture outside the space: {exc}"
                ) from None
        return admitted

    def _next_to_tell(self) -> int:
        """The window position told next: the oldest, or the first finished (`tell_order: completion`)."""
        if self.run_opts.tell_order == "submission" or len(self._window) == 1:
            return 0
        for i, ticket in enumerate(self._window):
            if ticket.rejected is not None:
                return i
        assert self._pool is not None
        return self._pool.first_done([t.handle for t in self._window])

    def _record(self, arch: Arch, result: Result) -> None:
        s = self.state
        index = s.evaluations
        s.evaluations += 1
        s.total_seconds += result.cost.seconds
        s.total_epochs += result.cost.epochs
        acc = result.accuracy
        improved = acc is not None and math.isfinite(acc) and (s.best_acc is None or acc > s.best_acc)
        if improved:
            s.best_acc, s.best_index = acc, index
        extra = self.parts.strategy.metrics()
        latency = self.parts.costs.latency
        record = EvaluationRecord(
            index=index,
            arch=arch.to_dict(),
            status=result.status,
            metrics=result.metrics,
            params=result.params,
            macs=result.macs,
            cost={"seconds": result.cost.seconds, "epochs": result.cost.epochs},
            reason=result.reason,
            best_val_acc=s.best_acc,
            time=round(self.clock(), 4),
            phase=self.parts.strategy.phase,
            strategy=extra or None,
            notes=list(result.notes),
            run=self.identity,
            latency_ms=None if latency is None else latency.latency_ms(arch),
            latency_source=None if latency is None else latency.source,
        )
        self.logs.evaluation(record, result, extra, improved)

    # ---- work -------------------------------------------------------------------------------------------
    def _work(self, request: Request) -> None:
        """One piece of the work request at the head of the pending list (a measurement is one piece)."""
        s = self.state
        self.stage = "executing"
        progress = s.partial or self.executor.start_work(request, s.work_done)
        report, progress = self.executor.work_piece(request, s.work_done, progress)
        self.stage = "telling"
        self._charge(report.cost)
        self._log_work(request, progress.piece - 1, report)
        if progress.trains:
            self.logs.training(request, progress, cast(Training, request).epochs)
        if progress.finished:
            s.partial = None
            self._finish_work(request, self.executor.work_report(request, progress, report))
        else:
            s.partial = progress
            self.stage = None

    def _charge(self, cost: Cost) -> None:
        s = self.state
        s.total_seconds += cost.seconds
        s.total_epochs += cost.epochs
        s.work_seconds += cost.seconds
        s.work_epochs += cost.epochs

    def _finish_work(self, request: Request, report: WorkReport) -> None:
        s = self.state
        s.pending.pop(0)
        s.work_done += 1
        self.parts.strategy.tell_work(request, report)
        self.stage = None

    def _log_work(self, request: Request, piece: int, report: WorkReport) -> None:
        s = self.state
        record = WorkRecord(
            work=s.work_done,
            chunk=piece,
            kind=request.kind,
            phase=request.phase,
            epochs=report.cost.epochs,
            cost={"seconds": report.cost.seconds, "epochs": report.cost.epochs},
            metrics=report.metrics,
            time=round(self.clock(), 4),
            notes=list(report.notes),
        )
        self.logs.work(record, request, report, s.work_lines, s.work_epochs)
        s.work_lines += 1

    def _say_unless_quiet(self, text: str) -> None:
        if not self.logs.quiet:
            say(text)
