"""The Strategy interface: ask/tell, plus the one-shot protocol's requests.

A strategy proposes (`ask`) and learns (`tell`, `tell_work`). It never trains a network, never
holds an evaluator, never seeds a global RNG and never touches files: the runner owns the loop,
the budget, seeding, files and logging, and executes whatever the strategy asks for — plain
architectures to evaluate, or weight-sharing work (`nasframe.core.requests`). All of a strategy's
randomness comes from `self.rng`, seeded by the runner, and `state_dict` includes it, so a resumed
search continues the same sequence. The runner, not the strategy, keeps the best evaluated
architecture; `final` returns the strategy's own answer when it has one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from nasframe.common.options import NoOptions

if TYPE_CHECKING:
    from nasframe.core.capabilities import Capability
    from nasframe.core.costs import ArchCosts
    from nasframe.core.evaluator import Result, WorkReport
    from nasframe.core.requests import Request
    from nasframe.core.space import Arch, SearchSpace


OptionsT = TypeVar("OptionsT")


class Strategy(ABC, Generic[OptionsT]):
    """Base class of search strategies, generic over its options dataclass (`Strategy[MyOptions]`).

    Subclasses implement `ask` and `tell`; one-shot strategies also `tell_work` and list the
    evaluator capabilities their requests need in `requires`. Override `done`, `final`,
    `final_alternatives`, `final_weights`, `metrics`, `phase`, `plan` and the state methods as needed. Keep `__init__`
    cheap: the runner builds the strategy before any evaluation.
    """

    Options: ClassVar[type] = NoOptions
    #: evaluator capabilities (classes from `nasframe.core.evaluator`) this strategy's requests need;
    #: checked when the run is built
    requires: ClassVar[tuple[type[Capability], ...]] = ()

    def __init__(self, space: SearchSpace, options: OptionsT | None = None, *, seed: int | None = None):
        self.space = space
        self.options: OptionsT = options if options is not None else self.Options()
        self.rng = np.random.default_rng(seed)

    @classmethod
    def required_capabilities(cls, options: Any) -> tuple[type[Capability], ...]:
        """Capabilities a strategy built with `options` needs (default: `requires`). Override when
        an option changes them (ABS adds its base strategy's)."""
        return cls.requires

    @abstractmethod
    def ask(self) -> Sequence[Arch | Request]:
        """What to do next: architectures to evaluate and/or requests (`nasframe.core.requests`).

        The runner executes the items in order and tells each outcome before it asks again
        (unless the strategy declares `ProposesAhead`); an empty answer ends the search.
        """

    @abstractmethod
    def tell(self, arch: Arch, result: Result) -> None:
        """Learn from one evaluation. Failed results are told too, and so are architectures the
        run's constraints rejected (`result.status == "infeasible"`: not evaluated, cost nothing)."""

    def tell_work(self, request: Request, report: WorkReport) -> None:
        """Learn from a finished piece of weight-sharing work (training, a measurement)."""

    @property
    def done(self) -> bool:
        """True when the strategy has nothing more to propose."""
        return False

    @property
    def phase(self) -> str:
        """A short name of what the strategy is doing now, for the progress bar and the logs."""
        return "search"

    def plan(self) -> str | None:
        """One line on how much work the strategy's settings ask for (shown when a run starts),
        with the `--set` flags that make it quick, when that matters."""
        return None

    def planned_training_epochs(self) -> float | None:
        """Supernet training epochs the strategy will request at least, if it knows (one-shot strategies;
        the evaluator may warn when its schedule does not fit)."""
        return None

    def planned_evaluations(self) -> int | None:
        """How many evaluations the strategy intends at most, if it knows (the runner warns when
        the run's budget is smaller)."""
        return None

    def final(self) -> Arch | None:
        """The strategy's answer, if it has one of its own (e.g. the most likely architecture);
        None lets the runner return the best evaluated architecture."""
        return None

    def final_alternatives(self) -> Mapping[str, Arch]:
        """Other answers the strategy could have returned, by name (MDENAS: its argmax when it
        returns the best evaluated architecture). The runner records each in best.json's
        `alternatives` with whether the search evaluated it and its held-out metrics."""
        return {}

    def final_evaluation(self, arch: Arch) -> Arch | Request:
        """How the run's final evaluation (`run.final_evaluation`) measures the returned architecture:
        by default the evaluator's own evaluation; a one-shot strategy returns the request it scored
        candidates with (SPOS: `ScoreShared`), so the final number means what its search numbers meant."""
        return arch

    def final_weights(self) -> Mapping[str, Sequence[float]] | None:
        """Per-decision preferences (aligned with each decision's choices), if the strategy has them."""
        return None

    def metrics(self) -> dict[str, Any]:
        """Extra values to log after each tell: floats become scalars, arrays histograms."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, RNG included. Use plain Python data and tensors only."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class ProposesAhead:
    """Declares that the strategy may be asked again while results of earlier proposals are still out.

    With `run.parallel: N` the runner keeps up to N evaluations in flight; it asks such a strategy
    for more as soon as a slot is free, before the outstanding results are told (random search
    never looks at results; evolution then breeds from the population it has, as the asynchronous
    workers of regularized evolution do). Other strategies are asked only once everything they
    proposed has been told, so N only overlaps the items of one `ask`. The runner checks this
    declaration with `issubclass`; it does not change what a strategy does with `run.parallel: 1`.
    """


class CostAware(ABC):
    """Declares that the strategy reads costs of architectures (parameters, MACs, latency) through
    `self.arch_costs`, the run's `nasframe.core.costs.ArchCosts`, which the runner binds (`bind_costs`) before
    the first `ask`. `costs_used` names the costs the strategy's options need (e.g. its objectives), so
    the run sets up a latency source (a table, or measurements) only when one is asked for; the runner
    checks this declaration with `isinstance`."""

    arch_costs: ArchCosts | None = None

    @abstractmethod
    def costs_used(self) -> frozenset[str]:
        """The costs (params, macs, latency_ms) this strategy will read with its options."""

    def bind_costs(self, costs: ArchCosts) -> None:
        self.arch_costs = costs

    def arch_cost(self, arch: Arch, name: str) -> float:
        """One cost of `arch` (the runner bound the costs before asking)."""
        if self.arch_costs is None:
            from nasframe.common.errors import ConfigError

            raise ConfigError(f"{type(self).__name__}: costs were not bound (the runner binds them before ask)")
        return self.arch_costs.value(arch, name)


def arch_to_pairs(arch: Arch | None) -> list | None:
    """An Arch as a list of [name, choice] pairs: plain data for checkpoints (order kept)."""
    return [list(p) for p in arch.items()] if arch is not None else None


def arch_from_pairs(pairs: Sequence[Sequence[Any]] | None) -> Arch | None:
    from nasframe.core.space import Arch

    return Arch([(str(k), v) for k, v in pairs]) if pairs is not None else None


def ask_unseen(
    space: SearchSpace,
    rng: np.random.Generator,
    seen: set[str],
    sampler: Callable[[np.random.Generator], Arch] | None = None,
    max_tries: int = 1000,
) -> Arch:
    """Draw until an architecture not in `seen` comes up, add its key, and return it.

    `sampler(rng)` defaults to `space.sample`. Raises SpaceExhausted after `max_tries` draws.
    """
    from nasframe.common.errors import SpaceExhausted

    draw = sampler or space.sample
    for _ in range(max_tries):
        arch = draw(rng)
        key = arch.key()
        if key not in seen:
            seen.add(key)
            return arch
    raise SpaceExhausted(
        f"{max_tries} draws in a row were all seen before; the space ({space.size()} architectures) looks exhausted"
    )
