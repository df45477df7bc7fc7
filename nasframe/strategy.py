"""The Strategy interface: ask/tell.

A strategy proposes architectures (`ask`) and learns from results (`tell`). It never trains a
network and never touches files: the runner owns the loop, the budget, checkpoints and logs.
All randomness comes from `self.rng`, seeded by the runner, and `state_dict` includes it, so a
resumed search continues the same sequence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nasframe.options import NoOptions

if TYPE_CHECKING:
    from nasframe.evaluator import Evaluator, Result
    from nasframe.space import Arch, SearchSpace


class Strategy(ABC):
    """Base class of search strategies.

    Subclasses implement `ask` and `tell`; override `done`, `final`, `final_weights`, `metrics`
    and the state methods as needed. Keep `__init__` cheap: the runner builds the strategy
    before any evaluation.
    """

    Options: ClassVar[type] = NoOptions
    #: evaluator capabilities this strategy needs (checked when the run is built)
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, space: SearchSpace, options: Any = None, *, seed: int | None = None):
        self.space = space
        self.options = options if options is not None else self.Options()
        self.rng = np.random.default_rng(seed)
        self.best_arch: Arch | None = None
        self.best_accuracy: float | None = None

    @abstractmethod
    def ask(self) -> list[Arch]:
        """Propose one or more architectures to evaluate next."""

    @abstractmethod
    def tell(self, arch: Arch, result: Result) -> None:
        """Learn from one result (failed results are told too). Call `super().tell` to track the best."""
        acc = result.accuracy
        if acc is not None and (self.best_accuracy is None or acc > self.best_accuracy):
            self.best_arch, self.best_accuracy = arch, acc

    @property
    def done(self) -> bool:
        """True when the strategy has nothing more to propose."""
        return False

    def final(self) -> Arch | None:
        """The architecture this strategy returns (default: the best one evaluated)."""
        return self.best_arch

    def final_weights(self) -> Mapping[str, Sequence[float]] | None:
        """Per-decision preferences (aligned with each decision's choices), if the strategy has them."""
        return None

    def attach(self, evaluator: Evaluator) -> None:
        """Called once by the runner with the evaluator, for strategies that `require` a capability."""

    def metrics(self) -> dict[str, Any]:
        """Extra values to log after each tell: floats become scalars, arrays histograms."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, RNG included. Use plain Python data and tensors only."""
        return {"rng": self.rng.bit_generator.state, "best_arch": arch_to_pairs(self.best_arch),
                "best_accuracy": self.best_accuracy}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from nasframe.space import Arch

        self.rng.bit_generator.state = state["rng"]
        self.best_arch = Arch(state["best_arch"]) if state["best_arch"] is not None else None
        self.best_accuracy = state["best_accuracy"]


def arch_to_pairs(arch: Arch | None) -> list | None:
    """An Arch as a list of [name, choice] pairs: plain data for checkpoints (order kept)."""
    return [list(p) for p in arch.items()] if arch is not None else None


def ask_unseen(space: SearchSpace, rng: np.random.Generator, seen: set[str], sampler=None,
               max_tries: int = 1000) -> Arch:
    """Draw until an architecture not in `seen` comes up, add its key, and return it.

    `sampler(rng)` defaults to `space.sample`. Raises SpaceExhausted after `max_tries` draws.
    """
    from nasframe.errors import SpaceExhausted

    draw = sampler or space.sample
    for _ in range(max_tries):
        arch = draw(rng)
        key = arch.key()
        if key not in seen:
            seen.add(key)
            return arch
    raise SpaceExhausted(f"{max_tries} draws in a row were all seen before; the space ({space.size()} "
                         f"architectures) looks exhausted")
