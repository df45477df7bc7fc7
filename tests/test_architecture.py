"""The layered core stays as docs/architecture.md describes it.

The import contracts themselves are checked by import-linter in CI (`.ci/imports`); here: the size
limits that keep one job per module and function, and the 0.1 import paths that keep working for
one release with a warning naming the new place.
"""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

from nasframe._moved import MOVED

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "nasframe"
#: plugin packages split by job like the core, held to the same limits
SPLIT_PLUGINS = [ROOT / "evaluators" / "supernet"]
#: where pyproject's package-dir installs the plugin folders
PLUGIN_FOLDERS = {"strategies": ROOT / "strategies", "spaces": ROOT / "spaces", "evaluators": ROOT / "evaluators"}


def _modules() -> list[Path]:
    return sorted([*CORE.rglob("*.py"), *(p for folder in SPLIT_PLUGINS for p in folder.rglob("*.py"))])


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_no_module_of_the_core_is_over_500_lines():
    long = {_name(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}


def test_no_function_of_the_core_is_over_50_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > 50:
                    long.append(f"{_name(path)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_the_layout_has_no_flat_module_left_behind():
    """Every 0.1 module path is answered by the compatibility finder, not by a stale file."""
    for old in MOVED:
        top, *rest = old.split(".")[1:]
        folder = PLUGIN_FOLDERS.get(top, CORE / top)
        assert not folder.joinpath(*rest).with_suffix(".py").exists(), old
        assert not folder.joinpath(*rest, "__init__.py").exists(), old


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("nasframe.registry", "register_strategy", "nasframe.core.registry"),
        ("nasframe.registry", "load_plugin", "nasframe.common.plugins"),
        ("nasframe.evaluator", "SharedWeights", "nasframe.core.capabilities"),
        ("nasframe.oneshot", "TrainShared", "nasframe.core.requests"),
        ("nasframe.oneshot", "UniformPaths", "nasframe.core.paths"),
        ("nasframe.runner", "Runner", "nasframe.search.runner"),
        ("nasframe.runner", "resolve_device", "nasframe.common.device"),
        ("nasframe.evaluators.training", "StepRunner", "nasframe.training.steps"),
        ("nasframe.evaluators.training", "TrainingOptions", "nasframe.training.step_options"),
        ("nasframe.spaces.ensemble", "EnsembleSpace", "nasframe.core.ensemble"),
        ("nasframe.cli", "main", "nasframe.app.cli"),
        ("nasframe.evaluators.bilevel", "second_order", "nasframe.evaluators.supernet.differentiable"),
        ("nasframe.evaluators.branch_importance", "clean_space", "nasframe.evaluators.supernet.branch_importance"),
        ("nasframe.evaluators.fewshot", "FewShotSupernet", "nasframe.evaluators.supernet.fewshot"),
    ],
)
def test_an_old_import_path_gives_the_same_object_with_a_warning(old, name, new):
    sys.modules.pop(old, None)  # imported afresh, so the finder answers (and warns) again
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to .* the old path goes in 0\.3"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_an_unknown_name_on_an_old_path_is_an_attribute_error_naming_the_new_places():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module("nasframe.config")
    with pytest.raises(AttributeError, match=r"moved to nasframe\.search\.config.*no attribute 'nope'"):
        module.nope  # noqa: B018


def test_the_training_layer_leaves_nasframe_train_the_api_function():
    """A subpackage named like a public function would replace it on `import nasframe.<name>.x`."""
    import nasframe
    import nasframe.training.trainer  # noqa: F401

    assert callable(nasframe.train) and nasframe.train.__module__ == "nasframe.app.api"
    public = set(nasframe.__all__)
    layers = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert public & layers == set()
