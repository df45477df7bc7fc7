"""`nasframe compare` beyond the mean: median and worst run per strategy, a two-sided Mann-Whitney
test per pair of strategies, the box + strip plot of the returned architectures' accuracies, and
strategies with their own budget (`budget:` in a strategy entry)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.collections import PathCollection
from matplotlib.patches import PathPatch
from scipy.stats import mannwhitneyu

from nasframe.common.errors import ConfigError
from nasframe.compare import make_plan, run_comparison
from nasframe.compare.execution import RunRecord
from nasframe.compare.labels import FigureText
from nasframe.compare.plot import draw_comparison, finals_floor
from nasframe.compare.statistics import mann_whitney


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def finals_of(out: Path, label: str, seeds: int) -> list[float]:
    return [
        json.loads((out / label / f"seed-{s}" / "best.json").read_text())["final"]["held_out"]["test_acc"]
        for s in range(seeds)
    ]


def test_mann_whitney_matches_scipy_and_the_exact_value_by_hand():
    # 4 vs 4 values, fully separated: U = 0 and the exact two-sided p is 2 / C(8, 4) = 2/70
    t = mann_whitney("a", "b", [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0])
    assert (t.u, t.n_a, t.n_b, t.median_a, t.median_b) == (0.0, 4, 4, 2.5, 6.5)
    assert t.p == pytest.approx(2 / 70)
    assert t.line() == "a vs b: median 2.50 vs 6.50, U = 0, p = 0.029 (4 vs 4 runs)"
    # ties and unequal sizes: the same numbers as scipy called directly
    x, y = [93.1, 94.0, 94.0, 10.0, 92.5, 93.7], [93.9, 94.0, 93.2, 94.4]
    ref = mannwhitneyu(x, y, alternative="two-sided")
    t = mann_whitney("x", "y", x, y)
    assert t.u == ref.statistic and t.p == pytest.approx(ref.pvalue, rel=1e-12)
    # non-finite values are left out; an empty side gives no test
    t = mann_whitney("x", "y", [*x, float("nan")], y)
    assert t.n_a == 6 and t.p == pytest.approx(ref.pvalue, rel=1e-12)
    empty = mann_whitney("x", "y", [], y)
    assert np.isnan(empty.p) and empty.line() == "x vs y: no test (0 vs 4 runs with a final accuracy)"


def test_summary_has_median_worst_and_one_test_per_pair(tmp_path):
    config = {
        "strategies": {"random": {}, "mdenas": {}, "mdenas-best": {"name": "mdenas", "final": "best_evaluated"}},
        "space": "nb201",
        "evaluator": "tabular",
    }
    out = tmp_path / "cmp"
    result = run_comparison(make_plan(config, seeds=4, budget=30, out=str(out)), tensorboard=False, plot=False)
    rows = {r["strategy"]: r for r in read_csv(out / "summary.csv")}
    finals = {label: finals_of(out, label, 4) for label in ("random", "mdenas", "mdenas-best")}
    for label, values in finals.items():
        assert float(rows[label]["final_median"]) == pytest.approx(np.median(values), abs=1e-4)
        assert float(rows[label]["final_min"]) == pytest.approx(min(values), abs=1e-4)
        assert rows[label]["budget"] == "30"
    # the new csv columns come after the old ones, whose order is unchanged
    header = next(csv.reader(open(out / "summary.csv")))
    assert header[:3] == ["strategy", "runs", "final_metric"] and header[-3:] == ["final_median", "final_min", "budget"]
    # Markdown: median and worst right after the mean
    assert "| strategy | runs | final test_acc | median | worst | best val_acc @25% (8) |" in result.table
    md_row = next(line for line in result.table.splitlines() if line.startswith("| mdenas |"))
    cells = [c.strip() for c in md_row.strip("|").split("|")]
    assert cells[3] == f"{np.median(finals['mdenas']):.2f}" and cells[4] == f"{min(finals['mdenas']):.2f}"
    # one Mann-Whitney test per pair, on the per-seed finals, in summary.md and pairs.csv
    pairs = read_csv(out / "pairs.csv")
    assert [(p["strategy_a"], p["strategy_b"]) for p in pairs] == [
        ("random", "mdenas"),
        ("random", "mdenas-best"),
        ("mdenas", "mdenas-best"),
    ]
    md = (out / "summary.md").read_text()
    for p, test in zip(pairs, result.tests):
        ref = mannwhitneyu(finals[p["strategy_a"]], finals[p["strategy_b"]], alternative="two-sided")
        assert float(p["u"]) == ref.statistic and float(p["p"]) == pytest.approx(ref.pvalue, rel=1e-5)
        assert f"- {test.line()}" in md
    assert "## Pairwise tests" in md


def records(values: dict[str, list[float]]) -> list[RunRecord]:
    return [
        RunRecord(label, seed, Path("."), np.linspace(80.0, 84.0, 10), 10, v, "test_acc", 10.0, 1.0, 1.0, "budget")
        for label, vals in values.items()
        for seed, v in enumerate(vals)
    ]


def texts() -> FigureText:
    return FigureText("caption", "best-so-far (%)", "test (%)")


def test_finals_floor_cuts_only_far_outliers_that_would_squeeze_the_boxes():
    assert finals_floor([np.array([93.0, 93.5, 94.0, 94.5]), np.array([90.0, 91.0, 92.0, 93.0])]) is None
    # quartiles 93.0 and 93.4: 10 is far below (under 93.0 - 3 x 0.4); the rest spans 93.0..93.6,
    # so the axis ends at 93.0 - 2 x 0.04 x 0.6 = 92.952
    assert finals_floor([np.array([93.0, 93.2, 93.4, 93.6, 10.0])]) == pytest.approx(92.952)
    # a far outlier that takes less of the axis than the rest stays on it
    assert finals_floor([np.array([93.0, 93.2, 93.4, 93.6, 91.0]), np.array([80.0, 85.0, 90.0, 95.0])]) is None
    assert finals_floor([np.array([])]) is None


@pytest.mark.parametrize("n_strategies", [2, 7])
def test_finals_panel_has_one_box_and_one_dot_per_seed_per_strategy(n_strategies):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    values = {f"s{k}": list(93.0 + rng.normal(0, 0.3, 5)) for k in range(n_strategies)}
    values["s1"][2] = 10.0  # one broken run: the heavy tail must show, not vanish in the mean
    curves = {label: np.stack([np.linspace(80.0, 84.0, 10)] * 5) for label in values}
    fig = draw_comparison(curves, records(values), None, texts())
    try:
        ax, bx = fig.axes
        boxes = [p for p in bx.patches if isinstance(p, PathPatch)]
        assert len(boxes) == n_strategies
        dots = [c.get_offsets() for c in bx.collections if isinstance(c, PathCollection)]
        # one dot per seed; s1's broken run is a marker on the lower edge of the axis
        assert len(dots) == n_strategies + 1
        floor = bx.get_ylim()[0]
        assert 10.0 < floor < min(v for v in values["s1"] if v > 10.0)
        assert dots[2][:, 1].tolist() == [floor]
        s1_rest = sorted(v for v in values["s1"] if v > 10.0)
        assert sorted(dots[1][:, 1]) == pytest.approx(s1_rest)
        for vals, xy in zip([values["s0"], *[values[f"s{k}"] for k in range(2, n_strategies)]], [dots[0], *dots[3:]]):
            assert sorted(xy[:, 1]) == pytest.approx(sorted(vals))
        # each box's median line is at the strategy's median (the broken run included)
        medians = [line for line in bx.get_lines() if len(line.get_ydata()) == 2 and line.get_linewidth() == 1.5]
        assert [float(m.get_ydata()[0]) for m in medians] == pytest.approx([np.median(v) for v in values.values()])
        # the tick says mean, median and what is below the axis
        tick = bx.get_xticklabels()[1].get_text()
        s1 = values["s1"]
        assert tick == f"s1\nmean {np.mean(s1):.2f}\nmedian {np.median(s1):.2f}\n1 below axis (min 10.00)"
        assert bx.get_xticklabels()[0].get_text().count("\n") == 2  # s0: nothing below
        # few strategies: side by side; many: the per-seed panel below the curves, full width
        side_by_side = bx.get_position().x0 > ax.get_position().x1
        assert side_by_side == (n_strategies <= 5)
    finally:
        plt.close(fig)


def test_strategies_with_their_own_budget(tmp_path, cli):
    (tmp_path / "c.yaml").write_text(
        "strategies:\n  random-5: {name: random, budget: 5}\n  random: {}\n  mdenas-5: {name: mdenas, budget: 5}\n"
        "seeds: 2\nbudget: 12\nspace: nb201\nevaluator: tabular\n"
    )
    code, out, err = cli("compare", "--config", tmp_path / "c.yaml", "--out", tmp_path / "o", "--no-tensorboard")
    assert code == 0, err
    for label, n in (("random-5", 5), ("random", 12), ("mdenas-5", 5)):
        best = json.loads((tmp_path / "o" / label / "seed-1" / "best.json").read_text())
        assert best["evaluations"] == n and best["stopped_because"] == "max_evaluations"
    rows = {r["strategy"]: r for r in read_csv(tmp_path / "o" / "summary.csv")}
    assert rows["random-5"]["budget"] == "5" and rows["random"]["evaluations_mean"] == "12"
    assert rows["mdenas-5"]["stopped_early"] == "0"  # measured against its own budget
    # one analytic reference per budget; the @x% columns are each row's own share
    assert {"random (expected, 5)", "random (expected, 12)"} <= set(rows)
    runs = {(r["strategy"], r["seed"]): r for r in read_csv(tmp_path / "o" / "runs.csv")}
    hist = [json.loads(x) for x in (tmp_path / "o" / "random-5" / "seed-0" / "history.jsonl").read_text().splitlines()]
    assert float(runs[("random-5", "0")]["best_val_25"]) == pytest.approx(hist[1]["best_val_acc"], abs=1e-4)
    assert (
        "| best val_acc @25% |" in out
        and "evaluations per run unless a strategy sets its own" in (tmp_path / "o" / "summary.md").read_text()
    )
    # 3 strategies: 3 pairs, printed after the table
    printed = [line.strip() for line in out.splitlines() if ": median " in line]
    assert [line.split(":")[0] for line in printed] == [
        "random-5 vs random",
        "random-5 vs mdenas-5",
        "random vs mdenas-5",
    ]
    # --budget changes the comparison's budget, not a strategy's own; --set LABEL.budget=N changes that
    code, _, err = cli(
        "compare",
        "--config",
        tmp_path / "c.yaml",
        "--budget",
        "7",
        "--set",
        "mdenas-5.budget=3",
        "--out",
        tmp_path / "p",
        "--no-plot",
        "--no-tensorboard",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "p" / "random" / "seed-0" / "best.json").read_text())["evaluations"] == 7
    assert json.loads((tmp_path / "p" / "random-5" / "seed-0" / "best.json").read_text())["evaluations"] == 5
    assert json.loads((tmp_path / "p" / "mdenas-5" / "seed-0" / "best.json").read_text())["evaluations"] == 3


@pytest.mark.parametrize("bad", ["0", "-3", "true", "2.5", "'ten'"])
def test_a_bad_strategy_budget_is_a_config_error(bad):
    with pytest.raises(ConfigError, match=r"strategies.r.budget: expected a positive number of evaluations"):
        make_plan({"strategies": {"r": {"name": "random", "budget": yaml.safe_load(bad)}}}, budget=3)
    with pytest.raises(ConfigError, match=r"strategies.r.budget: expected a positive number of evaluations"):
        make_plan({"strategies": {"r": {"name": "random"}}}, budget=3, sets=[f"r.budget={bad}"])
