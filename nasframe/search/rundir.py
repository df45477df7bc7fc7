"""The run directory: every file name and record of a run folder, in one place.

A run folder holds
- `nasframe.json`: who owns the folder (kind "search run", format, the run's identity), written first
  (`nasframe.common.ownership`);
- `config.yaml`: the resolved configuration (reusable as `--config` for a new run);
- `run.json`: the folder's format version and what produced each session (versions, command,
  device and threads actually used);
- `history.jsonl`: one `EvaluationRecord` per evaluation, in order (index 0, 1, ...), each with the run's
  identity;
- `work.jsonl`: one `WorkRecord` per piece of weight-sharing work (training chunks, measurements);
- `checkpoint.pt`: the loop, strategy and evaluator state (plain data and tensors only) and the run's identity;
- `best.json`: the `RunResult`, written when the run ends (`produced_by.run`: the run's identity);
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
from nasframe.common.loading import read_lines
from nasframe.common.ownership import MARKER, SEARCH_RUN, FolderClaim, Owner, check_folder, claim_folder, read_owner
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

    MARKER = MARKER
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
    #: what a new run writes: all that a failed first start removes (those of them it made)
    NEW_RUN_FILES = (CONFIG, INFO, HISTORY, WORK, CHECKPOINT, TENSORBOARD)

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
        owner = read_owner(self.path)
        if owner is not None and owner.kind != SEARCH_RUN:
            raise RunDirError(f"{self.path}: not a run directory: it holds {owner.words} ({MARKER})")
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

    # ---- the owner ------------------------------------------------------------------------------------
    def owner(self, identity: str) -> Owner:
        """What this folder's marker says when it holds the run of `identity`."""
        return Owner(SEARCH_RUN, FORMAT, identity)

    def check_owner(self, identity: str) -> None:
        """One FolderError unless a new run of `identity` may be written here (writes nothing)."""
        check_folder(self.path, self.owner(identity))

    def claim(self, identity: str, *, adopt: bool = False) -> FolderClaim:
        """Write the marker first (see `nasframe.common.ownership`); `adopt`: a run folder made before
        markers existed becomes this run's."""
        return claim_folder(self.path, self.owner(identity), adopt=adopt)

    def expected_run(self) -> tuple[str | None, bool]:
        """The identity the folder's records must carry, and whether every record must carry it (False
        for a folder made before markers existed: its earlier records have none). (None, False) when
        the folder has no marker."""
        owner = read_owner(self.path)
        if owner is None or owner.kind != SEARCH_RUN:
            return None, False
        return owner.identity, not owner.adopted

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

        return load_yaml(self.path / self.CONFIG, streams=False)

    # ---- history -----------------------------------------------------------------------------------
    def evaluations(self, *, complete_only: bool = True) -> Iterator[EvaluationRecord]:
        """The history's records in order; a line cut by a kill at the very end is skipped."""
        path = self.path / self.HISTORY
        if not path.exists():
            return
        for number, line in read_lines(path):
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
        for number, line in read_lines(path):
            if not line.endswith("\n"):
                return
            if line.strip():
                yield WorkRecord.from_json(line, f"{path} line {number}")

    def readable_evaluations(self) -> tuple[list[EvaluationRecord], str | None]:
        """The history for display: every record, skipping a damaged last line (a note says so, and
        also when the records are out of order).

        A damaged line elsewhere is still an error: the lines after it cannot be trusted either.
        """
        path = self.path / self.HISTORY
        if not path.exists():
            return [], None
        lines = [line for _, line in read_lines(path) if line.endswith("\n")]
        records: list[EvaluationRecord] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(EvaluationRecord.from_json(line, f"{path} line {number}"))
            except RunDirError as exc:
                if number < len(lines):
                    raise
                return records, f"{exc}; the line is left out"
        for position, record in enumerate(records):
            if record.index != position:
                return records, f"{path}: record {position + 1} has index {record.index}; the history is out of order"
        return records, None

    def intact_history_lines(self, limit: int) -> tuple[int, str | None]:
        """How many of the first `limit` history lines are complete, readable records of this run in
        order (index 0, 1, ..., the run's identity), counted from the top, and what is wrong with the
        first one that is not (None if all are)."""
        path = self.path / self.HISTORY
        run, strict = self.expected_run()
        good = 0
        if path.exists():
            for number, line in read_lines(path):
                if good >= limit:
                    break
                where = f"{path} line {number}"
                if not line.endswith("\n"):
                    return good, f"{where}: cut short"
                try:
                    problem = _out_of_place(EvaluationRecord.from_json(line, where), good, run, strict)
                except RunDirError as exc:
                    return good, str(exc)
                if problem is not None:
                    return good, f"{where}: {problem}"
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

    def truncate_logs(self, evaluations: int, work_lines: int, *, kept: bool = False) -> str | None:
        """Keep the lines the checkpoint covers (a killed run may have logged more, or half a line).

        What follows them is normally the start of what a killed run logged after its last checkpoint
        (computed again, identically). Anything else there (a record out of order, of another run,
        damaged) is kept as `history.jsonl.damaged` before it goes; the note returned says so. With
        `kept` the history as it was is already kept (resume fell back to an earlier checkpoint).
        """
        kept_as, odd = self._truncate(self.HISTORY, evaluations, check=True, tail=not kept)
        self._truncate(self.WORK, work_lines, check=False)
        if odd is None:
            return None
        return f"{odd}, after the {evaluations} records the checkpoint covers; kept {kept_as.name}"

    def _truncate(self, name: str, n: int, check: bool, tail: bool = False) -> tuple[Path, str | None]:
        path = self.path / name
        keep: list[str] = []
        odd: str | None = None
        run, strict = self.expected_run() if check else (None, False)
        if path.exists():
            for number, line in read_lines(path):
                where = f"{path} line {number}"
                if len(keep) >= n or not line.endswith("\n"):
                    if tail and odd is None and line.endswith("\n"):
                        odd = _leftover_problem(line, where, number - 1, run, strict)
                    if not tail or odd is not None:
                        break
                    continue
                if check:
                    EvaluationRecord.from_json(line, where)
                keep.append(line)
        if len(keep) < n and check:
            raise RunDirError(f"{path} has {len(keep)} complete lines but the checkpoint covers {n}")
        kept = self.set_aside(name, copy=True) if odd is not None else path
        atomic_write_text(path, "".join(keep))
        return kept, odd

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
        """best.json, after checking that it reads back: nothing is written that `show` calls damaged."""
        data = result.to_dict()
        RunResult.from_dict(data, str(self.path / self.BEST))
        atomic_write_json(self.path / self.BEST, data)

    def read_result(self) -> RunResult:
        from nasframe.common.loading import load_json

        path = self.path / self.BEST
        if not path.is_file():
            raise RunDirError(f"{self.path}: no {self.BEST} (the run has not finished)")
        try:
            result = RunResult.from_dict(load_json(path, "", RunDirError), str(path))
            run, strict = self.expected_run()
            if run is not None and result.run != run and (strict or result.run is not None):
                raise RunDirError(f"{path}: written by another run (identity {result.run}; this run's is {run})")
            return result
        except RunDirError as exc:
            raise RunDirError(
                f"{path}: damaged ({message_without_path(exc, path)}); `nasframe resume {self.path}` recomputes it"
            ) from None

    def remove_result(self) -> None:
        (self.path / self.BEST).unlink(missing_ok=True)

    def lock(self) -> RunLock:
        return RunLock(self.path)

    def disk_full_message(self, exc: OSError, evaluations: int) -> str:
        """The one line of a run stopped by a full disk: what is intact (the last checkpoint, covering
        `evaluations`) and how to go on."""
        where = f" ({exc.filename})" if exc.filename else ""
        if self.has_checkpoint():
            n = f"{evaluations} evaluation{'' if evaluations == 1 else 's'}"
            kept = f"its last checkpoint ({n}) and logs are intact"
            then = f"free some space, then `nasframe resume {self.path}`"
        else:
            kept, then = "nothing was checkpointed yet", "free some space and run it again"
        return f"{self.path}: the disk is full{where}; the run stopped: {kept}; {then}"


