"""NSE: evolve the search space round by round (Ci et al., "Evolving Search Space for Neural Architecture
Search"), as its released code runs it (reference algorithms-2.md section 11; docs/strategies/nse.md).

Every cell of a multi-branch space (`nasframe.core.multibranch`) keeps an active subset of at most K ops and
a queue of ops not yet introduced (a random permutation: subset = perm[:K], queue = perm[K:]). A round:

1. `TrainImportance`: the supernet is re-drawn and trained for `epochs` on random multi-branch paths over
   the active ops, while per-op importance logits learn from search-val batches with the two-sample
   estimator and a cost penalty, and ops whose logit falls below the drop threshold are pruned
   (`BranchImportance`; evaluators/supernet/branch_importance.py);
2. `samples` distinct architectures are drawn from the learned probabilities with their cost in the
   window (target - drift, target + drift), plus `extra_samples` just below it;
3. each of them, and after round 0 each architecture of the previous Pareto front, is scored with the
   shared weights after BatchNorm recalibration (`ScoreShared`);
4. the Pareto front over (cost, -top-1) is kept (without the extra samples); each cell's subset becomes
   the ops the front uses, refilled from the queue up to K.

With `cost_metric: latency_ms` the penalty and the sampling window measure latency in milliseconds,
predicted from the run's latency table (`latency.table`: each (cell, op) is a timed block on the cell's
input; the frame is the stem and head): the authors' objective on a table of their own device, which
they did not publish, here on a table of the user's machine (docs/latency.md says what differs).

The search stops after (N - 1) // (K - 1) rounds or `max_rounds`. The answer is the most accurate
architecture of the last front whose cost is below target + drift (the authors picked theirs by
hand from the front; inferred).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from nasframe.common.errors import ConfigError
from nasframe.common.options import option
from nasframe.core.capabilities import AlphaOptimizer, BNRecalibration, BranchImportance, ImportanceSettings
from nasframe.core.costs import ArchCosts
from nasframe.core.evaluator import Result, WorkReport
from nasframe.core.multibranch import OFF, ON, BranchCosts, MultiBranchSpace, arch_of
from nasframe.core.registry import register_strategy
from nasframe.core.requests import Request, ScoreShared, TrainImportance
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import CostAware, Strategy

from .nse_rules import Branches, draw_branches, front_union, pareto_efficient, sample_candidates, total_rounds
from .nse_rules import update_space as refill

if TYPE_CHECKING:  # imported where the alphas are made and read: `nasframe list` loads this without torch
    pass

#: NSE's op probability from its importance logit (evaluators/supernet/branch_importance.py `importance`)
P_SCALE, P_FLOOR = 0.999, 5e-4
#: the released code adds 1e-10 to a previous front architecture's -top-1, so a new one wins an exact tie
PREVIOUS_TIE = 1e-10


@dataclass(frozen=True)
class NseOptions:
    k: int = option(5, "active ops per cell (K; NSE-27 and the second space: 5, the GPU space: 6)", min=2)
    epochs: float = option(100.0, "supernet epochs per round (released: 100)", min=0.001)
    max_rounds: int | None = option(
        None, "stop after this many rounds (null: (N - 1) // (K - 1); the second space: 3)", min=1
    )
    warmup_epochs: float = option(2.0, "per round: epochs of linear warm-up of the weights' lr (released: 2)", min=0)
    warmup_lr: float = option(0.1, "per round: the weights' lr at the start of the warm-up (released: 0.1)", min=0)
    arch_every: int = option(2, "an importance step on steps i with i % arch_every == 0 (Aiter, released: 2)", min=1)
    drop_threshold: float = option(-2.0, "prune an op whose importance logit falls below this (released: -2)")
    balance_rate: float = option(
        0.5, "weight training: each active op on with this probability (balance_s_rate, released: 0.5)", min=0.01
    )
    enumerate_up_to: int = option(
        5, "two-sample draw: enumerate all gate strings of cells with at most this many active ops (released: 5)", min=0
    )
    alpha_lr: float = option(5e-3, "Adam learning rate of the importance logits (released: 0.005)", min=0)
    alpha_betas: list[float] = option(
        default_factory=lambda: [0.0, 0.999], help="Adam betas of the importance logits (released: [0, 0.999])"
    )
    cost_metric: Literal["macs", "params", "latency_ms"] = option(
        "macs",
        "the resource the penalty and the sampling window measure; latency_ms reads the run's latency table "
        "(latency.table) and takes target, drift and extra_drift in ms",
    )
    cost_target: float = option(
        300.0, "target cost in millions (ms for latency_ms) (mac_target, released: 300 MMACs)", min=0
    )
    cost_alpha: float = option(1e-5, "penalty weight (mac_alpha, released: 1e-5)", min=0)
    cost_beta: int = option(2, "penalty exponent (mac_beta, released: 2)", min=1)
    target_calibration: float = option(
        0.0, "added to the target for the sampling window only (mac_target_calibration; released: 0)"
    )
    drift: float = option(
        10.0,
        "half-width of the sampling window in millions (mac_drift: read by the released code but absent from "
        "every released config; 10 is this implementation's choice, the width of the extra band)",
        min=0,
    )
    samples: int = option(2000, "distinct architectures sampled in the window per round (released: 2000)", min=1)
    extra_samples: int = option(100, "architectures sampled just below the window (released: 100)", min=0)
    extra_drift: float = option(10.0, "width of the band below the window in millions (released: 10)", min=0)
    max_draws: int = option(
        200_000, "give up sampling after this many draws per round (the released loop has no bound)", min=1
    )
    bn_batches: int = option(50, "BatchNorm recalibration batches before each score (val_fiter, released: 50)", min=0)
    bn_momentum: float | None = option(
        0.1, "recalibration momentum (0.1: PyTorch's default the released code keeps; null: cumulative)", min=0, max=1
    )

    def __post_init__(self) -> None:
        if len(self.alpha_betas) != 2 or not all(0 <= b < 1 for b in self.alpha_betas):
            raise ConfigError(f"strategy.alpha_betas: expected two numbers in [0, 1), got {self.alpha_betas}")
        if not self.balance_rate < 1:
            raise ConfigError(f"strategy.balance_rate must be below 1, got {self.balance_rate}")


Stage = Literal["train", "score", "done"]


@register_strategy("nse")
class Nse(Strategy[NseOptions], CostAware):
    """NSE: per-round supernet training with learned op importance, sampling near a cost target, a Pareto
    front, and a search space that keeps the front's ops and takes in new ones."""

    Options = NseOptions
    requires = (BranchImportance,)

    def __init__(self, space: SearchSpace, options: NseOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        if not isinstance(space, MultiBranchSpace):
            raise ConfigError(
                f"strategy nse needs a multi-branch space (cells that may run several ops, such as space nse); "
                f"{space.name!r} has one choice per decision"
            )
        o = self.options
        self.cells = space.branch_cells()
        self.residual = [c.residual for c in self.cells]
        self.ops = len(self.cells[0].gates) if self.cells else 0
        if o.k > self.ops:
            raise ConfigError(f"strategy.k ({o.k}) exceeds the {self.ops} ops of a cell")
        self.rounds = total_rounds(self.ops, o.k)
        if o.max_rounds is not None:
            self.rounds = min(self.rounds, o.max_rounds)
        self.round = 0
        self.stage: Stage = "train" if self.rounds > 0 else "done"
        self.sub_space: Branches = []
        self.pending: Branches = []
        for _ in self.cells:
            perm = [int(j) for j in self.rng.permutation(self.ops)]
            self.sub_space.append(perm[: o.k])
            self.pending.append(perm[o.k :])
        self.prev_best: Branches = [[] for _ in self.cells]
        self.front: list[Branches] = []  # prev_bests: the last Pareto front's architectures
        self.front_scores: list[float] = []
        self.front_costs: list[float] = []
        import torch

        self.alphas = torch.zeros(len(self.cells), self.ops)
        self.costs: BranchCosts | None = None
        # the round's candidates: (branches, kind) with kind "new", "extra" or "previous", and their scores
        self.candidates: list[tuple[Branches, str]] = []
        self.scores: list[float | None] = []
        self.last: dict[str, float] = {}
        self._latency: tuple[float, tuple[tuple[float, ...], ...]] | None = None

    def costs_used(self) -> frozenset[str]:
        return frozenset({"latency_ms"}) if self.options.cost_metric == "latency_ms" else frozenset()

    def bind_costs(self, costs: ArchCosts) -> None:
        """Bind the run's costs; with cost_metric latency_ms the per-op latencies are read now (or refused)."""
        super().bind_costs(costs)
        if self.options.cost_metric == "latency_ms":
            self.latency_table()

    def latency_table(self) -> tuple[float, tuple[tuple[float, ...], ...]]:
        """(frame, [cell][op]) in ms from the run's latency table: what an op adds when its gate is on."""
        if self._latency is None:
            latency = self.arch_costs.latency if self.arch_costs is not None else None
            contrib = latency.contributions() if latency is not None and latency.source == "table" else None
            if contrib is None:
                raise ConfigError(
                    "strategy nse with cost_metric latency_ms needs a latency table of this space (latency.table)"
                )
            base, table = contrib
            off = {gate: table[(gate, OFF)] for cell in self.cells for gate in cell.gates}
            rows = tuple(tuple(table[(g, ON)] - off[g] for g in cell.gates) for cell in self.cells)
            self._latency = (base + sum(off.values()), rows)
        return self._latency

    # ---- planning and phases ----------------------------------------------------------------------
    def plan(self) -> str:
        o = self.options
        return (
            f"{self.rounds} rounds of {o.epochs:g} supernet epochs, each followed by up to "
            f"{o.samples + o.extra_samples} sampled architectures scored; --set strategy.epochs=1 "
            f"strategy.samples=8 strategy.extra_samples=2 strategy.max_rounds=2 for a short run"
        )

    def planned_training_epochs(self) -> float | None:
        """None: every round runs its own warm-up and cosine (`ImportanceSettings`), so the evaluator's
        global schedule (`evaluator.schedule_epochs`) never applies and its length warning would mislead."""
        return None

    def planned_evaluations(self) -> int:
        o = self.options
        return self.rounds * (o.samples + o.extra_samples)

    @property
    def phase(self) -> str:
        where = f"nse round {min(self.round + 1, self.rounds)}/{self.rounds}"
        if self.stage == "train":
            return f"{where}: supernet and importance training"
        if self.stage == "score":
            return f"{where}: scoring {len(self.scores)}/{len(self.candidates)}"
        return "nse: done"

    @property
    def done(self) -> bool:
        return self.stage == "done"

    # ---- ask / tell ------------------------------------------------------------------------------
    def ask(self) -> list[Arch | Request]:
        if self.stage == "train":
            return [self._training_request()]
        if self.stage == "score":
            if len(self.scores) < len(self.candidates):
                recal = self._recalibration()
                rest = self.candidates[len(self.scores) :]
                return [ScoreShared(arch_of(self.cells, b), recal, phase=self.phase) for b, _ in rest]
            self._close_round()
            return self.ask()
        return []

    def _settings(self) -> ImportanceSettings:
        o = self.options
        return ImportanceSettings(
            epochs=o.epochs,
            arch_every=o.arch_every,
            drop_threshold=o.drop_threshold,
            balance_rate=o.balance_rate,
            enumerate_up_to=o.enumerate_up_to,
            cost_metric=o.cost_metric,
            cost_table=self.latency_table() if o.cost_metric == "latency_ms" else None,
            cost_target=o.cost_target,
            cost_alpha=o.cost_alpha,
            cost_beta=o.cost_beta,
            warmup_epochs=o.warmup_epochs,
            warmup_lr=o.warmup_lr,
        )

    def _training_request(self) -> TrainImportance:
        import torch

        o = self.options
        state = {
            "active": [list(s) for s in self.sub_space],
            "protected": [list(s) for s in self.prev_best],
            "alphas": torch.zeros(len(self.cells), self.ops),  # re_init: every round starts from zero
            "adam": None,
            "iteration": 0,
            "fresh": True,
        }
        betas = (float(o.alpha_betas[0]), float(o.alpha_betas[1]))
        return TrainImportance(
            o.epochs,
            state,
            optimizer=AlphaOptimizer(o.alpha_lr, betas, 0.0),
            phase=self.phase,
            settings=self._settings(),
        )

    def tell_work(self, request: Request, report: WorkReport) -> None:
        if not isinstance(request, TrainImportance) or report.state is None:
            return
        state = report.state
        self.sub_space = [list(map(int, a)) for a in state["active"]]  # after pruning
        self.alphas = state["alphas"].detach().cpu().float().clone()
        self.costs = BranchCosts.from_state(state["costs"])
        self.last = {k: float(v) for k, v in report.metrics.items() if k in ("train_loss", "arch_val_loss")}
        self._sample()
        self.stage = "score"

    def probabilities(self) -> list[np.ndarray]:
        """Each cell's op probabilities, 0.999 sigmoid(alpha) + 5e-4."""
        import torch

        p = torch.sigmoid(self.alphas.double()) * P_SCALE + P_FLOOR
        return [row.numpy() for row in p]

    def cost_of(self, branches: Branches) -> float:
        """The stand-alone network's cost in millions of the strategy's metric (in ms for latency_ms)."""
        if self.options.cost_metric == "latency_ms":
            base, rows = self.latency_table()
            return base + sum(rows[c][j] for c, on in enumerate(branches) for j in on)
        assert self.costs is not None  # told with the training report
        macs, params = self.costs.of(branches)
        return (macs if self.options.cost_metric == "macs" else params) / 1e6

    def _sample(self) -> None:
        o = self.options
        p = self.probabilities()
        mean = o.cost_target + o.target_calibration
        main, extra, draws = sample_candidates(
            self.rng,
            lambda rng: draw_branches(rng, self.sub_space, p, self.residual),
            self.cost_of,
            o.samples,
            mean,
            o.drift,
            o.extra_samples,
            o.extra_drift,
            o.max_draws,
        )
        self.candidates = [(b, "new") for b in main] + [(b, "extra") for b in extra]
        if self.round > 0:
            self.candidates += [(b, "previous") for b in self.front]
        self.scores = []
        self.last.update({"sample_draws": float(draws), "sampled": float(len(main)), "extra": float(len(extra))})

    def tell(self, arch: Arch, result: Result) -> None:
        acc = result.accuracy
        self.scores.append(acc if acc is not None and math.isfinite(acc) else None)

    def _close_round(self) -> None:
        """The Pareto front of the round's scores, then the next subsets (set_front, update_space)."""
        rows, members = [], []
        for (branches, kind), score in zip(self.candidates, self.scores):
            if score is None:
                continue  # failed or rejected by the run's constraints: never on the front
            tie = PREVIOUS_TIE if kind == "previous" else 0.0
            rows.append((self.cost_of(branches), -score + tie))
            members.append((branches, kind, score))
        keep = pareto_efficient(np.asarray(rows).reshape(-1, 2)) if rows else np.zeros(0, dtype=bool)
        front = [(m, r) for m, r, k in zip(members, rows, keep) if k and m[1] != "extra"]
        self.front = [m[0] for m, _ in front]
        self.front_scores = [m[2] for m, _ in front]
        self.front_costs = [r[0] for _, r in front]
        self.prev_best = front_union(self.front, len(self.cells))
        updated = [refill(best, queue, self.options.k) for best, queue in zip(self.prev_best, self.pending)]
        self.sub_space = [s for s, _ in updated]
        self.pending = [q for _, q in updated]
        self.round += 1
        self.candidates, self.scores = [], []
        self.stage = "done" if self.round >= self.rounds else "train"

    def _recalibration(self) -> BNRecalibration | None:
        o = self.options
        return BNRecalibration(o.bn_batches, o.bn_momentum, None) if o.bn_batches else None

    # ---- results -----------------------------------------------------------------------------------
    def final(self) -> Arch | None:
        """The most accurate architecture of the last front whose cost is below target + drift (else of the whole
        front); None before the first front (the runner then returns the best scored)."""
        if not self.front:
            return None
        o = self.options
        mean = o.cost_target + o.target_calibration
        inside = [i for i, c in enumerate(self.front_costs) if c < mean + o.drift]
        pool = inside or list(range(len(self.front)))
        best = max(pool, key=lambda i: (self.front_scores[i], -i))
        return arch_of(self.cells, self.front[best])

    def final_alternatives(self) -> dict[str, Arch]:
        return {f"pareto_{i}": arch_of(self.cells, b) for i, b in enumerate(self.front)}

    def final_evaluation(self, arch: Arch) -> ScoreShared:
        return ScoreShared(arch, self._recalibration(), phase="nse: final score")

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "round": self.round,
            "active_ops": sum(len(s) for s in self.sub_space),
            "front_size": len(self.front),
            **self.last,
        }
        if self.front_scores:
            out["front_best"] = max(self.front_scores)
        return out

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "nse": {
                "round": self.round,
                "stage": self.stage,
                "sub_space": self.sub_space,
                "pending": self.pending,
                "prev_best": self.prev_best,
                "front": self.front,
                "front_scores": self.front_scores,
                "front_costs": self.front_costs,
                "alphas": self.alphas.clone(),
                "costs": None if self.costs is None else self.costs.to_state(),
                "candidates": [[b, k] for b, k in self.candidates],
                "scores": list(self.scores),
                "last": dict(self.last),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        s = state["nse"]
        self.round, self.stage = int(s["round"]), s["stage"]
        self.sub_space, self.pending, self.prev_best = s["sub_space"], s["pending"], s["prev_best"]
        self.front = s["front"]
        self.front_scores = [float(x) for x in s["front_scores"]]
        self.front_costs = [float(x) for x in s["front_costs"]]
        self.alphas = s["alphas"].clone()
        self.costs = None if s["costs"] is None else BranchCosts.from_state(s["costs"])
        self.candidates = [(b, str(k)) for b, k in s["candidates"]]
        self.scores = [None if x is None else float(x) for x in s["scores"]]
        self.last = dict(s["last"])
