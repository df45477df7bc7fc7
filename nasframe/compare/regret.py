"""Regret on a tabular benchmark: how far each strategy's best-so-far stays from the table's optimum.

NAS-Bench-101/201 and NASLib plot the regret, optimum minus best so far, on a log axis, because
best-so-far accuracies all crowd into the top percent of the axis. Two regrets per run, after each
evaluation n:

- validation: max over the table of the search metric, minus the best search value among the first n
  evaluations (the best-so-far curve);
- test: max over the table of the held-out metric, minus the held-out value of the incumbent, the
  architecture with the best search value so far (the first one reaching it, as the runner picks). It
  need not fall: a better search value can belong to a worse architecture on the test set.

The analytic random-search expectation gets the same two curves (`expected_best_of_n`,
`expected_pick_curve`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from nasframe.compare.statistics import expected_best_of_n, expected_pick_curve

if TYPE_CHECKING:
    from nasframe.compare.execution import RunRecord
    from nasframe.core.capabilities import TabularBenchmark
    from nasframe.search.records import EvaluationRecord


@dataclass
class Regret:
    """Per strategy, (runs, budget) arrays of validation and test regret, and random's expectation."""

    validation: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    optimum_val: float
    optimum_test: float
    random_validation: np.ndarray  # the analytic random search's expected regrets, evaluations 1..budget
    random_test: np.ndarray


def incumbent_curve(records: list[EvaluationRecord], budget: int, held_out: Any) -> np.ndarray:
    """The held-out value of the best-so-far architecture after 1..budget evaluations (`held_out(arch
    dict) -> float`): NaN before the first success, carried flat after the run stopped."""
    curve = np.full(budget, np.nan)
    best: float | None = None
    value = np.nan
    n = 0
    for record in records:
        if n >= budget:
            break
        acc = record.val_acc
        if acc is not None and (best is None or acc > best):
            best, value = acc, held_out(record.arch)
        curve[n] = value
        n += 1
    if 0 < n < budget:
        curve[n:] = curve[n - 1]
    return curve


def regret_curves(table: TabularBenchmark, records: list[RunRecord], labels: list[str]) -> Regret:
    """The regrets of every run of the comparison against `table` (the comparison's evaluator)."""
    from nasframe.core.evaluator import Evaluator
    from nasframe.search.rundir import RunDir

    evaluator = cast(Evaluator[Any], table)
    space = evaluator.space
    search, judge = table.all_accuracies("val_acc"), table.all_accuracies("test_acc")
    best_val, best_test = float(np.max(search)), float(np.max(judge))

    def held_out(arch: dict[str, Any]) -> float:
        return float(evaluator.final_metrics(space.validate(arch))["test_acc"])

    validation: dict[str, np.ndarray] = {}
    test: dict[str, np.ndarray] = {}
    for label in labels:
        mine = [r for r in records if r.label == label]
        if not mine:
            continue
        validation[label] = best_val - np.stack([r.curve for r in mine])
        rows = [incumbent_curve(list(RunDir(r.path).evaluations()), len(r.curve), held_out) for r in mine]
        test[label] = best_test - np.stack(rows)
    budget = max(len(r.curve) for r in records) if records else 1
    return Regret(
        validation,
        test,
        best_val,
        best_test,
        best_val - expected_best_of_n(search, budget),
        best_test - expected_pick_curve(search, judge, budget),
    )
