"""The capabilities an evaluator can declare beyond `evaluate`, and the settings their calls take.

Capabilities are abstract base classes an evaluator inherits from: `SharedWeights` (one supernet
whose weights every architecture shares), `AngleMetric` (ABS' weight-angle measurement on top of
that), `Differentiable` (bilevel training of architecture weights: DARTS, SETN), `Distillation`
(Cream), `BranchImportance` (NSE) and `TabularBenchmark` (a table of every architecture's
accuracy). A strategy lists the capabilities it needs in `requires`; the runner checks them with
`issubclass` when a run is built, so a mismatch fails before any work. Each one-shot request
(`nasframe.core.requests`) names the capability that executes it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from nasframe.core.evaluator import Evaluator

if TYPE_CHECKING:
    import numpy as np

    from nasframe.core.evaluator import Result, WorkReport
    from nasframe.core.space import Arch


@dataclass(frozen=True)
class BNRecalibration:
    """How to re-estimate BatchNorm statistics before scoring a path with shared weights.

    The running statistics are reset and re-estimated from `batches` train batches in train mode,
    without gradients. `momentum` None is the cumulative average (exact for any number of batches);
    a float is the usual exponential average (SPOS uses 0.1 over 200 batches of 128).
    `batch_size` None uses the evaluator's training batch size.
    """

    batches: int = 200
    momentum: float | None = 0.1
    batch_size: int | None = 128

    @classmethod
    def cumulative(cls, batches: int) -> BNRecalibration | None:
        """`batches` batches of the evaluator's size, cumulative average; None (no recalibration) for 0."""
        return cls(batches, momentum=None, batch_size=None) if batches else None


