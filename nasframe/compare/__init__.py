"""`nasframe compare`: several strategies x seeds at one budget, side by side.

One job per module: `plan` (config and flags -> Plan), `execution` (create, resume or skip each
run and read it back), `statistics` (analytic random-search reference, summaries over seeds),
`labels` (what the numbers are, in words), `regret` (distance to a table's optimum), `writers` (csv,
Markdown with the figures' captions, TensorBoard), `figures` (formats, paper-column style, captions),
`plot` (curves.* and regret.*) and `comparison` (plan to files); the command line lives in
`nasframe.app.commands.compare`. Nothing here imports torch at import time, and the names below
load their modules (numpy, scipy) on first use (PEP 562), so `nasframe --help`, which reads
`figures.FORMATS`, stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nasframe.common.lazy import lazy_exports

if TYPE_CHECKING:
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

#: public name -> the module that defines it (keep in step with the TYPE_CHECKING imports above)
_HOMES: dict[str, str] = {
    **dict.fromkeys(["Comparison", "run_comparison"], "nasframe.compare.comparison"),
    **dict.fromkeys(["RunRecord", "read_run", "run_one"], "nasframe.compare.execution"),
    **dict.fromkeys(
        ["Plan", "RunSpec", "StrategyEntry", "make_plan", "parse_seeds", "parse_strategies"], "nasframe.compare.plan"
    ),
    **dict.fromkeys(
        ["Reference", "analytic_reference", "expected_best_of_n", "expected_pick", "mean_and_se", "summarize"],
        "nasframe.compare.statistics",
    ),
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())


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
