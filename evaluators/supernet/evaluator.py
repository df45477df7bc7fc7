"""The registered `supernet` evaluator: what it offers, declared without loading how it does it.

`SupernetEvaluator` names the options and the capabilities (so `nasframe list` and the capability
checks of a run read them without importing torch); constructing one returns its implementation,
`ComposedSupernetEvaluator` (`composed`: the mixins of this package over `SharedSupernet`), as
`pathlib.Path(...)` returns a `PosixPath`. `isinstance(x, SupernetEvaluator)` holds for it.
"""

from __future__ import annotations

from typing import Any

from nasframe.core.capabilities import AngleMetric, BranchImportance, Differentiable, Distillation
from nasframe.core.evaluator import Evaluator
from nasframe.core.registry import register_evaluator
from nasframe.evaluators.supernet.options import SupernetOptions


@register_evaluator("supernet")
class SupernetEvaluator(Evaluator[SupernetOptions], AngleMetric, Differentiable, Distillation, BranchImportance):
    """Single-path weight-sharing supernet: train the candidate's path, score it on search-val."""

    Options = SupernetOptions

    def __new__(cls, *args: Any, **kwargs: Any) -> SupernetEvaluator:
        if cls is SupernetEvaluator:  # the implementation imports torch: only now that one is made
            from nasframe.evaluators.supernet.composed import ComposedSupernetEvaluator

            cls = ComposedSupernetEvaluator
        return super().__new__(cls)


def supernet_spaces() -> list[str]:
    """Installed spaces that build a weight-sharing supernet (for messages)."""
    from nasframe.common.errors import NasframeError
    from nasframe.core.registry import spaces

    found = []
    for name in spaces.installed():
        try:
            if spaces.get(name).supports_supernet:
                found.append(name)
        except NasframeError:  # a broken third-party space must not hide the message being built
            continue
    return found
