"""Where evaluations run: in this process, or as Ray tasks (`run.executor`).

The runner hands a pool the evaluations it keeps in flight (`run.parallel`) and collects their
results; the pool only decides *where* an evaluation runs. Seeds come from the evaluation index
(`nasframe.search.executor.evaluation_seed`) and a pool evaluates with an `Executor` built from the same
resolved config, so an evaluation gives the same result wherever it runs: the executor never
changes a run's history (timings aside), `run.parallel` and `run.tell_order` may.

Only evaluations whose evaluator holds no state (`Evaluator.holds_state` False: short_train,
tabular, zero_cost) leave the process; a supernet's weights live in the runner's process, so its
evaluations run there whatever the executor (`open_pool` says so once).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from nasframe.core.evaluator import Cost, Result
from nasframe.core.requests import Evaluation
from nasframe.search.executor import Executor


class EvaluationTimeout(Exception):
    """Raised inside an evaluation that ran past `run.evaluation_timeout_s` (local executor)."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the body with `EvaluationTimeout` after `seconds` of wall time.

    Uses SIGALRM, so it works in the main thread of a POSIX process and interrupts Python code and
    the torch operations between which Python runs (a single operation that never returns cannot be
    interrupted in-process; the Ray executor kills the worker instead). Elsewhere it does nothing.
    """
    usable = sys.platform != "win32" and threading.current_thread() is threading.main_thread()
    if seconds is None or not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise EvaluationTimeout

    started = time.monotonic()
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if outer_delay and outer_delay <= seconds:  # an enclosing alarm (a test timeout, say) comes first anyway
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:  # give the enclosing alarm back what is left of it
            left = max(outer_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


def timed_out(seconds: float, elapsed: float) -> Result:
    return Result.failed(
        f"evaluation stopped after {elapsed:.1f} s (run.evaluation_timeout_s={seconds:g})", Cost(elapsed, 0.0)
    )


def evaluate_with_limit(executor: Executor, request: Evaluation, index: int, seconds: float | None) -> Result:
    """`executor.evaluate` under `time_limit`: a hanging candidate becomes a failed result."""
    start = time.perf_counter()
    try:
        with time_limit(seconds):
            return executor.evaluate(request, index)
    except EvaluationTimeout:
        assert seconds is not None
        return timed_out(seconds, time.perf_counter() - start)


@dataclass
class Ticket:
    """One evaluation the runner has handed out: `index` seeds it; `handle` is the pool's."""

    request: Evaluation
    index: int
    handle: Any = None
    rejected: Result | None = None  # set for an architecture the constraints refused (never submitted)


class EvaluationPool(ABC):
    """Runs evaluations somewhere and hands their results back."""

    #: whether results may come back in another order than submitted (`first_done` is meaningful)
    concurrent: bool = False

    @abstractmethod
    def submit(self, request: Evaluation, index: int) -> Any:
        """Start evaluation `index` of `request`; returns a handle for `result`."""

    @abstractmethod
    def result(self, handle: Any) -> Result:
        """Wait for a submitted evaluation and return its result (failures are results too)."""

    def first_done(self, handles: Sequence[Any]) -> int:
        """Position in `handles` of an evaluation that has finished (waits for one)."""
        return 0

    def close(self) -> None:
        """Release workers."""


class LocalPool(EvaluationPool):
    """Evaluates in this process, each when its result is asked for (so in submission order)."""

    def __init__(self, executor: Executor, timeout_s: float | None):
        self.executor = executor
        self.timeout_s = timeout_s

    def submit(self, request: Evaluation, index: int) -> Any:
        return (request, index)

    def result(self, handle: Any) -> Result:
        request, index = handle
        return evaluate_with_limit(self.executor, request, index, self.timeout_s)
