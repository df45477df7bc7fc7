"""One comparison from plan to files: execute every run, then summarise, write, plot and log.

Re-running the same comparison on the same folder skips finished runs and resumes unfinished
ones; the summary (summary.csv, summary.md, runs.csv, pairs.csv), the figures and the TensorBoard
logs are rebuilt from the run directories every time, so they always describe what is on disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nasframe.compare.execution import ExecutorChoice, RunRecord, execute_runs
from nasframe.compare.figures import FigureCaption, check_format
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

if TYPE_CHECKING:
    from nasframe.core.capabilities import TabularBenchmark

#: the files `run_comparison` writes into the comparison folder (and the figures, tensorboard/ when asked)
SUMMARY_CSV, SUMMARY_MD, RUNS_CSV, PAIRS_CSV = "summary.csv", "summary.md", "runs.csv", "pairs.csv"
#: the figures' file stems: curves.<format> always, regret.<format> on a tabular benchmark
FIGURE, REGRET_FIGURE = "curves", "regret"
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
    figures: list[FigureCaption] = field(default_factory=list)  # the figures written, with their captions


def run_comparison(
    plan: Plan,
    *,
    tensorboard: bool = True,
    plot: bool = True,
    say: Callable[[str], None] | None = None,
    executor: ExecutorChoice | None = None,
    figure_format: str = "png",
) -> Comparison:
    """Run (or resume, or skip) every strategy x seed, then write the summary, the figures (as
    `figure_format`: png, pdf or svg) and the logs."""
    from nasframe.common.loading import check_text_path
    from nasframe.common.ownership import COMPARISON, Owner, claim_folder

    check_format(figure_format)
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
    curves = curves_by_label(plan, records)
    figures: list[FigureCaption] = []
    if plot:
        labels = describe_metrics(plan, table, records)
        figures.append(_plot(plan, records, curves, ref, labels, figure_format))
        if table is not None and records:
            figures.append(_plot_regret(plan, records, table, labels, figure_format))
    write_summary_md(plan.out / SUMMARY_MD, plan, rows, ref, tests, figures)
    if tensorboard:
        log_tensorboard(plan.out, curves, ref, records)
    fronts = summarize_fronts(plan, records)
    if fronts is not None:
        write_fronts(plan.out, fronts, plot)
    table_text = markdown_table(plan, rows)
    return Comparison(plan, records, rows, table_text, time.perf_counter() - started, actions, tests, fronts, figures)


def _plot(
    plan: Plan,
    records: list[RunRecord],
    curves: dict[str, np.ndarray],
    ref: Reference | None,
    labels: MetricLabels,
    fmt: str,
) -> FigureCaption:
    from nasframe.compare.plot import plot_comparison

    text = figure_text(plan, labels, None if ref is None else ref.final)
    path = plot_comparison(plan.out, curves, records, ref, text, fmt)
    return FigureCaption(path.name, text.caption)


def _plot_regret(
    plan: Plan, records: list[RunRecord], table: TabularBenchmark, labels: MetricLabels, fmt: str
) -> FigureCaption:
    from nasframe.compare.plot import REGRET_FLOOR, plot_regret
    from nasframe.compare.regret import regret_curves

    regret = regret_curves(table, records, [e.label for e in plan.strategies])
    path = plot_regret(plan.out, regret, (labels.search, labels.held_out), fmt)
    caption = (
        f"Regret on the {labels.dataset} table ({len(plan.seeds)} seeds), log axis; mean ± standard error over "
        f"seeds. Left: the table's best {labels.search} ({regret.optimum_val:.2f}) minus the best so far. Right: "
        f"the table's best {labels.held_out} ({regret.optimum_test:.2f}) minus that of the incumbent, the "
        f"architecture with the best {labels.search} so far; it can rise when a better search value belongs to a "
        f"worse architecture. Dashed: random search, expected (analytic). A regret of 0 (the optimum found by "
        f"every seed) is drawn at {REGRET_FLOOR:g}."
    )
    return FigureCaption(path.name, caption)
