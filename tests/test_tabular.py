"""Tabular evaluator: which table answers the search, which judges the result, cost, speed, runs."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from nasframe.common.errors import ConfigError, InvalidArchitecture, NotSupported
from nasframe.common.options import build_options
from nasframe.core.capabilities import TabularBenchmark, capabilities_of
from nasframe.core.registry import evaluators, spaces
from nasframe.core.space import Arch
from nasframe.search.config import merge_config
from nasframe.search.runner import Runner

ROW0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


def make(**opts):
    space = spaces.get("nb201")()
    cls = evaluators.get("tabular")
    return space, cls(space, build_options(cls.Options, opts, "evaluator"))


def test_declares_tabular_and_no_torch_rng():
    cls = evaluators.get("tabular")
    assert capabilities_of(cls) == [TabularBenchmark] and cls.uses_torch_rng is False


def test_search_sees_12_epoch_val_and_final_is_200_epoch_test():
    space, ev = make()
    arch = space.parse_arch(ROW0)
    r = ev.evaluate(arch)
    # row 0 of both CSVs: cifar10-val 63.3640 (12 epochs), CIFAR-10 test 85.8633... (200 epochs)
    assert r.ok and r.metrics == {"val_acc": pytest.approx(63.364)}  # no held-out number in the search metrics
    assert r.cost.epochs == 12
    assert ev.final_metrics(arch) == {"test_acc": pytest.approx(85.86333333333334)}


@pytest.mark.parametrize(
    "dataset,val12,test200", [("cifar100", 31.84, 52.913333294677734), ("imagenet16-120", 18.4667, 26.6333332739936)]
)
def test_other_datasets(dataset, val12, test200):
    space, ev = make(dataset=dataset)
    arch = space.parse_arch(ROW0)
    assert ev.evaluate(arch).metrics["val_acc"] == pytest.approx(val12)
    assert ev.final_metrics(arch)["test_acc"] == pytest.approx(test200)


def test_fidelity_200_and_epoch_cost_option():
    space, ev = make(fidelity=200)
    arch = space.parse_arch(ROW0)
    r = ev.evaluate(arch)
    assert r.metrics["val_acc"] == pytest.approx(85.86333333333334) and r.cost.epochs == 200
    _, ev = make(epochs_per_eval=1.5)
    assert ev.evaluate(arch).cost.epochs == 1.5
    with pytest.raises(ConfigError, match="evaluator.fidelity"):
        make(fidelity=50)
    with pytest.raises(ConfigError, match="evaluator.dataset"):
        make(dataset="mnist")


def test_all_accuracies():
    _, ev = make()
    val, test = ev.all_accuracies("val_acc"), ev.all_accuracies("test_acc")
    assert val.shape == test.shape == (15625,)
    assert round(float(test.max()), 2) == 94.37 and round(float(val.max()), 3) == 84.892
    val[0] = -1.0  # a copy: the evaluator's table is untouched
    assert ev.all_accuracies()[0] == pytest.approx(63.364)
    with pytest.raises(ConfigError):
        ev.all_accuracies("loss")


def test_lookup_by_mapping_and_errors():
    space, ev = make()
    arch = space.parse_arch(ROW0)
    reordered = Arch(list(arch.items())[::-1])  # same cell, decisions in another order
    assert ev.evaluate(reordered).metrics == ev.evaluate(arch).metrics
    with pytest.raises(InvalidArchitecture):
        ev.evaluate(Arch([("1<-0", "none")]))


def test_needs_a_space_with_a_table(core_toy):
    space = spaces.get("core_toy")()
    with pytest.raises(NotSupported, match="benchmark table"):
        evaluators.get("tabular")(space)


def test_evaluation_costs_microseconds():
    space, ev = make()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(20000)]
    t0 = time.perf_counter()
    for a in archs:
        ev.evaluate(a)
    per_eval = (time.perf_counter() - t0) / len(archs)
    assert per_eval < 50e-6, f"{per_eval * 1e6:.1f} us per evaluation"


def test_run_with_epoch_budget_reports_held_out_test_acc(tmp_path):
    cfg = merge_config(
        {"strategy": "random", "space": "nb201", "evaluator": "tabular"},
        run={
            "out": str(tmp_path / "r"),
            "max_evaluations": 1000,
            "max_epochs": 120,
            "seed": 3,
            "progress": False,
            "tensorboard": False,
        },
    )
    summary = Runner.create(cfg).run()
    assert summary.evaluations == 10 and summary.stopped_because == "max_epochs"  # 120 epochs / 12 per evaluation
    best = json.loads((tmp_path / "r" / "best.json").read_text())
    space, ev = make()
    final = space.validate(best["final"]["arch"])
    assert best["final"]["held_out"] == ev.final_metrics(final)
    assert best["final"]["export"] == space.export(final)  # cell string, index and the tables' accuracies
    history = [json.loads(x) for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    assert all(set(h["metrics"]) == {"val_acc"} for h in history)
    assert best["cost"]["epochs"] == 120
