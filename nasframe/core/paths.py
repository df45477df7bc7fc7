"""How a training request draws the path of each step: path samplers as plain data.

A `PathSampler` is part of a `TrainShared` / `TrainMixed` request (`nasframe.core.requests`), so it
is plain data that checkpoints hold (`to_state` / `sampler_from_state`); the executor binds it to
the run's space (and, for cost bins, the run's counts) once per request.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nasframe.common.errors import ConfigError, RunDirError
from nasframe.core.space import Arch, Choice, SearchSpace

if TYPE_CHECKING:
    from nasframe.core.costs import ArchCosts

Restriction = tuple[tuple[str, tuple[Choice, ...]], ...]


def restriction_of(space: SearchSpace) -> Restriction | None:
    """The restricted decisions of `space` as plain data (None for an unrestricted space)."""
    allowed = space.restriction()
    if not allowed:
        return None
    return tuple((name, tuple(choices)) for name, choices in allowed.items())


def _restriction_state(r: Restriction | None) -> list[list[Any]] | None:
    return None if r is None else [[n, list(c)] for n, c in r]


def _restriction_from(state: Any) -> Restriction | None:
    return None if state is None else tuple((str(n), tuple(c)) for n, c in state)


class PathSampler(ABC):
    """How `TrainShared` draws the path of each training step (plain data; the runner binds it)."""

    kind: ClassVar[str]
    #: whether `bind` needs the run's parameter/MAC counts
    needs_costs: ClassVar[bool] = False

    @abstractmethod
    def bind(self, space: SearchSpace, costs: ArchCosts | None) -> Callable[[np.random.Generator], Arch]:
        """A draw function over `space` (the run's full space); called once per request."""

    @abstractmethod
    def to_state(self) -> dict[str, Any]:
        """Plain data for checkpoints; `sampler_from_state` reverses it."""


def _view(space: SearchSpace, restriction: Restriction | None) -> SearchSpace:
    return space.restrict({n: list(c) for n, c in restriction}) if restriction else space


@dataclass(frozen=True)
class UniformPaths(PathSampler):
    """One uniform choice per decision, over the space or a restriction of it (SPOS, ABS)."""

    restriction: Restriction | None = None
    kind: ClassVar[str] = "uniform"

    @classmethod
    def over(cls, space: SearchSpace) -> UniformPaths:
        """Uniform over `space` as the strategy sees it (keeping any restriction)."""
        return cls(restriction_of(space))

    def bind(self, space: SearchSpace, costs: ArchCosts | None) -> Callable[[np.random.Generator], Arch]:
        return _view(space, self.restriction).sample

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "restriction": _restriction_state(self.restriction)}


@dataclass(frozen=True)
class BinnedPaths(PathSampler):
    """SPOS' released sampler: pick a bin of a cost uniformly, then draw uniform paths until one
    falls in it (at most `max_draws`); if none does, a fresh unconstrained uniform path is used.

    Bins are consecutive intervals between `edges` ([e0, e1), [e1, e2), ..., the last one closed);
    SPOS used MACs bins of 10M from 290M to 360M. The cost is the stand-alone network's at the
    run's input size; `latency_ms` bins the run's latency, which needs a latency table (measuring
    hundreds of networks per training step is out of the question).
    """

    edges: tuple[float, ...] = ()
    metric: str = "macs"
    max_draws: int = 500
    restriction: Restriction | None = None
    kind: ClassVar[str] = "binned"
    needs_costs: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if len(self.edges) < 2 or any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ConfigError(f"binned paths: bin edges must be at least two increasing numbers, got {self.edges}")
        if self.metric not in ("macs", "params", "latency_ms"):
            raise ConfigError(f"binned paths: metric {self.metric!r} is not allowed; choose macs, params or latency_ms")
        if self.max_draws < 1:
            raise ConfigError("binned paths: max_draws must be at least 1")

    def bind(self, space: SearchSpace, costs: ArchCosts | None) -> Callable[[np.random.Generator], Arch]:
        view = _view(space, self.restriction)
        edges, last = self.edges, len(self.edges) - 2
        measure = self._measure(space, costs)

        def draw(rng: np.random.Generator) -> Arch:
            b = int(rng.integers(last + 1))
            lo, hi = edges[b], edges[b + 1]
            for _ in range(self.max_draws):
                arch = view.sample(rng)
                value = measure(arch)
                if lo <= value < hi or (b == last and value == hi):
                    return arch
            return view.sample(rng)

        return draw

    def _measure(self, space: SearchSpace, costs: ArchCosts | None) -> Callable[[Arch], float]:
        if self.metric == "latency_ms":
            latency = costs.latency if costs is not None else None
            if latency is None or latency.source != "table":
                raise ConfigError(
                    "binned paths on latency_ms need a latency table (latency.table), so that hundreds of draws per "
                    "step are lookups, not measurements"
                )
            latency.prepare_table()
            return latency.latency_ms
        if costs is None or not costs.prepare_table():
            raise ConfigError(
                f"binned paths need counts that add up over decisions, so that hundreds of draws per step stay "
                f"cheap; space {space.name!r} does not declare additive_costs: use uniform paths"
            )
        return costs.macs if self.metric == "macs" else costs.params

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "edges": list(self.edges),
            "metric": self.metric,
            "max_draws": self.max_draws,
            "restriction": _restriction_state(self.restriction),
        }


@dataclass(frozen=True)
class CategoricalPaths(PathSampler):
    """One independent categorical draw per decision from probabilities a strategy holds
    (aligned with each decision's choices in the full space; zeros exclude a choice)."""

    probabilities: tuple[tuple[str, tuple[float, ...]], ...] = ()
    kind: ClassVar[str] = "categorical"

    @classmethod
    def of(cls, probabilities: Mapping[str, Sequence[float]]) -> CategoricalPaths:
        return cls(tuple((n, tuple(float(p) for p in ps)) for n, ps in probabilities.items()))

    def bind(self, space: SearchSpace, costs: ArchCosts | None) -> Callable[[np.random.Generator], Arch]:
        table = dict(self.probabilities)
        decisions = space.decisions
        rows = []
        for d in decisions:
            p = np.asarray(table.get(d.name, [1.0] * len(d.choices)), dtype=np.float64)
            if p.shape != (len(d.choices),) or not np.all(np.isfinite(p)) or p.min() < 0 or p.sum() <= 0:
                raise ConfigError(
                    f"categorical paths: probabilities of {d.name} must be {len(d.choices)} "
                    f"non-negative numbers with a positive sum"
                )
            rows.append(np.cumsum(p / p.sum()))

        def draw(rng: np.random.Generator) -> Arch:
            u = rng.random(len(rows))
            return Arch(
                [
                    (d.name, d.choices[min(int(np.searchsorted(c, x, side="right")), len(d.choices) - 1)])
                    for d, c, x in zip(decisions, rows, u)
                ]
            )

        return draw

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "probabilities": [[n, list(p)] for n, p in self.probabilities]}


def sampler_from_state(state: Mapping[str, Any]) -> PathSampler:
    kind = state.get("kind")
    if kind == UniformPaths.kind:
        return UniformPaths(_restriction_from(state["restriction"]))
    if kind == BinnedPaths.kind:
        return BinnedPaths(
            tuple(float(e) for e in state["edges"]),
            str(state["metric"]),
            int(state["max_draws"]),
            _restriction_from(state["restriction"]),
        )
    if kind == CategoricalPaths.kind:
        return CategoricalPaths(tuple((str(n), tuple(float(x) for x in p)) for n, p in state["probabilities"]))
    raise RunDirError(f"checkpoint holds an unknown path sampler {kind!r}")
