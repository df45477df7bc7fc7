"""Griffe extension: attach the plugin folders to `nasframe` for the API pages.

pyproject.toml installs `strategies/` as `nasframe.strategies` (and likewise `spaces/` and
`evaluators/`) through setuptools' `package-dir`. Griffe reads sources from disk and only finds
subpackages that sit inside their parent's folder, so without this the API pages could not name
`nasframe.strategies.mdenas`. The mapping is read from pyproject.toml, so it has one source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import griffe

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def package_dirs() -> dict[tuple[str, str], Path]:
    """(top-level package, subpackage name) -> folder, for every `package-dir` entry `top.sub`."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {tuple(name.split(".")): ROOT / folder for name, folder in table.items() if name.count(".") == 1}


class PackageDirs(griffe.Extension):
    """Once a top-level package is loaded, load each of its mapped folders and hang it under it."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for (top, name), folder in package_dirs().items():
            if top != pkg.name or name in pkg.members:
                continue
            sub = loader.load(folder)
            loader.modules_collection.members.pop(sub.name, None)  # it belongs under `top`, not at the top
            sub.name = name
            pkg.set_member(name, sub)

    # griffe < 2 calls the same event by its old name
    on_package_loaded = on_package
