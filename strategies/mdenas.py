"""MDENAS: learn one multinomial distribution per decision from (epochs trained, accuracy) pairs.

Zheng et al., "Multinomial Distribution Learning for Effective Neural Architecture Search"
(ICCV 2019). Every evaluation trains one sampled path for one epoch; the strategy keeps, per
(decision, choice), how many epochs the choice was trained (H_e) and the accuracy it last earned
(H_a). The accuracy-ranking hypothesis says an op that is better *with less training* should be
preferred, so each epoch every op gains `lr` for each rival it beat while trained fewer epochs and
loses `lr` for each rival it lost to while trained more. The final architecture is the most likely
choice per decision (`final: argmax`, the paper's); `final_weights` hands the probabilities to the
space's `export` (for DARTS, the genotype rule), so the strategy needs to know nothing about any
particular space. `final: best_evaluated` returns the best architecture the search evaluated instead:
on a table, where the product of per-decision argmaxes is often a cell never evaluated and much
worse than the best one seen, that is the answer a user usually wants. Either way the argmax is
recorded in best.json (`alternatives.argmax`), with whether it was ever evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from nasframe.common.errors import ConfigError
from nasframe.common.options import option
from nasframe.core.evaluator import Result
from nasframe.core.registry import register_strategy
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import Strategy


@dataclass(frozen=True)
class MdenasOptions:
    lr: float = option(0.01, "probability moved per won/lost comparison and epoch (paper's alpha)", min=0.0, max=1.0)
    rule: Literal["A", "B"] = option(
        "A",
        "A: paper's simultaneous pairwise counts; B: XNAS's sequential clipped transfers (non-strict epoch comparison)",
    )
    epochs: int | None = option(
        None,
        "stop after this many epochs, one per evaluation (failed ones included); null: the run's budget decides",
        min=1,
    )
    entropy_threshold: float | None = option(
        None, "also stop once every decision's entropy (nats) is below this (null: off)", min=0.0
    )
    accuracy_record: Literal["latest", "mean"] = option(
        "latest", "H_a holds each op's latest accuracy or the mean over the epochs it was trained"
    )
    final: Literal["argmax", "best_evaluated"] = option(
        "argmax",
        "the run's answer: argmax (paper) is the most likely op per decision; best_evaluated is the best "
        "architecture the search evaluated (the argmax is still recorded in best.json's alternatives)",
    )


def pairwise_counts(epochs: np.ndarray, accuracies: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Rule A's integer count per (decision, op): rivals beaten while trained fewer epochs minus
    rivals lost to while trained more. Each counted pair adds +1 to one op and -1 to the other,
    so every row sums to 0 (antisymmetry). Ties in epochs or accuracy count for nothing."""
    e = np.asarray(epochs, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    de = e[:, :, None] - e[:, None, :]  # [d, i, j] = H_e[i] - H_e[j]
    da = a[:, :, None] - a[:, None, :]
    won = (de < 0) & (da > 0)
    lost = (de > 0) & (da < 0)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        pair = m[:, :, None] & m[:, None, :]
        won &= pair
        lost &= pair
    return won.sum(axis=2, dtype=np.int64) - lost.sum(axis=2, dtype=np.int64)


def update_probabilities(
    probs: np.ndarray,
    epochs: np.ndarray,
    accuracies: np.ndarray,
    lr: float,
    rule: str = "A",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """New per-decision probabilities after one MDENAS step (pure: the inputs are not modified).

    All arrays have shape (decisions, ops); `mask` marks real choices when decisions have fewer
    ops than the widest one (padding stays at probability 0 and takes part in no comparison).

    Rule A (paper): p += lr * pairwise_counts. Counts sum to 0, so only negative entries need
    care: a row with a negative entry is shifted up by its minimum (that op drops to exactly 0)
    and every row is renormalised, which also stops rounding drift over many epochs.
    Rule B (XNAS, the authors' later code): for i < j in order, if op i was trained at least as
    often as j but scored lower, move min(lr, p_i) from i to j; if trained at most as often and
    scored higher, move min(lr, p_j) from j to i. Mass is conserved and nothing goes negative;
    because of the clipping the result depends on the loop order, so it is sequential over pairs
    (vectorised over decisions only).
    """
    p = np.array(probs, dtype=np.float64, copy=True)
    e = np.asarray(epochs, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    if p.ndim != 2 or e.shape != p.shape or a.shape != p.shape:
        raise ValueError(
            f"probs, epochs and accuracies must share one (decisions, ops) shape; got {p.shape}, {e.shape}, {a.shape}"
        )
    m = np.ones(p.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if rule == "A":
        p += lr * pairwise_counts(e, a, m)
        p = np.where(m, p, 0.0)
        low = np.where(m, p, np.inf).min(axis=1, keepdims=True)
        p = np.where(m & (low < 0), p - low, p)
        return p / p.sum(axis=1, keepdims=True)
    if rule == "B":
        n = p.shape[1]
        for i in range(n):
            for j in range(i + 1, n):
                both = m[:, i] & m[:, j]
                lose_i = both & (e[:, i] >= e[:, j]) & (a[:, i] < a[:, j])
                t = np.where(lose_i, np.minimum(lr, p[:, i]), 0.0)
                p[:, i] -= t
                p[:, j] += t
                win_i = both & (e[:, i] <= e[:, j]) & (a[:, i] > a[:, j])
                t = np.where(win_i, np.minimum(lr, p[:, j]), 0.0)
                p[:, j] -= t
                p[:, i] += t
        return p
    raise ValueError(f"unknown MDENAS rule {rule!r}; choose A or B")


def entropies(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row; zero (and padded) entries contribute nothing."""
    p = np.asarray(probs, dtype=np.float64)
    safe = np.where(p > 0, p, 1.0)
    return -(p * np.log(safe)).sum(axis=1)


@register_strategy("mdenas")
class Mdenas(Strategy[MdenasOptions]):
    """MDENAS: per-decision multinomial distributions learned by the epoch/accuracy ranking rule."""

    Options = MdenasOptions

    def __init__(self, space: SearchSpace, options: MdenasOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self._decisions = list(space.decisions)
        if not self._decisions:
            raise ConfigError(f"mdenas: space {space.name!r} has no decisions to learn")
        sizes = np.array([len(d.choices) for d in self._decisions])
        shape = (len(sizes), int(sizes.max()))
        self._sizes = sizes
        self._mask = np.arange(shape[1])[None, :] < sizes[:, None]
        self.probs = np.where(self._mask, 1.0 / sizes[:, None], 0.0)
        # Ops never sampled start at H_e = 0 and H_a = 0, as in the reference implementations.
        # Against any sampled op (H_e >= 1, accuracy >= 0) an unsampled op then has fewer epochs
        # and no higher accuracy, so neither side of the pair counts: unsampled ops are neutral
        # until they are first trained (under both rules), instead of being guessed good or bad.
        self.epoch_counts = np.zeros(shape, dtype=np.int64)
        self.accuracies = np.zeros(shape, dtype=np.float64)
        self.epoch = 0  # evaluations told, failed ones included (they cost an epoch too)
        self.failed = 0

    # ---- ask / tell ------------------------------------------------------------------------------
    def ask(self) -> list[Arch]:
        """One architecture, each decision drawn independently from its distribution."""
        cum = np.cumsum(self.probs, axis=1)
        # scale the uniform draw by each row's total, so rounding can never pick a zero-probability op
        u = self.rng.random(len(self._decisions)) * cum[:, -1]
        idx = np.minimum((cum <= u[:, None]).sum(axis=1), self._sizes - 1)
        return [Arch([(d.name, d.choices[int(k)]) for d, k in zip(self._decisions, idx)])]

    def tell(self, arch: Arch, result: Result) -> None:
        """Record one trained epoch and update every distribution.

        A failed evaluation (no accuracy) still uses up an epoch of the budget but changes no
        history and no probability: there is no accuracy to rank, and counting the epoch without
        an accuracy would make its ops look trained-more-yet-no-better. An architecture the run's
        constraints rejected was never trained and counts for nothing.
        """
        if result.status == "infeasible":
            return  # rejected by the run's constraints before training: nothing was learned or spent
        self.epoch += 1
        acc = result.accuracy
        if acc is None or not np.isfinite(acc):
            self.failed += 1
            return
        rows = np.arange(len(self._decisions))
        cols = np.array([d.index(arch[d.name]) for d in self._decisions])
        self.epoch_counts[rows, cols] += 1
        if self.options.accuracy_record == "mean":
            old = self.accuracies[rows, cols]
            self.accuracies[rows, cols] = old + (float(acc) - old) / self.epoch_counts[rows, cols]
        else:
            self.accuracies[rows, cols] = float(acc)
        self.probs = update_probabilities(
            self.probs, self.epoch_counts, self.accuracies, self.options.lr, self.options.rule, self._mask
        )

    @property
    def done(self) -> bool:
        if self.options.epochs is not None and self.epoch >= self.options.epochs:
            return True
        threshold = self.options.entropy_threshold
        return threshold is not None and bool((entropies(self.probs) < threshold).all())

    # ---- results -----------------------------------------------------------------------------------
    def final(self) -> Arch | None:
        """`final: argmax`: the most likely choice of every decision. `final: best_evaluated`, or
        before any successful epoch: None, and the runner returns the best evaluated architecture
        (the first one with the highest search accuracy), if any."""
        if self.options.final == "best_evaluated":
            return None
        return self.argmax()

    def argmax(self) -> Arch | None:
        """The most likely choice of every decision (None before any successful epoch)."""
        if self.epoch == self.failed:
            return None
        idx = np.where(self._mask, self.probs, -1.0).argmax(axis=1)
        return Arch([(d.name, d.choices[int(k)]) for d, k in zip(self._decisions, idx)])

    def final_alternatives(self) -> dict[str, Arch]:
        """The argmax, whichever `final` is chosen: best.json then says whether it was ever evaluated."""
        argmax = self.argmax()
        return {} if argmax is None else {"argmax": argmax}

    def final_weights(self) -> dict[str, list[float]] | None:
        """The probabilities, for the space's export (the DARTS genotype rule). None with `final:
        best_evaluated`: the answer is then an evaluated architecture, not one derived from them."""
        if self.options.final == "best_evaluated":
            return None
        return {d.name: self.probs[r, : self._sizes[r]].tolist() for r, d in enumerate(self._decisions)}

    def metrics(self) -> dict[str, Any]:
        """Distributions (decisions x ops, padding 0), per-decision entropy, mean entropy, H_e."""
        ent = entropies(self.probs)
        return {
            "probabilities": self.probs.copy(),
            "entropy": ent,
            "mean_entropy": float(ent.mean()),
            "epoch_counts": self.epoch_counts.copy(),
            "epoch": self.epoch,
        }

    # ---- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "choices": [len(d.choices) for d in self._decisions],
            "probs": self.probs.tolist(),
            "epoch_counts": self.epoch_counts.tolist(),
            "accuracies": self.accuracies.tolist(),
            "epoch": self.epoch,
            "failed": self.failed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["choices"]) != [len(d.choices) for d in self._decisions]:
            raise ConfigError(
                "mdenas: checkpoint was saved for a space with other decisions; resume it with the "
                "space options it was started with"
            )
        super().load_state_dict(state)
        self.probs = np.array(state["probs"], dtype=np.float64)
        self.epoch_counts = np.array(state["epoch_counts"], dtype=np.int64)
        self.accuracies = np.array(state["accuracies"], dtype=np.float64)
        self.epoch, self.failed = int(state["epoch"]), int(state["failed"])