@dataclass(frozen=True)
class AlphaOptimizer:
    """Adam for architecture weights (DARTS: lr 3e-4, betas (0.5, 0.999), weight decay 1e-3)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-3


@dataclass(frozen=True)
class ImportanceSettings:
    """NSE's importance learning during one round of supernet training (reference algorithms-2.md 11.3).

    Each step first prunes ops whose importance logit fell below `drop_threshold`, then trains the
    weights on a multi-branch path (every active op on with probability `balance_rate`), then, on steps
    i with i % `arch_every` == 0 (i counted within the epoch), takes an Adam step on the logits from a
    search-val batch with the two-sample estimator and the cost penalty
    `cost_alpha * (cost - cost_target) ** cost_beta` (cost in millions of `cost_metric`, or in milliseconds for
    `latency_ms`, whose per-op entries `cost_table` gives: `(frame, table[cell][op])` from the run's latency table).
    The weights' learning rate warms up linearly from `warmup_lr` to the evaluator's lr over
    `warmup_epochs`, then follows a cosine to the evaluator's lr_min at `epochs` (the round's length).
    """

    epochs: float
    arch_every: int = 2
    drop_threshold: float = -2.0
    balance_rate: float = 0.5
    enumerate_up_to: int = 5
    cost_metric: Literal["macs", "params", "latency_ms"] = "macs"
    cost_table: tuple[float, tuple[tuple[float, ...], ...]] | None = None
    cost_target: float = 300.0
    cost_alpha: float = 1e-5
    cost_beta: int = 2
    warmup_epochs: float = 2.0
    warmup_lr: float = 0.1

    def __post_init__(self) -> None:
        from nasframe.common.errors import ConfigError

        problems = {
            "epochs must be positive": not self.epochs > 0,
            "arch_every must be an integer >= 1": isinstance(self.arch_every, bool) or self.arch_every < 1,
            "balance_rate must be in (0, 1)": not 0 < self.balance_rate < 1,
            "enumerate_up_to must be >= 0": self.enumerate_up_to < 0,
            "cost_metric must be macs, params or latency_ms": self.cost_metric not in ("macs", "params", "latency_ms"),
            "cost_metric latency_ms needs cost_table": self.cost_metric == "latency_ms" and self.cost_table is None,
            "cost_beta must be an integer >= 1": isinstance(self.cost_beta, bool)
            or int(self.cost_beta) != self.cost_beta
            or self.cost_beta < 1,
            "warmup_epochs must be >= 0": self.warmup_epochs < 0,
        }
        for text, bad in problems.items():
            if bad:
                raise ConfigError(f"importance learning: {text}")


class Capability(ABC):  # noqa: B024 (a marker base: capabilities add the abstract methods)
    """Base of capability classes; an evaluator declares one by inheriting from it."""

    #: shown by `nasframe list` and in capability errors
    capability_name: ClassVar[str] = "capability"


class SharedWeights(Capability):
    """Capability: one set of weights shared by every architecture of the space (a supernet).

    Both methods are called by the runner only, which seeds torch's global RNG before each call
    and charges the returned cost to the run's budget.
    """

    capability_name: ClassVar[str] = "shared weights"

    @abstractmethod
    def steps_per_epoch(self) -> int:
        """Training steps in one epoch over the search-train data (the runner turns a request's
        epochs into steps with it, so that cutting the training into pieces loses no step)."""

    @abstractmethod
    def train_paths(self, steps: int, next_path: Callable[[], Arch]) -> WorkReport:
        """Train the shared weights for `steps` steps, calling `next_path()` once per step for the
        single path that step trains; report the cost in seconds and epochs (steps / steps_per_epoch).
        Parameters off the path must get no update at all. Divergence or running out of memory raise a
        NasframeError after restoring the weights."""

    def plan_training(self, planned_epochs: float | None) -> None:
        """Told once, when a run is built (before any work), the supernet epochs the strategy plans
        (`Strategy.planned_training_epochs`; None: it does not say), so that settings left to follow
        the plan (the supernet evaluator's `schedule_epochs: null`) fit it."""

    def training_plan_note(self, planned_epochs: float) -> str | None:
        """A warning when the strategy's planned supernet training does not fit this evaluator's settings
        (e.g. a learning-rate schedule shorter than the training), printed when the run starts."""
        return None

    @abstractmethod
    def score_path(self, arch: Arch, recalibration: BNRecalibration | None) -> Result:
        """Accuracy of `arch` with the shared weights as they are (no training), after BatchNorm
        recalibration when asked: the one-shot way to rank architectures."""


class AngleMetric(SharedWeights):
    """Capability: ABS' angle between a path's weights now and at a saved base (Hu et al., 2020)."""

    capability_name: ClassVar[str] = "angle metric"

    @abstractmethod
    def save_base_weights(self) -> None:
        """Make the current shared weights the base that `path_angles` compares against."""

    @abstractmethod
    def path_angles(self, archs: Sequence[Arch]) -> list[float]:
        """For each architecture, the angle (radians) between its path's weight vector taken from
        the base weights and from the current weights."""


@dataclass(frozen=True)
class TableLabels:
    """What a table's numbers are, in words (figures and summaries name them; the table answers,
    not the run's data set)."""

    dataset: str  # the data set the table was measured on, e.g. "cifar10"
    search: str  # what all_accuracies("val_acc") holds, e.g. "12-epoch validation accuracy"
    held_out: str  # what all_accuracies("test_acc") holds, e.g. "200-epoch test accuracy"


class Differentiable(SharedWeights):
    """Capability: bilevel training of architecture weights together with the shared weights (DARTS).

    The architecture weights belong to the strategy; a `TrainMixed` request hands them over as
    plain data and the report's `state` gives them back, updated, with their optimizer's state.
    """

    capability_name: ClassVar[str] = "differentiable"

    @abstractmethod
    def train_mixed(
        self,
        steps: int,
        state: dict[str, Any],
        order: int,
        optimizer: AlphaOptimizer,
        next_path: Callable[[], Arch] | None,
    ) -> WorkReport:
        """`steps` bilevel steps. `state` is {"choices": {decision: choices}, "alphas": {decision: 1-D tensor},
        "adam": an Adam state_dict or None}: one logit per allowed choice. Each step first takes an
        architecture step on a search-val batch (the gradient of the validation loss of the mixed
        forward with softmax(alphas): at the current weights for `order` 1, DARTS' unrolled
        approximation for 2), with Adam; then a weight step on a search-train batch, through the mixed
        forward when `next_path` is None (DARTS), else on the single path it draws (SETN). The report's
        `state` holds the updated alphas and Adam state."""


class BranchImportance(SharedWeights):
    """Capability: NSE's round of supernet training on a multi-branch space, learning an importance logit
    per (cell, op) while it trains the weights on random multi-branch paths (`TrainImportance`).

    The active ops, the protected ones (the last Pareto front's), the logits and their Adam state belong
    to the strategy; the request hands them over as plain data and the report's `state` gives them back.
    """

    capability_name: ClassVar[str] = "branch importance"

    @abstractmethod
    def train_importance(
        self, steps: int, state: dict[str, Any], settings: ImportanceSettings, optimizer: AlphaOptimizer
    ) -> WorkReport:
        """`steps` steps of `settings`' round. `state` is {"active": [[op index, ...] per cell], "protected":
        [[...] per cell], "alphas": a (cells, ops) tensor, "adam": an Adam state_dict or None, "iteration":
        steps of the round already done, "fresh": whether to re-draw the shared weights and start a new
        weight optimizer first}. The report's `state` holds the same keys updated (the active ops after
        pruning) plus "costs", the space's `nasframe.core.multibranch.BranchCosts` as plain data."""


class Distillation(SharedWeights):
    """Capability: single-path training in which a teacher path of the same supernet distils into each
    step's student (Cream).

    The teacher is picked before every step and the student is reported after it, so a strategy's
    board (`nasframe.core.board.PrioritizedBoard`) can change the teacher from one step to the next.
    """

    capability_name: ClassVar[str] = "distillation"

    @abstractmethod
    def train_distilled(
        self,
        steps: int,
        next_path: Callable[[], Arch],
        teacher: Callable[[], tuple[Arch, float] | None],
        observe: Callable[[Arch, float], None],
        label_smoothing: float,
    ) -> WorkReport:
        """`steps` steps. Step i trains the path `next_path()` on a search-train batch with the loss
        (m KD + (2 - m) CE) / 2, where (teacher path, m) = `teacher()`, KD is the cross-entropy
        between the teacher path's softmax on the same batch (no gradient) and the student's, and CE
        is the label-smoothed cross-entropy; plain CE while `teacher()` is None. After the step
        `observe(student, top-1 on that batch, percent)`."""


class TabularBenchmark(Capability):
    """Capability: the evaluator answers from a table that holds every architecture of the space."""

    capability_name: ClassVar[str] = "tabular benchmark"

    @abstractmethod
    def all_accuracies(self, metric: Literal["val_acc", "test_acc"] = "val_acc") -> np.ndarray:
        """The metric over every architecture of the table (for analytic baselines)."""

    @abstractmethod
    def table_labels(self) -> TableLabels:
        """The table's data set and what its search and held-out columns measure."""


def capabilities_of(evaluator_cls: type) -> list[type[Capability]]:
    """The capability classes `evaluator_cls` declares (its bases that are capabilities), most general first."""
    found = [
        c
        for c in evaluator_cls.__mro__
        if isinstance(c, type) and issubclass(c, Capability) and c is not Capability and not issubclass(c, Evaluator)
    ]
    return list(reversed(found))


def capability_names(classes: Sequence[type[Capability]]) -> list[str]:
    return [c.capability_name for c in classes]
