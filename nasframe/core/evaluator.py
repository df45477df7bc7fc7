"""The Evaluator interface and what one evaluation gives back (`Result`, `Cost`, `WorkReport`).

An evaluator only measures, and trains only what it is asked to. It never chooses architectures
and never writes run files; the runner seeds the global RNGs before each call, so an evaluator
that draws from torch's global generator is reproducible and resumable without saving RNG
streams of its own.

What more an evaluator can do (a supernet, angles, a table) it declares by inheriting the
capability classes of `nasframe.core.capabilities`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from nasframe.common.options import NoOptions

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from nasframe.core.capabilities import Capability
    from nasframe.core.space import Arch, SearchSpace
    from nasframe.data import DataSource

Status = Literal["ok", "failed", "infeasible"]


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

    `metrics` holds at least `val_acc` (percent, or a score for an evaluator that declares
    `val_acc_is_percent = False`) when status is "ok"; other common keys are
    `val_loss` and `test_acc` (a held-out metric that must never steer the search). Status
    "infeasible" is set by the runner, never by an evaluator: the architecture broke the run's
    constraints and was not evaluated (it cost nothing).
    """

    status: Status = "ok"
    metrics: dict[str, float] = field(default_factory=dict)
    params: int | None = None
    macs: int | None = None
    cost: Cost = field(default_factory=Cost)
    reason: str | None = None
    #: one-line messages about events during the evaluation worth a line in the log (a supernet split)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("val_acc") if self.ok else None

    @classmethod
    def failed(cls, reason: str, cost: Cost | None = None) -> Result:
        return cls(status="failed", reason=reason, cost=cost or Cost())

    @classmethod
    def infeasible(cls, reason: str, params: int | None = None, macs: int | None = None) -> Result:
        return cls(status="infeasible", reason=reason, params=params, macs=macs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        d = dict(d)
        d["cost"] = Cost(**d.get("cost", {}))
        return cls(**d)


@dataclass
class WorkReport:
    """Outcome of one piece of weight-sharing work (training, a measurement).

    `metrics` are scalars for the logs (e.g. `train_loss`); `values` holds one number per
    architecture of a measurement request, in request order (e.g. angles).
    """

    cost: Cost = field(default_factory=Cost)
    metrics: dict[str, float] = field(default_factory=dict)
    values: list[float] | None = None
    #: updated state a request carried (TrainMixed: the architecture weights and their optimizer)
    state: dict[str, Any] | None = None
    #: one-line messages about events during the work worth a line in the log (a supernet split)
    notes: list[str] = field(default_factory=list)


OptionsT = TypeVar("OptionsT")


class Evaluator(ABC, Generic[OptionsT]):
    """Measures architectures of one space (generic over its options dataclass: `Evaluator[MyOptions]`).

    Args:
        space: the space whose architectures are measured.
        options: an instance of `Options`.
        data: lazy handle to the search data (load it only if needed).
        device: where networks run.
    """

    Options: ClassVar[type] = NoOptions
    #: False for evaluators that draw no random numbers (tables): the runner then skips seeding
    #: torch before each evaluation, which matters at thousands of evaluations per second
    uses_torch_rng: ClassVar[bool] = True
    #: False for evaluators whose `state_dict` stays empty (nothing carries over between calls): the
    #: runner may then checkpoint even when a run is stopped inside an evaluation
    holds_state: ClassVar[bool] = True
    #: False for evaluators whose `val_acc` is a score that only orders architectures (higher = better,
    #: any real number; zero-cost proxies), not an accuracy in percent
    val_acc_is_percent: ClassVar[bool] = True

    def __init__(
        self,
        space: SearchSpace,
        options: OptionsT | None = None,
        *,
        data: DataSource | None = None,
        device: torch.device | str = "cpu",
    ):
        import torch

        self.space = space
        self.options: OptionsT = options if options is not None else self.Options()
        self.data = data
        self.device: torch.device = torch.device(device)

    @classmethod
    def check_space(cls, space: SearchSpace, needed: Sequence[type[Capability]]) -> None:
        """Refuse (raise a NasframeError naming what the space must add) a space on which this evaluator
        cannot offer the capabilities `needed` by the run's strategy. Called when a run is built, before
        anything is written or trained. Default: every space is fine."""

    @abstractmethod
    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        """Measure `arch`. Expected failures (NaN loss, out of memory) return Result.failed."""

    def final_metrics(self, arch: Arch) -> dict[str, float]:
        """Held-out metrics of a final architecture (e.g. a table's 200-epoch test accuracy), measured
        after the search and never shown to the strategy. The runner seeds torch before the call."""
        return {}

    def search_split(self) -> str:
        """Where `evaluate` measures its metrics, in a few words (best.json's `final.metrics_split`, the
        closing lines and the report name it): by default the search-val split of the run's data set."""
        return "search-val"

    def held_out_split(self) -> str | None:
        """What `final_metrics` measures on, in a few words (best.json's `final.held_out_split`), or
        None when it gives nothing."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (stateful evaluators such as a supernet)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def close(self) -> None:
        """Release resources at the end of a run (called on every exit path)."""
