"""One comparison from plan to files: execute every run, then summarise, write, plot and log.

Re-running the same comparison on the same folder skips finished runs and resumes unfinished
ones; the summary (summary.csv, summary.md, runs.csv, pairs.csv), curves.png and the TensorBoard
logs are rebuilt from the run directories every time, so they always describe what is on disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasframe.compare.execution import ExecutorChoice, RunRecord, execute_runs
from nasframe.compare.fronts import FrontSummary, summarize_fronts, write_fronts
from nasframe.compare.labels import MetricLabels, describe_metrics, figure_text
from nasframe.compare.plan import Plan
from nasframe.compare.statistics import (
    PairTest,
    Reference,
    analytic_reference,
    curves_by_label,
    open_table,
    pairwise_tests,
    summarize,
)
from nasframe.compare.writers import (
    log_tensorboard,
    markdown_table,
    write_pairs_csv,
    write_runs_csv,
    write_summary_csv,
    write_summary_md,
)

#: the files `run_comparison` writes into the comparison folder (and curves.png, tensorboard/ when asked)
SUMMARY_CSV, SUMMARY_MD, RUNS_CSV, PAIRS_CSV = "summary.csv", "summary.md", "runs.csv", "pairs.csv"
FIGURE = "curves.png"
#: version of the comparison folder's layout (its marker records it)
FORMAT = 1


@dataclass
class Comparison:
    """Result of `run_comparison`: the rows of the summary and where the files are."""

    plan: Plan
    records: list[RunRecord]
    rows: list[dict[str, Any]]
    table: str
    seconds: float
    actions: dict[str, int]
    tests: list[PairTest]  # one Mann-Whitney test per pair of strategies
    fronts: FrontSummary | None = None  # hypervolumes, when the strategies searched several objectives


def run_comparison(
    plan: Plan,
    *,
    tensorboard: bool = True,
    plot: bool = True,
    say: Callable[[str], None] | None = None,
    executor: ExecutorChoice | None = None,
) -> Comparison:
    """Run (or resume, or skip) every strategy x seed, then write the summary, curves and logs."""
    from nasframe.common.loading import check_text_path
    from nasframe.common.ownership import COMPARISON, Owner, claim_folder

    started = time.perf_counter()
    # the marker first: a search run, a training or the user's own files in --out are refused untouched;
    # a comparison folder made before markers existed is continued (and marked)
    owner = Owner(COMPARISON, FORMAT, plan.identity())
    claim_folder(check_text_path(plan.out, "--out"), owner, adopt=True)
    records, actions = execute_runs(plan, say or (lambda msg: None), executor)
    table = open_table(plan)
    budgets = sorted({plan.budget_of(e.label) for e in plan.strategies})
    refs = [r for r in (analytic_reference(table, b) for b in budgets) if r is not None]
    ref = refs[-1] if refs else None  # the longest: its curve covers every budget
    rows = summarize(plan, records, refs)
    tests = pairwise_tests(plan, records)
    write_summary_csv(plan.out / SUMMARY_CSV, rows)
    write_runs_csv(plan.out / RUNS_CSV, records)
    write_pairs_csv(plan.out / PAIRS_CSV, tests)
    write_summary_md(plan.out / SUMMARY_MD, plan, rows, ref, tests)
    curves = curves_by_label(plan, records)
    if plot:
        _plot(plan, records, curves, ref, describe_metrics(plan, table, records))
    if tensorboard:
        log_tensorboard(plan.out, curves, ref, records)
    fronts = summarize_fronts(plan, records)
    if fronts is not None:
        write_fronts(plan.out, fronts, plot)
    table_text = markdown_table(plan, rows)
    return Comparison(plan, records, rows, table_text, time.perf_counter() - started, actions, tests, fronts)


def _plot(
    plan: Plan, records: list[RunRecord], curves: dict[str, np.ndarray], ref: Reference | None, labels: MetricLabels
) -> None:
    from nasframe.compare.plot import plot_comparison

    text = figure_text(plan, labels, None if ref is None else ref.final)
    plot_comparison(plan.out / FIGURE, curves, records, ref, text)
