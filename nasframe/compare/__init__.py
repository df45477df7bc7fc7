"""`nasframe compare`: several strategies x seeds at one budget, side by side.

One job per module: `plan` (config and flags -> Plan), `execution` (create, resume or skip each
run and read it back), `statistics` (analytic random-search reference, summaries over seeds),
`labels` (what the numbers are, in words), `regret` (distance to a table's optimum), `writers` (csv,
Markdown with the figures' captions, TensorBoard), `figures` (formats, paper-column style, captions),
`plot` (curves.* and regret.*) and `comparison` (plan to files); the command line lives in
`nasframe.app.commands.compare`. Nothing here imports torch
at import time, so `nasframe --help` stays fast.
"""

from nasframe.compare.comparison import Comparison, run_comparison
from nasframe.compare.execution import RunRecord, read_run, run_one
from nasframe.compare.plan import Plan, RunSpec, StrategyEntry, make_plan, parse_seeds, parse_strategies
from nasframe.compare.statistics import (
    Reference,
    analytic_reference,
    expected_best_of_n,
    expected_pick,
    mean_and_se,
    summarize,
)

__all__ = [
    "Comparison",
    "Plan",
    "Reference",
    "RunRecord",
    "RunSpec",
    "StrategyEntry",
    "analytic_reference",
    "expected_best_of_n",
    "expected_pick",
    "make_plan",
    "mean_and_se",
    "parse_seeds",
    "parse_strategies",
    "read_run",
    "run_comparison",
    "run_one",
    "summarize",
]
