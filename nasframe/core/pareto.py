"""Multi-objective search: objectives, Pareto fronts, NSGA-II's crowded order, hypervolume (with pymoo).

An objective list names the search accuracy first and then one or more costs of the stand-alone
network: `[val_acc, latency_ms]`, `[val_acc, params]`, `[val_acc, macs, latency_ms]`. Accuracy is
maximised, costs minimised; internally every point is a row to minimise (`-val_acc`, costs as they are).
Non-dominated sorting, crowding distances and hypervolumes are pymoo's; what is written here is only the
bookkeeping around them: which architecture a row belongs to, the archive of the front over a whole run,
and the rule that picks one member as the run's `final` answer.

The rule (`pick`): the most accurate member of the front; on equal accuracy, the one with the lower
first cost, then the next. Every evaluated architecture already satisfies the run's `constraints:`, so
with `max_latency_ms` set this is "the most accurate architecture under the limit".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasframe.common.errors import ConfigError, NotSupported
from nasframe.core.space import Arch
from nasframe.core.strategy import CostAware

if TYPE_CHECKING:
    from nasframe.core.costs import ArchCosts

ACCURACY = "val_acc"
#: the costs an objective list may name, with their unit for messages and figures
COSTS: dict[str, str] = {"params": "parameters", "macs": "MACs", "latency_ms": "ms"}
#: the help text of a strategy's `objectives` option
OBJECTIVES_HELP = (
    "val_acc alone, or val_acc then costs to minimise (params, macs, latency_ms): the answer is then the "
    "Pareto front (best.json pareto) and final its most accurate member"
)


def check_objectives(names: Sequence[str], where: str = "strategy.objectives") -> tuple[str, ...]:
    """`names` as a tuple when they are val_acc followed by distinct known costs; else one ConfigError line."""
    out = tuple(names)
    if not out or out[0] != ACCURACY:
        raise ConfigError(f"{where}: the first objective must be val_acc, got {list(out)}")
    unknown = [n for n in out[1:] if n not in COSTS]
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]!r} is not an objective; after val_acc use {', '.join(COSTS)}")
    if len(set(out)) != len(out):
        raise ConfigError(f"{where}: an objective is named twice in {list(out)}")
    if len(out) > 1:
        try:
            import pymoo  # noqa: F401
        except ImportError:
            raise NotSupported(f"{where}: several objectives need pymoo: pip install 'nasframe[pareto]'") from None
    return out


def to_minimise(values: Sequence[float], objectives: Sequence[str]) -> list[float]:
    """One point's objective values as a row to minimise (accuracy negated)."""
    return [-float(v) if name == ACCURACY else float(v) for v, name in zip(values, objectives)]


def non_dominated(rows: np.ndarray) -> np.ndarray:
    """Indices of the rows no other row dominates (minimisation), in row order (pymoo)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    if len(rows) == 0:
        return np.zeros(0, dtype=int)
    return np.sort(NonDominatedSorting().do(rows, only_non_dominated_front=True))


def crowded_order(rows: np.ndarray) -> np.ndarray:
    """Row indices from best to worst by NSGA-II's crowded comparison: lower non-domination rank first, then
    larger crowding distance within the rank (pymoo computes both); equal keys keep row order."""
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    if len(rows) == 0:
        return np.zeros(0, dtype=int)
    fronts = NonDominatedSorting().do(rows)
    rank = np.empty(len(rows), dtype=int)
    crowding = np.empty(len(rows))
    for r, front in enumerate(fronts):
        rank[front] = r
        crowding[front] = calc_crowding_distance(rows[front]) if len(front) > 2 else math.inf
    return np.lexsort((np.arange(len(rows)), -crowding, rank))


def hypervolume(rows: np.ndarray, reference: Sequence[float]) -> float:
    """The hypervolume the rows dominate up to `reference` (minimisation; pymoo's HV)."""
    from pymoo.indicators.hv import HV

    rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(reference))
    inside = rows[np.all(rows < np.asarray(reference, dtype=np.float64), axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=np.asarray(reference, dtype=np.float64))(inside))


