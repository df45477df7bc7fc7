"""Uniform random search: the baseline every strategy must beat.

With `objectives: [val_acc, <cost>, ...]` it keeps the Pareto front of what it evaluated
(`nasframe.core.pareto`) and answers with the front's most accurate member; what it proposes does not change.
"""

from __future__ import annotations

from dataclasses import dataclass

from nasframe.common.options import option
from nasframe.core.evaluator import Result
from nasframe.core.pareto import OBJECTIVES_HELP, MultiObjective, check_objectives
from nasframe.core.registry import register_strategy
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import ProposesAhead, Strategy, ask_unseen


@dataclass(frozen=True)
class RandomOptions:
    dedup: bool = option(True, "never evaluate the same architecture twice")
    max_tries: int = option(1000, "draws allowed to find an unseen architecture before giving up", min=1)
    objectives: list[str] = option(default_factory=lambda: ["val_acc"], help=OBJECTIVES_HELP)

    def __post_init__(self) -> None:
        check_objectives(self.objectives)


@register_strategy("random")
class RandomSearch(Strategy[RandomOptions], ProposesAhead, MultiObjective):
    """Uniform random sampling over the space; returns the best architecture it evaluated.

    With several objectives it returns the Pareto front of what it evaluated."""

    Options = RandomOptions

    def __init__(self, space: SearchSpace, options: RandomOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self._seen: set[str] = set()
        self.use_objectives(self.options.objectives)

    def ask(self) -> list[Arch]:
        if not self.options.dedup:
            return [self.space.sample(self.rng)]
        return [ask_unseen(self.space, self.rng, self._seen, max_tries=self.options.max_tries)]

    def tell(self, arch: Arch, result: Result) -> None:
        """Random search learns nothing; the runner keeps the best evaluated architecture (and this the front)."""
        if self.archive is not None:
            self.record_front(arch, result.accuracy)

    def final(self) -> Arch | None:
        return self.front_pick()

    def state_dict(self) -> dict:
        out = {**super().state_dict(), "seen": sorted(self._seen)}
        if self.archive is not None:
            out["front"] = self.archive.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._seen = set(state["seen"])
        if self.archive is not None:
            self.archive.load_state_dict(state["front"])
