"""`nasframe compare`: analytic random-search reference, summary files, resume, CLI."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from nasframe.common.errors import ConfigError, RegistryError
from nasframe.compare import expected_best_of_n, expected_pick, make_plan, run_comparison
from nasframe.core.registry import evaluators, spaces


@pytest.fixture(scope="module")
def table_accuracies() -> tuple[np.ndarray, np.ndarray]:
    ev = evaluators.get("tabular")(spaces.get("nb201")())
    return ev.all_accuracies("val_acc"), ev.all_accuracies("test_acc")


def test_expected_best_of_n_small_cases_by_hand():
    # {1,2,3}, two distinct draws: pairs {1,2},{1,3},{2,3} -> maxima 2,3,3 -> 8/3
    assert expected_best_of_n([3, 1, 2], 2)[1] == pytest.approx(8 / 3)
    # with replacement: P(max=1)=1/9, P(max=2)=3/9, P(max=3)=5/9 -> 22/9
    assert expected_best_of_n([1, 2, 3], 2, replace=True)[1] == pytest.approx(22 / 9)
    e = expected_best_of_n([1, 2, 3], 5)
    assert e[0] == pytest.approx(2.0) and e[2] == e[4] == pytest.approx(3.0)  # n >= N: the maximum
    # ties: values {1,1,2}, two distinct draws: pairs (1,1),(1,2),(1,2) -> 5/3; the test value of the pick
    # is the tie group's mean when the best value is tied
    assert expected_pick(np.array([1.0, 1.0, 2.0]), np.array([10.0, 20.0, 30.0]), 2) == pytest.approx(
        (5 / 3, (1 / 3) * 15.0 + (2 / 3) * 30.0)
    )


@pytest.mark.parametrize("n", [10, 50])
def test_expected_best_of_n_matches_simulated_random_search(table_accuracies, n):
    val, test = table_accuracies
    rng = np.random.default_rng(12345)
    runs = 2000
    best, picked = np.empty(runs), np.empty(runs)
    for i in range(runs):
        idx = rng.choice(len(val), size=n, replace=False)  # random search with dedup=True
        j = idx[np.argmax(val[idx])]  # first of the tied maxima, as random search keeps it
        best[i], picked[i] = val[j], test[j]
    se = best.std(ddof=1) / math.sqrt(runs)
    analytic = expected_best_of_n(val, n)[n - 1]
    assert abs(best.mean() - analytic) < 4 * se, (best.mean(), analytic, se)
    e_best, e_pick = expected_pick(val, test, n)
    assert e_best == pytest.approx(analytic)
    assert abs(picked.mean() - e_pick) < 4 * picked.std(ddof=1) / math.sqrt(runs)
    # with replacement is lower, but for n << N = 15,625 only by ~1e-3 (the small cases above tell them apart)
    assert 0 < analytic - expected_best_of_n(val, n, replace=True)[n - 1] < 0.01


def nb201_plan(out: Path, budget: int = 20, seeds: int = 3, **kw):
    config = {
        "strategies": {"random": {}, "random-repeats": {"name": "random", "dedup": False}},
        "space": "nb201",
        "evaluator": "tabular",
    }
    return make_plan(config, seeds=seeds, budget=budget, out=str(out), **kw)


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_comparison_writes_summary_table_png_and_tensorboard(tmp_path):
    result = run_comparison(nb201_plan(tmp_path / "cmp"))
    out = tmp_path / "cmp"
    assert result.actions == {"ran": 6, "resumed": 0, "done": 0}
    for name in ("summary.csv", "summary.md", "runs.csv", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(out / "tensorboard"))
    rows = {r["strategy"]: r for r in read_csv(out / "summary.csv")}
    assert set(rows) == {"random", "random-repeats", "random (expected)"}
    # the summary is the mean over the runs' own files
    finals, lasts, quarter = [], [], []
    for seed in range(3):
        run = out / "random" / f"seed-{seed}"
        best = json.loads((run / "best.json").read_text())
        assert best["seed"] == seed and best["evaluations"] == 20
        finals.append(best["final"]["held_out"]["test_acc"])
        hist = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
        lasts.append(hist[-1]["best_val_acc"])
        quarter.append(hist[4]["best_val_acc"])  # 25% of 20 evaluations
    assert float(rows["random"]["final_mean"]) == pytest.approx(np.mean(finals), abs=1e-3)
    assert float(rows["random"]["final_std"]) == pytest.approx(np.std(finals, ddof=1), abs=1e-3)
    assert float(rows["random"]["best_val_100_mean"]) == pytest.approx(np.mean(lasts), abs=1e-3)
    assert float(rows["random"]["best_val_25_mean"]) == pytest.approx(np.mean(quarter), abs=1e-3)
    assert rows["random"]["final_metric"] == "test_acc" and rows["random"]["runs"] == "3"
    md = (out / "summary.md").read_text()
    assert "| random-repeats | 3 |" in md and "random (expected)" in md and "±" in md
    assert result.table in md


def test_rerun_skips_finished_and_resumes_interrupted_runs(tmp_path, monkeypatch):
    reference = run_comparison(nb201_plan(tmp_path / "ref"), tensorboard=False, plot=False)
    cls = evaluators.get("tabular")
    original = cls.evaluate
    calls = {"n": 0}

    def interrupt_on_the_30th(self, arch, budget=None):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return original(self, arch, budget)

    monkeypatch.setattr(cls, "evaluate", interrupt_on_the_30th)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(nb201_plan(tmp_path / "cmp"), tensorboard=False, plot=False)
    monkeypatch.setattr(cls, "evaluate", original)
    again = run_comparison(nb201_plan(tmp_path / "cmp"), tensorboard=False, plot=False)
    assert again.actions == {"ran": 4, "resumed": 1, "done": 1}  # the 30th evaluation fell in the 2nd run
    for a, b in zip(reference.records, again.records):
        assert (a.label, a.seed, a.final) == (b.label, b.seed, b.final)
        assert np.array_equal(a.curve, b.curve)
    third = run_comparison(nb201_plan(tmp_path / "cmp"), tensorboard=False, plot=False)
    assert third.actions == {"ran": 0, "resumed": 0, "done": 6}
    with pytest.raises(ConfigError, match="max_evaluations=20 but this comparison asks for 30"):
        run_comparison(nb201_plan(tmp_path / "cmp", budget=30), tensorboard=False, plot=False)


def test_plan_errors_and_per_strategy_options(tmp_path):
    plan = make_plan(
        {},
        strategies="random,mdenas",
        seeds="0,4",
        budget=5,
        out=str(tmp_path),
        names={"space": "nb201", "evaluator": "tabular"},
        sets=["mdenas.epochs=5", "evaluator.dataset=cifar100"],
    )
    assert plan.seeds == [0, 4]
    specs = plan.runs()
    assert [(s.label, s.seed) for s in specs] == [("random", 0), ("mdenas", 0), ("random", 4), ("mdenas", 4)]
    assert specs[1].cfg["strategy"] == {"name": "mdenas", "epochs": 5}
    assert specs[0].cfg["strategy"] == {"name": "random"}
    assert all(s.cfg["evaluator"]["dataset"] == "cifar100" for s in specs)
    assert specs[3].cfg["run"]["seed"] == 4 and specs[3].cfg["run"]["max_evaluations"] == 5
    assert specs[3].path == tmp_path / "mdenas" / "seed-4"
    names = {"space": "nb201", "evaluator": "tabular"}
    with pytest.raises(ConfigError, match="budget"):
        make_plan({}, strategies="random", seeds=2, names=names)
    with pytest.raises(RegistryError, match="unknown strategy 'randum'"):
        make_plan({}, strategies="randum", seeds=2, budget=3, names=names)
    with pytest.raises(ConfigError, match="appears twice"):
        make_plan({}, strategies="random,random", seeds=2, budget=3, names=names)
    with pytest.raises(ConfigError, match="--seeds"):
        make_plan({}, strategies="random", seeds=2, budget=3, names=names, sets=["run.seed=4"])
    with pytest.raises(ConfigError, match="unknown option strategy.epochs"):
        make_plan({}, strategies="random", seeds=2, budget=3, names=names, sets=["random.epochs=4"])
    with pytest.raises(ConfigError, match="unknown compare key"):
        make_plan({"budgte": 3}, strategies="random", names=names)


def test_mdenas_next_to_random_at_200_evaluations(tmp_path):
    """Both strategies on nb201/cifar10 at the 200-evaluation budget (3 seeds here; docs/compare.md quotes 10)."""
    plan = make_plan(
        {},
        strategies="random,mdenas",
        seeds=3,
        budget=200,
        out=str(tmp_path / "cmp"),
        names={"space": "nb201", "evaluator": "tabular"},
        sets=["mdenas.epochs=200"],
    )
    result = run_comparison(plan, tensorboard=False, plot=False)
    rows = {r["strategy"]: r for r in result.rows}
    for label in ("random", "mdenas"):
        assert rows[label]["runs"] == 3 and rows[label]["evaluations_mean"] == 200
        assert 80.0 < rows[label]["final_mean"] <= 94.38  # a real 200-epoch CIFAR-10 test accuracy
    assert rows["random (expected)"]["final_mean"] == pytest.approx(93.88, abs=0.01)


def test_cli_compare(tmp_path, cli):
    code, out, err = cli(
        "compare",
        "--strategies",
        "random",
        "--space",
        "nb201",
        "--evaluator",
        "tabular",
        "--seeds",
        "2",
        "--budget",
        "10",
        "--out",
        tmp_path / "c",
        "--no-plot",
        "--set",
        "random.dedup=false",
    )
    assert code == 0, err
    assert "| random | 2 |" in out and "[2/2] random seed 1: 10 evaluations" in err
    assert "dedup: false" in (tmp_path / "c" / "random" / "seed-1" / "config.yaml").read_text()
    (tmp_path / "compare.yaml").write_text(
        "strategies:\n  plain: {name: random}\n  repeats: {name: random, dedup: false}\n"
        "seeds: [1, 2]\nbudget: 5\nspace: nb201\nevaluator: {name: tabular, dataset: cifar100}\n"
    )
    code, out, err = cli(
        "compare", "--config", tmp_path / "compare.yaml", "--out", tmp_path / "y", "--no-plot", "--no-tensorboard"
    )
    assert code == 0, err
    assert "| plain | 2 |" in out and "| repeats | 2 |" in out
    assert "dataset: cifar100" in (tmp_path / "y" / "repeats" / "seed-2" / "config.yaml").read_text()
    assert not (tmp_path / "y" / "tensorboard").exists()
    code, out, err = cli(
        "compare",
        "--strategies",
        "random",
        "--space",
        "nb201",
        "--evaluator",
        "tabular",
        "--budget",
        "0",
        "--out",
        tmp_path / "d",
    )
    assert code == 2 and err.count("\n") == 1 and "budget" in err


def test_every_listed_strategy_is_checked_up_front_with_a_did_you_mean(tmp_path, cli):
    names = {"space": "nb201", "evaluator": "tabular"}
    with pytest.raises(RegistryError, match=r"unknown strategy 'evolutoin'; did you mean 'evolution'\?"):
        make_plan(
            {"strategies": {"random": {}, "evo": {"name": "evolutoin"}}},
            seeds=2,
            budget=3,
            out=str(tmp_path / "p"),
            names=names,
        )
    code, out, err = cli(
        "compare",
        "--strategies",
        "random,mdenass",
        "--space",
        "nb201",
        "--evaluator",
        "tabular",
        "--seeds",
        "2",
        "--budget",
        "5",
        "--out",
        tmp_path / "c",
    )
    assert code == 2 and err.count("\n") == 1, err
    assert "unknown strategy 'mdenass'; did you mean 'mdenas'?" in err
    assert not (tmp_path / "c").exists()  # nothing ran, not even the correctly spelt first strategy


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_budget_flag_rejects_non_positive_counts(tmp_path, cli, budget):
    code, out, err = cli(
        "compare",
        "--strategies",
        "random",
        "--space",
        "nb201",
        "--evaluator",
        "tabular",
        f"--budget={budget}",
        "--out",
        tmp_path / "c",
    )
    assert code == 2 and err.count("\n") == 1, err
    assert f"argument --budget: must be at least 1, got {budget}" in err
    assert not (tmp_path / "c").exists()


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """The matplotlib figures written during the test (their text is read, never their pixels)."""
    from matplotlib.figure import Figure

    figures: list = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def figure_texts(fig, folder: Path) -> dict[str, str]:
    """The figure's texts, and its caption from summary.md (the figure itself has no explanatory title)."""
    curves, finals = fig.axes
    md = (folder / "summary.md").read_text()
    return {
        "title": fig.get_suptitle(),
        "caption": md.split("**Figure 1** (`curves.png`). ", 1)[1].split("\n", 1)[0],
        "curve_title": curves.get_title(),
        "curve_axis": curves.get_ylabel(),
        "final_title": finals.get_title(),
        "final_axis": finals.get_ylabel(),
        "final_ticks": " | ".join(t.get_text() for t in finals.get_xticklabels()),
        "legend": " | ".join(t.get_text() for t in curves.get_legend().get_texts()),
    }


