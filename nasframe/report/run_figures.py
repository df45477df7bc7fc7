"""The figures of a run's report, drawn from its records: the search curve, the strategy's own state
over time (history.jsonl's `strategy` field), the supernet work (work.jsonl) and a Pareto front.

Each function returns an open matplotlib figure (the page embeds and closes it) or None when the run
holds nothing to draw. Nothing here knows a particular strategy: numbers in the `strategy` field
become lines over the evaluations, a per-decision list a heatmap over the evaluations, and a
per-decision table of choices (MDENAS' probabilities, DARTS' softmaxed alphas) the heatmap of its
last value plus the heatmap of its largest entry per decision over time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nasframe.search.records import EvaluationRecord, WorkRecord

#: the x axis of figures over the search: evaluations by their index, as best.json and the closing lines name them
_EVALUATION = "evaluation (# in history.jsonl)"
#: the report's figures: 9 inches wide, 8.5 pt text (a screen page)
_WIDTH_IN, _FONT = 9.0, 8.5
P = ParamSpec("P")
R = TypeVar("R")


def _styled(draw: Callable[P, R]) -> Callable[P, R]:
    """Draw with the report's text sizes (every text is made inside the context, so all get them)."""

    @functools.wraps(draw)
    def styled(*args: P.args, **kwargs: P.kwargs) -> R:
        import matplotlib

        matplotlib.use("Agg")
        with matplotlib.rc_context({"font.size": _FONT, "axes.titlesize": _FONT + 0.5, "legend.fontsize": _FONT - 1}):
            return draw(*args, **kwargs)

    return styled


def _new(rows: int = 1, cols: int = 1, height: float = 3.2) -> tuple[Figure, Any]:
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(_WIDTH_IN, height * rows), squeeze=False)


@_styled
def search_curve(records: Sequence[EvaluationRecord], unit: str) -> Figure | None:
    """Every evaluation's val_acc (dots; failures as crosses at the bottom) and the best so far (a line)."""
    if not records:
        return None
    fig, axes = _new()
    ax = axes[0][0]
    ok = [(r.index, r.val_acc) for r in records if r.val_acc is not None]
    failed = [r.index for r in records if r.status == "failed"]
    if ok:
        x, y = np.array([p[0] for p in ok]), np.array([p[1] for p in ok], dtype=float)
        ax.scatter(x, y, s=12, alpha=0.6, label="val_acc of each evaluation")
        best = np.maximum.accumulate(y)
        ax.step(x, best, where="post", color="black", lw=1.4, label="best so far")
        if failed:
            ax.scatter(failed, [float(y.min())] * len(failed), marker="x", color="tab:red", label="failed")
    ax.set_xlabel(_EVALUATION)
    ax.set_ylabel(f"val_acc ({unit})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def _series(records: Sequence[EvaluationRecord]) -> tuple[list[int], dict[str, list[Any]]]:
    """The `strategy` field of the evaluations that have one: evaluation numbers, values per key."""
    x: list[int] = []
    values: dict[str, list[Any]] = {}
    for r in records:
        if not r.strategy:
            continue
        x.append(r.index)
        for key, value in r.strategy.items():
            values.setdefault(key, []).append(value)
    return x, {k: v for k, v in values.items() if len(v) == len(x)}


def _kind(values: list[Any]) -> str:
    """scalar, vector (one number per decision) or table (decisions x choices), from the last value."""
    last = values[-1]
    if isinstance(last, (int, float)) and not isinstance(last, bool):
        return "scalar"
    if isinstance(last, list) and last and all(isinstance(v, (int, float)) for v in last):
        return "vector"
    if isinstance(last, list) and last and all(isinstance(v, list) for v in last):
        return "table"
    return "other"


def _rectangular(rows: list[list[float]]) -> np.ndarray:
    """A ragged table (decisions with fewer choices) as an array padded with NaN."""
    width = max(len(r) for r in rows)
    return np.array([list(r) + [np.nan] * (width - len(r)) for r in rows], dtype=float)


@_styled
def strategy_state(
    records: Sequence[EvaluationRecord], decisions: Sequence[str], choices: Sequence[str] | None = None
) -> list[tuple[Figure, str]]:
    """The strategy's own state over the evaluations, with a caption each (nothing when it logs none);
    `choices` names the columns of per-decision tables when every decision has the same choices."""
    x, values = _series(records)
    if not x:
        return []
    out: list[tuple[Figure, str]] = []
    scalars = {k: v for k, v in values.items() if _kind(v) == "scalar"}
    if scalars:
        fig, axes = _new(1, len(scalars), height=2.6)
        for ax, (key, ys) in zip(axes[0], scalars.items()):
            ax.plot(x, ys, lw=1.2)
            ax.set_title(key)
            ax.set_xlabel(_EVALUATION)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        out.append((fig, f"The strategy's numbers after each evaluation: {', '.join(scalars)}."))
    for key, series in values.items():
        kind = _kind(series)
        if kind == "vector":
            grid = _rectangular([list(v) for v in series]).T
            out.append((_heatmap(grid, x, decisions, key), f"{key} per decision (rows) after each evaluation."))
        elif kind == "table":
            last = _rectangular(series[-1])
            caption = f"{key} after the last evaluation: decisions (rows) x choices (columns); empty: fewer choices."
            out.append((_final_table(last, decisions, choices, key), caption))
            if np.allclose(np.nansum(last, axis=1), 1.0, atol=1e-3):  # a distribution per decision
                peak = np.array([np.nanmax(_rectangular(v), axis=1) for v in series]).T
                caption = f"The largest entry of {key} per decision (rows) after each evaluation: how sure it grew."
                out.append((_heatmap(peak, x, decisions, f"largest {key} per decision"), caption))
    return out


def _labels(decisions: Sequence[str], n: int) -> list[str]:
    return list(decisions) if len(decisions) == n else [str(k) for k in range(n)]


def _heatmap(grid: np.ndarray, x: list[int], decisions: Sequence[str], title: str) -> Figure:
    fig, axes = _new(height=max(2.2, 0.16 * grid.shape[0] + 1.2))
    ax = axes[0][0]
    image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis",
                      extent=(x[0] - 0.5, x[-1] + 0.5, grid.shape[0] - 0.5, -0.5))  # fmt: skip
    ax.set_yticks(range(grid.shape[0]), _labels(decisions, grid.shape[0]), fontsize=6)
    ax.set_xlabel(_EVALUATION)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def _final_table(table: np.ndarray, decisions: Sequence[str], choices: Sequence[str] | None, title: str) -> Figure:
    fig, axes = _new(height=max(2.2, 0.16 * table.shape[0] + 1.2))
    ax = axes[0][0]
    image = ax.imshow(table, aspect="auto", interpolation="nearest", cmap="magma")
    ax.set_yticks(range(table.shape[0]), _labels(decisions, table.shape[0]), fontsize=6)
    if choices is not None and len(choices) == table.shape[1]:
        ax.set_xticks(range(table.shape[1]), list(choices), rotation=30, ha="right")
        ax.set_xlabel("choice")
    else:
        ax.set_xticks(range(table.shape[1]))
        ax.set_xlabel("choice (index in the decision's choices)")
    ax.set_title(f"{title}, last")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