@dataclass(frozen=True)
class FrontMember:
    """One architecture on the front: its objective values (in the objectives' order) and when it was told."""

    arch: Arch
    values: tuple[float, ...]
    told: int


class ParetoArchive:
    """The Pareto front of every architecture told so far (one entry per architecture: its first result)."""

    def __init__(self, objectives: Sequence[str]):
        self.objectives = check_objectives(objectives)
        self.members: list[FrontMember] = []
        self.told = 0
        self._seen: set[str] = set()

    def offer(self, arch: Arch, values: Sequence[float]) -> bool:
        """Add a told architecture; True when it is on the front afterwards."""
        self.told += 1
        key = arch.key()
        if key in self._seen or not all(math.isfinite(v) for v in values):
            return False
        self._seen.add(key)
        candidate = FrontMember(arch, tuple(float(v) for v in values), self.told - 1)
        pool = [*self.members, candidate]
        keep = non_dominated(np.array([to_minimise(m.values, self.objectives) for m in pool]))
        self.members = [pool[i] for i in keep]
        return self.members[-1] is candidate if self.members else False

    def front(self) -> list[FrontMember]:
        """The front, most accurate first."""
        return sorted(self.members, key=lambda m: (-m.values[0], *m.values[1:], m.told))

    def pick(self) -> FrontMember | None:
        """The run's answer among the front (the module docstring's rule)."""
        front = self.front()
        return front[0] if front else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "objectives": list(self.objectives),
            "members": [[list(map(list, m.arch.items())), list(m.values), m.told] for m in self.members],
            "told": self.told,
            "seen": sorted(self._seen),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["objectives"]) != list(self.objectives):
            raise ConfigError(
                f"checkpoint was saved with objectives {state['objectives']}; resume it with those objectives"
            )
        self.members = [
            FrontMember(Arch([(str(k), v) for k, v in pairs]), tuple(float(x) for x in values), int(told))
            for pairs, values, told in state["members"]
        ]
        self.told, self._seen = int(state["told"]), set(state["seen"])


class MultiObjective(CostAware):
    """Declares that the strategy may search several objectives (its option `objectives`) and then answers
    with the Pareto front of what it evaluated: the runner writes `pareto_archive()` into best.json
    (`pareto`) and the strategy's `final` is the front's pick. With `[val_acc]` alone nothing changes."""

    archive: ParetoArchive | None = None

    def use_objectives(self, objectives: Sequence[str]) -> None:
        names = check_objectives(objectives)
        self.archive = ParetoArchive(names) if len(names) > 1 else None

    def costs_used(self) -> frozenset[str]:
        return frozenset(self.archive.objectives[1:]) if self.archive is not None else frozenset()

    def bind_costs(self, costs: ArchCosts) -> None:
        """Bind, and build the fast per-choice tables now when the objectives will read every evaluation's costs."""
        super().bind_costs(costs)
        used = MultiObjective.costs_used(self)
        if used & {"params", "macs"}:
            costs.prepare_table()
        if "latency_ms" in used and costs.latency is not None:
            costs.latency.prepare_table()

    def objective_values(self, arch: Arch, accuracy: float) -> tuple[float, ...]:
        """(accuracy, each cost objective of `arch`)."""
        assert self.archive is not None
        return (float(accuracy), *(self.arch_cost(arch, name) for name in self.archive.objectives[1:]))

    def record_front(self, arch: Arch, accuracy: float | None) -> tuple[float, ...] | None:
        """Offer a told architecture to the front; its objective values (None when single-objective or failed)."""
        if self.archive is None or accuracy is None or not math.isfinite(accuracy):
            return None
        values = self.objective_values(arch, accuracy)
        self.archive.offer(arch, values)
        return values

    def pareto_archive(self) -> ParetoArchive | None:
        return self.archive

    def front_pick(self) -> Arch | None:
        member = self.archive.pick() if self.archive is not None else None
        return member.arch if member is not None else None
