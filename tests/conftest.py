"""Shared test fixtures: the core toy plugin and helpers to run the CLI in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tiny CPU models run fastest on one thread, and a loaded 2-core CI machine makes two OpenMP
# threads contend badly (seen: 0.05 s forwards taking 3-6 s).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
CORE_TOY = str(ROOT / "tests" / "plugins" / "core_toy.py")


@pytest.fixture
def core_toy() -> str:
    """Path of the toy plugin (space `core_toy`, evaluator `core_toy_eval`), already loaded."""
    from nasframe.registry import load_plugin

    load_plugin(CORE_TOY)
    return CORE_TOY


@pytest.fixture
def cli(capsys):
    """Run `nasframe ...` in-process; returns (exit code, stdout, stderr)."""
    from nasframe.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
