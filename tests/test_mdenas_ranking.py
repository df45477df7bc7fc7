"""The ranking-hypothesis benchmark (benchmarks/ranking_hypothesis.py) and the paper config."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ranking_hypothesis", ROOT / "benchmarks" / "ranking_hypothesis.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tau_of_each_epoch_against_the_final_ranking(bench):
    acc = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 2.0], [3.0, 3.0, 1.0]])
    # epoch 1 is the reverse of the final order; epoch 2 has 1 concordant and 2 discordant pairs
    assert np.allclose(bench.taus_to_final(acc), [-1.0, -1 / 3, 1.0])
    assert bench.kendall([1, 1, 1], [1, 2, 3]) == 0.0  # a constant ranking carries no information


def test_nb201_twelve_versus_two_hundred_epochs(bench, tmp_path, capsys):
    assert bench.main(["--nb201", "--archs", "10", "--json", str(tmp_path / "t.json")]) == 0
    res = json.loads((tmp_path / "t.json").read_text())
    assert res["cells"] == 15625
    assert abs(res["cifar10"]["tau_all"] - 0.594) < 5e-4  # the figure the table's README quotes
    assert "cifar10         all cells 0.594" in capsys.readouterr().out


def test_training_curves_on_digits(bench, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = bench.main(
            [
                "--archs",
                "3",
                "--epochs",
                "2",
                "--set",
                "space.C=4",
                "--set",
                "space.layers=2",
                "--set",
                "data.limit=200",
                "--json",
                str(tmp_path / "c.json"),
            ]
        )
    finally:
        torch.set_num_threads(before)
    assert code == 0
    res = json.loads((tmp_path / "c.json").read_text())
    acc = np.array(res["accuracy"])
    assert acc.shape == (3, 2) and np.all((acc >= 0) & (acc <= 100))
    assert res["tau_to_final"][-1] == pytest.approx(1.0) and res["mean_tau"] == res["tau_to_final"][0]
    from nasframe.spaces.darts import DartsSpace

    for arch in res["archs"]:  # genotype cells: exactly two inputs per node
        DartsSpace().genotype(arch)


def test_the_paper_config_resolves():
    from nasframe.search.config import load_yaml, merge_config, resolve

    cfg = resolve(merge_config(load_yaml(ROOT / "configs" / "mdenas-darts-cifar10.yaml")))
    assert cfg.names == {"strategy": "mdenas", "space": "darts", "evaluator": "supernet"}
    s, sp, ev, data = (cfg.options[k] for k in ("strategy", "space", "evaluator", "data"))
    assert (s.lr, s.rule, s.epochs) == (0.01, "A", 50) and (sp.supernet_C, sp.supernet_layers) == (16, 8)
    assert (ev.epochs, ev.batch_size, ev.lr) == (1.0, 64, 0.025) and (data.name, data.search_split) == ("cifar10", 0.5)
    assert cfg.options["run"].max_evaluations == s.epochs
