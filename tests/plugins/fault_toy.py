"""Components that misbehave on request, for the plugin-fault tests: the core toy's space and evaluator
and random search, each method of which can raise, exit or give back something wrong.

Loaded with `--plugin tests/plugins/fault_toy.py`; names `fault_random`, `fault_space`, `fault_eval`.
The fault comes from the environment, so that a run can fail and then be resumed without it:

    NASFRAME_FAULT="<component>.<method>:<kind>:<n>"   e.g. "strategy.tell:raise:3"

makes the n-th call (counted per component instance, from 1) of that method fail as `kind` says:
raise (ValueError), exit0 (SystemExit(0)), exit (sys.exit("...")), interrupt (KeyboardInterrupt), or
one of the wrong answers in `WRONG`. `import:<kind>` fails the import of this file itself.
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from nasframe.common.plugins import load_plugin
from nasframe.core.evaluator import Cost, Result
from nasframe.core.registry import evaluators, register_evaluator, register_space, register_strategy, spaces, strategies

load_plugin(str(Path(__file__).with_name("core_toy.py")))

#: wrong answers, by method: what the n-th call returns instead of its own answer
WRONG: dict[str, dict[str, Any]] = {
    "evaluate": {
        "string-metric": lambda r: Result(metrics={"val_acc": "91.5"}, cost=r.cost),
        "dict": lambda r: {"val_acc": 91.5},
        "nan": lambda r: Result(metrics={"val_acc": math.nan}, cost=r.cost),
        "inf": lambda r: Result(metrics={"val_acc": math.inf}, cost=r.cost),
        "nan-cost": lambda r: Result(metrics=r.metrics, cost=Cost(math.nan, 1.0)),
        "negative-cost": lambda r: Result(metrics=r.metrics, cost=Cost(0.01, -1.0)),
        "none": lambda r: None,
        "negative-params": lambda r: Result(metrics=r.metrics, cost=r.cost, params=-5),
    },
    "state_dict": {
        "object": lambda s: {**s, "thing": object()},
        "numpy": lambda s: {**s, "best": np.float64(1.0)},
        "lambda": lambda s: {**s, "f": lambda: 1},
    },
    "ask": {
        "none": lambda items: None,
        "garbage": lambda items: [None],
        "outside": lambda items: [{"d0": "nope"}],
    },
    "final_metrics": {"nan": lambda m: {"test_acc": math.nan}, "string": lambda m: {"test_acc": "x"}},
}


#: the faults injected in this process, in order (the property sweep counts a fault only where it came)
INJECTED: list[str] = []


def _spec() -> tuple[str, str, int] | None:
    spec = os.environ.get("NASFRAME_FAULT", "")
    parts = spec.split(":")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


_import = _spec()
if _import is not None and _import[0] == "import":
    kind = _import[1]
    if kind == "exit0":
        sys.exit(0)
    if kind == "exit":
        sys.exit("fault_toy: giving up while importing")
    if kind == "interrupt":
        raise KeyboardInterrupt
    raise ValueError("fault_toy: broken import")


class Faulty:
    """Counts the calls of each method of one component and injects the fault the environment names."""

    component = ""

    def _calls(self) -> Counter:
        if "_fault_calls" not in vars(self):
            self._fault_calls: Counter = Counter()
        return self._fault_calls

    def _maybe(self, method: str, answer: Any = None, compute: Any = None) -> Any:
        """`compute()`'s answer (or `answer`), unless this call is the one to fail."""
        spec = _spec()
        self._calls()[method] += 1
        hit = spec is not None and spec[0] == f"{self.component}.{method}" and self._calls()[method] == spec[2]
        if hit and spec is not None:
            kind = spec[1]
            if kind in ("raise", "exit0", "exit", "interrupt") or kind in WRONG.get(method, {}):
                INJECTED.append(f"{spec[0]}:{kind}:{spec[2]}")
            if kind == "raise":
                raise ValueError(f"injected fault in {method}")
            if kind == "exit0":
                raise SystemExit(0)
            if kind == "exit":
                sys.exit(f"{method}: giving up")
            if kind == "interrupt":
                raise KeyboardInterrupt
        value = compute() if compute is not None else answer
        if hit and spec is not None and spec[1] in WRONG.get(method, {}):
            return WRONG[method][spec[1]](value)
        return value


_SpaceBase: Any = spaces.get("core_toy")
_EvaluatorBase: Any = evaluators.get("core_toy_eval")
_StrategyBase: Any = strategies.get("random")


@register_space("fault_space")
class FaultSpace(Faulty, _SpaceBase):
    """The core toy space, whose validate, build and export can fail."""

    component = "space"

    def __init__(self, options: Any = None) -> None:
        self._maybe("__init__")
        super().__init__(options)

    def validate(self, arch: Any) -> Any:
        return self._maybe("validate", compute=lambda: super(FaultSpace, self).validate(arch))

    def build(self, arch: Any, data: Any) -> Any:
        return self._maybe("build", compute=lambda: super(FaultSpace, self).build(arch, data))

    def export(self, arch: Any, weights: Any = None) -> Any:
        return self._maybe("export", compute=lambda: super(FaultSpace, self).export(arch, weights))


@register_evaluator("fault_eval")
class FaultEvaluator(Faulty, _EvaluatorBase):
    """The core toy evaluator, whose evaluate, final_metrics, state_dict and close can fail."""

    component = "evaluator"

    def __init__(self, space: Any, options: Any = None, **kwargs: Any) -> None:
        self._maybe("__init__")
        super().__init__(space, options, **kwargs)

    def evaluate(self, arch: Any, budget: Any = None) -> Any:
        return self._maybe("evaluate", compute=lambda: super(FaultEvaluator, self).evaluate(arch, budget))

    def final_metrics(self, arch: Any) -> Any:
        return self._maybe("final_metrics", compute=lambda: super(FaultEvaluator, self).final_metrics(arch))

    def state_dict(self) -> Any:
        return self._maybe("state_dict", compute=lambda: super(FaultEvaluator, self).state_dict())

    def load_state_dict(self, state: Any) -> None:
        self._maybe("load_state_dict")
        super().load_state_dict(state)

    def close(self) -> None:
        self._maybe("close")


@register_strategy("fault_random")
class FaultStrategy(Faulty, _StrategyBase):
    """Random search whose ask, tell, state_dict, load_state_dict and final can fail."""

    component = "strategy"

    def __init__(self, space: Any, options: Any = None, seed: int = 0) -> None:
        self._maybe("__init__")
        super().__init__(space, options, seed=seed)

    def ask(self) -> Any:
        return self._maybe("ask", compute=lambda: super(FaultStrategy, self).ask())

    def tell(self, arch: Any, result: Any) -> None:
        self._maybe("tell")
        super().tell(arch, result)

    def state_dict(self) -> Any:
        return self._maybe("state_dict", compute=lambda: super(FaultStrategy, self).state_dict())

    def load_state_dict(self, state: Any) -> None:
        self._maybe("load_state_dict")
        super().load_state_dict(state)

    def final(self) -> Any:
        return self._maybe("final", compute=lambda: super(FaultStrategy, self).final())
