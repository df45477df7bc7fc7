"""`nasframe export`: ONNX and TorchScript round trips against PyTorch, the JSON description, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from nasframe.app.cli import main

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A DARTS network (C=4, 3 cells: a reduction cell, drop-path and the auxiliary head) trained one short epoch."""
    out = tmp_path_factory.mktemp("export") / "trained"
    sets = ["space.C=4", "space.layers=3", "recipe.epochs=1", "recipe.cutout=2", "data.limit=64"]
    sets.append("recipe.batch_size=32")
    argv = ["train", "--space", "darts", "--arch", "DARTS_V2", "--recipe", "darts-cifar"]
    argv += [a for s in sets for a in ("--set", s)] + ["--no-tensorboard", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    return out


def _diff(stdout: str) -> float:
    found = re.search(r"max abs difference from PyTorch (\S+)", stdout)
    assert found, stdout
    return float(found.group(1))


def test_onnx_round_trip_matches_pytorch(cli, trained, tmp_path):
    import numpy as np
    import onnxruntime

    import nasframe

    code, stdout, err = cli("export", trained, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 0, err
    assert _diff(stdout) < 1e-4
    assert "untrained" not in err
    # the file itself, on a different batch size (the batch axis is dynamic)
    model = nasframe.load_model(trained)
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (5, 10)
    assert float(np.abs(got - expected).max()) < 1e-4


def test_torchscript_round_trip_matches_pytorch(cli, trained, tmp_path):
    import nasframe

    code, stdout, err = cli("export", trained, "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert code == 0, err
    assert _diff(stdout) < 1e-5
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(scripted(x), nasframe.load_model(trained)(x), atol=1e-5)


def test_json_describes_architecture_counts_and_metrics(cli, trained, tmp_path):
    import nasframe
    from nasframe.common.model_stats import count_parameters

    code, _, err = cli("export", trained, "--format", "json", "--out", tmp_path / "m.json")
    assert code == 0, err
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["trained"] is True and info["space"] == "darts" and info["recipe_name"] == "darts-cifar"
    assert info["export"]["genotype"].startswith("Genotype(normal=[('sep_conv_3x3', 0)")  # DARTS_V2's first op
    assert info["params"] == count_parameters(nasframe.load_model(trained))  # auxiliary head excluded
    assert info["macs"] > 0 and set(info["metrics"]) == {"test_acc", "test_loss", "train_loss"}
    before = (trained / "model.json").read_text()
    code, stdout, _ = cli("export", trained, "--format", "json")  # default name: beside, not over, model.json
    assert code == 0 and f"wrote {trained / 'architecture.json'}" in stdout
    assert (trained / "model.json").read_text() == before


def test_run_folder_exports_the_untrained_answer_and_says_so(cli, tmp_path):
    run = tmp_path / "run"
    code = main(["run", "--strategy", "random", "--space", "nb201", "--evaluator", "tabular", "--budget", "2",
                 "--set", "space.C=4", "--set", "space.N=1", "--set", "run.tensorboard=false", "--quiet",
                 "--out", str(run)])  # fmt: skip
    assert code == 0
    code, stdout, err = cli("export", run, "--format", "onnx")
    assert code == 0, err
    assert err.strip().splitlines()[-1].endswith("exported the untrained network")
    assert (run / "model.onnx").is_file() and _diff(stdout) < 1e-4
    code, _, _ = cli("export", run, "--format", "json")
    info = json.loads((run / "architecture.json").read_text())
    best = json.loads((run / "best.json").read_text())
    assert info["trained"] is False and info["arch"] == best["final"]["arch"]
    assert info["params"] == best["final"]["params"]


def test_bad_export_input_is_one_line(cli, trained, tmp_path):
    import shutil

    code, _, err = cli("export", trained, "--format", "tflite")
    assert code == 2
    assert err.strip() == "nasframe: error: export: unknown format 'tflite'; choose one of onnx, torchscript, json"
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    code, _, err = cli("export", broken, "--format", "onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "model.safetensors: unreadable weights file" in err
    code, _, err = cli("export", tmp_path, "--format", "json")
    assert code == 2 and "neither a training folder" in err


def test_exports_carry_the_input_normalisation_size_and_class_names(cli, trained, tmp_path):
    """model.json, the ONNX metadata, the TorchScript extra file and architecture.json all hold what a
    deployment needs: the input size and layout, the mean/std the network was trained with, class names."""
    import onnx

    from nasframe.data import DataOptions, DataSource
    from nasframe.training.deployment import ONNX_KEYS, TORCHSCRIPT_EXTRA

    search = DataSource(DataOptions(name="digits"), seed=0).search()  # what training normalised with
    meta = json.loads((trained / "model.json").read_text())
    expected_input = {
        "shape": [1, 8, 8],
        "layout": "NCHW",
        "pixel_scale": 255.0,
        "mean": [pytest.approx(float(search.mean.flatten()[0]))],
        "std": [pytest.approx(float(search.std.flatten()[0]))],
        "formula": "(pixels / pixel_scale - mean) / std, per channel",
    }
    assert meta["input"] == expected_input and meta["class_names"] == [str(d) for d in range(10)]
    assert 0.2 < meta["input"]["mean"][0] < 0.4  # digits' train images: mostly background
    assert cli("export", trained, "--format", "onnx", "--out", tmp_path / "m.onnx")[0] == 0
    props = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props[ONNX_KEYS[0]] == meta["input"] and props[ONNX_KEYS[1]] == meta["class_names"]
    assert cli("export", trained, "--format", "torchscript", "--out", tmp_path / "m.pt")[0] == 0
    extra = {TORCHSCRIPT_EXTRA: ""}
    torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra[TORCHSCRIPT_EXTRA]) == {"input": meta["input"], "class_names": meta["class_names"]}
    assert cli("export", trained, "--format", "json", "--out", tmp_path / "a.json")[0] == 0
    described = json.loads((tmp_path / "a.json").read_text())
    assert described["input"] == meta["input"] and described["class_names"] == meta["class_names"]


def test_each_data_set_names_its_classes():
    from nasframe.data import DataOptions
    from nasframe.data.registry import datasets

    expected = {"digits": "0", "fashion_mnist": "T-shirt/top", "cifar10": "airplane", "cifar100": "apple"}
    for name, first in expected.items():
        spec = datasets.create(name, DataOptions(name=name)).spec()
        assert len(spec.names()) == spec.num_classes and spec.names()[0] == first, name
    assert datasets.create("cifar100", DataOptions(name="cifar100")).spec().names()[-1] == "worm"
    synthetic = datasets.create("synthetic", DataOptions(name="synthetic", synthetic_classes=3)).spec()
    assert synthetic.names() == ["0", "1", "2"]  # unnamed classes: their indices
