"""Bring your own model, end to end: a user's module with mutables (tests/plugins/byom_toy.py), loaded with
`--plugin`, searched by every built-in strategy that applies (CLI and `nasframe.run`), resumed after kill -9
to the identical end, inspected, compared, and its answer trained and exported to ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nasframe
from tests.conftest import kill_then_resume, read_jsonl, run_outcome, run_to_the_end

TOY = str(Path(__file__).resolve().parent / "plugins" / "byom_toy.py")
BASE = ["--plugin", TOY, "--space", "byom_toy", "--quiet", "--seed", "1",
        "--set", "data.limit=240", "--set", "run.tensorboard=false"]  # fmt: skip
SUPERNET = ["--evaluator", "supernet", "--set", "evaluator.batch_size=32"]
SHORT_TRAIN = ["--evaluator", "short_train", "--set", "evaluator.epochs=0.2", "--set", "evaluator.batch_size=32"]
STRATEGIES = {
    "random": [*SHORT_TRAIN, "--budget", "3"],
    "evolution": [*SHORT_TRAIN, "--budget", "5", "--set", "strategy.population=3"],
    "local_search": [*SHORT_TRAIN, "--budget", "4"],
    "bananas": [*SHORT_TRAIN, "--budget", "4"],
    "optuna": [*SHORT_TRAIN, "--budget", "4"],
    "successive_halving": [*SHORT_TRAIN, "--budget", "4"],
    "hyperband": [*SHORT_TRAIN, "--budget", "4"],
    "mdenas": [*SUPERNET, "--budget", "3"],
    "spos": [*SUPERNET, "--set", "strategy.supernet_epochs=1", "--set", "strategy.population=3",
             "--set", "strategy.parents=2", "--set", "strategy.mutations=1", "--set", "strategy.crossovers=1",
             "--set", "strategy.generations=1", "--set", "strategy.bn_batches=2", "--set", "strategy.bn_batch_size=32"],
    "darts": [*SUPERNET, "--set", "strategy.epochs=2", "--set", "strategy.score_bn_batches=2"],
    "setn": [*SUPERNET, "--set", "strategy.epochs=2", "--set", "strategy.candidates=3"],
    "abs": [*SUPERNET, "--set", "strategy.warmup_epochs=1", "--set", "strategy.epochs_between_steps=0.5",
            "--set", "strategy.samples_per_operator=2", "--set", "strategy.target_size=40", "--budget", "3"],
    "cream": [*SUPERNET, "--set", "strategy.epochs=2", "--set", "strategy.warmup_epochs=1",
              "--set", "strategy.board_size=2", "--set", "strategy.score_bn_batches=2"],
}  # fmt: skip
#: the weight-sharing work each one-shot strategy asks for (work.jsonl), so a run shows it took its own path
WORK = {
    "spos": {"train_shared"},
    "darts": {"train_mixed"},
    "setn": {"train_mixed"},
    "abs": {"train_shared", "save_base_weights", "measure_angles"},
    "cream": {"train_shared", "train_distilled"},
}


def decisions() -> dict[str, list]:
    from nasframe.common.plugins import load_plugin
    from nasframe.core.registry import spaces

    load_plugin(TOY)
    return {d.name: list(d.choices) for d in spaces.get("byom_toy")().decisions}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_searches_a_users_model_from_the_cli(cli, tmp_path, strategy):
    out = tmp_path / strategy
    code, _, err = cli("run", "--strategy", strategy, *BASE, *STRATEGIES[strategy], "--out", out)
    assert code == 0, err
    best = json.loads((out / "best.json").read_text())
    final = best["final"]["arch"]
    allowed = decisions()
    assert set(final) == set(allowed) and all(final[k] in allowed[k] for k in final)
    history = read_jsonl(out / "history.jsonl")
    assert history and all(r["status"] == "ok" for r in history)
    work = {r["kind"] for r in read_jsonl(out / "work.jsonl")} if (out / "work.jsonl").exists() else set()
    assert WORK.get(strategy, set()) <= work and (work or strategy not in WORK)
    assert all(r["params"] > 0 and r["macs"] > 0 for r in history if r.get("params") is not None)


def test_the_python_api_runs_a_users_model(tmp_path):
    result = nasframe.run(
        {
            "plugins": [TOY],
            "strategy": {
                "name": "spos",
                **dict(
                    zip(
                        *[
                            iter(
                                [
                                    "supernet_epochs",
                                    1,
                                    "population",
                                    2,
                                    "parents",
                                    1,
                                    "mutations",
                                    1,
                                    "crossovers",
                                    0,
                                    "generations",
                                    1,
                                    "bn_batches",
                                    1,
                                    "bn_batch_size",
                                    32,
                                ]
                            )
                        ]
                        * 2
                    )
                ),
            },  # fmt: skip
            "space": "byom_toy",
            "evaluator": {"name": "supernet", "batch_size": 32},
            "data": {"limit": 240},
            "run": {"out": str(tmp_path / "api"), "seed": 2, "tensorboard": False},
        }
    )
    assert result.final.arch and set(result.final.arch) == set(decisions())


def test_inspect_counts_a_users_architecture(cli):
    from nasframe.common.model_stats import count_macs, count_parameters
    from nasframe.core.registry import spaces
    from nasframe.data import DataSpec

    arch = {k: v[-1] for k, v in decisions().items()}
    code, out, err = cli("inspect", "--plugin", TOY, "--space", "byom_toy", "--arch", json.dumps(arch))
    assert code == 0, err
    net = spaces.get("byom_toy")().build(arch, DataSpec("digits", 1, 8, 8, 10))
    assert f"params: {count_parameters(net):,}" in out and f"macs: {count_macs(net, (1, 8, 8)):,}" in out
    assert "decisions: 8" in out and "size: 256" in out


@pytest.mark.slow
def test_compare_runs_strategies_on_a_users_model(cli, tmp_path):
    sets = ["--seeds", "1", "--budget", "2", "--set", "evaluator.epochs=0.1", "--set", "data.limit=200"]
    code, out, err = cli("compare", "--plugin", TOY, "--strategies", "random,evolution", "--space", "byom_toy",
                         "--evaluator", "short_train", *sets, "--out", tmp_path / "cmp")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "cmp" / "summary.csv").exists()


@pytest.mark.slow
def test_the_answer_trains_and_exports_to_onnx_checked_by_onnxruntime(cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("run", "--strategy", "random", *BASE, *STRATEGIES["random"], "--out", run)
    assert code == 0, err
    trained = tmp_path / "trained"
    code, out, err = cli("train", str(run), "--recipe", "quick", "--set", "recipe.epochs=1", "--set", "data.limit=200",
                         "--quiet", "--out", trained)  # fmt: skip
    assert code == 0, err
    assert "test accuracy" in out and (trained / "model.safetensors").exists()
    code, out, err = cli("export", str(trained), "--format", "onnx")
    assert code == 0, err
    assert (trained / "model.onnx").exists() and "checked: loaded back, max abs difference from PyTorch" in out
    diff = float(out.rsplit(" ", 1)[-1])
    assert diff < 1e-4


# ---- kill -9 and resume: the identical end ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_killed_evolution_on_a_users_model_resumes_to_the_identical_result(tmp_path):
    # a checkpoint after every evaluation: the default (every 30 s) can leave none before a loaded
    # machine's run ends, and then there is nothing to kill it after
    argv = ["--strategy", "evolution", *BASE, *SHORT_TRAIN, "--budget", "8", "--set", "strategy.population=3",
            "--set", "run.checkpoint_every=1"]  # fmt: skip
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume(argv, tmp_path / "killed", after_lines=3)
    assert run_outcome(tmp_path / "killed") == run_outcome(tmp_path / "full")


@pytest.mark.slow
def test_a_killed_spos_on_a_users_model_resumes_to_the_identical_result(tmp_path):
    argv = ["--strategy", "spos", *BASE, *STRATEGIES["spos"], "--set", "strategy.supernet_epochs=3",
            "--set", "run.work_chunk_epochs=0.5"]  # fmt: skip
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume(argv, tmp_path / "killed", after_lines=2, log="work.jsonl", before_lines=1)
    assert run_outcome(tmp_path / "killed") == run_outcome(tmp_path / "full")


def test_a_wrong_model_is_refused_in_one_line_before_the_run_folder_is_made(cli, tmp_path):
    plugin = tmp_path / "bad_model.py"
    plugin.write_text(
        "import nasframe\nfrom torch import nn\nfrom nasframe import nn as nas\n\n\n"
        "class Bad(nn.Module):\n"
        "    def __init__(self, data):\n"
        "        super().__init__()\n"
        "        self.a = nas.Conv2d(data.channels, nas.choice('width', [4, 8]), 3)\n"
        "        self.b = nas.Conv2d(nas.choice('width', [4, 16]), 4, 3)\n\n\n"
        "nasframe.model_space('bad_model', Bad)\n"
    )
    out = tmp_path / "r"
    code, _, err = cli("run", "--plugin", plugin, "--space", "bad_model", "--strategy", "random", "--quiet",
                       "--out", out)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and not out.exists()
    assert "label 'width' is used with values [4, 8] and [4, 16]: one label is one decision" in err


def test_few_shot_splitting_copies_a_users_supernet(cli, tmp_path):
    out = tmp_path / "fewshot"
    code, _, err = cli("run", "--strategy", "spos", *BASE, *STRATEGIES["spos"], "--set", "strategy.supernet_epochs=2",
                       "--set", "evaluator.few_shot=exhaustive", "--set", "evaluator.split_epochs=[1]",
                       "--set", "evaluator.split_decisions=[width]", "--out", out)  # fmt: skip
    assert code == 0, err
    work = read_jsonl(out / "work.jsonl")
    assert work[-1]["metrics"]["sub_supernets"] == 2.0
