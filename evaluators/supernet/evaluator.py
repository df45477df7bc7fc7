"""The registered `supernet` evaluator: the shared weights with every capability of this package."""

from __future__ import annotations

from nasframe.core.registry import register_evaluator
from nasframe.evaluators.supernet.angles import SupernetAngles
from nasframe.evaluators.supernet.branch_importance import SupernetBranchImportance
from nasframe.evaluators.supernet.differentiable import SupernetDifferentiable
from nasframe.evaluators.supernet.distillation import SupernetDistillation
from nasframe.evaluators.supernet.fewshot import FewShotSplitting


@register_evaluator("supernet")
class SupernetEvaluator(
    FewShotSplitting, SupernetAngles, SupernetDifferentiable, SupernetDistillation, SupernetBranchImportance
):
    """Single-path weight-sharing supernet: train the candidate's path, score it on search-val."""

    def search_split(self) -> str:
        return "search-val, through the supernet's shared weights (not a stand-alone training)"
