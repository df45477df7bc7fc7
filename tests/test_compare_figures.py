"""The comparison's figures: --format png|pdf|svg, sized for a paper column, the explanation in the
caption (summary.md) rather than in titles, and the regret view on a tabular benchmark (optimum minus
best so far, log axis, for validation and for test), checked against numbers worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nasframe.compare import make_plan, run_comparison
from nasframe.compare.figures import FONT_PT, WIDTH_IN
from nasframe.compare.regret import incumbent_curve
from nasframe.search.records import EvaluationRecord


def plan(out: Path, budget: int = 6, seeds: int = 2):
    return make_plan({}, strategies="random,evolution", seeds=seeds, budget=budget, out=str(out),
                     names={"space": "nb201", "evaluator": "tabular"})  # fmt: skip


def record(index: int, arch: str, val: float | None) -> EvaluationRecord:
    status = "ok" if val is not None else "failed"
    metrics = {"val_acc": val} if val is not None else {}
    return EvaluationRecord(index, {"a": arch}, status, metrics, None, None, {}, None, None, 0.0)


def test_incumbent_test_value_by_hand():
    """Held-out value of the best-so-far architecture: it can fall when a better search value belongs to a
    worse test architecture; a tie keeps the first; NaN before the first success; flat after the end."""
    test = {"a": 90.0, "b": 85.0, "c": 93.0, "d": 99.0}
    history = [record(0, "a", None), record(1, "a", 70.0), record(2, "b", 75.0), record(3, "d", 75.0),
               record(4, "c", 74.0)]  # fmt: skip
    curve = incumbent_curve(history, 7, lambda arch: test[arch["a"]])
    assert np.isnan(curve[0])
    assert curve[1:].tolist() == [90.0, 85.0, 85.0, 85.0, 85.0, 85.0]


@pytest.mark.parametrize("fmt, magic", [("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_figures_in_the_chosen_format_with_their_captions(tmp_path, cli, fmt, magic):
    code, out, err = cli("compare", "--strategies", "random,evolution", "--space", "nb201", "--evaluator",
                         "tabular", "--seeds", "2", "--budget", "6", "--out", tmp_path / "c", "--no-tensorboard",
                         "--format", fmt)  # fmt: skip
    assert code == 0, err
    for stem in ("curves", "regret"):
        assert (tmp_path / "c" / f"{stem}.{fmt}").read_bytes().startswith(magic)
        assert not (tmp_path / "c" / f"{stem}.png").exists()
    assert f"curves.{fmt}, regret.{fmt}" in out
    md = (tmp_path / "c" / "summary.md").read_text()
    assert f"![Figure 1](curves.{fmt})" in md and f"![Figure 2](regret.{fmt})" in md
    assert "**Figure 2** (`regret." in md and "minus the best so far" in md
    code, _, err = cli("compare", "--strategies", "random", "--space", "nb201", "--evaluator", "tabular",
                       "--format", "jpg", "--out", tmp_path / "d")  # fmt: skip
    assert code == 2 and "invalid choice: 'jpg'" in err and not (tmp_path / "d").exists()


def test_figures_are_sized_for_a_paper_column(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    figures: list = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), original(self, *a, **k))[1])
    run_comparison(plan(tmp_path / "c"), tensorboard=False)
    assert len(figures) == 2
    for fig in figures:
        assert fig.get_size_inches()[0] == pytest.approx(WIDTH_IN)
        assert fig.get_suptitle() == ""  # the explanation is the caption's
        texts = [t for t in fig.findobj(Text) if t.get_text()]
        assert len(texts) > 10  # axis labels, ticks, legend entries
        for text in texts:
            if text.get_text():
                assert text.get_fontsize() <= FONT_PT, text.get_text()
        for ax in fig.axes:
            assert "\n" not in ax.get_title()


def test_regret_against_the_table_by_hand(tmp_path, monkeypatch):
    """The regrets drawn are the table's optimum minus each run's best-so-far (validation) and minus the
    table's test value of its incumbent (test), as read back from the runs' own files."""
    from nasframe.compare import plot
    from nasframe.core.registry import evaluators, spaces

    drawn = {}
    monkeypatch.setattr(plot, "draw_regret", lambda regret, axis: drawn.setdefault("r", regret) and _empty())
    run_comparison(plan(tmp_path / "c", budget=8, seeds=2), tensorboard=False)
    regret = drawn["r"]
    table = evaluators.get("tabular")(spaces.get("nb201")())
    assert regret.optimum_val == pytest.approx(float(np.max(table.all_accuracies("val_acc"))))
    assert regret.optimum_test == pytest.approx(float(np.max(table.all_accuracies("test_acc"))))
    space = spaces.get("nb201")()
    for seed in range(2):
        history = [json.loads(x) for x in (tmp_path / "c" / "random" / f"seed-{seed}" / "history.jsonl")
                   .read_text().splitlines()]  # fmt: skip
        best, incumbent_test, val_regret, test_regret = -1.0, None, [], []
        for h in history:
            if h["metrics"]["val_acc"] > best:
                best = h["metrics"]["val_acc"]
                incumbent_test = table.final_metrics(space.validate(h["arch"]))["test_acc"]
            val_regret.append(regret.optimum_val - best)
            test_regret.append(regret.optimum_test - incumbent_test)
        assert regret.validation["random"][seed].tolist() == pytest.approx(val_regret)
        assert regret.test["random"][seed].tolist() == pytest.approx(test_regret)
    assert (regret.random_validation >= 0).all() and (np.diff(regret.random_validation) <= 1e-12).all()
    assert (regret.random_test >= 0).all()


def _empty():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure()
