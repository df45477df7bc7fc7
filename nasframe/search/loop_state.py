"""The loop's state and the checkpoint format: what a run must restore to continue exactly.

A checkpoint (`checkpoint.pt`, format `CHECKPOINT_VERSION`) holds the components' names, the run's
identity (`run`, the hash in the folder's `nasframe.json`; absent in checkpoints written before
identities existed), the loop state (plain data), the strategy's and the evaluator's state. Nothing is
written that torch's weights-only reader would refuse (`component_state`). Reading one checks its
version, its parts, every loop field's type, its identity against the folder's and the names against
config.yaml, each problem one `RunDirError` naming the file; `read_checkpoint` falls back to the
checkpoint before when the newest cannot be used, setting aside (never deleting) what it could not use.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasframe.common.checkpoint import unsavable
from nasframe.common.errors import PluginError, RunDirError
from nasframe.common.options import cut
from nasframe.core.requests import Request, request_from_state
from nasframe.search.executor import WorkProgress
from nasframe.search.rundir import RunDir

CHECKPOINT_VERSION = 2


@dataclass
class LoopState:
    """Everything about the loop that a checkpoint must restore."""

    evaluations: int = 0
    work_done: int = 0  # finished work requests
    work_lines: int = 0  # lines in work.jsonl (one per piece)
    total_seconds: float = 0.0
    total_epochs: float = 0.0
    elapsed: float = 0.0
    pending: list[Request] = field(default_factory=list)
    partial: WorkProgress | None = None  # progress of pending[0] when it is training in pieces
    best_acc: float | None = None
    best_index: int | None = None
    infeasible: int = 0
    rejection_streak: int = 0
    work_seconds: float = 0.0
    work_epochs: float = 0.0
    finished: bool = False
    stopped_because: str = ""
    ahead_refused: bool = False  # asking ahead ran out of architectures: ask again only once all is told

    def to_state(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # a deep copy: a checkpoint never aliases the live state
        d["pending"] = [r.to_state() for r in self.pending]
        d["partial"] = None if self.partial is None else copy.deepcopy(self.partial.to_state())
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> LoopState:
        try:
            partial = None if d["partial"] is None else WorkProgress.from_state(d["partial"])
            return cls(**{**d, "pending": [request_from_state(r) for r in d["pending"]], "partial": partial})
        except (TypeError, KeyError, ValueError) as exc:
            raise RunDirError(f"checkpoint loop state is malformed ({exc})") from None


def resume_point(state: LoopState, budget: int | None, phase: str, checkpointed: bool) -> str:
    """Where a resumed run continues, in one line: after evaluation n of the budget, the strategy's
    `phase` and, inside a piece of supernet work, the epoch that work has reached."""
    if not checkpointed:
        return "continuing from the start: no checkpoint was written before the run stopped"
    s = state
    of = f" of {budget}" if budget is not None else ""
    where = [f"after evaluation {s.evaluations}{of}", f"phase: {phase}"]
    progress = s.partial
    if progress is not None and progress.trains and s.pending:
        total = progress.steps / progress.steps_per_epoch
        label = s.pending[0].phase or s.pending[0].kind
        where.append(f"{label} (work request {s.work_done + 1}): epoch {progress.done_epochs:.3g} of {total:.3g}")
    elif s.work_done:
        where.append(f"{s.work_done} supernet work request{'s' if s.work_done != 1 else ''} done")
    spent = f"{s.total_epochs:g} epochs and {s.elapsed:.0f} s spent so far"
    return f"continuing from the checkpoint {', '.join(where)}; {spent}"


#: the plain-data type a checkpoint holds for each loop field whose type in memory is richer
_STORED_AS = {"partial": dict[str, Any] | None, "pending": list}


def _allowed_types(hint: Any) -> tuple[type, ...] | None:
    """The plain-data types a checkpoint may hold for a field annotated `hint` (None: not checked)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds: list[type] = []
        for member in typing.get_args(hint):
            allowed = _allowed_types(member)
            if allowed is None:
                return None
            kinds.extend(allowed)
        return tuple(kinds)
    plain = {int: (int,), float: (int, float), bool: (bool,), str: (str,), type(None): (type(None),)}
    if hint in plain:
        return plain[hint]
    if origin in (list, dict) or hint in (list, dict):
        return (origin or hint,)
    return None