def _out_of_place(record: EvaluationRecord, position: int, run: str | None, strict: bool) -> str | None:
    """Why `record` cannot be the history's record number `position` of the run `run`, or None."""
    if record.index != position:
        return f"index {record.index} where {position} was expected (a line repeated, moved or removed)"
    if run is not None and record.run != run and (strict or record.run is not None):
        return f"written by another run (identity {record.run}; this run's is {run})"
    return None


def _leftover_problem(line: str, where: str, position: int, run: str | None, strict: bool) -> str | None:
    """Why a complete history line after the checkpoint's records is not what a killed run leaves there."""
    try:
        problem = _out_of_place(EvaluationRecord.from_json(line, where), position, run, strict)
    except RunDirError as exc:
        return str(exc)
    return None if problem is None else f"{where}: {problem}"


# ---- files: rank 0 writes --------------------------------------------------------------------------------------
class FollowerRunDir(RunDir):
    """The run folder as a process other than rank 0 sees it: it reads what rank 0 wrote (configuration,
    checkpoint, history) and writes nothing. tests/test_distributed.py checks that every method of RunDir
    that writes is overridden here."""

    #: RunDir's methods that write, each a no-op here
    WRITES = (
        "claim",
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

    def claim(self, identity: str, *, adopt: bool = False) -> FolderClaim:
        return FolderClaim(self.path, self.owner(identity), False, frozenset(), False)  # rank 0 writes the marker

    def record_session(self, session: dict[str, Any], *, new: bool = False) -> None:
        pass

    def set_aside(self, name: str, *, copy: bool = False) -> Path:
        return self.path / name  # rank 0 keeps the damaged file aside; this process only reads

    def write_config(self, text: str) -> None:
        pass

    def start_files(self) -> None:
        pass

    def truncate_logs(self, evaluations: int, work_lines: int, *, kept: bool = False) -> str | None:
        return None

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
