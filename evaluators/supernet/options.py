"""The supernet evaluator's options: the shared training options with the DARTS search defaults,
the global learning-rate schedule, and the few-shot splitting settings (`fewshot.py`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from nasframe.common.errors import ConfigError
from nasframe.common.options import option
from nasframe.training.step_options import TrainingOptions

#: the schedule's length when neither the options nor the strategy's plan give one (DARTS' 50 search epochs)
DEFAULT_SCHEDULE_EPOCHS = 50.0


@dataclass(frozen=True)
class SupernetOptions(TrainingOptions):
    """The shared training options with the DARTS search defaults, plus the global schedule."""

    # redeclared: a different default from short_train's
    epochs: float = option(1.0, "epochs of path training per evaluation (MDENAS: one)", min=0.001)
    lr: float = option(0.025, "initial SGD learning rate (DARTS search: 0.025)", min=0)
    model_stats: bool = option(False, "also build each path as a stand-alone network to report its parameters and MACs")
    # supernet only
    steps: int | None = option(None, "train this many steps per evaluation instead of `epochs`", min=1)
    schedule_epochs: float | None = option(
        None,
        "length of the cosine learning-rate schedule in epochs; null: the strategy's planned supernet training "
        f"(spos: supernet_epochs, darts: epochs, ...), or {DEFAULT_SCHEDULE_EPOCHS:g} when it plans none",
        min=0.001,
    )
    lr_min: float = option(0.001, "learning rate at the end of the cosine schedule (DARTS: 0.001)", min=0)
    nesterov: bool = option(
        False, "Nesterov momentum for the shared weights (SETN and NAS-Bench-201's search baselines: true)"
    )
    sync_batchnorm: bool = option(
        True,
        "under torchrun: BatchNorm statistics of the global batch (the single-process result; two all-reduces "
        "per BatchNorm layer and step); false: of each process's slice, running statistics averaged over the "
        "processes after each piece of training (faster where all-reduces are slow)",
    )
    # few-shot supernets (fewshot.py)
    few_shot: Literal["none", "gradient", "exhaustive"] = option(
        "none",
        "split the supernet into sub-supernets at split_epochs: gradient (GM-NAS: two groups of a decision's "
        "choices by gradient matching) or exhaustive (few-shot NAS: one sub-supernet per choice)",
    )
    split_epochs: list[float] = option(
        default_factory=list,
        help="supernet training epochs after which every sub-supernet splits once (GM-NAS: [15, 30] on "
        "NAS-Bench-201, [2, 4, 6] on DARTS)",
    )
    split_batches: int = option(100, "mini-batches averaged per gradient-matching distance (GM-NAS: 100)", min=1)
    split_select: Literal["min_within", "max_cross"] = option(
        "min_within",
        "the decision gradient matching splits: least within-group distance (GM-NAS' DARTS and ProxylessNAS "
        "code) or largest cross-group distance (its NAS-Bench-201 code)",
    )
    split_decisions: list[str] | None = option(
        None,
        "decisions that may be split, in order of preference for exhaustive (null: all of them; GM-NAS' DARTS "
        "code splits only normal-cell edges)",
    )

    def __post_init__(self) -> None:
        if self.few_shot == "none" and self.split_epochs:
            raise ConfigError("evaluator.split_epochs needs evaluator.few_shot: gradient or exhaustive")
        if self.few_shot != "none" and not self.split_epochs:
            raise ConfigError(
                f"evaluator.few_shot: {self.few_shot} needs evaluator.split_epochs, e.g. [15, 30] (epochs of "
                f"supernet training after which to split)"
            )
        if any(not (math.isfinite(e) and e > 0) for e in self.split_epochs):
            raise ConfigError(f"evaluator.split_epochs: expected positive numbers, got {self.split_epochs}")
