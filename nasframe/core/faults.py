"""What a plugin did wrong, in one line: an exception from inside a component, or a value it gave back
that its interface does not allow.

`component_fault` finds, on an exception's traceback, the outermost call of a component's method (the
call nasframe made: `ask`, `tell`, `evaluate`, `build`, `state_dict`, `__init__`, ...) and names the
component, the method, the exception's type and its message: a plugin author's bug reads as theirs, not
as a nasframe traceback (`--debug` still shows it). It costs nothing until something has gone wrong.
`result_problem` and `work_problem` check what an evaluator returns (its type, finite numbers, a
non-negative cost) cheaply enough for the runner to call after every evaluation.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any

from nasframe.common.errors import NasframeError, PluginError
from nasframe.core.evaluator import Cost, Evaluator, Result, WorkReport
from nasframe.core.space import SearchSpace
from nasframe.core.strategy import Strategy
from nasframe.data.base import Dataset

#: the component interfaces, and the word each is named with
COMPONENTS: tuple[tuple[type, str], ...] = (
    (Strategy, "strategy"),
    (Evaluator, "evaluator"),
    (SearchSpace, "space"),
    (Dataset, "data set"),
)


def component_name(component: Any) -> str:
    """`strategy 'random'` for an instance (or class) of a component."""
    cls = component if isinstance(component, type) else type(component)
    for base, word in COMPONENTS:
        if issubclass(cls, base):
            return f"{word} {getattr(cls, 'registered_name', cls.__name__)!r}"
    return cls.__name__


def _component_of(frame: Any) -> Any:
    """The component whose own method `frame` runs (self, or cls, is its first argument and the code is
    that of the method of this name on its class), or None: a function that merely takes a component
    as its first argument is nasframe's, not the component's."""
    code = frame.f_code
    if not code.co_argcount:
        return None
    first = frame.f_locals.get(code.co_varnames[0])
    cls = first if isinstance(first, type) else type(first)
    if not any(issubclass(cls, base) for base, _ in COMPONENTS):
        return None
    for klass in cls.__mro__:
        member = vars(klass).get(code.co_name)
        member = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
        if getattr(member, "__code__", None) is code:
            return first
    return None


def exception_text(exc: BaseException) -> str:
    """`ValueError: its message` on one line (`called sys.exit(...)` for a SystemExit)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r:.80})"
    text = str(exc).strip()
    first = text.splitlines()[0][:200] if text else ""
    return f"raised {type(exc).__name__}" + (f": {first}" if first else "")


def component_fault(exc: BaseException) -> PluginError | None:
    """A one-line PluginError for `exc` when a component's method raised it, else None (nasframe's own
    code raised it: a bug, which keeps its traceback). A NasframeError is already one line: None."""
    if isinstance(exc, (NasframeError, KeyboardInterrupt)):
        return None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        component = _component_of(tb.tb_frame)
        if component is not None:
            method = tb.tb_frame.f_code.co_name
            fault = PluginError(f"{component_name(component)}: {method}() {exception_text(exc)}")
            fault.__cause__ = exc
            return fault
        tb = tb.tb_next
    return None


