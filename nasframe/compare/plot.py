"""The figures of `nasframe compare`: curves.* (best-so-far accuracy per strategy, and final accuracy
per seed) and, on a tabular benchmark, regret.* (distance to the table's optimum on a log axis).

curves, left: mean best-so-far search accuracy against evaluations, from the first evaluation on, with
a band of one standard error of the mean over seeds, plus the analytic random-search expectation when
the evaluator has a table; the legend gives each curve's value at the full budget. Right (below the
curves when more than `SIDE_BY_SIDE` strategies are compared): the metric of each run's returned
architecture as a box plot (median, quartiles, whiskers to 1.5 IQR) with one dot per seed on top and a
bar at the mean, so a heavy low tail that drags the mean is visible at a glance; the mean and median
are written under the strategy names, away from the dots. The axes name the metric (`FigureText`);
the figure has no explanatory title: its caption, in summary.md, says what it shows
(`nasframe.compare.figures`).

regret, left: validation regret (the table's best search value minus the best so far); right: test
regret of the incumbent (`nasframe.compare.regret`); mean ± standard error over seeds, log axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nasframe.compare.figures import WIDTH_IN, paper_style, save_figure
from nasframe.compare.labels import SIDE_BY_SIDE
from nasframe.compare.statistics import Reference, mean_and_se

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from nasframe.compare.execution import RunRecord
    from nasframe.compare.labels import FigureText
    from nasframe.compare.regret import Regret

#: curves start at evaluation 1; this is how far below the lowest curve point the axis ends (share of range)
_MARGIN = 0.04
#: height of one row of panels, in inches
_ROW_IN = 3.0
#: the regret axis' floor: a mean regret of 0 (every seed found the optimum) is drawn here
REGRET_FLOOR = 0.01


def plot_comparison(
    folder: Path,
    curves: dict[str, np.ndarray],
    records: list[RunRecord],
    ref: Reference | None,
    text: FigureText,
    fmt: str = "png",
) -> Path:
    """Draw curves.* and write it into `folder` as `fmt`; returns the file."""
    return save_figure(draw_comparison(curves, records, ref, text), folder, "curves", fmt)


def draw_comparison(
    curves: dict[str, np.ndarray], records: list[RunRecord], ref: Reference | None, text: FigureText
) -> Figure:
    """The figure of curves.* (open; the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    with matplotlib.rc_context(paper_style()):
        if n <= SIDE_BY_SIDE:
            fig, (ax, bx) = plt.subplots(1, 2, figsize=(WIDTH_IN, _ROW_IN), gridspec_kw={"width_ratios": [3, 2]})
        else:
            fig, (ax, bx) = plt.subplots(2, 1, figsize=(max(WIDTH_IN, 0.45 * n + 1), 2 * _ROW_IN + 0.6))
        # the default cycle has 10 colours; with more strategies tab20 keeps them apart
        colors = list(plt.rcParams["axes.prop_cycle"].by_key()["color"]) if n <= 10 else _many_colors(n)
        _draw_curves(ax, curves, records, ref, colors, text)
        _draw_finals(bx, list(curves), records, ref, colors, text)
        fig.tight_layout()
    return fig


def plot_regret(folder: Path, regret: Regret, axis: tuple[str, str], fmt: str = "png") -> Path:
    """Draw regret.* and write it into `folder`; `axis` names the validation and the test metric."""
    return save_figure(draw_regret(regret, axis), folder, "regret", fmt)


def draw_regret(regret: Regret, axis: tuple[str, str]) -> Figure:
    """Validation regret (left) and test regret of the incumbent (right), log axis (open; not saved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(paper_style()):
        fig, panels = plt.subplots(1, 2, figsize=(WIDTH_IN, _ROW_IN * 0.9), sharex=True)
        colors = list(plt.rcParams["axes.prop_cycle"].by_key()["color"])
        parts = ((regret.validation, regret.random_validation, "validation"), (regret.test, regret.random_test, "test"))
        for ax, (curves, random_curve, title), name in zip(panels, parts, axis):
            _draw_regret_panel(ax, curves, random_curve, colors if len(curves) <= 10 else _many_colors(len(curves)))
            ax.set_title(f"{title}: {name}")
            ax.set_ylabel("regret (percentage points)")
        panels[0].legend(loc="upper right")
        fig.tight_layout()
    return fig


def _draw_regret_panel(ax: Axes, curves: dict[str, np.ndarray], random_curve: np.ndarray, colors: list[str]) -> None:
    for k, (label, c) in enumerate(curves.items()):
        mean, se = mean_and_se(c)
        x = np.arange(1, c.shape[1] + 1)
        color = colors[k % len(colors)]
        low = np.maximum(mean - np.nan_to_num(se), REGRET_FLOOR)
        ax.plot(x, np.maximum(mean, REGRET_FLOOR), color=color, label=label)
        ax.fill_between(x, low, np.maximum(mean + np.nan_to_num(se), REGRET_FLOOR), color=color, alpha=0.2, lw=0)
    x = np.arange(1, len(random_curve) + 1)
    ax.plot(x, np.maximum(random_curve, REGRET_FLOOR), color="black", ls="--", lw=1.0, label="random, expected")
    ax.set_yscale("log")
    ax.set_xlim(1, max(2, len(random_curve)))
    ax.set_xlabel("evaluations")
    ax.grid(alpha=0.3, which="both")


def _many_colors(n: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab20"]
    return [to_hex(cmap(k % 20)) for k in range(n)]


def _draw_curves(
    ax: Axes,
    curves: dict[str, np.ndarray],
    records: list[RunRecord],
    ref: Reference | None,
    colors: list[str],
    text: FigureText,
) -> None:
    budget = max([c.shape[1] for c in curves.values()] + ([len(ref.curve)] if ref is not None else [1]))
    same_length = len({c.shape[1] for c in curves.values()}) <= 1
    for k, (label, c) in enumerate(curves.items()):
        mean, se = mean_and_se(c)
        x = np.arange(1, c.shape[1] + 1)
        color = colors[k % len(colors)]
        ax.plot(x, mean, color=color, label=_curve_legend(label, c, mean, records))
        band = np.nan_to_num(se)
        ax.fill_between(x, mean - band, mean + band, color=color, alpha=0.2, lw=0)
    if ref is not None:
        x = np.arange(1, len(ref.curve) + 1)
        ax.plot(x, ref.curve, color="black", ls="--", lw=1.0, label=f"random, expected (analytic): {ref.curve[-1]:.2f}")
    ax.set_xlim(1, max(budget, 2))
    ax.set_xticks(sorted({1, *[int(t) for t in ax.get_xticks() if 1 < t <= budget]}))
    _curve_limits(ax, curves, ref)
    ax.set_xlabel("evaluations")
    ax.set_ylabel(text.curve_axis)
    ax.set_title(text.curve_title)
    ax.grid(alpha=0.3)
    ax.legend(
        loc="lower right",
        ncol=1 if len(curves) <= 10 else 2,
        title=f"value at {budget} evaluations" if same_length else "value at each strategy's last evaluation",
    )


def _curve_legend(label: str, c: np.ndarray, mean: np.ndarray, records: list[RunRecord]) -> str:
    """`label (n=seeds): last value`, noting runs that stopped before the budget."""
    stopped = [r.evaluations for r in records if r.label == label and r.evaluations < c.shape[1]]
    note = f"; {len(stopped)} stopped early, at ~{int(np.mean(stopped))}" if stopped else ""
    last = f": {mean[-1]:.2f}" if np.isfinite(mean[-1]) else ""
    return f"{label} (n={c.shape[0]}{note}){last}"


def _curve_limits(ax: Axes, curves: dict[str, np.ndarray], ref: Reference | None) -> None:
    """Y range from the lowest mean (the first evaluation) to the highest band edge."""
    means = [mean_and_se(c) for c in curves.values()]
    lows = [np.nanmin(m) for m, _ in means if np.isfinite(m).any()]
    highs = [np.nanmax(m + np.nan_to_num(se)) for m, se in means if np.isfinite(m).any()]
    if ref is not None:
        lows.append(float(np.min(ref.curve)))
        highs.append(float(np.max(ref.curve)))
    if lows and highs:
        lo, hi = min(lows), max(highs)
        pad = _MARGIN * (hi - lo + 1e-9)
        ax.set_ylim(lo - pad, hi + pad)


def finals_floor(values: list[np.ndarray]) -> float | None:
    """Where the per-seed panel's axis should end below, or None to show every value.

    One broken run (a disconnected cell scores 10 %) would squeeze every box into a line. Values
    more than 3 interquartile ranges below their strategy's lower quartile are far outliers; when
    the far outliers alone would take more of the axis than everything else, the axis ends just
    below the other values and the far ones are drawn as markers on its lower edge instead.
    """
    kept, everything = [], []
    for v in values:
        if v.size == 0:
            continue
        q1, q3 = np.percentile(v, [25, 75])
        near = v[v >= q1 - 3.0 * (q3 - q1)]
        kept.append(near.min())
        everything.append(v.min())
    if not kept:
        return None
    top = max(float(v.max()) for v in values if v.size)
    low, lowest = min(kept), min(everything)
    if low - lowest <= top - low:
        return None
    return low - _MARGIN * 2 * (top - low + 1e-9)


def _draw_finals(
    bx: Axes, labels: list[str], records: list[RunRecord], ref: Reference | None, colors: list[str], text: FigureText
) -> None:
    rng = np.random.default_rng(0)  # jitter only
    values = [np.array([r.final for r in records if r.label == x and r.final is not None], dtype=float) for x in labels]
    floor = finals_floor(values)
    ticks = []
    for k, (label, vals) in enumerate(zip(labels, values)):
        if vals.size == 0:
            ticks.append(f"{label}\n(no final)")
            continue
        below = vals[vals < floor] if floor is not None else vals[:0]
        ticks.append(
            f"{label}\nmean {vals.mean():.2f}\nmedian {np.median(vals):.2f}"
            + (f"\n{below.size} below axis (min {below.min():.2f})" if below.size else "")
        )
        color = colors[k % len(colors)]
        bx.boxplot(
            vals,
            positions=[k],
            widths=0.5,
            whis=1.5,
            showfliers=False,  # the dots show every run, outliers included
            patch_artist=True,
            boxprops={"facecolor": color, "alpha": 0.25, "edgecolor": color},
            medianprops={"color": color, "lw": 1.5},
            whiskerprops={"color": color},
            capprops={"color": color},
            zorder=2,
        )
        jitter = k + rng.uniform(-0.12, 0.12, vals.size)
        shown = vals >= floor if floor is not None else np.ones(vals.size, dtype=bool)
        bx.scatter(jitter[shown], vals[shown], s=8, color=color, alpha=0.8, zorder=3)
        if below.size:  # far outliers: on the axis' lower edge, pointing down
            edge = np.full(below.size, floor)
            bx.scatter(jitter[~shown], edge, s=24, marker="v", color=color, zorder=5, clip_on=False)
        bx.hlines(vals.mean(), k - 0.3, k + 0.3, color="black", lw=2.0, zorder=4)
    if floor is not None:
        bx.set_ylim(bottom=floor)
    if ref is not None:
        bx.axhline(ref.final, color="black", ls="--", lw=1.0, zorder=1)
    wide = len(labels) > SIDE_BY_SIDE
    bx.set_xticks(range(len(labels)), ticks, rotation=60 if wide else 0, ha="right" if wide else "center")
    bx.set_xlim(-0.6, len(labels) - 0.4)
    bx.set_ylabel(text.final_axis)
    bx.set_title(text.final_title)
    bx.grid(alpha=0.3, axis="y")
