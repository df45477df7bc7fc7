"""The run directory: every file name and record of a run folder, in one place.

A run folder holds
- `config.yaml`: the resolved configuration (reusable as `--config` for a new run);
- `run.json`: the folder's format version and what produced each session (versions, command,
  device and threads actually used);
- `history.jsonl`: one `EvaluationRecord` per evaluation, in order;
- `work.jsonl`: one `WorkRecord` per piece of weight-sharing work (training chunks, measurements);
- `checkpoint.pt`: the loop, strategy and evaluator state (plain data and tensors only);
- `best.json`: the `RunResult`, written when the run ends;
- `tensorboard/`: event files; `.lock` while a process works in it.
Runner, CLI and compare read and write these only through `RunDir`, so a damaged or foreign
folder fails in one place with one line naming the file and what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nasframe.checkpoint import (
    PREVIOUS_CHECKPOINT,
    RunLock,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from nasframe.errors import RunDirError

#: version of the folder layout and records; bump when a reader of the old one would misread
FORMAT = 2


def _plain(obj: Any) -> Any:
    """JSON-safe plain data: numpy/torch values become Python numbers and lists, NaN/inf None."""
    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray) or type(obj).__name__ == "Tensor":
        return _plain(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
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
    from nasframe.loading import parse_json

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
    """The architecture a run returns, with what is known of it."""

    arch: dict[str, Any]
    source: str  # "strategy" (its own answer) or "best evaluated"
    metrics: dict[str, float] | None  # of the answer's evaluation during the search, if it was evaluated
    #: which architecture the counts, the final evaluation and the held-out metrics describe:
    #: "arch", or "export.derived_arch" (the space's derivation from the strategy's weights)
    answer: str = "arch"
    params: int | None = None
    macs: int | None = None
    final_evaluation: dict[str, Any] | None = None  # one evaluation at the end (run.final_evaluation)
    held_out: dict[str, float] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    #: whether the answer was evaluated (successfully) during the search, i.e. `metrics` is set;
    #: None in files written before this field existed
    evaluated: bool | None = None


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

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

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
        try:
            return cls(**{**d, "final": fin})
        except TypeError as exc:
            raise RunDirError(f"{where}: malformed ({exc})") from None


def _reason(exc: Exception, path: Path) -> str:
    """An error's message without the file name it starts with (the caller names the file)."""
    text = str(exc)
    for prefix in (f"{path}: ", f"{path}:"):
        text = text.removeprefix(prefix)
    return text


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


