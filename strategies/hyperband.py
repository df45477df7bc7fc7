"""Hyperband: successive halving over several brackets, from aggressive early stopping to none.

Li, Jamieson, DeSalvo, Rostamizadeh, Talwalkar, "Hyperband: A Novel Bandit-Based Approach to
Hyperparameter Optimization" (JMLR 2018). With s_max + 1 rungs (see `successive_halving`), bracket s
(s = s_max, ..., 0) starts ceil((s_max + 1) / (s + 1) * eta^s) random architectures at rung s_max - s and
halves them up to the last rung. Bracket s_max is successive halving from the smallest budget; bracket 0
evaluates a few architectures at the full budget only, which protects the search when the small budgets
rank architectures badly. The brackets run in that order and the cycle repeats until the run's budget
ends. The answer is the best architecture of the highest rung reached, as in successive halving.
"""

from __future__ import annotations

import math

from nasframe.core.registry import register_strategy
from nasframe.strategies.successive_halving import SuccessiveHalving


@register_strategy("hyperband")
class Hyperband(SuccessiveHalving):
    """Hyperband's brackets of successive halving, cycled; evaluations at growing epoch budgets."""

    def bracket_plan(self) -> list[tuple[int, int]]:
        """(first rung, architectures) of brackets s = s_max .. 0; `n` replaces the widest bracket's count."""
        s_max = len(self.rungs) - 1
        eta = self.options.eta
        plan = [(s_max - s, math.ceil((s_max + 1) / (s + 1) * eta**s - 1e-9)) for s in range(s_max, -1, -1)]
        if self.options.n is not None:
            plan[0] = (0, self.options.n)
        return plan