@_styled
def supernet_work(work: Sequence[WorkRecord]) -> Figure | None:
    """Training loss and learning rate of each piece of supernet work against the epochs trained, one
    colour per phase (measurements, which train nothing, are left out)."""
    pieces = [w for w in work if w.epochs > 0 and isinstance(w.metrics.get("train_loss"), (int, float))]
    if not pieces:
        return None
    fig, axes = _new(1, 2, height=2.8)
    loss, lr = axes[0]
    done = np.cumsum([w.epochs for w in pieces])
    for phase in dict.fromkeys(w.phase for w in pieces):
        mask = np.array([w.phase == phase for w in pieces])
        loss.plot(done[mask], [w.metrics["train_loss"] for w, m in zip(pieces, mask) if m], ".-", ms=3, label=phase)
        rates = [w.metrics.get("lr") for w, m in zip(pieces, mask) if m]
        if all(isinstance(r, (int, float)) for r in rates):
            lr.plot(done[mask], rates, ".-", ms=3, label=phase)
    for ax, name in ((loss, "train_loss"), (lr, "learning rate at the piece's last step")):
        ax.set_xlabel("supernet epochs trained")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    loss.legend()
    fig.tight_layout()
    return fig


@_styled
def pareto_front(points: Sequence[Mapping[str, Any]], objectives: Sequence[str]) -> Figure | None:
    """The front's points on its first two objectives (each point a mapping holding them)."""
    pairs = [(p.get(objectives[0]), p.get(objectives[1])) for p in points]
    pairs = [(a, b) for a, b in pairs if isinstance(a, (int, float)) and isinstance(b, (int, float))]
    if len(objectives) < 2 or not pairs:
        return None
    fig, axes = _new(height=3.0)
    ax = axes[0][0]
    pairs.sort()
    ax.plot([a for a, _ in pairs], [b for _, b in pairs], "o-", ms=4)
    ax.set_xlabel(objectives[0])
    ax.set_ylabel(objectives[1])
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
