"""curves.png for `nasframe compare`: best-so-far accuracy per strategy, and final accuracy per seed.

Left: mean best-so-far search accuracy against evaluations, with a band of one standard error of
the mean over seeds, plus the analytic random-search expectation when the evaluator has a table.
Right: the held-out accuracy of each run's returned architecture (one dot per seed, bar = mean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def mean_and_se(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard error over rows, ignoring NaN (runs that stopped early)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        count = np.sum(np.isfinite(c), axis=0)
        mean = np.where(count > 0, np.nansum(c, axis=0) / np.maximum(count, 1), np.nan)
        dev = np.where(np.isfinite(c), c - mean, 0.0)
        var = np.where(count > 1, np.sum(dev ** 2, axis=0) / np.maximum(count - 1, 1), np.nan)
        return mean, np.sqrt(var / np.maximum(count, 1))


def plot_comparison(path: Path, curves: dict[str, np.ndarray], records: list[Any], ref: Any = None,
                    title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [2.2, 1]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lows = []
    for k, (label, c) in enumerate(curves.items()):
        mean, se = mean_and_se(c)
        x = np.arange(1, c.shape[1] + 1)
        color = colors[k % len(colors)]
        stopped = [r.evaluations for r in records if r.label == label and r.evaluations < c.shape[1]]
        note = f"; {len(stopped)} stopped early, at ~{int(np.mean(stopped))}" if stopped else ""
        ax.plot(x, mean, color=color, lw=1.8, label=f"{label} (n={c.shape[0]}{note})")
        band = np.nan_to_num(se)
        ax.fill_between(x, mean - band, mean + band, color=color, alpha=0.2, lw=0)
        lows.append(np.nanpercentile(mean, 10) if np.isfinite(mean).any() else np.nan)
    if ref is not None:
        x = np.arange(1, len(ref.curve) + 1)
        ax.plot(x, ref.curve, color="black", ls="--", lw=1.2, label="random, expected (analytic)")
        lows.append(float(np.percentile(ref.curve, 10)))
    finite = [v for v in lows if np.isfinite(v)]
    if finite:  # the first few evaluations are far below the rest; keep the interesting range readable
        top = max(np.nanmax(c) for c in curves.values()) if curves else None
        if ref is not None:
            top = max(top or -np.inf, float(np.max(ref.curve)))
        if top is not None and np.isfinite(top):
            lo = min(finite)
            ax.set_ylim(lo - 0.05 * (top - lo + 1e-9), top + 0.08 * (top - lo + 1e-9))
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best-so-far search accuracy (val_acc, %)")
    ax.set_title("best so far (mean ± standard error over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)

    labels = list(curves)
    metric = next((r.final_metric for r in records if r.final_metric), "final")
    rng = np.random.default_rng(0)  # jitter only
    for k, label in enumerate(labels):
        vals = np.array([r.final for r in records if r.label == label and r.final is not None], dtype=float)
        if vals.size == 0:
            continue
        color = colors[k % len(colors)]
        bx.scatter(k + rng.uniform(-0.12, 0.12, vals.size), vals, s=18, color=color, alpha=0.8, zorder=3)
        bx.hlines(vals.mean(), k - 0.28, k + 0.28, color=color, lw=2.5, zorder=4)
        bx.annotate(f"{vals.mean():.2f}", (k + 0.3, vals.mean()), va="center", fontsize=9, zorder=5,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    panel = "final architecture per seed (bar = mean)"
    if ref is not None:
        bx.axhline(ref.final, color="black", ls="--", lw=1.0, zorder=2)
        panel += f"\ndashed: random, expected ({ref.final:.2f})"
    bx.set_xticks(range(len(labels)), labels)
    bx.set_xlim(-0.6, len(labels) - 0.1)
    bx.set_ylabel(f"returned architecture: {metric} (%)")
    bx.set_title(panel, fontsize=10)
    bx.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
