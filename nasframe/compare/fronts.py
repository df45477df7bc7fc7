"""Pareto fronts in a comparison: each run's hypervolume, their mean ± standard error per strategy, fronts.png.

Runs whose strategy searched several objectives (`objectives: [val_acc, ...]`) return a front in best.json
(`pareto`). Its hypervolume is pymoo's, on rows to minimise (-val_acc, costs), up to one reference point
for the whole comparison, stated with the numbers: val_acc 0 and, for each cost, 1.1 times the largest
value that cost takes on any front of the comparison, so every front member adds volume and every run is
measured against the same point. The unit is accuracy points times the cost's unit (ms, parameters, MACs).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nasframe.common.errors import ConfigError
from nasframe.compare.statistics import mean_and_se
from nasframe.core.pareto import COSTS, hypervolume, to_minimise

if TYPE_CHECKING:
    from nasframe.compare.execution import RunRecord
    from nasframe.compare.plan import Plan

HYPERVOLUME_CSV, FRONTS_FIGURE = "hypervolume.csv", "fronts.png"
#: the cost part of the reference point: this times the largest value on any front
MARGIN = 1.1


@dataclass
class FrontRun:
    label: str
    seed: int
    values: np.ndarray  # (members, objectives): val_acc then the costs
    hypervolume: float = math.nan


@dataclass
class FrontSummary:
    objectives: list[str]
    reference: list[float]  # in the objectives' own terms: val_acc, then each cost
    runs: list[FrontRun]
    rows: list[dict[str, float | str | int]]

    def lines(self) -> list[str]:
        ref = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(self.objectives, self.reference))
        out = [f"hypervolume of the Pareto fronts over {', '.join(self.objectives)} (reference point {ref}):"]
        for row in self.rows:
            out.append(
                f"  {row['strategy']}: {_fmt(row['hv_mean'])} ± {_fmt(row['hv_se'])} (s.e., {row['runs']} seeds)"
            )
        return out


def _fmt(value: float | str | int) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summarize_fronts(plan: Plan, records: list[RunRecord]) -> FrontSummary | None:
    """Hypervolumes of every run with a front (None when no run has one)."""
    from nasframe.search.rundir import RunDir

    runs: list[FrontRun] = []
    objectives: list[str] | None = None
    for record in records:
        result = RunDir(record.path).read_result()
        if not result.pareto or not result.objectives:
            continue
        if objectives is not None and result.objectives != objectives:
            raise ConfigError(
                f"compare: runs searched different objectives ({objectives} and {result.objectives}); "
                f"hypervolumes are comparable only over the same ones"
            )
        objectives = list(result.objectives)
        values = np.array([[float(m[k]) for k in objectives] for m in result.pareto])
        runs.append(FrontRun(record.label, record.seed, values))
    if not runs or objectives is None:
        return None
    reference = [0.0] + [MARGIN * max(float(r.values[:, i].max()) for r in runs) for i in range(1, len(objectives))]
    ref_row = to_minimise(reference, objectives)
    for run in runs:
        run.hypervolume = hypervolume(np.array([to_minimise(v, objectives) for v in run.values]), ref_row)
    rows: list[dict[str, float | str | int]] = []
    for entry in plan.strategies:
        hv = np.array([[r.hypervolume] for r in runs if r.label == entry.label])
        if len(hv):
            mean, se = mean_and_se(hv)
            rows.append({"strategy": entry.label, "hv_mean": float(mean[0]), "hv_se": float(se[0]), "runs": len(hv)})
    return FrontSummary(objectives, reference, runs, rows)


def write_fronts(out: Path, summary: FrontSummary, plot: bool) -> None:
    """hypervolume.csv (one row per run, then the reference point) and, with `plot`, fronts.png."""
    with open(out / HYPERVOLUME_CSV, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["strategy", "seed", "front_size", "hypervolume"])
        for run in summary.runs:
            w.writerow([run.label, run.seed, len(run.values), f"{run.hypervolume:.6g}"])
        w.writerow(
            ["reference", "", "", " ".join(f"{k}={v:.6g}" for k, v in zip(summary.objectives, summary.reference))]
        )
    if plot:
        plot_fronts(out / FRONTS_FIGURE, summary)


def plot_fronts(path: Path, summary: FrontSummary, extra: dict[str, tuple[float, float]] | None = None) -> None:
    """Accuracy against the first cost: each run's front as a staircase, one colour per strategy; `extra`
    marks reference networks (name -> (cost, accuracy))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost = summary.objectives[1]
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys(r.label for r in summary.runs))
    hv = {str(r["strategy"]): f" (HV {_fmt(r['hv_mean'])} ± {_fmt(r['hv_se'])})" for r in summary.rows}
    for run in summary.runs:
        color = colors[labels.index(run.label) % len(colors)]
        order = np.argsort(run.values[:, 1])
        x, y = run.values[order, 1], run.values[order, 0]
        first = run is next(r for r in summary.runs if r.label == run.label)
        ax.step(x, y, where="post", color=color, alpha=0.6, label=run.label + hv.get(run.label, "") if first else None)
        ax.plot(x, y, "o", color=color, markersize=3.5, alpha=0.8)
    for name, (x, y) in (extra or {}).items():
        ax.plot([x], [y], "k*", markersize=10)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, -10), fontsize=8)
    unit = "ms" if cost == "latency_ms" else COSTS[cost]
    ax.set_xlabel(f"{cost} ({unit})")
    ax.set_ylabel("val_acc (search accuracy)")
    ref = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(summary.objectives, summary.reference))
    ax.set_title(f"Pareto fronts, one line per seed; hypervolume (mean ± s.e.) up to {ref}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
