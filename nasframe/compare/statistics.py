"""Numbers of a comparison: the analytic random-search reference, the per-strategy summary and the
pairwise significance tests.

For a tabular evaluator the analytic expectation of uniform random search is the reference: with
the table's search accuracies sorted, a_(1) <= ... <= a_(N), the expected best of n distinct draws
(random search de-duplicates, so draws are without replacement) is
    E[max] = sum_k a_(k) [C(k, n) - C(k-1, n)] / C(N, n).
The mean over seeds hides a heavy tail (a strategy that is usually fine but sometimes returns a
broken architecture), so each row also has the median and the worst run, and every pair of
strategies gets a two-sided Mann-Whitney U test on the returned architectures' accuracies: it
compares the per-seed values by rank, so a few outliers neither dominate it nor hide behind a mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nasframe.compare.execution import RunRecord
    from nasframe.compare.plan import Plan
    from nasframe.core.capabilities import TabularBenchmark

#: shares of the budget at which the summary reports the best-so-far search accuracy
FRACTIONS = (0.25, 0.5, 1.0)


def budget_points(budget: int) -> list[int]:
    """The evaluation counts of FRACTIONS of `budget` (at least 1 each)."""
    return [max(1, math.ceil(f * budget)) for f in FRACTIONS]


def percent_keys() -> list[str]:
    """Column stems of FRACTIONS: best_val_25, best_val_50, best_val_100."""
    return [f"best_val_{int(f * 100)}" for f in FRACTIONS]


# ---- analytic reference -------------------------------------------------------------------------
def _max_rank_cdf(N: int, n_max: int, replace: bool) -> np.ndarray:
    """F[n-1, k] = P(the best of n draws has rank <= k), k = 0..N, for n = 1..n_max.

    Without replacement F(k) = C(k, n) / C(N, n), built by the recurrence
    F_n(k) = F_{n-1}(k) (k - n + 1) / (N - n + 1), which stays exact in floating point.
    """
    k = np.arange(N + 1, dtype=np.float64)
    out = np.empty((n_max, N + 1))
    f = np.ones(N + 1)
    for n in range(1, n_max + 1):
        if replace:
            f = (k / N) ** n
        elif n <= N:
            f = f * np.clip(k - n + 1, 0.0, None) / (N - n + 1)
        out[n - 1] = f
    return out


def expected_best_of_n(values: Sequence[float] | np.ndarray, n_max: int, *, replace: bool = False) -> np.ndarray:
    """E[max of n uniform draws] from `values`, for n = 1..n_max (array of length n_max).

    replace=False matches random search with dedup=True (distinct architectures):
    sum_k a_(k) [C(k,n) - C(k-1,n)] / C(N,n); replace=True: sum_k a_(k) [(k/N)^n - ((k-1)/N)^n].
    Without replacement and n >= N the best is the maximum itself.
    """
    a = np.sort(np.asarray(values, dtype=np.float64))
    F = _max_rank_cdf(len(a), n_max, replace)
    return np.diff(F, axis=1) @ a


def expected_pick(search: np.ndarray, judge: np.ndarray, n: int, *, replace: bool = False) -> tuple[float, float]:
    """(E[best search value], E[judge value of the architecture random search returns]) after n draws.

    Random search returns the first-drawn architecture with the highest search value; within a tie
    every tied architecture is equally likely to be that one, so a tie group counts with its mean
    judge value.
    """
    order = np.argsort(search, kind="stable")
    s, t = np.asarray(search, dtype=np.float64)[order], np.asarray(judge, dtype=np.float64)[order]
    F = _max_rank_cdf(len(s), n, replace)[n - 1]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    p_group = F[ends] - F[starts]  # P(best value == this group's value)
    mean_t = np.add.reduceat(t, starts) / (ends - starts)
    return float(p_group @ s[starts]), float(p_group @ mean_t)


def expected_pick_curve(search: np.ndarray, judge: np.ndarray, n_max: int) -> np.ndarray:
    """`expected_pick`'s judge value for n = 1..n_max at once (random search without repeats): the
    expected held-out accuracy of the architecture random search returns after each evaluation."""
    order = np.argsort(search, kind="stable")
    s, t = np.asarray(search, dtype=np.float64)[order], np.asarray(judge, dtype=np.float64)[order]
    F = _max_rank_cdf(len(s), n_max, False)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    mean_t = np.add.reduceat(t, starts) / (ends - starts)
    return (F[:, ends] - F[:, starts]) @ mean_t


@dataclass
class Reference:
    """Analytic expectation of uniform random search (tabular evaluators only)."""

    curve: np.ndarray  # E[best-so-far search accuracy] after 1..budget evaluations
    final: float  # E[held-out accuracy of the returned architecture] at the full budget
    final_metric: str


def open_table(plan: Plan) -> TabularBenchmark | None:
    """The comparison's evaluator when it declares a table of every architecture, else None."""
    from nasframe.core.capabilities import TabularBenchmark
    from nasframe.core.registry import evaluators, spaces

    cfg = plan.resolved()
    ev_cls = evaluators.get(cfg.names["evaluator"])
    if not issubclass(ev_cls, TabularBenchmark):
        return None
    space = spaces.get(cfg.names["space"])(cfg.options["space"])
    return ev_cls(space, cfg.options["evaluator"])


