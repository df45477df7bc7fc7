"""A finished run's answer: which architecture it is, read from best.json or a file, and its network."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasframe.common.errors import ConfigError, RunDirError
from nasframe.search.records import RunResult

if TYPE_CHECKING:
    from torch import nn


def answer_of(result: RunResult) -> tuple[dict[str, Any], str]:
    """The architecture a finished run reports as its answer, and where in best.json it is.

    That is the space's derived architecture (`final.export.derived_arch`, e.g. the DARTS genotype
    derived from MDENAS' probabilities) when the space gives one, else the final architecture.
    """
    if result.final is None:
        raise RunDirError("the run found no architecture (nothing was evaluated successfully)")
    derived = result.final.export.get("derived_arch")
    if isinstance(derived, dict):
        return derived, "final.export.derived_arch"
    return result.final.arch, "final.arch"


def arch_text_from_file(path: str) -> tuple[str, str | None]:
    """The architecture text in `path`, and which part of a run's best.json it came from.

    From a best.json, the space's derived architecture (`final.export.derived_arch`, e.g. the DARTS
    genotype derived from MDENAS' probabilities) is taken when the space gives one: that is the
    answer the run reports; otherwise the final architecture itself.
    """
    from nasframe.common.loading import parse_json, read_text

    p = Path(path)
    text = read_text(p, "--arch-file", ConfigError, streams=True)
    if p.suffix != ".json":
        return text, None
    data = parse_json(text, f"--arch-file {path}", ConfigError)
    if isinstance(data, dict) and isinstance(data.get("final"), dict):  # a run's best.json
        arch, where = answer_of(RunResult.from_dict(data, path))
        note = " (the space's derived architecture)" if where.startswith("final.export") else ""
        return json.dumps(arch), f"{path}: {where}{note}"
    return json.dumps(data), None


def network_of_run(run_dir: Path, arch: Mapping[str, Any] | None = None) -> nn.Module:
    """The stand-alone network of a run's answer (or of `arch`), built by the run's space with its
    options, sized for the run's data set, with fresh (untrained) weights."""
    from nasframe.data import DataSource
    from nasframe.search.config import merge_config, resolve
    from nasframe.search.rundir import RunDir

    files = RunDir(run_dir)
    files.require_run()
    config = resolve(merge_config(files.read_config()))
    space = config.space_class(config.options["space"])
    spec = DataSource(config.options["data"], seed=config.options["run"].seed).spec
    chosen = dict(arch) if arch is not None else answer_of(files.read_result())[0]
    return space.build(space.validate(chosen), spec)