def test_figure_names_the_table_data_set_and_both_tables(tmp_path, saved_figures):
    # the table answers, not the run's data: section (digits here): the title must say cifar100
    plan = nb201_plan(tmp_path / "cmp", budget=8, seeds=2, sets=["evaluator.dataset=cifar100"])
    result = run_comparison(plan, tensorboard=False)
    assert len(saved_figures) == 2 and (tmp_path / "cmp" / "curves.png").is_file()
    fig = saved_figures[0]
    text = figure_texts(fig, tmp_path / "cmp")
    assert text["title"] == "" and text["curve_title"] == "search" and text["final_title"] == "returned architecture"
    assert "on cifar100 (nb201 / tabular" in text["caption"] and "digits" not in text["caption"]
    assert "2 seeds, budget 8 evaluations" in text["caption"]
    assert text["curve_axis"] == "best-so-far 12-epoch validation accuracy (%)"
    assert "the search metric, 12-epoch validation accuracy from the nb201 table" in text["caption"]
    assert text["final_axis"] == "200-epoch test accuracy (%)"
    assert "returned architecture's 200-epoch test accuracy from the nb201 table" in text["caption"]
    # the curves start at the first evaluation
    assert fig.axes[0].get_xlim() == (1.0, 8.0)
    assert all(line.get_xdata()[0] == 1 for line in fig.axes[0].get_lines())
    # values are in the legend and under the strategy names, not written next to the dots
    random_final = next(r for r in result.rows if r["strategy"] == "random")["final_mean"]
    assert f"random\nmean {random_final:.2f}" in text["final_ticks"]
    assert f"random (n=2): {result.rows[0]['best_val_100_mean']:.2f}" in text["legend"]
    assert not fig.axes[0].texts and not fig.axes[1].texts


