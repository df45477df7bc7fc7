"""The light commands start without torch: `--help`, `list`, argument errors, `show`.

Each command runs in a fresh interpreter and reports the heavy packages it imported; a module that
imports torch at its top (a command, a registry module, a component's module) fails here with the
modules that pulled it in. What the start-up costs is measured by benchmarks/startup.py
(docs/benchmarks.md), not asserted here.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import nasframe

#: what the light commands must not import (numpy is allowed for `list` and `show`: the strategies need it)
HEAVY = ("torch", "torchvision", "scipy", "sklearn", "matplotlib", "tensorboard", "ray", "onnx", "onnxruntime")

_PROBE = """
import json, sys
from nasframe.app.cli import main
code = main(json.loads(sys.argv[1]))
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def _run(args: list[str]) -> tuple[int, set[str], str]:
    """(exit code, top-level packages imported, stderr before the probe's line) of `nasframe ARGS`."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True, text=True, timeout=300, check=False
    )
    *messages, last = proc.stderr.strip().splitlines() or [""]
    assert last.startswith("{"), proc.stderr[-2000:]
    report = json.loads(last)
    return report["code"], set(report["loaded"]), "\n".join(messages)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("startup") / "nb201"
    code, _, err = _run(["run", "--strategy", "random", "--space", "nb201", "--evaluator", "tabular"]
                        + ["--budget", "4", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0, err
    return out


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["run", "--help"],
        ["train", "--help"],
        ["export", "--help"],
        ["compare", "--help"],
        ["report", "--help"],
        ["report", "no/such/folder"],  # a wrong folder is refused before the figures' libraries load
        ["run", "--budget", "-3"],  # argparse's own check
        ["run", "--no-such-flag"],
        ["frobnicate"],
    ],
    ids=lambda a: " ".join(a),
)
def test_help_and_argument_errors_import_neither_torch_nor_numpy(args: list[str]) -> None:
    code, loaded, err = _run(args)
    assert code == (0 if "--help" in args or "--version" in args else 2), err
    assert not loaded & {*HEAVY, "numpy"}, f"nasframe {' '.join(args)} imported {sorted(loaded & {*HEAVY, 'numpy'})}"


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--strategy", "mdenaz"],  # unknown component: resolved before the runner loads torch
        ["run", "--set", "evaluator.epoch=3"],  # unknown option of a component that trains with torch
        ["run", "--space", "darts", "--evaluator", "supernet", "--set", "evaluator.lr=-1"],
    ],
    ids=lambda a: " ".join(a),
)
def test_config_errors_of_run_are_found_before_torch_loads(args: list[str]) -> None:
    code, loaded, err = _run(args)
    assert code == 2 and err.startswith("nasframe: error:"), err
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_list_describes_every_component_without_torch() -> None:
    code, loaded, _ = _run(["list"])
    assert code == 0
    assert not loaded & set(HEAVY), f"nasframe list imported {sorted(loaded & set(HEAVY))}"
    listing = subprocess.run(
        [sys.executable, "-m", "nasframe", "list"], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    # every installed component was loaded and described, options and capabilities included
    from nasframe.core.registry import evaluators, spaces, strategies
    from nasframe.data.registry import datasets

    for registry in (strategies, spaces, evaluators, datasets):
        for name in registry.installed():
            assert f"  {name}: " in listing, name
            assert "(cannot load" not in listing.split(f"  {name}: ", 1)[1].splitlines()[0], name
    assert "supernet: Single-path weight-sharing supernet" in listing
    assert "(offers: shared weights, branch importance, distillation, differentiable, angle metric)" in listing
    assert "augment" in listing.split("  short_train: ", 1)[1]  # the training options, read without torch


def test_show_reads_a_finished_run_without_torch(finished_run: Path) -> None:
    for args in (["show", str(finished_run)], ["show", str(finished_run), "--json"]):
        code, loaded, err = _run(args)
        assert code == 0, err
        assert not loaded & {*HEAVY, "numpy"}, f"nasframe {' '.join(args)} imported {sorted(loaded & {*HEAVY})}"


@pytest.fixture(scope="module")
def finished_bananas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of a strategy that checkpoints a predictor (its tensors are written with torch)."""
    out = tmp_path_factory.mktemp("startup") / "bananas"
    code, _, err = _run(["run", "--strategy", "bananas", "--space", "nb201", "--evaluator", "tabular"]
                        + ["--budget", "12", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0, err
    return out


def test_show_reads_a_model_based_strategy_without_torch(finished_bananas: Path) -> None:
    code, loaded, err = _run(["show", str(finished_bananas)])
    assert code == 0, err
    assert not loaded & {*HEAVY, "numpy"}, sorted(loaded & {*HEAVY, "numpy"})


def test_model_space_registration_is_imported_when_called() -> None:
    """`nasframe.model_space` registers a user's model (nasframe.nn): reaching the name loads nothing heavy;
    a plugin that calls it registers the space, which `list` then describes."""
    probe = "import sys, nasframe; nasframe.model_space; print(sorted({*sys.modules} & {'torch', 'nasframe.nn'}))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    assert proc.stdout.strip() == "[]"
    toy = str(Path(__file__).resolve().parent / "plugins" / "byom_toy.py")
    code, loaded, err = _run(["list", "--plugin", toy])
    assert code == 0 and "torch" in loaded, err  # the plugin's own model imports torch, as it must
    listing = subprocess.run(
        [sys.executable, "-m", "nasframe", "list", "--plugin", toy], capture_output=True, text=True, timeout=300
    ).stdout
    assert "  byom_toy: " in listing and "(cannot load" not in listing.split("  byom_toy: ", 1)[1].splitlines()[0]


def test_the_supernet_declaration_builds_its_implementation() -> None:
    """`nasframe list` reads the supernet evaluator's declaration; constructing it gives the full evaluator."""
    from nasframe.core.capabilities import capabilities_of
    from nasframe.core.registry import evaluators
    from nasframe.data import DataOptions, DataSource
    from nasframe.evaluators.supernet import SupernetEvaluator
    from nasframe.evaluators.supernet.composed import ComposedSupernetEvaluator

    assert evaluators.get("supernet") is SupernetEvaluator
    assert capabilities_of(SupernetEvaluator) == capabilities_of(ComposedSupernetEvaluator)
    made = evaluators.create("supernet", nasframe.create_space("nb201"), data=DataSource(DataOptions(), 0))
    assert type(made) is ComposedSupernetEvaluator and isinstance(made, SupernetEvaluator)


def test_public_names_load_on_first_use() -> None:
    """`nasframe/__init__.py` keeps its lists in step: __all__ is the lazy table (= the typed imports) plus
    the public functions defined there (`model_space`, which imports nasframe.nn only when called)."""
    source = Path(nasframe.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    typed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            typed |= {alias.asname or alias.name for imp in node.body for alias in imp.names}  # type: ignore[attr-defined]
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    assert defined == {"model_space"}
    assert set(nasframe._HOMES) == typed
    assert set(nasframe.__all__) == typed | defined
    for name in nasframe._HOMES:
        assert getattr(nasframe, name) is getattr(__import__(nasframe._HOMES[name], fromlist=[name]), name)
    from nasframe.app import api

    assert nasframe.train is api.train and callable(nasframe.train)  # the API function, not the training layer
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = nasframe.nope  # type: ignore[attr-defined]
    code = (
        "import sys, nasframe; from nasframe import Arch, run, train; "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
