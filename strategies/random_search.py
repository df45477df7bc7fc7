"""Uniform random search: the baseline every strategy must beat."""

from __future__ import annotations

from dataclasses import dataclass

from nasframe.common.options import option
from nasframe.core.evaluator import Result
from nasframe.core.registry import register_strategy
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import ProposesAhead, Strategy, ask_unseen


@dataclass(frozen=True)
class RandomOptions:
    dedup: bool = option(True, "never evaluate the same architecture twice")
    max_tries: int = option(1000, "draws allowed to find an unseen architecture before giving up", min=1)


@register_strategy("random")
class RandomSearch(Strategy[RandomOptions], ProposesAhead):
    """Uniform random sampling over the space; returns the best architecture it evaluated."""

    Options = RandomOptions

    def __init__(self, space: SearchSpace, options: RandomOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self._seen: set[str] = set()

    def ask(self) -> list[Arch]:
        if not self.options.dedup:
            return [self.space.sample(self.rng)]
        return [ask_unseen(self.space, self.rng, self._seen, max_tries=self.options.max_tries)]

    def tell(self, arch: Arch, result: Result) -> None:
        """Random search learns nothing; the runner keeps the best evaluated architecture."""

    def state_dict(self) -> dict:
        return {**super().state_dict(), "seen": sorted(self._seen)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._seen = set(state["seen"])