def test_figure_names_the_run_data_set_for_a_trained_evaluator(tmp_path, saved_figures, core_toy):
    plan = make_plan(
        {"plugins": [core_toy]},
        strategies="random",
        seeds=2,
        budget=4,
        out=str(tmp_path / "cmp"),
        names={"space": "core_toy", "evaluator": "core_toy_eval"},
        data="synthetic",
    )
    run_comparison(plan, tensorboard=False)
    assert len(saved_figures) == 1  # no table: no regret figure
    text = figure_texts(saved_figures[0], tmp_path / "cmp")
    assert text["caption"].startswith("random on synthetic (core_toy / core_toy_eval)")
    assert text["curve_axis"] == "best-so-far validation accuracy (val_acc) (%)"
    assert "measured by core_toy_eval" in text["caption"]
    assert text["final_axis"] == "held-out test accuracy (test_acc) (%)"


def test_table_labels_follow_the_tabular_fidelity():
    from nasframe.common.options import build_options

    cls = evaluators.get("tabular")
    oracle = cls(spaces.get("nb201")(), build_options(cls.Options, {"fidelity": 200, "dataset": "cifar100"}, "e"))
    labels = oracle.table_labels()
    assert (labels.dataset, labels.search, labels.held_out) == (
        "cifar100",
        "200-epoch test accuracy (oracle)",
        "200-epoch test accuracy",
    )
