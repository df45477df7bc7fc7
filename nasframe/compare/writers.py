"""The comparison's files: summary.csv, runs.csv, pairs.csv, summary.md (with the figures' captions)
and the TensorBoard chart.

All are rebuilt from the run directories every time, so they always describe what is on disk.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nasframe.compare.statistics import FRACTIONS, PairTest, Reference, budget_points, mean_and_se, percent_keys

if TYPE_CHECKING:
    from nasframe.compare.execution import RunRecord
    from nasframe.compare.figures import FigureCaption
    from nasframe.compare.plan import Plan

CSV_FIELDS = (
    "strategy",
    "runs",
    "final_metric",
    "final_mean",
    "final_std",
    "best_val_25_mean",
    "best_val_25_std",
    "best_val_50_mean",
    "best_val_50_std",
    "best_val_100_mean",
    "best_val_100_std",
    "evaluations_mean",
    "cost_epochs_mean",
    "cost_epochs_std",
    "wall_seconds_mean",
    "wall_seconds_std",
    "stopped_early",
    "no_final",
    # added after the first release, so at the end: readers by position keep working
    "final_median",
    "final_min",
    "budget",
)
RUNS_FIELDS = (
    "strategy",
    "seed",
    "run_dir",
    "evaluations",
    "stopped_because",
    "final_metric",
    "final",
    *percent_keys(),
    "cost_epochs",
    "cost_seconds",
    "wall_seconds",
    "budget",
)
PAIRS_FIELDS = ("strategy_a", "strategy_b", "runs_a", "runs_b", "median_a", "median_b", "u", "p")


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return v


# ---- csv -----------------------------------------------------------------------------------------
def write_summary_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in rows:
            w.writerow({k: _csv_value(row.get(k, "")) for k in CSV_FIELDS})


def write_runs_csv(path: Path, records: list[RunRecord]) -> None:
    """One row per run; the @25/50/100% points are of that run's own budget (the length of its curve)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(RUNS_FIELDS)
        for r in records:
            points = budget_points(len(r.curve))
            w.writerow(
                [
                    r.label,
                    r.seed,
                    str(r.path),
                    r.evaluations,
                    r.stopped_because,
                    r.final_metric or "",
                    _csv_value(r.final),
                    *[_csv_value(float(r.curve[p - 1])) for p in points],
                    _csv_value(r.cost_epochs),
                    _csv_value(r.cost_seconds),
                    _csv_value(r.wall_seconds),
                    len(r.curve),
                ]
            )


