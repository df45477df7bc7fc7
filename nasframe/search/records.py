"""The records of a run folder: one evaluation (`EvaluationRecord`), one piece of work
(`WorkRecord`), and the run's result (`RunResult` with its `FinalArch`), each checked field by field
when read, so a damaged or foreign file fails with one line naming the file and what is wrong.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nasframe.common.errors import RunDirError

#: version of the folder layout and records; bump when a reader of the old one would misread
FORMAT = 2


def _plain(obj: Any) -> Any:
    """JSON-safe plain data: numpy/torch values become Python numbers and lists, NaN/inf None."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    # numpy and torch values come only from a process that imported them: look, do not import (`nasframe show`)
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if (np is not None and isinstance(obj, np.ndarray)) or (torch is not None and isinstance(obj, torch.Tensor)):
        return _plain(obj.tolist())
    if np is not None and isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _need(d: Mapping[str, Any], key: str, kinds: tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise RunDirError(f"{where}: missing field {key!r}")
    value = d[key]
    if not isinstance(value, kinds):
        raise RunDirError(
            f"{where}: field {key!r} is {type(value).__name__}, expected {' or '.join(k.__name__ for k in kinds)}"
        )
    return value


def _notes(d: Mapping[str, Any], where: str) -> list[str]:
    """The optional `notes` field: a list of one-line strings."""
    notes = d.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise RunDirError(f"{where}: field 'notes' must be a list of strings")
    return list(notes)


def _json_record(line: str, where: str) -> dict[str, Any]:
    """One line of a .jsonl log as a mapping, or a one-line RunDirError naming the file and line."""
    from nasframe.common.loading import parse_json

    try:
        d = parse_json(line, where, RunDirError)
    except RunDirError as exc:
        raise RunDirError(str(exc).replace(f"{where}: not valid JSON", f"{where}: not a JSON record")) from None
    if not isinstance(d, dict):
        raise RunDirError(f"{where}: not a JSON record (got {type(d).__name__})")
    return d


_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_DICT = (dict, type(None))


def _optional(d: Mapping[str, Any], key: str, kinds: tuple[type, ...], where: str) -> Any:
    """An optional field: None when absent, else of one of `kinds`."""
    return _need(d, key, (*kinds, type(None)), where) if key in d else None


def _numbers(d: Mapping[str, Any], key: str, where: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A mapping field whose `required` entries are numbers (what readers format with :g or :.1f)."""
    value = _need(d, key, (dict,), where)
    for name in required:
        if not isinstance(value.get(name), _NUM) or isinstance(value.get(name), bool):
            raise RunDirError(f"{where}: field {key!r} lacks the number {name!r}")
    return value


#: best.json's fields and their types (checked before any reader formats them)
_RESULT_FIELDS: dict[str, tuple[type, ...]] = {
    "strategy": (str,),
    "space": (str,),
    "evaluator": (str,),
    "data": (str,),
    "seed": (int,),
    "evaluations": (int,),
    "stopped_because": (str,),
    "final": _OPT_DICT,
    "best_evaluated": _OPT_DICT,
    "alternatives": (dict,),
    "infeasible": (int,),
    "work": (dict,),
    "data_split": _OPT_DICT,
    "produced_by": _OPT_DICT,
    "latency": (dict,),
    "objectives": (list,),
    "pareto": (list,),
}
_FINAL_FIELDS: dict[str, tuple[type, ...]] = {
    "arch": (dict,),
    "source": (str,),
    "metrics": _OPT_DICT,
    "answer": (str,),
    "params": (int, type(None)),
    "macs": (int, type(None)),
    "final_evaluation": _OPT_DICT,
    "held_out": (dict,),
    "export": (dict,),
    "evaluated": (bool, type(None)),
    "latency_ms": _NUM,
    "latency_source": (str,),
    "metrics_source": (str, type(None)),
    "metrics_index": (int, type(None)),
    "metrics_split": (str, type(None)),
    "held_out_split": (str, type(None)),
    "val_acc_percent": (bool,),
}


def _check_result(d: dict[str, Any], where: str) -> None:
    """best.json's fields have the types its readers (show, compare, export, train) rely on."""
    for key, kinds in _RESULT_FIELDS.items():
        if key in d:
            _need(d, key, kinds, where)
    _numbers(d, "cost", where, ("seconds", "epochs", "wall_seconds"))
    if isinstance(d.get("work"), dict) and d["work"].get("requests"):
        _numbers(d, "work", where, ("seconds", "epochs"))
    final = d.get("final")
    if isinstance(final, dict):
        for key, kinds in _FINAL_FIELDS.items():
            if key in final:
                _need(final, key, kinds, f"{where} field 'final'")
        end = final.get("final_evaluation")
        if isinstance(end, dict) and end.get("status") == "ok":
            _need(end, "metrics", (dict,), f"{where} field 'final.final_evaluation'")
    best = d.get("best_evaluated")
    if isinstance(best, dict):
        _need(best, "index", (int,), f"{where} field 'best_evaluated'")
        _need(best, "metrics", _OPT_DICT, f"{where} field 'best_evaluated'")
    for i, member in enumerate(d.get("pareto") or []):
        if not isinstance(member, dict) or not isinstance(member.get("arch"), dict):
            raise RunDirError(f"{where}: pareto member {i} is not a mapping with an 'arch'")
        for key in d.get("objectives") or []:
            if not isinstance(member.get(key), _NUM) or isinstance(member.get(key), bool):
                raise RunDirError(f"{where}: pareto member {i} lacks the number {key!r}")
    for name, alt in d.get("alternatives", {}).items():
        if not isinstance(alt, dict):
            raise RunDirError(f"{where}: alternative {name!r} is not a mapping")
        for key in ("metrics", "held_out"):
            if key in alt:
                _need(alt, key, _OPT_DICT, f"{where} alternative {name!r}")


@dataclass
class EvaluationRecord:
    """One line of history.jsonl: an evaluated (or failed) architecture."""

    index: int
    arch: dict[str, Any]
    status: str
    metrics: dict[str, float]
    params: int | None
    macs: int | None
    cost: dict[str, float]
    reason: str | None
    best_val_acc: float | None
    time: float
    phase: str = "search"
    strategy: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: the identity of the run that wrote the record (None in records written before identities existed)
    run: str | None = None
    #: the latency of the architecture in ms and where it came from ("table" or "measured"), in runs that use latency
    latency_ms: float | None = None
    latency_source: str | None = None

    @property
    def val_acc(self) -> float | None:
        value = self.metrics.get("val_acc") if self.status == "ok" else None
        return float(value) if isinstance(value, _NUM) else None

    def to_json(self) -> str:
        d = asdict(self)
        if d["strategy"] is None:
            del d["strategy"]
        if not d["notes"]:
            del d["notes"]
        if d["run"] is None:
            del d["run"]
        for key in ("latency_ms", "latency_source"):
            if d[key] is None:
                del d[key]
        return json.dumps(_plain(d))

    @classmethod
    def from_json(cls, line: str, where: str) -> EvaluationRecord:
        d = _json_record(line, where)
        return cls(
            index=_need(d, "index", (int,), where),
            arch=_need(d, "arch", (dict,), where),
            status=_need(d, "status", (str,), where),
            metrics=_need(d, "metrics", (dict,), where),
            params=_need(d, "params", (int, type(None)), where),
            macs=_need(d, "macs", (int, type(None)), where),
            cost=_need(d, "cost", (dict,), where),
            reason=_need(d, "reason", (str, type(None)), where),
            best_val_acc=_need(d, "best_val_acc", _OPT_NUM, where),
            time=_need(d, "time", _NUM, where),
            phase=str(d.get("phase", "search")),
            strategy=_optional(d, "strategy", (dict,), where),
            notes=_notes(d, where),
            run=_optional(d, "run", (str,), where),
            latency_ms=_optional(d, "latency_ms", _NUM, where),
            latency_source=_optional(d, "latency_source", (str,), where),
        )


@dataclass
class WorkRecord:
    """One line of work.jsonl: a chunk of supernet training or a measurement."""

    work: int
    chunk: int
    kind: str
    phase: str
    epochs: float
    cost: dict[str, float]
    metrics: dict[str, float]
    time: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        d = asdict(self)
        if not d["notes"]:
            del d["notes"]
        return json.dumps(_plain(d))

    @classmethod
    def from_json(cls, line: str, where: str) -> WorkRecord:
        d = _json_record(line, where)
        return cls(
            work=_need(d, "work", (int,), where),
            chunk=_need(d, "chunk", (int,), where),
            kind=_need(d, "kind", (str,), where),
            phase=_need(d, "phase", (str,), where),
            epochs=_need(d, "epochs", _NUM, where),
            cost=_need(d, "cost", (dict,), where),
            metrics=_need(d, "metrics", (dict,), where),
            time=_need(d, "time", _NUM, where),
            notes=_notes(d, where),
        )


@dataclass
class FinalArch:
    """The architecture a run returns, with what is known of it.

    `metrics` are the answer's numbers whichever way they were obtained, and `metrics_source` says
    which: "final_evaluation" (the evaluation at the end, `final_evaluation`) when one ran and
    succeeded, else "search" (evaluation `metrics_index` of history.jsonl); None when the answer has
    no numbers. Files written before these fields existed held only the search's numbers in
    `metrics`; `RunResult.from_dict` fills the fields in for them the same way.
    """

    arch: dict[str, Any]
    source: str  # "strategy" (its own answer) or "best evaluated"
    metrics: dict[str, float] | None  # the answer's numbers (see metrics_source)
    #: which architecture the counts, the final evaluation and the held-out metrics describe:
    #: "arch", or "export.derived_arch" (the space's derivation from the strategy's weights)
    answer: str = "arch"
    params: int | None = None
    macs: int | None = None
    final_evaluation: dict[str, Any] | None = None  # one evaluation at the end (run.final_evaluation)
    held_out: dict[str, float] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    #: whether the answer was evaluated (successfully) during the search; None in files written before
    #: this field existed
    evaluated: bool | None = None
    #: its latency in ms and where it came from, in runs that use latency (absent from best.json otherwise)
    latency_ms: float | None = None
    latency_source: str | None = None
    #: where `metrics` come from: "search" or "final_evaluation" (None: no numbers)
    metrics_source: str | None = None
    #: the history.jsonl index of the search's evaluation of the answer (None if never evaluated)
    metrics_index: int | None = None
    #: where `metrics` were measured, in words (the evaluator's `search_split`: "search-val", a table's column)
    metrics_split: str | None = None
    #: what `held_out` was measured on, in words (the evaluator's `held_out_split`); None: nothing held out
    held_out_split: str | None = None
    #: whether `val_acc` is an accuracy in percent (False: a score that only orders, as zero_cost's)
    val_acc_percent: bool = True

    def backfill(self) -> None:
        """Fill `metrics_source` in a file written before it existed: its `metrics` were the search's,
        and an answer never evaluated during the search had its numbers only in `final_evaluation`."""
        if self.metrics_source is not None:
            return
        end = self.final_evaluation or {}
        if self.metrics is not None:
            self.metrics_source = "search"
        elif end.get("status") == "ok" and isinstance(end.get("metrics"), dict):
            self.metrics, self.metrics_source = dict(end["metrics"]), "final_evaluation"


@dataclass
class RunResult:
    """best.json: what a finished run found and what it cost."""

    strategy: str
    space: str
    evaluator: str
    data: str
    seed: int
    evaluations: int
    stopped_because: str
    cost: dict[str, float]
    final: FinalArch | None
    best_evaluated: dict[str, Any] | None
    #: other answers the strategy could have given (`Strategy.final_alternatives`, e.g. MDENAS'
    #: argmax), by name: {arch, evaluated, metrics, held_out}
    alternatives: dict[str, Any] = field(default_factory=dict)
    infeasible: int = 0
    work: dict[str, float] = field(default_factory=dict)
    data_split: dict[str, Any] | None = None
    produced_by: dict[str, Any] | None = None
    format: int = FORMAT
    #: where latencies came from (`LatencyCosts.describe`), in runs that use latency
    latency: dict[str, Any] | None = None
    #: a multi-objective search's objectives and its Pareto front: one mapping per member with `arch`, `index`
    #: (its line in history.jsonl) and a number per objective, most accurate first
    objectives: list[str] | None = None
    pareto: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """best.json's content; the latency and front fields appear only in runs that have them."""
        d = _plain(asdict(self))
        for key in ("latency", "objectives", "pareto"):
            if d[key] is None:
                del d[key]
        if isinstance(d.get("final"), dict):
            for key in ("latency_ms", "latency_source"):
                if d["final"][key] is None:
                    del d["final"][key]
        return d

    @property
    def run(self) -> str | None:
        """The identity of the run that wrote it (`produced_by.run`; None before identities existed)."""
        value = (self.produced_by or {}).get("run")
        return value if isinstance(value, str) else None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> RunResult:
        if not isinstance(d, dict):
            raise RunDirError(f"{where}: not a run result (got {type(d).__name__})")
        if d.get("format") != FORMAT:
            raise RunDirError(
                f"{where}: written in run-directory format {d.get('format', 1)}; this nasframe reads format {FORMAT}"
            )
        _check_result(d, where)
        final = d.get("final")
        fin = None
        if final is not None:
            if not isinstance(final, dict):
                raise RunDirError(f"{where}: field 'final' is not a mapping")
            try:
                fin = FinalArch(**final)
            except TypeError as exc:
                raise RunDirError(f"{where}: field 'final' is malformed ({exc})") from None
            fin.backfill()
        try:
            return cls(**{**d, "final": fin})
        except TypeError as exc:
            raise RunDirError(f"{where}: malformed ({exc})") from None


def message_without_path(exc: Exception, path: Path) -> str:
    """An error's message without the file name it starts with (the caller names the file)."""
    text = str(exc)
    for prefix in (f"{path}: ", f"{path}:"):
        text = text.removeprefix(prefix)
    return text
