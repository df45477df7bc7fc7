"""What a comparison's numbers are, in words, for the figures' axes and captions.

A reader must see which data set and which measurement each axis shows: the axes name the
measurement; the caption (in summary.md) names the data set, the components and how the panels
summarise the seeds. For an evaluator that declares a table (`TabularBenchmark`), the table
answers, not the run's `data:` section: the data set and the meaning of its search and held-out
columns come from the table itself (for NAS-Bench-201: 12-epoch validation accuracy while
searching, 200-epoch test accuracy for the returned architecture). Any other evaluator measures
`val_acc` on the run's data set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nasframe.compare.execution import RunRecord
    from nasframe.compare.plan import Plan
    from nasframe.core.capabilities import TabularBenchmark


@dataclass(frozen=True)
class MetricLabels:
    """Where the compared accuracies come from and what they measure."""

    dataset: str  # the data set the accuracies were measured on
    source: str  # who measured them: "from the nb201 table", "measured by short_train"
    search: str  # the search metric (the curves)
    held_out: str  # the returned architecture's metric (the final panel)


@dataclass(frozen=True)
class FigureText:
    """The texts of curves.{png,pdf,svg}: short axis labels and panel names inside the figure; the
    explanation (what, on which data, how it is summarised) in the caption summary.md holds."""

    caption: str
    curve_axis: str
    final_axis: str
    curve_title: str = "search"
    final_title: str = "returned architecture"


_FINAL_METRIC_WORDS = {"test_acc": "held-out test accuracy (test_acc)", "val_acc": "val_acc (no held-out metric)"}
#: up to this many strategies are named in the caption's first sentence; with more it says how many
_NAMED_IN_TITLE = 5
#: up to this many strategies the per-seed panel sits right of the curves (plot.py); with more, below
SIDE_BY_SIDE = 5


def describe_metrics(plan: Plan, table: TabularBenchmark | None, records: list[RunRecord]) -> MetricLabels:
    """The labels of a comparison: from the table when there is one, else from evaluator and data."""
    cfg = plan.resolved()
    if table is not None:
        words = table.table_labels()
        return MetricLabels(words.dataset, f"from the {cfg.names['space']} table", words.search, words.held_out)
    metrics = sorted({r.final_metric for r in records if r.final_metric})
    held_out = " / ".join(_FINAL_METRIC_WORDS.get(m, m) for m in metrics) or "none (never evaluated)"
    return MetricLabels(
        cfg.options["data"].name, f"measured by {cfg.names['evaluator']}", "validation accuracy (val_acc)", held_out
    )


def figure_text(plan: Plan, labels: MetricLabels, reference_final: float | None) -> FigureText:
    """The axis labels of curves.* and its caption."""
    n = len(plan.strategies)
    strategies = " vs ".join(e.label for e in plan.strategies) if n <= _NAMED_IN_TITLE else f"{n} strategies"
    budgets = sorted({plan.budget_of(e.label) for e in plan.strategies})
    budget = f"budget {budgets[0]}" if len(budgets) == 1 else f"budgets {', '.join(map(str, budgets))}"
    where = "Right" if n <= SIDE_BY_SIDE else "Below"
    random_curve = "; dashed: random search, expected (analytic)" if reference_final is not None else ""
    random_final = (
        f"; dashed: the architecture random search returns, expected ({reference_final:.2f})"
        if reference_final is not None
        else ""
    )
    caption = (
        f"{strategies} on {labels.dataset} ({_components(plan)}): {len(plan.seeds)} seeds, {budget} evaluations. "
        f"{'Left' if n <= SIDE_BY_SIDE else 'Top'}: the search metric, {labels.search} {labels.source}, best so "
        f"far against evaluations, mean ± standard error over seeds; the legend gives each curve's value at the "
        f"full budget{random_curve}. {where}: the returned architecture's {labels.held_out} {labels.source}, one "
        f"dot per seed, box = quartiles and median (whiskers to 1.5 times the interquartile range), black bar = "
        f"mean, mean and median under each name; far outliers are triangles on the lower edge{random_final}."
    )
    return FigureText(
        caption=caption, curve_axis=f"best-so-far {labels.search} (%)", final_axis=f"{labels.held_out} (%)"
    )


def _components(plan: Plan) -> str:
    """`space / evaluator`, with the evaluator options the comparison sets."""
    cfg = plan.resolved()
    options = ", ".join(f"{k}={v}" for k, v in plan.base["evaluator"].items() if k != "name")
    return f"{cfg.names['space']} / {cfg.names['evaluator']}" + (f" ({options})" if options else "")
