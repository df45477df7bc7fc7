"""The `supernet` evaluator's implementation: the shared weights with every capability of this package.

`SupernetEvaluator(...)` (`evaluator`, the registered declaration) returns one of these.
"""

from __future__ import annotations

from nasframe.evaluators.supernet.angles import SupernetAngles
from nasframe.evaluators.supernet.branch_importance import SupernetBranchImportance
from nasframe.evaluators.supernet.differentiable import SupernetDifferentiable
from nasframe.evaluators.supernet.distillation import SupernetDistillation
from nasframe.evaluators.supernet.evaluator import SupernetEvaluator
from nasframe.evaluators.supernet.fewshot import FewShotSplitting


class ComposedSupernetEvaluator(
    FewShotSplitting,
    SupernetAngles,
    SupernetDifferentiable,
    SupernetDistillation,
    SupernetBranchImportance,
    SupernetEvaluator,
):
    """Single-path weight-sharing supernet: train the candidate's path, score it on search-val."""
