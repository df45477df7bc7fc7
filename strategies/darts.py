"""DARTS: differentiable architecture search by bilevel optimisation of architecture weights.

Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search" (ICLR 2019), reference section 4.
The strategy owns one logit vector alpha per decision (initialised 1e-3 x N(0, 1)) and Adam's state
for them. Each epoch it asks the runner for one `TrainMixed` request: every step an architecture step
on a search-val batch (first order: the gradient at the current weights; second order: DARTS'
unrolled step with its finite-difference Hessian-vector product), then a weight step on a
search-train batch through the mixed forward, where every choice is weighted by softmax(alpha). The
report gives the updated alphas back. After each epoch the current most likely architecture is
scored with the shared weights (`ScoreShared`), one evaluation per epoch, so history.jsonl and
`compare` follow the search. The answer is the space's derivation from softmax(alpha)
(`final_weights` -> `space.export`, the DARTS genotype rule on the darts space).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from nasframe.common.options import option
from nasframe.core.capabilities import BNRecalibration, Differentiable
from nasframe.core.evaluator import Result, WorkReport
from nasframe.core.registry import register_strategy
from nasframe.core.requests import Request, ScoreShared, TrainMixed
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import Strategy

from .alphas import AlphaOptions, ArchitectureWeights


@dataclass(frozen=True)
class DartsOptions(AlphaOptions):
    epochs: int = option(50, "search epochs (DARTS: 50 on CIFAR-10)", min=1)
    order: Literal[1, 2] = option(1, "1: first-order gradient (DARTS_V1); 2: the unrolled second-order step (DARTS_V2)")
    score_bn_batches: int = option(
        10,
        "BatchNorm batches (cumulative average) before the per-epoch score of the most likely architecture (0: off)",
        min=0,
    )


@register_strategy("darts")
class Darts(Strategy[DartsOptions]):
    """DARTS: architecture weights learned by gradient on search-val, a mixed supernet's weights on search-train."""

    Options = DartsOptions
    requires = (Differentiable,)

    def __init__(self, space: SearchSpace, options: DartsOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self.weights = ArchitectureWeights(space.decisions, self.options.init_scale, self.rng, "darts")
        self.epoch = 0
        self.scored = 0  # per-epoch scores told (the search is done when every epoch has been scored)
        self.losses: dict[str, float] = {}

    # ---- ask / tell ---------------------------------------------------------------------------------
    def plan(self) -> str:
        return (
            f"{self.options.epochs} epochs of bilevel training (order {self.options.order}), one score of the most "
            f"likely architecture per epoch"
        )

    def planned_training_epochs(self) -> float:
        return float(self.options.epochs)

    def planned_evaluations(self) -> int:
        return self.options.epochs

    @property
    def phase(self) -> str:
        return f"darts epoch {min(self.epoch + 1, self.options.epochs)}/{self.options.epochs}"

    @property
    def done(self) -> bool:
        return self.scored >= self.options.epochs

    def ask(self) -> list[Arch | Request]:
        if self.scored < self.epoch:
            return [ScoreShared(self.most_likely(), self._recalibration(), phase=self.phase)]
        if self.epoch >= self.options.epochs:
            return []
        o = self.options
        optimizer = ArchitectureWeights.optimizer(o.alpha_lr, o.alpha_betas, o.alpha_weight_decay)
        return [TrainMixed(1.0, self.weights.request_state(), o.order, optimizer, phase=self.phase)]

    def tell(self, arch: Arch, result: Result) -> None:
        """The epoch's score (or its rejection by the run's constraints: the epoch goes unscored)."""
        self.scored = self.epoch

    def tell_work(self, request: Request, report: WorkReport) -> None:
        if isinstance(request, TrainMixed) and report.state is not None:
            self.weights.update(report)
            self.losses = {k: v for k, v in report.metrics.items() if k in ("train_loss", "arch_val_loss")}
            self.epoch += 1

    def _recalibration(self) -> BNRecalibration | None:
        return BNRecalibration.cumulative(self.options.score_bn_batches)

    # ---- results -----------------------------------------------------------------------------------
    def probabilities(self) -> dict[str, np.ndarray]:
        return self.weights.probabilities()

    def most_likely(self) -> Arch:
        """The highest-weighted choice of every decision."""
        return self.weights.most_likely()

    def final(self) -> Arch:
        return self.most_likely()

    def final_weights(self) -> dict[str, list[float]]:
        """softmax(alpha) per decision: the space derives its answer from them (the DARTS genotype rule)."""
        return {n: p.tolist() for n, p in self.probabilities().items()}

    def final_evaluation(self, arch: Arch) -> ScoreShared:
        return ScoreShared(arch, self._recalibration(), phase="darts: final score")

    def metrics(self) -> dict[str, Any]:
        probs = self.probabilities()
        return {
            "epoch": self.epoch,
            "mean_entropy": float(np.mean(self.weights.entropies())),
            **self.losses,
            "probabilities": [p.tolist() for p in probs.values()],
        }

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            **self.weights.state_dict(),
            "epoch": self.epoch,
            "scored": self.scored,
            "losses": dict(self.losses),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights.load_state_dict(state)
        super().load_state_dict(state)
        self.epoch, self.scored = int(state["epoch"]), int(state["scored"])
        self.losses = dict(state["losses"])
