"""`nasframe train`: recipes, the schedule, training a run's answer in every space, exact resume after kill -9."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nasframe.app.cli import main

#: space options that make each space's network tiny (the sizes other tests use)
TINY_SPACES: dict[str, list[str]] = {
    "darts": ["space.C=4", "space.layers=2"],
    "nb201": ["space.C=4", "space.N=1"],
    "mobilenet": ["space.small_input=true", "space.width_mult=0.25", "space.layout=fairnas", "space.allow_zero=false"],
    "shufflenet": [
        "space.small_input=true",
        "space.widths=[8,16,24,32]",
        "space.stem_width=4",
        "space.last_width=32",
        "space.stage_repeats=[1,1,2,1]",
    ],
}
#: the quick recipe shrunk to a second or two
TINY_TRAINING = ["--set", "recipe.epochs=1", "--set", "data.limit=160", "--set", "recipe.batch_size=32"]


def tiny_run(space: str, out: Path) -> Path:
    """A finished random-search run of one evaluation on 200 digits (a few seconds)."""
    sets = [*TINY_SPACES[space], "data.limit=200", "evaluator.epochs=0.2", "run.tensorboard=false"]
    argv = ["run", "--strategy", "random", "--space", space, "--evaluator", "short_train", "--budget", "1"]
    argv += [a for s in sets for a in ("--set", s)] + ["--quiet", "--out", str(out)]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory) -> Path:
    return tiny_run("darts", tmp_path_factory.mktemp("runs") / "darts")


def test_named_recipes_carry_the_reference_numbers():
    from nasframe.training.recipes import make_recipe

    darts = make_recipe("darts-cifar")  # reference section 4.6
    assert (darts.epochs, darts.batch_size, darts.lr, darts.momentum, darts.weight_decay) == (600, 96, 0.025, 0.9, 3e-4)
    assert (darts.schedule, darts.lr_min, darts.grad_clip, darts.cutout) == ("cosine", 0.0, 5.0, 16)
    assert (darts.drop_path_prob, darts.auxiliary_weight, darts.augment) == (0.2, 0.4, "crop_flip")
    mobile = make_recipe("imagenet-mobile")  # ABS / SPOS retraining, reference 2.5 and 3.5
    assert (mobile.epochs, mobile.batch_size, mobile.lr, mobile.schedule) == (240, 1024, 0.5, "linear")
    assert (mobile.weight_decay, mobile.label_smoothing, mobile.grad_clip) == (4e-5, 0.1, 5.0)
    assert make_recipe("quick", {"epochs": "3", "lr": "1e-2"}).epochs == 3


def test_learning_rate_schedules_by_hand():
    from nasframe.training.recipes import make_recipe
    from nasframe.training.trainer import learning_rate

    cosine = make_recipe("quick", {"lr": 0.1, "lr_min": 0.0})
    assert learning_rate(cosine, 0, 100, 10) == pytest.approx(0.1)
    assert learning_rate(cosine, 50, 100, 10) == pytest.approx(0.05)  # half-way down the cosine
    assert learning_rate(cosine, 25, 100, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    linear = make_recipe("quick", {"lr": 0.5, "schedule": "linear", "warmup_epochs": 2})
    # 2 warm-up epochs of 10 steps: steps 0..19 climb to 0.5 in 20 equal parts
    assert learning_rate(linear, 0, 120, 10) == pytest.approx(0.025)
    assert learning_rate(linear, 19, 120, 10) == pytest.approx(0.5)
    assert learning_rate(linear, 20, 120, 10) == pytest.approx(0.5)
    assert learning_rate(linear, 70, 120, 10) == pytest.approx(0.25)  # 50 of the 100 decay steps done


def test_bad_recipe_input_is_one_line(cli, darts_run, tmp_path):
    code, _, err = cli("train", darts_run, "--recipe", "fast", "--out", tmp_path / "a")
    assert code == 2 and err.strip() == (
        "nasframe: error: unknown recipe 'fast'; choose one of quick, darts-cifar, imagenet-mobile"
    )
    code, _, err = cli("train", darts_run, "--set", "recipe.epoch=3", "--out", tmp_path / "b")
    assert code == 2 and "unknown option recipe.epoch; did you mean recipe.epochs?" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli("train", darts_run, "--set", "recipe.nesterov=true", "--set", "recipe.momentum=0")
    assert code == 2 and err.strip() == "nasframe: error: recipe.nesterov: Nesterov momentum needs recipe.momentum > 0"
    code, _, err = cli("train", darts_run, "--set", "strategy.lr=3", "--out", tmp_path / "c")
    assert code == 2 and "sections: recipe, space, data" in err
    code, _, err = cli("train", "--space", "darts", "--out", tmp_path / "d")
    assert code == 2 and "--arch" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()


def test_run_without_final_architecture_is_refused(cli, darts_run, tmp_path):
    import shutil

    broken = tmp_path / "nofinal"
    shutil.copytree(darts_run, broken)
    best = json.loads((broken / "best.json").read_text())
    best["final"] = None
    (broken / "best.json").write_text(json.dumps(best))
    code, _, err = cli("train", broken, "--out", tmp_path / "t")
    assert code == 2
    assert err.strip() == "nasframe: error: the run found no architecture (nothing was evaluated successfully)"
    (broken / "best.json").unlink()
    code, _, err = cli("train", broken, "--out", tmp_path / "t")
    assert code == 2 and "has not finished" in err and "Traceback" not in err


def test_recipe_needing_drop_path_is_refused_where_the_network_has_none(cli, tmp_path):
    code, _, err = cli("train", "--space", "nb201", "--arch", "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                       "--recipe", "darts-cifar", "--out", tmp_path / "t")  # fmt: skip
    assert code == 2
    assert err.strip() == (
        "nasframe: error: recipe darts-cifar: space nb201's networks have no drop-path; set --set "
        "recipe.drop_path_prob=0 to train without it"
    )


def test_darts_cifar_recipe_trains_with_auxiliary_head_and_drop_path(cli, tmp_path):
    from nasframe.training.plan import read_plan

    out = tmp_path / "t"
    code, stdout, err = cli("train", "--space", "darts", "--arch", "DARTS_V2", "--recipe", "darts-cifar",
                            "--set", "space.C=4", "--set", "space.layers=3", "--set", "recipe.epochs=2",
                            "--set", "recipe.cutout=2", "--set", "data.limit=64", "--set", "recipe.batch_size=32",
                            "--no-tensorboard", "--quiet", "--out", out)  # fmt: skip
    assert code == 0, err
    plan = read_plan(out)
    assert plan.space_options["auxiliary"] is True and plan.space_options["auxiliary_weight"] == 0.4
    meta = json.loads((out / "model.json").read_text())
    assert any(k.startswith("auxiliary_head.") for k in _weights(out))  # the head was trained and saved
    assert meta["arch_source"] == "--arch DARTS_V2"
    assert "test accuracy" in stdout


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("space", sorted(TINY_SPACES))
def test_trains_the_answer_of_a_run_in_every_space(cli, tmp_path, space):
    import nasframe

    run_dir = tiny_run(space, tmp_path / "run")
    out = tmp_path / "trained"
    code, stdout, err = cli("train", run_dir, *TINY_TRAINING, "--quiet", "--out", out)
    assert code == 0, err
    meta = json.loads((out / "model.json").read_text())
    best = json.loads((run_dir / "best.json").read_text())
    derived = best["final"]["export"].get("derived_arch")
    assert meta["arch"] == (derived if isinstance(derived, dict) else best["final"]["arch"])
    assert meta["space"] == space and meta["recipe_name"] == "quick" and meta["recipe"]["epochs"] == 1
    assert meta["data_split"]["train"] == 160 and meta["data_split"]["test"] == 359  # 20% of 1,797 digits
    assert 0.0 <= meta["metrics"]["test_acc"] <= 100.0
    assert f"test accuracy: {meta['metrics']['test_acc']:.2f}%" in stdout
    assert list((out / "tensorboard").iterdir())  # event files
    model = nasframe.load_model(out)
    saved = _weights(out)
    assert not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_python_api_trains_and_loads(cli, tmp_path):
    import nasframe

    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"
    sets = ["space.C=4", "space.N=1", "recipe.epochs=1", "data.limit=96", "recipe.batch_size=32"]
    result = nasframe.train(space="nb201", arch=arch, sets=sets, out=tmp_path / "t", tensorboard=False)
    assert result.epochs == 1 and len(result.history) == 1 and result.history[0]["epoch"] == 1
    model = nasframe.load_model(tmp_path / "t")
    x = torch.zeros(2, 1, 8, 8)
    assert model(x).shape == (2, 10)
    with pytest.raises(nasframe.NasframeError, match="already holds a training"):
        nasframe.train(space="nb201", arch=arch, sets=["space.C=4"], out=tmp_path / "t")
    (tmp_path / "t" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, _, err = cli("train", "--resume", tmp_path / "t")
    assert code == 2 and len(err.strip().splitlines()) == 2  # "resuming ...", then the error
    assert "checkpoint.pt: unreadable checkpoint" in err


def _train_argv(out: Path) -> list[str]:
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    sets = ["space.C=8", "space.N=1", "recipe.epochs=6", "data.limit=600", "recipe.batch_size=16"]
    return ["train", "--space", "nb201", "--arch", arch, *[a for s in sets for a in ("--set", s)],
            "--no-tensorboard", "--quiet", "--out", str(out)]  # fmt: skip


@pytest.mark.slow
def test_kill_9_then_resume_gives_bit_identical_weights(tmp_path):
    from nasframe.common.checkpoint import load_checkpoint

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nasframe.app.cli"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + _train_argv(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (killed / "checkpoint.pt").exists():
        time.sleep(0.01)
    time.sleep(0.05)  # into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.safetensors").exists(), "the training ended before it could be killed"
    epochs_done = load_checkpoint(killed)["epochs_done"]
    assert 1 <= epochs_done < 6
    resumed = subprocess.run(cmd + ["train", "--resume", str(killed), "--quiet"], capture_output=True, text=True,
                             env=env)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole"
    assert main(_train_argv(whole)) == 0  # uninterrupted, in this process (one thread, like the subprocess)
    a, b = _weights(killed), _weights(whole)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert (
        json.loads((killed / "model.json").read_text())["metrics"]
        == json.loads((whole / "model.json").read_text())["metrics"]
    )
    code = main(["train", "--resume", str(killed), "--quiet"])
    assert code == 2  # finished: nothing to do


def test_streaming_data_is_refused_in_one_line(cli, tmp_path):
    arch = "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    code, _, err = cli("train", "--space", "nb201", "--arch", arch, "--data", "imagenet",
                       "--set", f"data.root={tmp_path}", "--out", tmp_path / "t")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 2  # the folder line, then the error
    assert "streams from disk" in err
    assert not (tmp_path / "t").exists()  # nothing left behind: the same command can run again


def test_docs_recipe_table_matches_the_recipes():
    import dataclasses

    from nasframe.training.recipes import Recipe, make_recipe, recipe_names

    page = (Path(__file__).resolve().parent.parent / "docs" / "train-export.md").read_text()
    header = next(line for line in page.splitlines() if line.startswith("| option |"))
    assert header.split("|")[2:-2] == [f" `{n}` " for n in recipe_names()]
    lines = [line for line in page.splitlines() if line.startswith("| `")]
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2:-2] for line in lines}
    assert list(rows) == [f.name for f in dataclasses.fields(Recipe)]
    for name, cells in rows.items():
        assert [c.strip() for c in cells] == [str(getattr(make_recipe(n), name)) for n in recipe_names()], name


def test_a_runs_derived_architecture_is_the_one_trained(cli, darts_run, tmp_path):
    import shutil

    from nasframe.core.registry import spaces

    run = tmp_path / "derived"
    shutil.copytree(darts_run, run)
    best = json.loads((run / "best.json").read_text())
    derived = spaces.get("darts")().named_architectures()["DARTS_V2"].to_dict()
    assert derived != best["final"]["arch"]
    best["final"]["export"]["derived_arch"] = derived  # what MDENAS or DARTS report as their answer
    (run / "best.json").write_text(json.dumps(best))
    code, _, err = cli("train", run, *TINY_TRAINING, "--no-tensorboard", "--quiet", "--out", tmp_path / "t")
    assert code == 0, err
    meta = json.loads((tmp_path / "t" / "model.json").read_text())
    assert meta["arch"] == derived and meta["arch_source"].endswith("best.json: final.export.derived_arch")


def test_arch_from_a_file_such_as_a_runs_best_json(cli, darts_run, tmp_path):
    best = json.loads((darts_run / "best.json").read_text())
    code, _, err = cli("train", "--space", "darts", "--arch", darts_run / "best.json", "--set", "space.C=4",
                       "--set", "space.layers=2", *TINY_TRAINING, "--no-tensorboard", "--quiet",
                       "--out", tmp_path / "t")  # fmt: skip
    assert code == 0, err
    meta = json.loads((tmp_path / "t" / "model.json").read_text())
    assert meta["arch"] == best["final"]["arch"] and meta["arch_source"].endswith("best.json: final.arch")


def test_arch_text_longer_than_a_file_name_is_an_architecture():
    """A MobileNet's JSON mapping is over 255 characters: it is parsed as text, not stat'ed as a path."""
    from nasframe.training.plan import plan_training

    arch = {f"stage{s}.block{b}": "k5e6" for s in range(1, 6) for b in range(4)} | {"stage6.block0": "k3e3"}
    text = json.dumps(arch)
    assert len(text) > 255
    plan = plan_training(space="mobilenet", arch=text, data="digits")
    assert plan.arch == arch and plan.arch_source == "--arch (text)"


def test_a_long_architecture_text_is_text_not_a_path(tmp_path):
    """A DARTS genotype is longer than a file name may be: `--arch` takes it as text (it once failed with
    "File name too long"), and the path check never raises, whatever the text."""
    from nasframe.common.loading import names_file
    from nasframe.core.registry import spaces
    from nasframe.training.plan import plan_training

    space = spaces.get("darts")()
    genotype = space.named_architectures()["DARTS_V2"]
    text = space.export(genotype)["genotype"]  # Genotype(normal=[('sep_conv_3x3', 0), ...], ...)
    assert len(text) > 255  # longer than a file name can be
    plan = plan_training(None, space="darts", arch=text, recipe="quick", sets=["space.C=4", "space.layers=2"])
    assert plan.arch == genotype.to_dict() and plan.arch_source == "--arch (text)"
    for odd in (text, "x" * 5000, "a/" * 3000, "nul\0byte", "", "/" * 300 + "y" * 300):
        assert names_file(odd) is False
    real = tmp_path / "arch.json"
    real.write_text("{}")
    assert names_file(str(real)) and not names_file(str(tmp_path))
