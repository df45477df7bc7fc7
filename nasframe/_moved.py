"""Import paths of nasframe 0.1's flat layout, kept working for one release with a DeprecationWarning.

nasframe 0.2 arranged the core in layers (`nasframe.common`, `core`, `search`, `train`, `app`;
docs/architecture.md). A plugin or script written against 0.1 may import, say,
`from nasframe.registry import register_strategy` or `from nasframe.evaluators.training import
StepRunner`: such an import still works, warns once with the new place, and will stop working in
0.3. The public API (`from nasframe import ...`, `nasframe.testing`, the CLI) did not move.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

#: old module -> the modules that now hold its names, the first one its main home
MOVED: dict[str, tuple[str, ...]] = {
    "nasframe.errors": ("nasframe.common.errors",),
    "nasframe.options": ("nasframe.common.options",),
    "nasframe.loading": ("nasframe.common.loading",),
    "nasframe.checkpoint": ("nasframe.common.checkpoint",),
    "nasframe.threads": ("nasframe.common.threads",),
    "nasframe.progress": ("nasframe.common.progress",),
    "nasframe.model_stats": ("nasframe.common.model_stats",),
    "nasframe.distributed": ("nasframe.common.distributed", "nasframe.search.rundir"),
    "nasframe.registry": ("nasframe.core.registry", "nasframe.common.plugins", "nasframe.data.registry"),
    "nasframe.angles": ("nasframe.core.angles",),
    "nasframe.space": ("nasframe.core.space",),
    "nasframe.strategy": ("nasframe.core.strategy",),
    "nasframe.evaluator": ("nasframe.core.evaluator", "nasframe.core.capabilities"),
    "nasframe.multibranch": ("nasframe.core.multibranch",),
    "nasframe.board": ("nasframe.core.board",),
    "nasframe.costs": ("nasframe.core.costs",),
    "nasframe.oneshot": ("nasframe.core.requests", "nasframe.core.paths"),
    "nasframe.spaces.ensemble": ("nasframe.core.ensemble",),
    "nasframe.runner": (
        "nasframe.search.runner",
        "nasframe.search.components",
        "nasframe.search.loop_state",
        "nasframe.search.executor",
        "nasframe.common.device",
    ),
    "nasframe.executor": ("nasframe.search.executor",),
    "nasframe.pool": ("nasframe.search.pool", "nasframe.search.pool_choice"),
    "nasframe.ray_pool": ("nasframe.search.ray_pool",),
    "nasframe.constraints": ("nasframe.search.constraints",),
    "nasframe.config": ("nasframe.search.config",),
    "nasframe.rundir": ("nasframe.search.rundir", "nasframe.search.records", "nasframe.search.answer"),
    "nasframe.trainer": (
        "nasframe.training.trainer",
        "nasframe.training.plan",
        "nasframe.training.train_test",
        "nasframe.training.weights",
    ),
    "nasframe.recipes": ("nasframe.training.recipes",),
    "nasframe.export": ("nasframe.training.export",),
    "nasframe.evaluators.training": (
        "nasframe.training.steps",
        "nasframe.training.step_options",
        "nasframe.training.measure",
    ),
    "nasframe.evaluators.bilevel": ("nasframe.evaluators.supernet.differentiable",),
    "nasframe.evaluators.branch_importance": ("nasframe.evaluators.supernet.branch_importance",),
    "nasframe.evaluators.fewshot": ("nasframe.evaluators.supernet.fewshot",),
    "nasframe.cli": ("nasframe.app.cli", "nasframe.search.answer"),
    "nasframe.api": ("nasframe.app.api",),
    "nasframe.flags": ("nasframe.app.flags", "nasframe.search.config"),
    "nasframe.compare.command": ("nasframe.app.commands.compare",),
}


class _MovedModule(types.ModuleType):
    """Stands in for an old module: each name is looked up in the modules that now hold it."""

    def __init__(self, name: str, homes: Sequence[str]):
        super().__init__(name, f"Moved in nasframe 0.2 to {', '.join(homes)}.")
        self.__homes = tuple(homes)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for home in self.__homes:
            module = importlib.import_module(home)
            try:
                return getattr(module, attr)
            except AttributeError:  # not in this home: the next one
                continue
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(self.__homes)}) has no attribute {attr!r}")

    def __dir__(self) -> list[str]:
        return sorted({n for home in self.__homes for n in dir(importlib.import_module(home))})


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module names in `MOVED` (and nothing else)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        homes = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {homes[0]} in nasframe 0.2 (docs/architecture.md); the old path goes in 0.3",
            DeprecationWarning,
            stacklevel=3,
        )
        return _MovedModule(spec.name, homes)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install() -> None:
    """Put the finder after the regular ones, so it only answers for names no file provides."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
