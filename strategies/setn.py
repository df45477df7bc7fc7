"""SETN: a template network trained on uniform paths, an evaluator that learns which cells to try.

Dong and Yang, "One-Shot Neural Architecture Search via Self-Evaluated Template Network" (ICCV 2019),
as its released NAS-Bench-201 search code runs it (reference algorithms-2.md section 8). Each step,
the shared weights take an SGD step on search-train through one path drawn uniformly (every decision
independently, all-`none` cells included), and the architecture weights alpha, one logit vector per
decision, take a first-order Adam step on search-val through the mixed forward (softmax(alpha)
weighted sum), exactly as first-order DARTS. alpha is the "evaluator": P(arch) is the product of the
per-decision softmaxes. At the end the K most probable architectures (SETN: 100, found by sorting all
of them by log P, as the code does rather than sampling as the paper says) are each scored with the
shared weights, and the best score is the answer.

Per epoch the strategy also scores the current most likely architecture (one evaluation), so
history.jsonl and `compare` follow the search; the reference instead runs its whole selection after
every epoch for its log, and only the last one decides the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nasframe.common.options import option
from nasframe.core.capabilities import BNRecalibration, Differentiable
from nasframe.core.evaluator import Result, WorkReport
from nasframe.core.paths import UniformPaths
from nasframe.core.registry import register_strategy
from nasframe.core.requests import Request, ScoreShared, TrainMixed
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import Strategy, arch_from_pairs, arch_to_pairs

from .alphas import AlphaOptions, ArchitectureWeights


@dataclass(frozen=True)
class SetnOptions(AlphaOptions):
    epochs: int = option(250, "search epochs (SETN on NAS-Bench-201: 250; NATS-Bench: 100)", min=1)
    candidates: int = option(100, "most probable architectures scored at the end (SETN: select_num 100)", min=1)
    score_bn_batches: int = option(
        0,
        "BatchNorm batches (cumulative average) before each score; SETN scores with the shared weights as they are (0)",
        min=0,
    )


@register_strategy("setn")
class Setn(Strategy[SetnOptions]):
    """SETN: uniform-path weight training, first-order alphas as the evaluator, top-K candidates scored."""

    Options = SetnOptions
    requires = (Differentiable,)

    def __init__(self, space: SearchSpace, options: SetnOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self.weights = ArchitectureWeights(space.decisions, self.options.init_scale, self.rng, "setn")
        self.epoch = 0
        self.scored = 0  # per-epoch scores told
        self.losses: dict[str, float] = {}
        #: the selection: candidates by descending log P (fixed when it starts), their log P and scores
        self.candidates: list[Arch] = []
        self.log_probs: list[float] = []
        self.scores: list[float | None] = []

    # ---- ask / tell ---------------------------------------------------------------------------------
    def plan(self) -> str:
        o = self.options
        return (
            f"{o.epochs} epochs of template-network training (uniform paths) with first-order architecture "
            f"steps, one score per epoch, then {o.candidates} candidates scored; --set strategy.epochs=N "
            f"strategy.candidates=M for a short run"
        )

    def planned_training_epochs(self) -> float:
        return float(self.options.epochs)

    def planned_evaluations(self) -> int:
        return self.options.epochs + self.options.candidates

    @property
    def selecting(self) -> bool:
        return self.scored >= self.options.epochs

    @property
    def phase(self) -> str:
        o = self.options
        if self.selecting:
            return f"setn selection {min(len(self.scores) + 1, len(self.candidates))}/{len(self.candidates)}"
        return f"setn epoch {min(self.epoch + 1, o.epochs)}/{o.epochs}"

    @property
    def done(self) -> bool:
        return self.selecting and bool(self.candidates) and len(self.scores) >= len(self.candidates)

    def ask(self) -> list[Arch | Request]:
        o = self.options
        if self.scored < self.epoch:
            return [ScoreShared(self.weights.most_likely(), self._recalibration(), phase=self.phase)]
        if self.epoch < o.epochs:
            optimizer = ArchitectureWeights.optimizer(o.alpha_lr, o.alpha_betas, o.alpha_weight_decay)
            paths = UniformPaths.over(self.space)
            return [TrainMixed(1.0, self.weights.request_state(), 1, optimizer, paths, phase=self.phase)]
        if not self.candidates:
            ranked = self.weights.top_k(o.candidates)
            self.candidates = [arch for arch, _ in ranked]
            self.log_probs = [lp for _, lp in ranked]
        if len(self.scores) >= len(self.candidates):
            return []
        return [ScoreShared(self.candidates[len(self.scores)], self._recalibration(), phase=self.phase)]

    def tell(self, arch: Arch, result: Result) -> None:
        """A per-epoch score, or a candidate's (None when it failed or the run's constraints rejected it)."""
        if not self.selecting:
            self.scored = self.epoch
        else:
            self.scores.append(result.accuracy)

    def tell_work(self, request: Request, report: WorkReport) -> None:
        if isinstance(request, TrainMixed) and report.state is not None:
            self.weights.update(report)
            self.losses = {k: v for k, v in report.metrics.items() if k in ("train_loss", "arch_val_loss")}
            self.epoch += 1

    def _recalibration(self) -> BNRecalibration | None:
        return BNRecalibration.cumulative(self.options.score_bn_batches)

    # ---- results -----------------------------------------------------------------------------------
    def final(self) -> Arch:
        """The best-scoring candidate (the first on ties, as np.argmax); before any candidate has a
        score, the most likely architecture."""
        scored = [(s, -i) for i, s in enumerate(self.scores) if s is not None]
        if not scored:
            return self.weights.most_likely()
        return self.candidates[-max(scored)[1]]

    def final_evaluation(self, arch: Arch) -> ScoreShared:
        return ScoreShared(arch, self._recalibration(), phase="setn: final score")

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "mean_entropy": float(np.mean(self.weights.entropies())),
            **self.losses,
            "probabilities": [p.tolist() for p in self.weights.probabilities().values()],
        }
        if self.scores:
            out["candidate"] = len(self.scores)
            out["candidate_log_prob"] = self.log_probs[len(self.scores) - 1]
        return out

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            **self.weights.state_dict(),
            "epoch": self.epoch,
            "scored": self.scored,
            "losses": dict(self.losses),
            "candidates": [arch_to_pairs(a) for a in self.candidates],
            "log_probs": list(self.log_probs),
            "scores": list(self.scores),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights.load_state_dict(state)
        super().load_state_dict(state)
        self.epoch, self.scored = int(state["epoch"]), int(state["scored"])
        self.losses = dict(state["losses"])
        self.candidates = [a for a in (arch_from_pairs(p) for p in state["candidates"]) if a is not None]
        self.log_probs = [float(x) for x in state["log_probs"]]
        self.scores = [None if s is None else float(s) for s in state["scores"]]
