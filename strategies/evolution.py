"""Regularized evolution (aging evolution): tournament selection, one-decision mutation, oldest dies.

Real et al., "Regularized Evolution for Image Classifier Architecture Search" (AAAI 2019), as
NAS-Bench-201's R-EA baseline runs it. The population is filled with P uniformly random
architectures; then every step draws S members WITH replacement, takes the fittest of that sample
(the first one on ties) as parent, evaluates the parent with one decision changed to another
choice, appends the child and removes the OLDEST member, whatever its fitness. Aging, instead of
removing the worst, is the "regularization": an architecture survives only through children that
keep scoring well, so a lucky evaluation cannot dominate forever. The architecture returned is
the best evaluated over the whole history, not the best of the final population.

Mutation is generic over spaces through `SearchSpace.decision_groups`: pick a group uniformly,
then one of its decisions uniformly, then a different choice uniformly. On nb201 the groups are
the cell's target nodes, which reproduces R-EA's node-first edge frequencies (1/3, 1/6, 1/9).

Several objectives (`objectives: [val_acc, latency_ms]`, inferred, not in the paper): the tournament's
winner is the sample member first in NSGA-II's crowded order over the current population (lower
non-domination rank, then larger crowding distance; pymoo computes both), aging is unchanged, and the
answer is the Pareto front of the whole history with its most accurate member as `final`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from nasframe.common.errors import ConfigError, SpaceExhausted
from nasframe.common.options import option
from nasframe.core.evaluator import Result
from nasframe.core.pareto import OBJECTIVES_HELP, MultiObjective, check_objectives, crowded_order, to_minimise
from nasframe.core.registry import register_strategy
from nasframe.core.space import Arch, Choice, SearchSpace
from nasframe.core.strategy import ProposesAhead, Strategy, arch_to_pairs

#: what an infeasible result is called (rejected by user constraints before evaluation, at no cost)
INFEASIBLE = "infeasible"


@dataclass(frozen=True)
class EvolutionOptions:
    population: int = option(
        10, "population size P (default from NAS-Bench-201's R-EA script; the paper used 100)", min=1
    )
    sample_size: int = option(
        3,
        "tournament size S, drawn with replacement from the population (default from "
        "NAS-Bench-201's R-EA script; the paper used 25)",
        min=1,
    )
    mutation: Literal["grouped", "uniform"] = option(
        "grouped",
        "grouped: a decision group (the space's decision_groups; nb201: a target node) uniformly, then "
        "one of its decisions (as R-EA); uniform: every mutable decision equally likely",
    )
    dedup: bool = option(
        False,
        "never propose an architecture proposed before (the reference evaluates duplicates again, so off by default)",
    )
    max_tries: int = option(
        1000, "with dedup: proposals allowed to find an unseen architecture before giving up", min=1
    )
    objectives: list[str] = option(default_factory=lambda: ["val_acc"], help=OBJECTIVES_HELP)

    def __post_init__(self) -> None:
        check_objectives(self.objectives)


class Member(NamedTuple):
    """One population member: `fitness` is the search accuracy, None for a failed evaluation;
    `born` counts the evaluations told before it (its age is the current count minus `born`); `values` are
    its objective values when the search has several objectives."""

    arch: Arch
    fitness: float | None
    born: int
    values: tuple[float, ...] | None = None


def fitness_key(fitness: float | None) -> float:
    """Tournament order: a failed member (None) ranks below every successful one."""
    return -math.inf if fitness is None else fitness


@register_strategy("evolution")
class RegularizedEvolution(Strategy[EvolutionOptions], ProposesAhead, MultiObjective):
    """Regularized (aging) evolution: tournament of S with replacement, mutate one decision, remove the oldest.

    With `run.parallel: N` it is the asynchronous version of the paper: a child is bred from the
    population as it is when a slot frees up, while up to N-1 results are still out."""

    Options = EvolutionOptions

    def __init__(self, space: SearchSpace, options: EvolutionOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self._groups = mutation_groups(space, self.options.mutation)
        self.population: deque[Member] = deque()
        self.evaluated = 0  # results that entered the population, failed ones included
        self.failed = 0
        self.best: tuple[Arch, float] | None = None  # the history's best (first maximum): the answer (RE5)
        self.infeasible = 0  # results rejected before evaluation: ignored, the strategy is simply asked again
        self._seen: set[str] = set()
        self.outstanding = 0  # proposed, not yet told (above 0 only with run.parallel > 1)
        self.use_objectives(self.options.objectives)

    # ---- the three operators ---------------------------------------------------------------------
    def tournament(self) -> list[int]:
        """S population positions drawn uniformly WITH replacement (a member may appear twice)."""
        return self.rng.integers(len(self.population), size=self.options.sample_size).tolist()

    def pick_parent(self, sample: Sequence[int]) -> int:
        """The fittest position of the sample; on ties the first in sample order (as `max` does). With several
        objectives: the sample's first position in the population's crowded order (failed members last)."""
        if self.archive is None:
            return max(sample, key=lambda i: fitness_key(self.population[i].fitness))
        place = self.crowded_places()
        return min(sample, key=lambda i: place[i])

    def crowded_places(self) -> list[float]:
        """Each population position's place in NSGA-II's crowded order (0 is best; failed members inf)."""
        assert self.archive is not None
        scored = [i for i, m in enumerate(self.population) if m.values is not None]
        rows = np.array([to_minimise(self.population[i].values or (), self.archive.objectives) for i in scored])
        place = [math.inf] * len(self.population)
        for rank, k in enumerate(crowded_order(rows)):
            place[scored[int(k)]] = rank
        return place

    def mutate(self, parent: Arch) -> Arch:
        """`parent` with exactly one mutable decision changed to a uniformly drawn different choice."""
        group = self._groups[int(self.rng.integers(len(self._groups)))]
        name, choices = group[int(self.rng.integers(len(group)))]
        current = choices.index(parent[name])
        k = int(self.rng.integers(len(choices) - 1))
        return parent.replace(**{name: choices[k if k < current else k + 1]})

    # ---- ask / tell --------------------------------------------------------------------------------
    def ask(self) -> list[Arch]:
        """A uniform random architecture until the population holds P members (counting those still
        being evaluated), then one child of the population."""
        if len(self.population) + self.outstanding < self.options.population or not self.population:
            arch = self._propose(lambda: self.space.sample(self.rng))
        else:
            arch = self._propose(self._child)
        self.outstanding += 1
        return [arch]

    def _child(self) -> Arch:
        return self.mutate(self.population[self.pick_parent(self.tournament())].arch)

    def _propose(self, draw: Callable[[], Arch]) -> Arch:
        if not self.options.dedup:
            return draw()
        for _ in range(self.options.max_tries):
            arch = draw()
            key = arch.key()
            if key not in self._seen:
                self._seen.add(key)
                return arch
        raise SpaceExhausted(
            f"evolution: {self.options.max_tries} proposals in a row were all seen before "
            f"({len(self._seen)} seen); raise strategy.max_tries or set strategy.dedup=false"
        )

    def tell(self, arch: Arch, result: Result) -> None:
        """Append the result as the youngest member and, once the population is full, remove the oldest.

        A failed evaluation (no finite accuracy) is a member too: it was evaluated and paid for, so it
        ages the population like any child (the population stays "the last P evaluated"); it ranks
        below every successful member, so it is a parent only when every member of a sample failed.
        An infeasible result (rejected by constraints before any evaluation) changes nothing.
        """
        self.outstanding = max(0, self.outstanding - 1)
        if result.status == INFEASIBLE:
            self.infeasible += 1
            return
        acc = result.accuracy
        fitness = float(acc) if acc is not None and math.isfinite(acc) else None
        if fitness is None:
            self.failed += 1
        elif self.best is None or fitness > self.best[1]:
            self.best = (arch, fitness)  # best over the whole history, first maximum kept
        values = self.record_front(arch, fitness) if self.archive is not None else None
        self.population.append(Member(arch, fitness, self.evaluated, values))
        self.evaluated += 1
        if len(self.population) > self.options.population:
            self.population.popleft()  # aging: the oldest dies, however fit

    # ---- results -----------------------------------------------------------------------------------
    def final(self) -> Arch | None:
        """The best architecture of the whole history, not of the final population (RE5); with several
        objectives the front's pick."""
        if self.archive is not None:
            return self.front_pick()
        return self.best[0] if self.best is not None else None

    @property
    def best_accuracy(self) -> float | None:
        return self.best[1] if self.best is not None else None

    def metrics(self) -> dict[str, Any]:
        """Best and mean search accuracy of the current population (successful members only)."""
        fits = [m.fitness for m in self.population if m.fitness is not None]
        if not fits:
            return {}
        return {"population_best": max(fits), "population_mean": sum(fits) / len(fits)}

    # ---- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        out = {
            **super().state_dict(),
            "decisions": [[d.name, len(d.choices)] for d in self.space.decisions],
            "population": [_member_state(m) for m in self.population],
            "evaluated": self.evaluated,
            "failed": self.failed,
            "infeasible": self.infeasible,
            "outstanding": self.outstanding,
            "seen": sorted(self._seen),
            "best": None if self.best is None else [arch_to_pairs(self.best[0]), self.best[1]],
        }
        if self.archive is not None:
            out["front"] = self.archive.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if [list(x) for x in state["decisions"]] != [[d.name, len(d.choices)] for d in self.space.decisions]:
            raise ConfigError(
                "evolution: checkpoint was saved for a space with other decisions; resume it with "
                "the space options it was started with"
            )
        super().load_state_dict(state)
        self.population = deque(_member_from(row) for row in state["population"])
        if self.archive is not None:
            self.archive.load_state_dict(state["front"])
        self.evaluated, self.failed = int(state["evaluated"]), int(state["failed"])
        self.infeasible = int(state["infeasible"])
        self.outstanding = int(state.get("outstanding", 0))
        self._seen = set(state["seen"])
        best = state["best"]
        self.best = None if best is None else (Arch([tuple(p) for p in best[0]]), float(best[1]))