def provenance(device: str, threads: int | None, command: list[str] | None = None) -> dict[str, Any]:
    """What is producing a run now: versions, command line, device and threads actually used."""
    import torch

    from nasframe import __version__

    return {
        "nasframe": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "command": command if command is not None else list(sys.argv),
        "device": device,
        "threads": threads,
        # the kernel set torch picked for this CPU (AVX2, AVX512, ...): another one sums differently
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "pid": os.getpid(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


class RunDir:
    """Paths, records and files of one run folder."""

    CONFIG = "config.yaml"
    INFO = "run.json"
    HISTORY = "history.jsonl"
    WORK = "work.jsonl"
    CHECKPOINT = "checkpoint.pt"
    PREVIOUS_CHECKPOINT = PREVIOUS_CHECKPOINT
    BEST = "best.json"
    #: suffix of a damaged file set aside (never deleted) when resume falls back to an earlier state
    DAMAGED = ".damaged"
    TENSORBOARD = "tensorboard"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    # ---- what is there -------------------------------------------------------------------------
    def holds_run(self) -> bool:
        return (self.path / self.CONFIG).is_file()

    def has_checkpoint(self) -> bool:
        return (self.path / self.CHECKPOINT).is_file()

    def is_finished(self) -> bool:
        return (self.path / self.BEST).is_file()

    def require_run(self) -> None:
        """Raise one line unless this is a run folder of the current format."""
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: not a run directory (no such folder)")
        if not self.holds_run():
            raise RunDirError(f"{self.path}: not a run directory (no {self.CONFIG})")
        version = self.format()
        if version != FORMAT:
            raise RunDirError(
                f"{self.path}: written by an older nasframe (run-directory format {version}); this "
                f"nasframe reads format {FORMAT}: finish it with the version that started it, or "
                f"start a new run"
            )

    def format(self) -> int:
        info = self.read_info()
        value = info.get("format", 1) if info else 1
        return value if isinstance(value, int) else -1

    # ---- run.json ----------------------------------------------------------------------------------
    def read_info(self) -> dict[str, Any] | None:
        from nasframe.loading import load_json

        path = self.path / self.INFO
        if not path.is_file():
            return None
        try:
            data = load_json(path, "", RunDirError)
        except RunDirError as exc:
            raise RunDirError(f"{path}: damaged ({_reason(exc, path)}); it records the folder's format") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{path}: damaged (not a mapping)")
        return data

    def record_session(self, session: dict[str, Any], *, new: bool = False) -> None:
        """Append what produces this session to run.json (`new`: start it afresh, for a new run)."""
        info = None if new else self.read_info()
        info = info or {"format": FORMAT, "sessions": []}
        if not isinstance(info.get("sessions"), list):
            raise RunDirError(f"{self.path / self.INFO}: damaged (its 'sessions' is not a list)")
        info["sessions"].append(session)
        atomic_write_json(self.path / self.INFO, info)

    # ---- config ----------------------------------------------------------------------------------
    def write_config(self, text: str) -> None:
        atomic_write_text(self.path / self.CONFIG, text)

    def read_config(self) -> dict[str, Any]:
        from nasframe.config import load_yaml

        return load_yaml(self.path / self.CONFIG)

    # ---- history -----------------------------------------------------------------------------------
    def evaluations(self, *, complete_only: bool = True) -> Iterator[EvaluationRecord]:
        """The history's records in order; a line cut by a kill at the very end is skipped."""
        path = self.path / self.HISTORY
        if not path.exists():
            return
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    if complete_only:
                        return
                if not line.strip():
                    continue
                yield EvaluationRecord.from_json(line, f"{path} line {number}")

    def work_records(self) -> Iterator[WorkRecord]:
        """work.jsonl's records in order (complete lines only)."""
        path = self.path / self.WORK
        if not path.exists():
            return
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    return
                if line.strip():
                    yield WorkRecord.from_json(line, f"{path} line {number}")

    def readable_evaluations(self) -> tuple[list[EvaluationRecord], str | None]:
        """The history for display: every record, skipping a damaged last line (a note says so).

        A damaged line elsewhere is still an error: the lines after it cannot be trusted either.
        """
        path = self.path / self.HISTORY
        if not path.exists():
            return [], None
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [line for line in fh if line.endswith("\n")]
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(EvaluationRecord.from_json(line, f"{path} line {number}"))
            except RunDirError as exc:
                if number < len(lines):
                    raise
                return records, f"{exc}; the line is left out"
        return records, None

    def intact_history_lines(self, limit: int) -> tuple[int, str | None]:
        """How many of the first `limit` history lines are complete, readable records, counted
        from the top, and what is wrong with the first one that is not (None if all are)."""
        path = self.path / self.HISTORY
        good = 0
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as fh:
                for number, line in enumerate(fh, 1):
                    if good >= limit:
                        break
                    if not line.endswith("\n"):
                        return good, f"{path} line {number}: cut short"
                    try:
                        EvaluationRecord.from_json(line, f"{path} line {number}")
                    except RunDirError as exc:
                        return good, str(exc)
                    good += 1
        return good, None if good >= limit else f"{path} has {good} complete lines"

    def set_aside(self, name: str, *, copy: bool = False) -> Path:
        """Keep a damaged file under a new name (`name.damaged`, or `name.damaged-2`, ...), moved or
        copied; nasframe never deletes what it cannot read."""
        import shutil

        source = self.path / name
        target = self.path / f"{name}{self.DAMAGED}"
        k = 1
        while target.exists():
            k += 1
            target = self.path / f"{name}{self.DAMAGED}-{k}"
        if copy:
            shutil.copy2(source, target)
        else:
            os.replace(source, target)
        return target

    def evaluation(self, index: int) -> EvaluationRecord | None:
        for rec in self.evaluations():
            if rec.index == index:
                return rec
        return None

    def start_files(self) -> None:
        """Empty history and work logs for a new run."""
        for name in (self.HISTORY, self.WORK):
            atomic_write_text(self.path / name, "")

    def truncate_logs(self, evaluations: int, work_lines: int) -> None:
        """Keep the lines the checkpoint covers (a killed run may have logged more, or half a line)."""
        self._truncate(self.HISTORY, evaluations, check=True)
        self._truncate(self.WORK, work_lines, check=False)

    def _truncate(self, name: str, n: int, check: bool) -> None:
        path = self.path / name
        keep: list[str] = []
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as fh:
                for number, line in enumerate(fh, 1):
                    if len(keep) >= n or not line.endswith("\n"):
                        break
                    if check:
                        EvaluationRecord.from_json(line, f"{path} line {number}")
                    keep.append(line)
        if len(keep) < n and check:
            raise RunDirError(f"{path} has {len(keep)} complete lines but the checkpoint covers {n}")
        atomic_write_text(path, "".join(keep))

    def open_log(self, name: str) -> Any:
        return open(self.path / name, "a", buffering=1 << 16, encoding="utf-8")

    # ---- checkpoint and result ---------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.path, state)

    def load_checkpoint(self, name: str = CHECKPOINT) -> Any:
        """The plain data of `checkpoint.pt` (or of `name`, e.g. PREVIOUS_CHECKPOINT)."""
        return load_checkpoint(self.path, name)

    def has_previous_checkpoint(self) -> bool:
        return (self.path / self.PREVIOUS_CHECKPOINT).is_file()

    def write_result(self, result: RunResult) -> None:
        atomic_write_json(self.path / self.BEST, result.to_dict())

    def read_result(self) -> RunResult:
        from nasframe.loading import load_json

        path = self.path / self.BEST
        if not path.is_file():
            raise RunDirError(f"{self.path}: no {self.BEST} (the run has not finished)")
        try:
            return RunResult.from_dict(load_json(path, "", RunDirError), str(path))
        except RunDirError as exc:
            raise RunDirError(
                f"{path}: damaged ({_reason(exc, path)}); `nasframe resume {self.path}` recomputes it"
            ) from None

    def remove_result(self) -> None:
        (self.path / self.BEST).unlink(missing_ok=True)

    def lock(self) -> RunLock:
        return RunLock(self.path)
