"""The registered `supernet` evaluator: what it offers, declared without loading how it does it.

`SupernetEvaluator` names the options and the capabilities (so `nasframe list` and the capability
checks of a run read them without importing torch); constructing one returns its implementation,
`ComposedSupernetEvaluator` (`composed`: the mixins of this package over `SharedSupernet`), as
`pathlib.Path(...)` returns a `PosixPath`. `isinstance(x, SupernetEvaluator)` holds for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nasframe.common.errors import NotSupported
from nasframe.core.capabilities import AngleMetric, BranchImportance, Capability, Differentiable, Distillation
from nasframe.core.evaluator import Evaluator
from nasframe.core.registry import register_evaluator
from nasframe.core.space import SearchSpace
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

    @classmethod
    def check_space(cls, space: SearchSpace, needed: Sequence[type[Capability]]) -> None:
        """Refuse, when the run is built, a space whose supernet lacks what the strategy's requests need:
        a supernet at all, its angle terms (ABS) or its mixed forward (DARTS, SETN), naming what to add."""
        if not space.supports_supernet:
            raise NotSupported(no_supernet_message(space))
        for capability, extra, users in (
            (AngleMetric, "angle_terms", "ABS' angle metric"),
            (Differentiable, "forward_mixed", "a differentiable search (DARTS, SETN)"),
        ):
            if any(issubclass(c, capability) for c in needed) and extra not in space.supernet_extras:
                raise NotSupported(
                    f"{users} needs the supernet's {extra}, which space {space.name!r} does not declare: "
                    f"{space.supernet_extra_hint(extra)}"
                )

    def search_split(self) -> str:
        return "search-val, through the supernet's shared weights (not a stand-alone training)"


def no_supernet_message(space: SearchSpace) -> str:
    return (
        f"space {space.name!r} has no weight-sharing supernet; spaces with one: {', '.join(supernet_spaces())} "
        f"(a space offers one by implementing build_supernet(data) and setting supports_supernet = True on its "
        f"class, as nasframe.nn.ModelSpace does; or evaluate each architecture on its own with short_train and a "
        f"multi-trial strategy)"
    )


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
