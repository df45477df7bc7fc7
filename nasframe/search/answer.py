"""A finished run's answer: which architecture it is, read from best.json or a file, and its network."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass
class Figure:
    """One number of the answer, with its unit and where it was measured."""

    name: str  # the metric's key: val_acc, test_acc, val_loss, ...
    value: float
    unit: str  # "%" for accuracies in percent, "" otherwise
    where: str  # the split or table column it was measured on

    def text(self) -> str:
        return f"{self.name} {_number(self.value, self.unit)}{' ' + self.unit if self.unit else ''}"


@dataclass
class AnswerDescription:
    """A finished run's answer in words and numbers: what `nasframe show`, the closing lines of `nasframe
    run` and the report say about it. Built from best.json alone (`describe_answer`)."""

    what: str  # which architecture the answer is, and who chose it
    figures: list[Figure] = field(default_factory=list)  # the answer's numbers (the first is the headline)
    measured_by: str = ""  # how `figures` were obtained
    held_out: list[Figure] = field(default_factory=list)  # figures on data the search never saw
    why: list[str] = field(default_factory=list)  # why this architecture and not the best evaluated one


def _number(value: float, unit: str = "%") -> str:
    """Percentages with two decimals; losses and scores with four significant digits."""
    return f"{value:.2f}" if unit == "%" and abs(value) < 1e6 else f"{value:.4g}"


def _unit(key: str, percent: bool) -> str:
    """Accuracies are percentages (unless the evaluator's val_acc is a score); losses have no unit."""
    if key == "val_acc":
        return "%" if percent else "(score)"
    return "%" if key.endswith("_acc") else ""


def _figures(metrics: Mapping[str, Any] | None, where: str, percent: bool) -> list[Figure]:
    numbers = {
        k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    first = [k for k in ("val_acc", "test_acc") if k in numbers]
    return [Figure(k, numbers[k], _unit(k, percent), where) for k in first + sorted(set(numbers) - set(first))]


def describe_answer(result: RunResult) -> AnswerDescription:
    """The run's answer: which architecture, its numbers with units and split, its held-out figures and why
    it is the answer (a strategy's own answer need not be the best evaluated architecture)."""
    final, strategy = result.final, result.strategy
    if final is None:
        return AnswerDescription("none: nothing was evaluated successfully")
    derived = final.answer != "arch"
    if final.source == "strategy":
        what = f"{strategy}'s own final architecture" + (
            f", derived by the {result.space} space from {strategy}'s weights ({final.answer})" if derived else ""
        )
    else:
        what = f"the best architecture the search evaluated (#{final.metrics_index}), chosen by its search number"
    where = final.metrics_split or "search-val"
    found = _figures(final.metrics, where, final.val_acc_percent)
    if final.metrics_source == "final_evaluation":
        never = " (the search never evaluated it)" if not final.evaluated else ""
        how = f"a final evaluation at the end of the run{never}"
    elif final.metrics_source == "search":
        index = f" #{final.metrics_index}" if final.metrics_index is not None else ""
        how = f"the search's evaluation{index}"
    else:
        how = "nothing: never evaluated (run.final_evaluation: never)"
    held = _figures(final.held_out, final.held_out_split or "held-out data", True)
    return AnswerDescription(what, found, how, held, _why(result))


def _why(result: RunResult) -> list[str]:
    final, best, strategy = result.final, result.best_evaluated, result.strategy
    assert final is not None
    if final.source != "strategy":
        return [f"{strategy} gives no answer of its own, so the run returns the best evaluated architecture"]
    lines = [
        f"{strategy} returns an answer of its own (its own rule, not the highest search number), so the "
        "answer need not be the best evaluated architecture"
    ]
    if best is not None:
        value = (best.get("metrics") or {}).get("val_acc")
        same = final.metrics_index is not None and final.metrics_index == best.get("index")
        if same:
            lines.append(f"it is also the best evaluated architecture (#{best['index']})")
        elif isinstance(value, (int, float)):
            unit = _unit("val_acc", final.val_acc_percent)
            split = final.metrics_split or "search-val"
            lines.append(f"best evaluated: #{best['index']} val_acc {_number(float(value), unit)} {unit} on {split}")
    return lines


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