def analytic_reference(table: TabularBenchmark | None, budget: int) -> Reference | None:
    """Expected random search from the evaluator's table, or None when there is no table."""
    if table is None:
        return None
    search, judge = table.all_accuracies("val_acc"), table.all_accuracies("test_acc")
    _, final = expected_pick(search, judge, budget)
    return Reference(expected_best_of_n(search, budget), final, "test_acc")


# ---- over seeds ---------------------------------------------------------------------------------
def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN where undefined)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def mean_and_se(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard error over rows, ignoring NaN (runs that stopped early)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        count = np.sum(np.isfinite(c), axis=0)
        mean = np.where(count > 0, np.nansum(c, axis=0) / np.maximum(count, 1), np.nan)
        dev = np.where(np.isfinite(c), c - mean, 0.0)
        var = np.where(count > 1, np.sum(dev**2, axis=0) / np.maximum(count - 1, 1), np.nan)
        return mean, np.sqrt(var / np.maximum(count, 1))


def curves_by_label(plan: Plan, records: list[RunRecord]) -> dict[str, np.ndarray]:
    """label -> array (runs, budget) of best-so-far search accuracy."""
    return {
        e.label: np.stack([r.curve for r in records if r.label == e.label])
        for e in plan.strategies
        if any(r.label == e.label for r in records)
    }


# ---- the summary rows ---------------------------------------------------------------------------
def summarize(plan: Plan, records: list[RunRecord], refs: Sequence[Reference] = ()) -> list[dict[str, Any]]:
    """One row per strategy, plus one analytic random-search row per reference (one per distinct
    budget of the comparison, when the evaluator has a table)."""
    rows = []
    for entry in plan.strategies:
        recs = [r for r in records if r.label == entry.label]
        if recs:
            rows.append(_strategy_row(entry.label, recs, plan.budget_of(entry.label)))
    for ref in refs:
        rows.append(_reference_row(ref, len(ref.curve), named_budget=len(refs) > 1))
    return rows


def median_min(values: Sequence[float | None]) -> tuple[float, float]:
    """Median and minimum of the finite values (NaN where there are none)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(np.median(v)), float(v.min())


def _strategy_row(label: str, recs: list[RunRecord], budget: int) -> dict[str, Any]:
    metrics = sorted({r.final_metric for r in recs if r.final_metric})
    row: dict[str, Any] = {"strategy": label, "runs": len(recs), "final_metric": "/".join(metrics) or "none"}
    row["final_mean"], row["final_std"] = mean_std([r.final for r in recs])
    row["final_median"], row["final_min"] = median_min([r.final for r in recs])
    row["budget"] = budget
    for key, p in zip(percent_keys(), budget_points(budget)):
        row[f"{key}_mean"], row[f"{key}_std"] = mean_std([r.curve[p - 1] for r in recs])
    row["evaluations_mean"] = float(np.mean([r.evaluations for r in recs]))
    row["cost_epochs_mean"], row["cost_epochs_std"] = mean_std([r.cost_epochs for r in recs])
    row["wall_seconds_mean"], row["wall_seconds_std"] = mean_std([r.wall_seconds for r in recs])
    row["stopped_early"] = sum(r.evaluations < budget for r in recs)
    row["no_final"] = sum(r.final is None for r in recs)
    return row


def _reference_row(ref: Reference, budget: int, *, named_budget: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "strategy": f"random (expected, {budget})" if named_budget else "random (expected)",
        "runs": "",
        "final_metric": ref.final_metric,
        "final_mean": ref.final,
        "final_std": math.nan,
        "final_median": math.nan,
        "final_min": math.nan,
        "budget": budget,
    }
    for key, p in zip(percent_keys(), budget_points(budget)):
        row[f"{key}_mean"], row[f"{key}_std"] = float(ref.curve[p - 1]), math.nan
    row.update(
        {
            "evaluations_mean": float(budget),
            "cost_epochs_mean": math.nan,
            "cost_epochs_std": math.nan,
            "wall_seconds_mean": math.nan,
            "wall_seconds_std": math.nan,
            "stopped_early": "",
            "no_final": "",
        }
    )
    return row


# ---- significance ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairTest:
    """Two-sided Mann-Whitney U test of two strategies' returned-architecture accuracies (one per seed)."""

    a: str
    b: str
    n_a: int
    n_b: int
    median_a: float
    median_b: float
    u: float  # U statistic of `a` (scipy.stats.mannwhitneyu(a, b).statistic)
    p: float  # two-sided p-value; NaN when either side has no value

    def line(self) -> str:
        """One line, e.g. `mdenas vs random: median 90.56 vs 93.95, U = 312.0, p = 2.1e-09 (50 vs 50 runs)`."""
        if not math.isfinite(self.p):
            return f"{self.a} vs {self.b}: no test ({self.n_a} vs {self.n_b} runs with a final accuracy)"
        return (
            f"{self.a} vs {self.b}: median {self.median_a:.2f} vs {self.median_b:.2f}, "
            f"U = {self.u:g}, p = {self.p:.2g} ({self.n_a} vs {self.n_b} runs)"
        )


def mann_whitney(a: str, b: str, x: Sequence[float], y: Sequence[float]) -> PairTest:
    """`scipy.stats.mannwhitneyu(x, y, alternative="two-sided")` (exact or asymptotic as scipy
    chooses by sample size and ties) on the finite values of x and y."""
    from scipy.stats import mannwhitneyu

    xs = np.asarray([v for v in x if np.isfinite(v)], dtype=np.float64)
    ys = np.asarray([v for v in y if np.isfinite(v)], dtype=np.float64)
    if xs.size == 0 or ys.size == 0:
        return PairTest(a, b, xs.size, ys.size, math.nan, math.nan, math.nan, math.nan)
    res = mannwhitneyu(xs, ys, alternative="two-sided")
    return PairTest(
        a, b, xs.size, ys.size, float(np.median(xs)), float(np.median(ys)), float(res.statistic), float(res.pvalue)
    )


def pairwise_tests(plan: Plan, records: list[RunRecord]) -> list[PairTest]:
    """One Mann-Whitney test per pair of compared strategies (in the plan's order), on the final accuracies."""
    finals = {
        e.label: [r.final for r in records if r.label == e.label and r.final is not None] for e in plan.strategies
    }
    labels = [e.label for e in plan.strategies if any(r.label == e.label for r in records)]
    return [mann_whitney(a, b, finals[a], finals[b]) for i, a in enumerate(labels) for b in labels[i + 1 :]]
