"""The registered `supernet` evaluator: the shared weights with every capability of this package."""

from __future__ import annotations

from collections.abc import Sequence

from nasframe.common.errors import NotSupported
from nasframe.core.capabilities import AngleMetric, Capability, Differentiable
from nasframe.core.registry import register_evaluator
from nasframe.core.space import SearchSpace
from nasframe.evaluators.supernet.angles import SupernetAngles
from nasframe.evaluators.supernet.branch_importance import SupernetBranchImportance
from nasframe.evaluators.supernet.differentiable import SupernetDifferentiable
from nasframe.evaluators.supernet.distillation import SupernetDistillation
from nasframe.evaluators.supernet.fewshot import FewShotSplitting
from nasframe.evaluators.supernet.shared import no_supernet_message


@register_evaluator("supernet")
class SupernetEvaluator(
    FewShotSplitting, SupernetAngles, SupernetDifferentiable, SupernetDistillation, SupernetBranchImportance
):
    """Single-path weight-sharing supernet: train the candidate's path, score it on search-val."""

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
