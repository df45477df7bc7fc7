"""Cream of the Crop: a supernet whose best paths teach the others.

Peng et al., "Cream of the Crop: Distilling Prioritized Paths For One-Shot Neural Architecture
Search" (NeurIPS 2020), as its released supernet trainer runs it (reference algorithms-2.md
section 9). Single paths drawn uniformly train the shared weights (the code's sampling, whatever
probabilities its config names); for the first `warmup_epochs` plainly, then with a prioritized
path board (`nasframe.core.board.PrioritizedBoard`): every trained path is offered to the board (by its
top-1 on its own training batch and its MACs), and the board's best path distils into each
student, (m KD + (2 - m) CE) / 2 with m = 0.5. The answer is the best path on the board (the paper;
the code has no final selection).

Per epoch after the warm-up the board's best path is scored with the shared weights (one line in
history.jsonl), and at the end every board entry is, so `compare` and `show` see the board.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasframe.common.options import option
from nasframe.core.board import PrioritizedBoard
from nasframe.core.capabilities import BNRecalibration, Distillation
from nasframe.core.evaluator import Result, WorkReport
from nasframe.core.paths import UniformPaths
from nasframe.core.registry import register_strategy
from nasframe.core.requests import Request, ScoreShared, TrainDistilled, TrainShared
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import Strategy, arch_from_pairs, arch_to_pairs


@dataclass(frozen=True)
class CreamOptions:
    epochs: int = option(120, "supernet epochs in all, warm-up included (Cream on ImageNet: 120)", min=1)
    warmup_epochs: int = option(
        21,
        "epochs of plain uniform training before the board opens (Cream: META_STA_EPOCH 20, and the board "
        "updates when the 0-based epoch exceeds it, i.e. after 21 epochs)",
        min=0,
    )
    board_size: int = option(10, "paths the prioritized board keeps (Cream: POOL_SIZE 10)", min=1)
    acc_gap: float = option(5.0, "top-1 margin over the worst board entry that lets a path in (Cream: 5)", min=0)
    label_smoothing: float = option(
        0.1, "label smoothing of the supervised part of the loss (Cream: 0.1)", min=0, max=0.99
    )
    score_bn_batches: int = option(
        10, "BatchNorm batches (cumulative average) before each score of a board path (0: off)", min=0
    )


@register_strategy("cream")
class Cream(Strategy[CreamOptions]):
    """Cream: prioritized paths distil into uniformly sampled students; the board's best is the answer."""

    Options = CreamOptions
    requires = (Distillation,)

    def __init__(self, space: SearchSpace, options: CreamOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        o = self.options
        self.board = PrioritizedBoard.for_space(space, o.board_size, o.acc_gap)
        self.epoch = 0
        self.scored = 0  # per-epoch scores of the board's best, told
        self.finalists: list[Arch] = []  # the board at the end, best first (fixed when scoring starts)
        self.scores: list[float | None] = []

    # ---- ask / tell ---------------------------------------------------------------------------------
    def plan(self) -> str:
        o = self.options
        return (
            f"{o.epochs} supernet epochs ({min(o.warmup_epochs, o.epochs)} plain, then distilled from a board of "
            f"{o.board_size} paths), then the board's paths scored; --set strategy.epochs=N "
            f"strategy.warmup_epochs=M for a short run"
        )

    def planned_training_epochs(self) -> float:
        return float(self.options.epochs)

    def planned_evaluations(self) -> int:
        o = self.options
        return max(0, o.epochs - o.warmup_epochs - 1) + o.board_size

    @property
    def distilling(self) -> bool:
        return self.epoch >= self.options.warmup_epochs

    @property
    def phase(self) -> str:
        o = self.options
        if self.epoch >= o.epochs:
            return f"cream: scoring the board {min(len(self.scores) + 1, len(self.finalists))}/{len(self.finalists)}"
        kind = "distilled" if self.distilling else "warm-up"
        return f"cream epoch {self.epoch + 1}/{o.epochs} ({kind})"

    @property
    def done(self) -> bool:
        return self.epoch >= self.options.epochs and bool(self.finalists) and len(self.scores) >= len(self.finalists)

    def ask(self) -> list[Arch | Request]:
        o = self.options
        recal = self._recalibration()
        if self.scored < self.epoch - o.warmup_epochs and self.epoch < o.epochs and self.board.entries:
            return [ScoreShared(self.board.entries[0].arch, recal, phase=self.phase)]
        if self.epoch < o.epochs:
            paths = UniformPaths.over(self.space)
            if not self.distilling:
                return [TrainShared(1.0, paths, phase=self.phase)]
            return [TrainDistilled(1.0, paths, self.phase, self.board.to_state(), o.label_smoothing)]
        if not self.finalists:
            self.finalists = list(self.board.archs())
            if not self.finalists:
                return []  # no distilled epoch ran (epochs <= warmup_epochs): nothing on the board
        if len(self.scores) >= len(self.finalists):
            return []
        return [ScoreShared(self.finalists[len(self.scores)], recal, phase=self.phase)]

    def tell(self, arch: Arch, result: Result) -> None:
        """A per-epoch score of the board's best, or a finalist's score (None when it failed or was rejected)."""
        if self.epoch < self.options.epochs:
            self.scored = self.epoch - self.options.warmup_epochs
        else:
            self.scores.append(result.accuracy)

    def tell_work(self, request: Request, report: WorkReport) -> None:
        if isinstance(request, TrainDistilled) and report.state is not None:
            self.board = PrioritizedBoard.from_state(report.state)
        if isinstance(request, TrainShared):  # TrainDistilled included
            self.epoch += 1
            if self.epoch >= self.options.epochs:
                self.scored = max(self.scored, self.epoch - self.options.warmup_epochs)

    def _recalibration(self) -> BNRecalibration | None:
        return BNRecalibration.cumulative(self.options.score_bn_batches)

    # ---- results -----------------------------------------------------------------------------------
    def final(self) -> Arch | None:
        """The best path on the board (None before the board opens: the runner returns the best evaluated)."""
        return self.board.entries[0].arch if self.board.entries else None

    def final_evaluation(self, arch: Arch) -> ScoreShared:
        return ScoreShared(arch, self._recalibration(), phase="cream: final score")

    def metrics(self) -> dict[str, Any]:
        entries = self.board.entries
        out: dict[str, Any] = {"epoch": self.epoch, "board_size": len(entries)}
        if entries:
            out["board_best_prec1"] = entries[0].prec1
            out["board_worst_prec1"] = entries[-1].prec1
            out["board_prec1"] = [e.prec1 for e in entries]
        return out

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "board": self.board.to_state(),
            "epoch": self.epoch,
            "scored": self.scored,
            "finalists": [arch_to_pairs(a) for a in self.finalists],
            "scores": list(self.scores),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.board = PrioritizedBoard.from_state(state["board"])
        self.epoch, self.scored = int(state["epoch"]), int(state["scored"])
        self.finalists = [a for a in (arch_from_pairs(p) for p in state["finalists"]) if a is not None]
        self.scores = [None if s is None else float(s) for s in state["scores"]]