def loop_state_of(data: Any, where: Path) -> LoopState:
    """A checkpoint's loop part as a LoopState, its field types checked (one RunDirError otherwise)."""
    if not isinstance(data, dict):
        raise RunDirError(f"{where}: the checkpoint's loop state is {type(data).__name__}, not a mapping")
    hints = typing.get_type_hints(LoopState)
    for f in dataclasses.fields(LoopState):
        if f.name not in data:
            raise RunDirError(f"{where}: the checkpoint's loop state lacks {f.name!r}")
        allowed = _allowed_types(_STORED_AS.get(f.name, hints[f.name]))
        value = data[f.name]
        wrong_bool = isinstance(value, bool) and bool not in (allowed or ())
        if allowed is not None and (not isinstance(value, allowed) or wrong_bool):
            raise RunDirError(f"{where}: the checkpoint's loop state has {f.name}={value!r:.60}")
    try:
        return LoopState.from_state(data)
    except RunDirError as exc:
        raise RunDirError(f"{where}: {exc}") from None
    except Exception as exc:  # a request of unknown shape; any exception its reader raises
        raise RunDirError(f"{where}: the checkpoint holds a malformed request ({type(exc).__name__})") from None


def checked_loop_state(state: Any, where: Path) -> LoopState:
    """The loop state of a checkpoint's data, after checking its version and parts; every problem
    is one RunDirError naming the file."""
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise RunDirError(
            f"{where}: checkpoint version {cut(repr(version))} is not supported (this nasframe writes "
            f"{CHECKPOINT_VERSION})"
        )
    for part in ("loop", "strategy", "evaluator"):
        if part not in state:
            raise RunDirError(f"{where}: checkpoint lacks its {part!r} part")
    return loop_state_of(state["loop"], where)


def check_names(state: dict[str, Any], names: Mapping[str, str], where: Path) -> None:
    """The components that wrote a checkpoint are the ones config.yaml names (it may have been edited)."""
    written = state.get("names")
    if not isinstance(written, dict):  # written before checkpoints recorded them
        return
    for section, name in names.items():
        if written.get(section, name) != name:
            raise RunDirError(
                f"{where} was written by {section} {cut(repr(written[section]))} but config.yaml now names "
                f"{name!r}; put config.yaml back (or start a new run with the new {section})"
            )


def component_state(component: Any, name: str) -> Any:
    """`component.state_dict()`, refused in one line (naming the component) when a checkpoint cannot
    hold it: a checkpoint nobody can read back must never replace the last good one."""
    state = component.state_dict()
    problem = unsavable(state)
    if problem is not None:
        raise PluginError(
            f"{name}: state_dict() holds something a checkpoint cannot hold at {problem}: plain data "
            f"(dict, list, str, numbers) and tensors only"
        )
    return state


def _foreign(data: dict[str, Any], files: RunDir, path: Path) -> str | None:
    """Why a checkpoint is not this run's (its identity is another), or None."""
    run, strict = files.expected_run()
    written = data.get("run")
    if run is None or written == run or (written is None and not strict):
        return None
    return f"{path}: written by another run (identity {cut(repr(written), 40)}; this run's is {run})"


def read_checkpoint(
    files: RunDir, names: Mapping[str, str], note: Callable[[str], None]
) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint whose state the history fully covers, and its path; None without any.

    Falls back to the one before it (see `RunDir.save_checkpoint`) when the newest is unreadable or
    malformed, or when history.jsonl is damaged inside the part it covers; a file that cannot be used
    is set aside as `*.damaged`, never deleted, and `note` says so in one line."""
    candidates = [name for name in (RunDir.CHECKPOINT, RunDir.PREVIOUS_CHECKPOINT) if (files / name).is_file()]
    if not candidates:
        return None
    problems: list[str] = []
    for k, name in enumerate(candidates):
        path = files / name
        try:
            data = files.load_checkpoint(name)
            loop = checked_loop_state(data, path)
        except RunDirError as exc:
            problems.append(str(exc))
            continue
        foreign = _foreign(data, files, path)
        if foreign is not None:
            problems.append(foreign)
            continue
        check_names(data, names, path)  # an edited config.yaml is no damage to fall back from
        _, problem = files.intact_history_lines(loop.evaluations)
        if problem is not None:
            problems.append(f"{problem}, but {name} covers {loop.evaluations} records")
            continue
        if k:  # falling back: keep every file that could not be used, and the history as it was
            kept = [files.set_aside(n).name for n in candidates[:k]]
            if (files / RunDir.HISTORY).exists():
                kept.append(files.set_aside(RunDir.HISTORY, copy=True).name)
            note(
                f"{problems[0]}; resuming from the checkpoint before ({loop.evaluations} evaluations), "
                f"kept {', '.join(kept)}"
            )
        return data, path
    before = f"; {RunDir.PREVIOUS_CHECKPOINT} cannot be used either" if len(problems) > 1 else ""
    raise RunDirError(f"{problems[0]}{before}")