# ---- what an evaluator gives back ---------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    """`value` as a float when it is a real number (Python, numpy or a one-element tensor), else None."""
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if kind is bool or isinstance(value, (str, bytes)) or not hasattr(kind, "__float__"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _cost_problem(cost: Any) -> str | None:
    if not isinstance(cost, Cost):
        return f"a cost of type {type(cost).__name__}, not a Cost"
    for name in ("seconds", "epochs"):
        value = _number(getattr(cost, name))
        if value is None or not (value >= 0.0 and value != math.inf):
            return f"cost.{name}={getattr(cost, name)!r:.40} (a cost is a finite number >= 0)"
    return None


def _metrics_problem(
    metrics: Any, finite: bool, why: str = "an ok result's metrics are finite; return Result.failed instead"
) -> str | None:
    if type(metrics) is not dict:
        return f"metrics of type {type(metrics).__name__}, not a mapping"
    for key, value in metrics.items():
        number = _number(value)
        if type(key) is not str or number is None:
            return f"metric {key!r:.40} = {value!r:.40} (metrics are numbers, by name)"
        if finite and not math.isfinite(number):
            return f"metric {key!r:.40} = {number} ({why})"
    return None


def _count_problem(result: Result) -> str | None:
    for name in ("params", "macs"):
        value = getattr(result, name)
        if value is not None and (type(value) is not int or value < 0):
            return f"{name}={value!r:.40} (a count is a whole number >= 0, or None)"
    return None


_FAST_NUMBERS = (float, int)


def _plainly_valid(result: Any) -> bool:
    """The common case, checked fast (the tabular loop runs thousands of evaluations a second): an ok
    or failed Result of float metrics, float cost, no counts, no reason or a text one, no notes."""
    if type(result) is not Result or type(result.metrics) is not dict or type(result.cost) is not Cost:
        return False
    for value in result.metrics.values():
        if type(value) is not float or value - value != 0.0:  # NaN and infinities give NaN
            return False
    seconds, epochs = result.cost.seconds, result.cost.epochs
    return (
        type(seconds) in _FAST_NUMBERS
        and type(epochs) in _FAST_NUMBERS
        and 0.0 <= seconds < math.inf
        and 0.0 <= epochs < math.inf
        and result.params is None
        and result.macs is None
        and (result.reason is None or type(result.reason) is str)
        and not result.notes
        and type(result.notes) is list
        and all(type(key) is str for key in result.metrics)
    )


def result_problem(result: Any) -> str | None:
    """What is wrong with an evaluator's `Result` (None when nothing is): its type, metrics that are not
    finite numbers in an ok result, a negative or non-finite cost, counts that are not whole numbers."""
    if _plainly_valid(result):
        return None
    if not isinstance(result, Result):
        return f"returned {type(result).__name__}, not a Result"
    problem = _metrics_problem(result.metrics, result.status == "ok") or _cost_problem(result.cost)
    if problem is None:
        problem = _count_problem(result)
    if problem is None and not (result.reason is None or isinstance(result.reason, str)):
        problem = f"reason of type {type(result.reason).__name__}, not a string"
    if problem is None and not (type(result.notes) is list and all(isinstance(n, str) for n in result.notes)):
        problem = "notes that are not a list of strings"
    return None if problem is None else f"returned a Result with {problem}"


def work_problem(report: Any) -> str | None:
    """What is wrong with a `WorkReport` of weight-sharing work: its type, its cost, non-numeric metrics
    (a metric of work may be NaN: it is logged, not compared)."""
    if not isinstance(report, WorkReport):
        return f"returned {type(report).__name__}, not a WorkReport"
    problem = _cost_problem(report.cost) or _metrics_problem(report.metrics, finite=False)
    return None if problem is None else f"returned a WorkReport with {problem}"


def check_result(result: Any, evaluator: Any, method: str) -> Result:
    """`result` when it is a valid Result; otherwise one PluginError naming the evaluator and method."""
    problem = result_problem(result)
    if problem is not None:
        raise PluginError(f"{component_name(evaluator)}: {method}() {problem}")
    return result


def check_work(report: Any, evaluator: Any, method: str) -> WorkReport:
    problem = work_problem(report)
    if problem is not None:
        raise PluginError(f"{component_name(evaluator)}: {method}() {problem}")
    return report


def check_metrics(metrics: Any, component: Any, method: str) -> dict[str, float]:
    """`metrics` (held-out metrics, say) when they are finite numbers by name; else one PluginError."""
    problem = _metrics_problem(metrics, finite=True, why="held-out metrics are finite numbers")
    if problem is not None:
        raise PluginError(f"{component_name(component)}: {method}() returned {problem}")
    return metrics


def fault_of(exc: BaseException) -> PluginError | None:
    """`component_fault(exc)`; and for a SystemExit raised anywhere else a PluginError too (naming where):
    nothing a command calls may end it with an exit status of its own choosing (`sys.exit(0)` would
    report success with nothing done)."""
    fault = component_fault(exc)
    if fault is None and isinstance(exc, SystemExit):
        tb, last = exc.__traceback__, None
        while tb is not None:
            last, tb = tb, tb.tb_next
        where = f" ({last.tb_frame.f_code.co_filename}:{last.tb_lineno})" if last is not None else ""
        fault = PluginError(f"code outside any component{where} {exception_text(exc)}")
        fault.__cause__ = exc
    return fault
