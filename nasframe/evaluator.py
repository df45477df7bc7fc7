"""The Evaluator interface: measure one architecture under a budget and return a Result.

An evaluator only measures. It never chooses architectures and never writes run files; the
runner seeds the global RNGs before each call, so an evaluator that draws from torch's
global generator is reproducible and resumable without saving RNG streams of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from nasframe.options import NoOptions

if TYPE_CHECKING:
    import torch

    from nasframe.data import DataSource
    from nasframe.space import Arch, SearchSpace

#: capability names an evaluator may declare and a strategy may require
WEIGHT_SHARING = "weight_sharing"
TABULAR = "tabular"


@dataclass(frozen=True)
class Budget:
    """How much an evaluation may spend. None means the evaluator's own default."""

    epochs: float | None = None
    steps: int | None = None


@dataclass
class Cost:
    seconds: float = 0.0
    epochs: float = 0.0


@dataclass
class Result:
    """Outcome of one evaluation.

    `metrics` holds at least `val_acc` (percent) when status is "ok"; other common keys are
    `val_loss` and `test_acc` (a held-out metric that must never steer the search).
    """

    status: Literal["ok", "failed"] = "ok"
    metrics: dict[str, float] = field(default_factory=dict)
    params: int | None = None
    macs: int | None = None
    cost: Cost = field(default_factory=Cost)
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("val_acc") if self.ok else None

    @classmethod
    def failed(cls, reason: str, cost: Cost | None = None) -> Result:
        return cls(status="failed", reason=reason, cost=cost or Cost())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        d = dict(d)
        d["cost"] = Cost(**d.get("cost", {}))
        return cls(**d)


class WeightSharingEvaluator(ABC):
    """What an evaluator with the WEIGHT_SHARING capability offers strategies (via `attach`)."""

    @abstractmethod
    def train_uniform(self, space: SearchSpace, epochs: float) -> Cost:
        """Train the shared weights for `epochs`, drawing a fresh uniform path of `space` (which may
        be a restriction of the evaluator's space) for every step. Seeded by the global torch RNG."""

    @abstractmethod
    def path_vectors(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        """The path's flattened weight vector from the base weights and from the current weights
        (parts as given by the supernet's `angle_terms`), for the angle metric."""

    @abstractmethod
    def reset_base_weights(self) -> None:
        """Make the current weights the base that `path_vectors` compares against."""


class Evaluator(ABC):
    """Measures architectures of one space.

    Args:
        space: the space whose architectures are measured.
        options: an instance of `Options`.
        data: lazy handle to the search data (load it only if needed).
        device: where networks run.
    """

    Options: ClassVar[type] = NoOptions
    #: what this evaluator offers strategies, e.g. {WEIGHT_SHARING}
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: False for evaluators that draw no random numbers (tables): the runner then skips seeding
    #: torch before each evaluation, which matters at thousands of evaluations per second
    uses_torch_rng: ClassVar[bool] = True

    def __init__(self, space: SearchSpace, options: Any = None, *, data: DataSource | None = None,
                 device: torch.device | str = "cpu"):
        self.space = space
        self.options = options if options is not None else self.Options()
        self.data = data
        self.device = device

    @abstractmethod
    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        """Measure `arch`. Expected failures (NaN loss, out of memory) return Result.failed."""

    def final_metrics(self, arch: Arch) -> dict[str, float]:
        """Held-out metrics of a final architecture (e.g. a table's 200-epoch test accuracy)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (stateful evaluators such as a supernet)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def drain_extra_cost(self) -> Cost:
        """Cost of work done outside `evaluate` at a strategy's request since the last call (e.g.
        supernet training between shrinking steps). The runner adds it to the run's budget."""
        return Cost()

    def close(self) -> None:
        """Release resources at the end of a run."""
