"""Architecture weights of the differentiable strategies (DARTS, SETN): one logit vector per decision.

The strategy owns the alphas and Adam's state for them; the evaluator trains them when the runner
executes a `TrainMixed` request and gives them back in the report. This module keeps that state,
the distribution it defines (softmax per decision, a product of independent categoricals over
architectures), and its checkpoint form, so each strategy file holds only its own algorithm.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasframe.common.errors import ConfigError
from nasframe.common.options import option
from nasframe.core.capabilities import AlphaOptimizer
from nasframe.core.evaluator import WorkReport
from nasframe.core.space import Arch, Decision

if TYPE_CHECKING:  # imported where the alphas are made and read: `nasframe list` loads this without torch
    pass


@dataclass(frozen=True)
class AlphaOptions:
    """The architecture weights' options, shared by the strategies that own alphas (DARTS and SETN
    use the same values)."""

    alpha_lr: float = option(3e-4, "Adam learning rate of the architecture weights (DARTS, SETN: 3e-4)", min=0)
    alpha_betas: list[float] = option(default_factory=lambda: [0.5, 0.999], help="Adam betas (DARTS, SETN: 0.5, 0.999)")
    alpha_weight_decay: float = option(1e-3, "Adam weight decay of the architecture weights (DARTS, SETN: 1e-3)", min=0)
    init_scale: float = option(1e-3, "alphas start as init_scale x N(0, 1) (DARTS, SETN: 1e-3)", min=0)

    def __post_init__(self) -> None:
        if len(self.alpha_betas) != 2 or not all(0 <= b < 1 for b in self.alpha_betas):
            raise ConfigError(f"strategy.alpha_betas: expected two numbers in [0, 1), got {self.alpha_betas}")


#: spaces with at most this many architectures are enumerated for `top_k` (exactly SETN's sort)
ENUMERATE_LIMIT = 1_000_000


class ArchitectureWeights:
    """Alphas (initialised `init_scale` x N(0, 1) from the strategy's RNG) and their Adam state."""

    def __init__(self, decisions: Sequence[Decision], init_scale: float, rng: np.random.Generator, owner: str):
        import torch

        self.decisions = list(decisions)
        self.owner = owner  # the strategy's name, for error messages
        self.alphas = {
            d.name: torch.from_numpy(init_scale * rng.standard_normal(len(d.choices))).float() for d in self.decisions
        }
        self.adam: dict[str, Any] | None = None

    def request_state(self) -> dict[str, Any]:
        """The `TrainMixed.state` the evaluator trains: choices, a copy of the alphas, Adam's state."""
        return {
            "choices": {d.name: list(d.choices) for d in self.decisions},
            "alphas": {n: a.clone() for n, a in self.alphas.items()},
            "adam": self.adam,
        }

    def update(self, report: WorkReport) -> None:
        """Take the trained alphas and Adam's state from a `TrainMixed` report."""
        if report.state is None:
            return
        self.alphas = {n: t.detach().cpu().float() for n, t in report.state["alphas"].items()}
        self.adam = report.state["adam"]

    @staticmethod
    def optimizer(lr: float, betas: Sequence[float], weight_decay: float) -> AlphaOptimizer:
        return AlphaOptimizer(lr, (betas[0], betas[1]), weight_decay)

    # ---- the distribution ---------------------------------------------------------------------------
    def probabilities(self) -> dict[str, np.ndarray]:
        import torch

        return {n: torch.softmax(a, dim=-1).numpy() for n, a in self.alphas.items()}

    def most_likely(self) -> Arch:
        """The highest-weighted choice of every decision (the first one on ties)."""
        import torch

        return Arch([(d.name, d.choices[int(torch.argmax(self.alphas[d.name]))]) for d in self.decisions])

    def log_prob(self, arch: Arch) -> float:
        """log P(arch) = sum over decisions of log_softmax(alpha)[choice], summed in float32 in decision
        order as SETN's code does (so equal-probability ties round as there)."""
        import torch

        total = np.float32(0.0)
        for d in self.decisions:
            row = torch.log_softmax(self.alphas[d.name].float(), dim=-1).numpy()
            total = np.float32(total + row[d.choices.index(arch[d.name])])
        return float(total)

    def top_k(self, k: int) -> list[tuple[Arch, float]]:
        """The `k` most probable architectures with their log P, best first; ties in the order of the
        space's enumeration (the first decision varies slowest, choices in their listed order).

        This is SETN's `return_topK`: every architecture's float32 log P, sorted descending with a
        stable sort. Spaces up to `ENUMERATE_LIMIT` architectures (NAS-Bench-201's 15,625 cells) are
        enumerated exactly so. Larger ones (the DARTS space's 8^28) use a best-first search over
        per-decision ranks instead: moving one decision to its next-ranked choice never raises the
        float32 sum, so the heap pops in descending log P; only two architectures whose different
        log P round to the same float32 sum can come out in another order than the stable sort's.
        """
        import torch

        rows = [torch.log_softmax(self.alphas[d.name].float(), dim=-1).numpy() for d in self.decisions]
        sizes = [len(r) for r in rows]
        if int(np.prod(sizes, dtype=np.float64)) <= ENUMERATE_LIMIT:
            picks = self._top_k_enumerated(rows, k)
        else:
            picks = self._top_k_best_first(rows, k)
        return [(Arch([(d.name, d.choices[c]) for d, c in zip(self.decisions, choice)]), lp) for choice, lp in picks]

    @staticmethod
    def _top_k_enumerated(rows: list[np.ndarray], k: int) -> list[tuple[tuple[int, ...], float]]:
        index = np.indices([len(r) for r in rows]).reshape(len(rows), -1)  # row-major: last decision fastest
        total = np.zeros(index.shape[1], dtype=np.float32)
        for j, r in enumerate(rows):  # sequential float32 sums, decision by decision
            total = (total + r[index[j]]).astype(np.float32)
        order = np.argsort(-total, kind="stable")[:k]
        return [(tuple(int(c) for c in index[:, i]), float(total[i])) for i in order]

    @staticmethod
    def _top_k_best_first(rows: list[np.ndarray], k: int) -> list[tuple[tuple[int, ...], float]]:
        # per decision, choice indices by descending log-prob, ties by index
        ranked = [[int(i) for i in np.lexsort((np.arange(len(r)), -r))] for r in rows]

        def entry(ranks: tuple[int, ...]) -> tuple[float, tuple[int, ...], tuple[int, ...]]:
            choice = tuple(ranked[j][rank] for j, rank in enumerate(ranks))
            total = np.float32(0.0)
            for j, c in enumerate(choice):
                total = np.float32(total + rows[j][c])
            return (-float(total), choice, ranks)

        start = tuple(0 for _ in rows)
        heap, seen = [entry(start)], {start}
        out: list[tuple[tuple[int, ...], float]] = []
        while heap and len(out) < k:
            neg, choice, ranks = heapq.heappop(heap)
            out.append((choice, -neg))
            for j in range(len(ranks)):
                if ranks[j] + 1 < len(ranked[j]):
                    nxt = ranks[:j] + (ranks[j] + 1,) + ranks[j + 1 :]
                    if nxt not in seen:
                        seen.add(nxt)
                        heapq.heappush(heap, entry(nxt))
        return out

    def entropies(self) -> list[float]:
        return [float(-(p * np.log(np.maximum(p, 1e-12))).sum()) for p in self.probabilities().values()]

    # ---- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "alphas": dict(self.alphas),
            "adam": self.adam,
            "decisions": [[d.name, len(d.choices)] for d in self.decisions],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if [list(x) for x in state["decisions"]] != [[d.name, len(d.choices)] for d in self.decisions]:
            raise ConfigError(
                f"{self.owner}: checkpoint was saved for a space with other decisions; resume it with the space "
                "options it was started with"
            )
        self.alphas = {n: t.clone() for n, t in state["alphas"].items()}
        self.adam = state["adam"]