def _member_state(m: Member) -> list[Any]:
    row = [arch_to_pairs(m.arch), m.fitness, m.born]
    return row if m.values is None else [*row, list(m.values)]


def _member_from(row: list[Any]) -> Member:
    values = tuple(float(v) for v in row[3]) if len(row) > 3 else None
    return Member(Arch([tuple(p) for p in row[0]]), row[1], int(row[2]), values)


def mutation_groups(space: SearchSpace, mode: str) -> list[list[tuple[str, tuple[Choice, ...]]]]:
    """Groups of (decision name, allowed choices) that a mutation draws from, empty groups dropped.

    Decisions with a single allowed choice (e.g. fixed by a restriction) cannot change and are left
    out; a group left empty is dropped, so the remaining groups stay equally likely.
    """
    decisions = {d.name: d.choices for d in space.decisions}
    if mode == "uniform":
        groups = [[name] for name in decisions]
    elif mode == "grouped":
        groups = space.decision_groups()
        named = [n for g in groups for n in g]
        unknown = [n for n in named if n not in decisions]
        if unknown:
            raise ConfigError(f"space {space.name!r}: decision_groups names unknown decision {unknown[0]!r}")
        if sorted(named) != sorted(decisions):
            raise ConfigError(
                f"space {space.name!r}: decision_groups must name every decision exactly once "
                f"({len(named)} names for {len(decisions)} decisions)"
            )
    else:
        raise ConfigError(f"strategy.mutation: {mode!r} is not allowed; choose grouped or uniform")
    out = [[(n, decisions[n]) for n in g if len(decisions[n]) > 1] for g in groups]
    out = [g for g in out if g]
    if not out:
        raise ConfigError(
            f"evolution: no decision of space {space.name!r} has more than one allowed choice, so nothing can mutate"
        )
    return out
