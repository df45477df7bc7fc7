"""The run's ONE answer: its numbers in `final.metrics` whichever way they were obtained, with units,
split and source beside them, a held-out test figure from short_train, and closing lines that say all
of it and why it is the answer; digits' own test split, never searched on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nasframe
from nasframe.common.plugins import load_plugin
from nasframe.core.registry import evaluators, spaces
from nasframe.data import DataOptions, DataSource, HeldOutData

TOY = str(Path(__file__).parent / "plugins" / "supernet_toy.py")
ARCH = {"layer0": "conv3x3", "layer1": "conv5x5", "layer2": "identity"}
#: a short_train run of two evaluations on the toy space, whose answer is then evaluated at the end
TINY = ["--plugin", TOY, "--space", "supernet_toy", "--evaluator", "short_train", "--budget", "2", "--quiet",
        "--set", "evaluator.epochs=0.5", "--set", "run.tensorboard=false"]  # fmt: skip


def test_digits_holds_out_a_test_split_the_search_never_sees():
    from nasframe.training.train_test import load_train_test

    source = DataSource(DataOptions(name="digits"), seed=3)
    search, test = source.search(), source.test()
    assert isinstance(test, HeldOutData) and test.size == 359
    assert search.train_x.shape[0] + search.val_x.shape[0] == 1797 - 359
    searched = {bytes(x.numpy()) for x in torch.cat([search.train_x, search.val_x])}
    held = {bytes(x.numpy()) for x in test.x}
    assert not searched & held  # no image of the test split is searched on
    # `nasframe train` tests on the same images: the data set's own test split
    trained = load_train_test(DataOptions(name="digits"), torch.device("cpu"))
    assert torch.equal(trained.test_x, test.x) and trained.split["test_source"] == "the data set's test split"


def test_short_train_test_figure_is_of_the_network_its_evaluation_measured():
    """Seeded as the evaluation was, `final_metrics` trains the very same network: measured on search-val
    instead of the test split, it gives the evaluation's own numbers."""
    load_plugin(TOY)
    space = spaces.get("supernet_toy")()
    cls = evaluators.get("short_train")
    source = DataSource(DataOptions(name="digits"), seed=0)
    ev = cls(space, cls.Options(epochs=0.5), data=source, device="cpu")
    arch = space.validate(ARCH)
    torch.manual_seed(11)
    searched = ev.evaluate(arch).metrics
    torch.manual_seed(11)
    held = ev.final_metrics(arch)
    assert set(held) == {"test_acc", "test_loss"} and 10 < held["test_acc"] <= 100
    assert "digits test split (359 images" in (ev.held_out_split() or "")
    search = source.search()
    source._test = HeldOutData(search.val_x, search.val_y)  # the test split replaced by search-val
    torch.manual_seed(11)
    again = ev.final_metrics(arch)
    assert again == {"test_acc": searched["val_acc"], "test_loss": searched["val_loss"]}
    off = cls(space, cls.Options(epochs=0.5, test_metrics=False), data=source, device="cpu")
    assert off.final_metrics(arch) == {} and off.held_out_split() is None


def test_the_answer_carries_its_numbers_units_split_and_a_held_out_figure(cli, tmp_path):
    code, out, err = cli("run", "--strategy", "random", *TINY, "--out", tmp_path / "r")
    assert code == 0, err
    final = nasframe.load_result(tmp_path / "r").final
    assert final is not None and final.source == "best evaluated" and final.metrics_source == "search"
    history = [json.loads(x) for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    assert final.metrics == history[final.metrics_index]["metrics"]
    assert final.metrics_split == "search-val" and final.val_acc_percent is True
    assert set(final.held_out) == {"test_acc", "test_loss"} and final.held_out_split.startswith("digits test split")
    assert f"answer: the best architecture the search evaluated (#{final.metrics_index})" in out
    assert f"  val_acc {final.metrics['val_acc']:.2f} % on search-val" in out
    assert f"measured by: the search's evaluation #{final.metrics_index}" in out
    assert f"  held out: test_acc {final.held_out['test_acc']:.2f} % on digits test split (359 images" in out
    assert "why this one: random gives no answer of its own" in out
    # `show` says the same
    code, shown, _ = cli("show", tmp_path / "r")
    assert code == 0 and out.strip() in shown


def test_an_answer_never_evaluated_has_its_final_evaluation_in_metrics(cli, tmp_path):
    """MDENAS' answer (its argmax) after two epochs: numbers from the final evaluation, in `metrics`."""
    code, out, err = cli("run", "--strategy", "mdenas", *TINY, "--out", tmp_path / "r")
    assert code == 0, err
    final = nasframe.load_result(tmp_path / "r").final
    if final.evaluated:
        pytest.skip("calibration: the argmax was evaluated during the search")
    assert final.metrics_source == "final_evaluation" and final.metrics == final.final_evaluation["metrics"]
    assert "answer: mdenas's own final architecture" in out
    assert "measured by: a final evaluation at the end of the run (the search never evaluated it)" in out
    assert "why this one: mdenas returns an answer of its own" in out and "  best evaluated: #" in out


def test_a_result_written_before_the_new_fields_reads_the_same_way(tmp_path):
    """best.json format 2 from before: `metrics` None and the numbers in `final_evaluation` only."""
    from nasframe.search.records import RunResult

    old = {
        "format": 2, "strategy": "mdenas", "space": "nb201", "evaluator": "tabular", "data": "digits", "seed": 0,
        "evaluations": 2, "stopped_because": "max_evaluations",
        "cost": {"seconds": 0.0, "epochs": 24.0, "wall_seconds": 1.0},
        "final": {"arch": {"e": "x"}, "source": "strategy", "metrics": None, "answer": "arch", "params": 1,
                  "macs": 1, "held_out": {"test_acc": 90.0}, "export": {}, "evaluated": False,
                  "final_evaluation": {"request": "evaluate", "status": "ok", "metrics": {"val_acc": 80.0},
                                       "reason": None, "cost": {"seconds": 0.0, "epochs": 12.0}}},
        "best_evaluated": {"index": 1, "arch": {"e": "y"}, "metrics": {"val_acc": 85.0}},
    }  # fmt: skip
    final = RunResult.from_dict(old, "best.json").final
    assert final.metrics == {"val_acc": 80.0} and final.metrics_source == "final_evaluation"
    old["final"]["metrics"] = {"val_acc": 85.0}
    assert RunResult.from_dict(old, "best.json").final.metrics_source == "search"


def test_a_score_is_not_called_a_percentage(cli, tmp_path):
    code, out, err = cli("run", "--strategy", "random", "--space", "nb201", "--evaluator", "zero_cost", "--budget",
                         "2", "--quiet", "--set", "space.C=4", "--set", "space.N=1", "--set", "evaluator.proxy=params",
                         "--set", "run.tensorboard=false", "--out", tmp_path / "z")  # fmt: skip
    assert code == 0, err
    final = nasframe.load_result(tmp_path / "z").final
    assert final.val_acc_percent is False and "(score) on params score at initialisation" in out and " % " not in out
