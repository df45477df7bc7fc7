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

import contextlib
import os
import platform
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nasframe.common.checkpoint import (
    PREVIOUS_CHECKPOINT,
    RunLock,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from nasframe.common.errors import RunDirError
from nasframe.search.records import FORMAT, EvaluationRecord, RunResult, WorkRecord, message_without_path


def provenance(device: str, threads: int | None, command: list[str] | None = None) -> dict[str, Any]:
    """What is producing a run now: versions, command line, device and threads actually used."""
    import torch

    from nasframe.common.version import __version__

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
        from nasframe.common.loading import load_json

        path = self.path / self.INFO
        if not path.is_file():
            return None
        try:
            data = load_json(path, "", RunDirError)
        except RunDirError as exc:
            raise RunDirError(
                f"{path}: damaged ({message_without_path(exc, path)}); it records the folder's format"
            ) from None
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
        from nasframe.search.config import load_yaml

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

    def save_final_checkpoint(self, state: dict[str, Any]) -> None:
        """The checkpoint of a finished run (what `resume --budget` extends it from), alone: the one before,
        kept while the run went on as a fallback, is removed, so a finished supernet run keeps one copy of
        its weights (SPOS on the shufflenet space: one 86 MB file instead of two). Written first, removed
        second: a kill in between leaves both."""
        save_checkpoint(self.path, state)
        (self.path / self.PREVIOUS_CHECKPOINT).unlink(missing_ok=True)

    def load_checkpoint(self, name: str = CHECKPOINT) -> Any:
        """The plain data of `checkpoint.pt` (or of `name`, e.g. PREVIOUS_CHECKPOINT)."""
        return load_checkpoint(self.path, name)

    def has_previous_checkpoint(self) -> bool:
        return (self.path / self.PREVIOUS_CHECKPOINT).is_file()

    def write_result(self, result: RunResult) -> None:
        atomic_write_json(self.path / self.BEST, result.to_dict())

    def read_result(self) -> RunResult:
        from nasframe.common.loading import load_json

        path = self.path / self.BEST
        if not path.is_file():
            raise RunDirError(f"{self.path}: no {self.BEST} (the run has not finished)")
        try:
            return RunResult.from_dict(load_json(path, "", RunDirError), str(path))
        except RunDirError as exc:
            raise RunDirError(
                f"{path}: damaged ({message_without_path(exc, path)}); `nasframe resume {self.path}` recomputes it"
            ) from None

    def remove_result(self) -> None:
        (self.path / self.BEST).unlink(missing_ok=True)

    def lock(self) -> RunLock:
        return RunLock(self.path)


# ---- files: rank 0 writes --------------------------------------------------------------------------------------
class FollowerRunDir(RunDir):
    """The run folder as a process other than rank 0 sees it: it reads what rank 0 wrote (configuration,
    checkpoint, history) and writes nothing. tests/test_distributed.py checks that every method of RunDir
    that writes is overridden here."""

    #: RunDir's methods that write, each a no-op here
    WRITES = (
        "record_session",
        "set_aside",
        "write_config",
        "start_files",
        "truncate_logs",
        "open_log",
        "save_checkpoint",
        "save_final_checkpoint",
        "write_result",
        "remove_result",
        "lock",
    )

    def record_session(self, session: dict[str, Any], *, new: bool = False) -> None:
        pass

    def set_aside(self, name: str, *, copy: bool = False) -> Path:
        return self.path / name  # rank 0 keeps the damaged file aside; this process only reads

    def write_config(self, text: str) -> None:
        pass

    def start_files(self) -> None:
        pass

    def truncate_logs(self, evaluations: int, work_lines: int) -> None:
        pass

    def open_log(self, name: str) -> Any:
        return open(os.devnull, "w", encoding="utf-8")

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        pass

    def save_final_checkpoint(self, state: dict[str, Any]) -> None:
        pass

    def write_result(self, result: RunResult) -> None:
        pass

    def remove_result(self) -> None:
        pass

    def lock(self) -> Any:
        return contextlib.nullcontext()


def run_files(path: Any) -> RunDir:
    """The run folder for this process: writable on rank 0, read-only elsewhere (under torchrun)."""
    from nasframe.common import distributed

    return RunDir(path) if distributed.is_writer() else FollowerRunDir(path)