def write_pairs_csv(path: Path, tests: list[PairTest]) -> None:
    """The pairwise Mann-Whitney tests, one row per pair."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PAIRS_FIELDS)
        for t in tests:
            w.writerow([t.a, t.b, t.n_a, t.n_b, *map(_csv_value, (t.median_a, t.median_b, t.u, t.p))])


# ---- markdown ------------------------------------------------------------------------------------
def _pm(mean: Any, std: Any, digits: int = 2) -> str:
    if not isinstance(mean, float) or not math.isfinite(mean):
        return "-"
    if not isinstance(std, float) or not math.isfinite(std):
        return _fixed(mean, digits)
    return f"{_fixed(mean, digits)} ± {_fixed(std, digits)}"


def _fixed(value: float, digits: int) -> str:
    """Fixed point; from 1e6 on, 3 significant digits (zero-cost proxy scores such as synflow's reach 1e50)."""
    return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"


def markdown_table(plan: Plan, rows: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (also printed at the end of `nasframe compare`)."""
    metric = next((r["final_metric"] for r in rows if r.get("runs") != ""), "final")
    # with one budget the columns name their evaluation counts; with several, each row is at its own budget
    counts = [""] * len(FRACTIONS) if plan.mixed_budgets else [f" ({p})" for p in budget_points(plan.budget)]
    head = [
        "strategy",
        "runs",
        f"final {metric}",
        "median",
        "worst",
        *[f"best val_acc @{int(f * 100)}%{c}" for f, c in zip(FRACTIONS, counts)],
        "evaluations",
        "cost (epochs)",
        "wall (s)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(_markdown_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def _markdown_cells(r: dict[str, Any]) -> list[str]:
    epoch_digits = 0 if abs(r["cost_epochs_mean"]) >= 100 else 2
    return [
        r["strategy"],
        str(r["runs"]),
        _pm(r["final_mean"], r["final_std"]),
        _pm(r["final_median"], None),
        _pm(r["final_min"], None),
        *[_pm(r[f"{key}_mean"], r[f"{key}_std"]) for key in percent_keys()],
        f"{r['evaluations_mean']:g}",
        _pm(r["cost_epochs_mean"], r["cost_epochs_std"], epoch_digits),
        _pm(r["wall_seconds_mean"], r["wall_seconds_std"], 2),
    ]


def write_summary_md(
    path: Path,
    plan: Plan,
    rows: list[dict[str, Any]],
    ref: Reference | None,
    tests: Sequence[PairTest] = (),
    figures: Sequence[FigureCaption] = (),
) -> None:
    budget = (
        f"budget {plan.budget} evaluations per run unless a strategy sets its own (the evaluations column)"
        if plan.mixed_budgets
        else f"budget {plan.budget} evaluations per run"
    )
    text = [
        _markdown_heading(plan),
        "",
        f"{len(plan.seeds)} seeds ({_seed_text(plan.seeds)}), {budget}. "
        "Mean ± standard deviation over seeds. `final` is the held-out accuracy of the architecture each "
        "strategy returned (`best.json` final.held_out.test_acc; its val_acc where no held-out metric exists), "
        "`median` and `worst` are the median and the lowest of it over the seeds; "
        "`best val_acc @x%` is the best search accuracy seen after that share of the budget.",
        "",
        markdown_table(plan, rows),
        "",
    ]
    if ref is not None:
        text += [
            "`random (expected)` is the analytic expectation of uniform random search without repeats "
            "(random's dedup=True): E[best of n] = sum_k a_(k) [C(k,n) - C(k-1,n)] / C(N,n) over the "
            "table's sorted search accuracies, and the expected held-out accuracy of the architecture it "
            "returns.",
            "",
        ]
    text += _markdown_notes(rows)
    if tests:
        text += [
            "",
            "## Pairwise tests",
            "",
            "Two-sided Mann-Whitney U test of the `final` values of each pair of strategies (one value per "
            "seed; `scipy.stats.mannwhitneyu`); also in pairs.csv.",
            "",
            *[f"- {t.line()}" for t in tests],
        ]
    if figures:
        text += ["", "## Figures", ""]
        for k, figure in enumerate(figures, 1):
            text += [f"![Figure {k}]({figure.file})", "", f"**Figure {k}** (`{figure.file}`). {figure.caption}", ""]
    path.write_text("\n".join(text).rstrip() + "\n")


def _markdown_heading(plan: Plan) -> str:
    cfg = plan.resolved()
    options = ", ".join(f"{k}={v}" for k, v in plan.base["evaluator"].items() if k != "name")
    return (
        f"# Comparison: {', '.join(e.label for e in plan.strategies)} on {cfg.names['space']} / "
        f"{cfg.names['evaluator']}" + (f" ({options})" if options else "")
    )


def _markdown_notes(rows: list[dict[str, Any]]) -> list[str]:
    notes = [
        f"Note: {r['stopped_early']} of {r['runs']} {r['strategy']} runs stopped before the budget "
        f"(mean {r['evaluations_mean']:g} evaluations; see runs.csv); their curves are carried flat."
        for r in rows
        if r.get("stopped_early")
    ]
    notes += [
        f"Note: {r['no_final']} of {r['runs']} {r['strategy']} runs returned an architecture that was "
        "never evaluated (run.final_evaluation: never) and the evaluator has no held-out metric: no final "
        "accuracy for them."
        for r in rows
        if r.get("no_final")
    ]
    return notes


def _seed_text(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}..{seeds[-1]}"
    return ", ".join(map(str, seeds))


# ---- tensorboard ---------------------------------------------------------------------------------
def log_tensorboard(out: Path, curves: dict[str, np.ndarray], ref: Reference | None, records: list[RunRecord]) -> None:
    """One SummaryWriter: mean best-so-far per strategy (and the reference) on one chart."""
    from torch.utils.tensorboard import SummaryWriter

    tb_dir = out / "tensorboard"
    if tb_dir.exists():
        shutil.rmtree(tb_dir)  # rebuilt from the runs each time
    writer = SummaryWriter(str(tb_dir))
    try:
        tags = [_log_strategy(writer, label, c, records) for label, c in curves.items()]
        if ref is not None:
            tags.append(_log_reference(writer, ref))
        writer.add_custom_scalars({"compare": {"best-so-far val_acc": ["Multiline", tags]}})
    finally:
        writer.close()


def _log_strategy(writer: Any, label: str, c: np.ndarray, records: list[RunRecord]) -> str:
    mean, se = mean_and_se(c)
    tag = f"compare/best_val_acc/{label}"
    for i in range(c.shape[1]):
        if np.isfinite(mean[i]):
            writer.add_scalar(tag, float(mean[i]), i + 1)
            if np.isfinite(se[i]):
                writer.add_scalar(f"compare/best_val_acc_se/{label}", float(se[i]), i + 1)
    finals = np.array([r.final for r in records if r.label == label and r.final is not None])
    if finals.size:
        writer.add_scalar(f"compare/final/{label}", float(finals.mean()), 0)
        writer.add_histogram(f"compare/final_per_seed/{label}", finals, 0, bins=_histogram_bins(finals))
    return tag


def _histogram_bins(values: np.ndarray) -> Any:
    """TensorBoard's default buckets end near 1e20 and drop larger values (zero-cost proxy scores such as
    synflow's reach 1e50), failing on an empty histogram: beyond 1e12, ten equal buckets over the values."""
    top = float(np.abs(values).max())
    if top < 1e12:
        return "tensorflow"
    lo, hi = float(values.min()), float(values.max())
    pad = max(hi - lo, top * 1e-6)
    return np.linspace(lo - pad, hi + pad, 11)


def _log_reference(writer: Any, ref: Reference) -> str:
    tag = "compare/best_val_acc/random_expected"
    for i, v in enumerate(ref.curve):
        writer.add_scalar(tag, float(v), i + 1)
    return tag
