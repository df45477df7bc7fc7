"""Local search (hill climbing with restarts), as White et al. run it on NAS benchmarks.

White, Nolen, Zela, Ru, Liu, Hutter, "Exploring the Loss Landscape in Neural Architecture Search" (UAI
2021; first released as "Local Search is State of the Art for NAS Benchmarks", 2020). The paper's
Algorithm 1: evaluate every architecture of the current one's neighbourhood, move to the best of the
neighbourhood and the current one, stop when the current one is best (a local optimum). Its released
code starts each climb from the best of `num_init = 10` random architectures, evaluates the
neighbourhood in random order, never evaluates an architecture twice, and restarts with 10 fresh
random architectures at a local optimum until the budget is spent.

The neighbourhood is every architecture one decision away: each decision with more than one allowed
choice, changed to each of its other choices (nb201: 6 edges x 4 other ops = 24 neighbours, the
paper's). That is the union over all `SearchSpace.decision_groups`, so it needs no grouping and
works on every space, restricted ones included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from nasframe.common.errors import ConfigError, SpaceExhausted
from nasframe.common.options import option
from nasframe.core.evaluator import Result
from nasframe.core.registry import register_strategy
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import Strategy, arch_from_pairs, arch_to_pairs


@dataclass(frozen=True)
class LocalSearchOptions:
    initial: int = option(
        10, "random architectures evaluated before each climb; the climb starts at their best (paper code: 10)", min=1
    )
    move: Literal["best", "first"] = option(
        "best",
        "best: evaluate the whole neighbourhood, then move to its best (the paper's Algorithm 1); "
        "first: move to the first neighbour that improves (random order), skipping the rest",
    )
    max_tries: int = option(1000, "draws allowed to find an unseen random architecture before giving up", min=1)


def fitness(result: Result) -> float:
    """The search accuracy, or -inf for a failed or infeasible result (it never wins a comparison)."""
    acc = result.accuracy
    return float(acc) if acc is not None and math.isfinite(acc) else -math.inf


@register_strategy("local_search")
class LocalSearch(Strategy[LocalSearchOptions]):
    """Best of `initial` random architectures, then climb through one-decision neighbourhoods; restart at a
    local optimum. Never evaluates an architecture twice; returns the best architecture it evaluated."""

    Options = LocalSearchOptions

    def __init__(self, space: SearchSpace, options: LocalSearchOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self.scores: dict[str, float] = {}  # every architecture told (key -> fitness), proposed ones not yet told
        self.proposed: set[str] = set()  # keys asked for, told or not
        self.center: Arch | None = None  # the architecture the climb stands on
        self.neighbours: list[Arch] = []  # the centre's neighbourhood in its (random) order
        self.starts: list[Arch] = []  # random architectures of the current restart, in order
        self.climbs = 0  # restarts so far (the first climb counts)
        self.moves = 0  # moves of the current climb
        self.exhausted = False  # random draws found too few unseen architectures for a full restart
        self.best: tuple[Arch, float] | None = None  # the best of the whole history (first maximum)

    # ---- the neighbourhood --------------------------------------------------------------------------
    def neighbourhood(self, arch: Arch) -> list[Arch]:
        """Every architecture one decision away from `arch`, shuffled with the strategy's RNG."""
        out = [arch.replace(**{d.name: c}) for d in self.space.decisions for c in d.choices if c != arch[d.name]]
        order = self.rng.permutation(len(out))
        return [out[int(i)] for i in order]

    # ---- ask / tell ---------------------------------------------------------------------------------
    def ask(self) -> list[Arch]:
        """The random starts of a climb (all at once), then the unevaluated part of the current
        neighbourhood (move `best`) or its next unevaluated neighbour (move `first`)."""
        for _ in range(len(self.scores) + 2):
            if self.center is None:
                if len(self.starts) < self.options.initial and not self.exhausted:
                    fresh = self._fresh_starts(self.options.initial - len(self.starts))
                    self.starts.extend(fresh)
                    return fresh
                if any(a.key() not in self.scores for a in self.starts):
                    return []  # a start is still out (only when asked before everything was told)
                if not self.starts:
                    raise SpaceExhausted(
                        f"local_search: every architecture of the space was evaluated ({len(self.scores)})"
                    )
                self._climb_from(max(self.starts, key=lambda a: self.scores[a.key()]))
                continue
            todo = [a for a in self.neighbours if a.key() not in self.proposed]
            if todo:
                wanted = todo if self.options.move == "best" else todo[:1]
                self.proposed.update(a.key() for a in wanted)
                return wanted
            if any(a.key() not in self.scores for a in self.neighbours):
                return []
            self._step()
        raise AssertionError("local search found nothing to propose")  # every pass above proposes or moves

    def _fresh_starts(self, count: int) -> list[Arch]:
        """Up to `count` unseen random architectures; fewer (at least one) when the space runs out."""
        fresh: list[Arch] = []
        try:
            for _ in range(count):
                fresh.append(self._unseen_random())
        except SpaceExhausted:
            if not fresh:
                raise
            self.exhausted = True  # climb from what was found; the next restart gives up
        return fresh

    def _unseen_random(self) -> Arch:
        for _ in range(self.options.max_tries):
            arch = self.space.sample(self.rng)
            if arch.key() not in self.proposed:
                self.proposed.add(arch.key())
                return arch
        raise SpaceExhausted(
            f"local_search: {self.options.max_tries} random draws in a row were all evaluated before "
            f"({len(self.proposed)} evaluated; the space holds {self.space.size()})"
        )

    def _climb_from(self, arch: Arch) -> None:
        self.climbs += 1
        self.moves = 0
        self._move_to(arch)

    def _move_to(self, arch: Arch) -> None:
        self.center = arch
        self.neighbours = self.neighbourhood(arch)

    def _step(self) -> None:
        """The whole neighbourhood is known: move to its best if it beats the centre (the first maximum
        in evaluation order), else the centre is a local optimum and a new climb starts."""
        assert self.center is not None
        here = self.scores[self.center.key()]
        best = max(self.neighbours, key=lambda a: self.scores[a.key()], default=None)
        if best is not None and self.scores[best.key()] > here:
            self.moves += 1
            self._move_to(best)
        else:
            self.center, self.neighbours, self.starts = None, [], []
            if self.exhausted:
                raise SpaceExhausted(
                    f"local_search: random draws find no unseen architecture to restart from ({len(self.scores)} "
                    "evaluated)"
                )

    def tell(self, arch: Arch, result: Result) -> None:
        """Record the result. With move `first`, an improving neighbour becomes the centre at once."""
        key = arch.key()
        self.proposed.add(key)
        score = fitness(result)
        self.scores[key] = score
        if score > -math.inf and (self.best is None or score > self.best[1]):
            self.best = (arch, score)
        if (
            self.options.move == "first"
            and self.center is not None
            and any(a.key() == key for a in self.neighbours)
            and score > self.scores[self.center.key()]
        ):
            self.moves += 1
            self._move_to(arch)

    # ---- results -----------------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return "random starts" if self.center is None else "climbing"

    def final(self) -> Arch | None:
        """The best architecture evaluated (the runner's choice too)."""
        return self.best[0] if self.best is not None else None

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"climbs": float(self.climbs), "moves": float(self.moves)}
        here = self.scores.get(self.center.key()) if self.center is not None else None
        if here is not None and math.isfinite(here):
            out["center_accuracy"] = here
        return out

    # ---- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "decisions": [[d.name, len(d.choices)] for d in self.space.decisions],
            "scores": [[k, v] for k, v in self.scores.items()],
            "proposed": sorted(self.proposed),
            "center": arch_to_pairs(self.center),
            "neighbours": [arch_to_pairs(a) for a in self.neighbours],
            "starts": [arch_to_pairs(a) for a in self.starts],
            "climbs": self.climbs,
            "moves": self.moves,
            "exhausted": self.exhausted,
            "best": None if self.best is None else [arch_to_pairs(self.best[0]), self.best[1]],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if [list(x) for x in state["decisions"]] != [[d.name, len(d.choices)] for d in self.space.decisions]:
            raise ConfigError(
                "local_search: checkpoint was saved for a space with other decisions; resume it with the space "
                "options it was started with"
            )
        super().load_state_dict(state)
        self.scores = {str(k): float(v) for k, v in state["scores"]}
        self.proposed = set(state["proposed"])
        self.center = arch_from_pairs(state["center"])
        self.neighbours = [a for a in (arch_from_pairs(p) for p in state["neighbours"]) if a is not None]
        self.starts = [a for a in (arch_from_pairs(p) for p in state["starts"]) if a is not None]
        self.climbs, self.moves = int(state["climbs"]), int(state["moves"])
        self.exhausted = bool(state.get("exhausted", False))
        best = state["best"]
        self.best = None if best is None else (Arch([tuple(p) for p in best[0]]), float(best[1]))
