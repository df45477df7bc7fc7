"""The Runner owns the search loop: budget, seeding, run files, logging, checkpoints, export.

Loop: take the next request (asking the strategy when none is pending), execute it, tell the
strategy, log, and checkpoint now and then. An architecture (or `Evaluate` / `ScoreShared`
request) is one evaluation: checked against the constraints, seeded from (run seed, evaluation
index), measured, told with `tell`, one line in history.jsonl. Weight-sharing work
(`TrainShared`, `MeasureAngles`, ...) is seeded from (run seed, work index, piece), executed in
pieces of at most `run.work_chunk_epochs`, charged to the budget, told with `tell_work`, one line
per piece in work.jsonl, and checkpointed after every piece. Because all randomness derives from
those indices and the checkpoint holds strategy, evaluator and pending requests, a run resumed
after a kill in any phase ends exactly where the uninterrupted run would have ended (on the CPU).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasframe import distributed
from nasframe.config import ResolvedConfig, dump_yaml, merge_config, resolve
from nasframe.constraints import ConstraintError, Constraints
from nasframe.costs import ArchCosts
from nasframe.data import DataSource
from nasframe.errors import CapabilityError, ConfigError, NasframeError, RunDirError, SpaceExhausted
from nasframe.evaluator import (
    AngleMetric,
    Capability,
    Cost,
    Evaluator,
    Result,
    SharedWeights,
    WorkReport,
    capability_names,
)
from nasframe.executor import Executor, evaluation_seed, work_seed
from nasframe.flags import RESUME_SETTABLE
from nasframe.oneshot import (
    Evaluate,
    Request,
    ScoreShared,
    TrainMixed,
    TrainShared,
    as_request,
    request_from_state,
)
from nasframe.options import cut
from nasframe.pool import EvaluationPool, Ticket, evaluate_with_limit, open_pool
from nasframe.progress import Progress, Stopwatch, format_seconds
from nasframe.registry import evaluators
from nasframe.rundir import EvaluationRecord, FinalArch, RunDir, RunResult, WorkRecord, provenance
from nasframe.space import Arch, SearchSpace
from nasframe.strategy import ProposesAhead, Strategy
from nasframe.threads import apply_threads, resolve_threads

CHECKPOINT_VERSION = 2


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device=cuda but no CUDA device is available; use auto or cpu")
    return distributed.place(torch.device(name))  # under torchrun, CUDA is cuda:LOCAL_RANK


@dataclass
class Components:
    space: SearchSpace
    evaluator: Evaluator
    strategy: Strategy
    data: DataSource
    costs: ArchCosts
    constraints: Constraints | None


def check_capabilities(
    strategy_name: str, evaluator_name: str, needed: tuple[type[Capability], ...], ev_cls: type | None = None
) -> None:
    """Refuse a strategy whose requests the evaluator cannot execute, naming evaluators that can."""
    ev_cls = ev_cls or evaluators.get(evaluator_name)
    missing = [c for c in needed if not issubclass(ev_cls, c)]
    if not missing:
        return
    offering = []
    for name in evaluators.names():
        try:
            if all(issubclass(evaluators.get(name), c) for c in missing):
                offering.append(name)
        except NasframeError:  # a broken third-party evaluator must not hide the message we are building
            continue
    raise CapabilityError(
        f"strategy {strategy_name!r} needs an evaluator with {', '.join(capability_names(missing))}; "
        f"{evaluator_name!r} has none. Evaluators that offer it: {', '.join(offering) or '(none)'}"
    )


def build_components(config: ResolvedConfig, device: torch.device) -> Components:
    """Construct space, data handle, evaluator and strategy, checking capabilities at build time."""
    seed = config.options["run"].seed
    st_cls, ev_cls, sp_cls = config.strategy_class, config.evaluator_class, config.space_class
    needed = tuple(st_cls.required_capabilities(config.options["strategy"]))
    check_capabilities(config.names["strategy"], config.names["evaluator"], needed, ev_cls)
    space = sp_cls(config.options["space"])
    ev_cls.check_space(space, needed)  # what the strategy needs from the space's supernet, before anything runs
    data = DataSource(config.options["data"], seed=seed, device=device)
    evaluator = ev_cls(space, config.options["evaluator"], data=data, device=device)
    strategy = st_cls(space, config.options["strategy"], seed=seed)
    costs = ArchCosts(space, data.spec)
    limits = config.options["constraints"]
    constraints = Constraints(limits, costs) if limits.active else None
    if constraints is not None:
        constraints.check_space()
    return Components(space, evaluator, strategy, data, costs, constraints)


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
    partial: dict[str, Any] | None = None  # progress of pending[0] when it is a TrainShared in pieces
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
        d = dataclasses.asdict(self)
        d["pending"] = [r.to_state() for r in self.pending]
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> LoopState:
        try:
            return cls(**{**d, "pending": [request_from_state(r) for r in d["pending"]]})
        except (TypeError, KeyError) as exc:
            raise RunDirError(f"checkpoint loop state is malformed ({exc})") from None


@dataclass
class RunSummary:
    run_dir: Path
    evaluations: int
    stopped_because: str
    result: RunResult | None
    ran: bool = True  # False when resume found nothing to do


class Runner:
    """Runs one search in one run directory. Use `Runner.create` or `Runner.resume`."""

    def __init__(
        self,
        config: ResolvedConfig,
        run_dir: Path,
        *,
        resume: bool = False,
        quiet: bool = False,
        command: list[str] | None = None,
    ):
        self.config = config
        self.files = distributed.run_files(run_dir)  # under torchrun, rank 0 alone writes
        self.run_dir = self.files.path
        self.resuming = resume
        self.quiet = quiet or not distributed.is_writer()
        self.command = command
        self.config_changed = False  # set by resume when flags override the stored config
        self.budget_changed = False  # set by resume when they change a budget
        self.run_opts = config.options["run"]
        self.device = resolve_device(self.run_opts.device)
        self.parts = build_components(config, self.device)
        p = self.parts
        self.executor = Executor(p.evaluator, p.space, p.costs, self.run_opts.seed, self.run_opts.work_chunk_epochs)
        self.declared = tuple(p.strategy.required_capabilities(p.strategy.options))
        self.state = LoopState()
        self._clock = Stopwatch()
        # None between items; "executing" inside the evaluator's call (nothing else changed yet);
        # "telling" while pending, strategy and logs take the outcome
        self._stage: str | None = None
        self._progress: Progress | None = None
        self._history: Any = None
        self._worklog: Any = None
        self._writers: dict[str, Any] = {}
        self._last_ckpt = (0, time.monotonic())
        self._last_flush = time.monotonic()
        self._last_tb = float("-inf")
        self._pool: EvaluationPool | None = None
        self._window: list[Ticket] = []  # evaluations handed to the pool: always a prefix of state.pending
        self._made_folder = False  # this Runner created the run folder (create() claimed a default name)
        self._wrote_files = False  # this Runner wrote a new run's files (only then may a failure remove them)

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def create(cls, cfg: dict[str, Any], *, quiet: bool = False, command: list[str] | None = None) -> Runner:
        """A new run from a merged config mapping (see `nasframe.config.merge_config`)."""
        distributed.start()  # under torchrun: join the other processes of this run
        config = resolve(cfg)
        ro = config.options["run"]
        if ro.out:
            run_dir = Path(ro.out)
            if run_dir.exists() and not run_dir.is_dir():
                raise RunDirError(f"--out {run_dir} is a file, not a folder; give a new folder for the run")
            if RunDir(run_dir).holds_run():  # early, friendly; `run` checks again under the lock
                raise RunDirError(_holds_run_message(run_dir))
            return cls(config, run_dir, quiet=quiet, command=command)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{config.names['strategy']}-{config.names['space']}-{config.names['evaluator']}"
        runner = cls(config, Path(ro.runs_root) / base, quiet=quiet, command=command)
        runner._claim_folder(Path(ro.runs_root), base)
        return runner

    def _claim_folder(self, root: Path, base: str) -> None:
        """Create the first free `root/base`, `root/base-2`, ... with an exclusive mkdir, so that two
        runs started in the same second never share a default folder. Under torchrun rank 0 claims
        it and every process takes rank 0's name (it holds rank 0's time of day)."""
        run_dir = root / base
        if distributed.is_writer():
            root.mkdir(parents=True, exist_ok=True)
            k = 1
            while True:
                run_dir = root / (base if k == 1 else f"{base}-{k}")
                try:
                    run_dir.mkdir()
                    break
                except FileExistsError:
                    k += 1
            self._made_folder = True
        self.files = distributed.run_files(Path(distributed.agree_text(str(run_dir))))
        self.run_dir = self.files.path

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        overrides: dict[str, Any] | None = None,
        sets: list[str] | None = None,
        quiet: bool = False,
        command: list[str] | None = None,
    ) -> Runner:
        """Continue a run from its last checkpoint (or from the start if it never checkpointed).

        `overrides` are run options (device, max_evaluations, ...); `sets` are `section.key=value`
        items limited to settings that cannot change results so far (`RESUME_SETTABLE`).
        """
        from nasframe.config import parse_set

        distributed.start()  # under torchrun: join the other processes of this run
        files = RunDir(run_dir)
        files.require_run()
        for item in sets or []:
            section, key, _ = parse_set(item)
            if key not in RESUME_SETTABLE.get(section, set()):
                allowed = ", ".join(f"{s}.{k}" for s, keys in RESUME_SETTABLE.items() for k in sorted(keys))
                raise ConfigError(
                    f"resume --set {cut(repr(item))}: only settings that cannot change results so far may "
                    f"change; allowed: {allowed}"
                )
        stored = merge_config(files.read_config())
        cfg = merge_config(files.read_config(), run=overrides or {}, sets=sets or [])
        cfg["run"]["out"] = str(files.path)
        runner = cls(resolve(cfg), files.path, resume=True, quiet=quiet, command=command)
        changed = {
            (sec, k)
            for sec in ("run", "data")
            for k in set(cfg[sec]) | set(stored[sec])
            if cfg[sec].get(k) != stored[sec].get(k) and k != "out"
        }
        runner.config_changed = bool(changed)
        runner.budget_changed = any(k in ("max_evaluations", "max_epochs", "max_seconds") for _, k in changed)
        return runner

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self.state.elapsed = self._clock()
        return {
            "version": CHECKPOINT_VERSION,
            "names": dict(self.config.names),
            "loop": self.state.to_state(),
            "strategy": self.parts.strategy.state_dict(),
            "evaluator": self.parts.evaluator.state_dict(),
        }

    def load_state_dict(self, state: Any, source: Path | None = None) -> None:
        """Restore loop, strategy and evaluator from a checkpoint's data (`source` names its file)."""
        loop = self._checked_loop_state(state, source)
        where = source or self.files / RunDir.CHECKPOINT
        self._check_names(state, where)
        self.state = loop
        try:
            self.parts.strategy.load_state_dict(state["strategy"])
            self.parts.evaluator.load_state_dict(state["evaluator"])
        except NasframeError:
            raise
        except Exception as exc:  # a plugin's loader meeting data of another shape: any exception type
            detail = str(exc).splitlines()[0][:120] if str(exc).strip() else ""
            raise RunDirError(
                f"{where}: the checkpoint does not fit this run's strategy or evaluator ({type(exc).__name__}"
                f"{': ' + detail if detail else ''}); was config.yaml edited?"
            ) from None
        self._clock = Stopwatch(self.state.elapsed)

    def _checked_loop_state(self, state: Any, source: Path | None = None) -> LoopState:
        """The loop state of a checkpoint's data, after checking its version and parts; every problem
        is one RunDirError naming the file."""
        where = source or self.files / RunDir.CHECKPOINT
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise RunDirError(
                f"{where}: checkpoint version {cut(repr(version))} is not supported (this nasframe writes "
                f"{CHECKPOINT_VERSION})"
            )
        for part in ("loop", "strategy", "evaluator"):
            if part not in state:
                raise RunDirError(f"{where}: checkpoint lacks its {part!r} part")
        return _loop_state(state["loop"], where)

    def _check_names(self, state: dict[str, Any], where: Path) -> None:
        """The components that wrote a checkpoint are the ones config.yaml names (it may have been edited)."""
        names = state.get("names")
        if not isinstance(names, dict):  # written before checkpoints recorded them
            return
        for section, name in self.config.names.items():
            if names.get(section, name) != name:
                raise RunDirError(
                    f"{where} was written by {section} {cut(repr(names[section]))} but config.yaml now names {name!r}; "
                    f"put config.yaml back (or start a new run with the new {section})"
                )

    # ---- the run -----------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Search until the budget or the strategy ends, then write best.json.

        On every exit path the logs are closed, the evaluator is closed, and the last consistent
        state is checkpointed. A new run that fails before recording anything (a missing data
        root, say) removes the files it created, so the same command can simply be run again.
        Whether the folder already holds a run is decided under the folder's lock, so of two runs
        started at once on one --out exactly one proceeds. A full disk stops the run with one line;
        the files written before stay as they were.
        """
        distributed.barrier()  # under torchrun: every process has looked at the folder before rank 0 writes
        if not distributed.is_writer():
            apply_threads(self._threads())
            return self._run_locked()
        new_folder = self._made_folder or not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        discarded = False
        try:
            with self.files.lock():
                try:
                    if not self.resuming and self.files.holds_run():
                        raise RunDirError(_holds_run_message(self.run_dir))
                    apply_threads(self._threads())  # before any training work; see nasframe/threads.py
                    return self._run_locked()
                except Exception:
                    if self._wrote_files and self._nothing_recorded():
                        self._discard()
                        discarded = True
                    raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise RunDirError(self._disk_full_message(exc)) from None
            raise
        finally:
            if discarded and new_folder:
                try:
                    self.run_dir.rmdir()  # only if nothing else is in it
                except OSError:
                    pass

    def _disk_full_message(self, exc: OSError) -> str:
        where = f" ({exc.filename})" if exc.filename else ""
        if self.files.has_checkpoint():
            n = self._last_ckpt[0]
            kept = f"its last checkpoint ({n} evaluation{'' if n == 1 else 's'}) and logs are intact"
            then = f"free some space, then `nasframe resume {self.run_dir}`"
        else:
            kept, then = "nothing was checkpointed yet", "free some space and run it again"
        return f"{self.run_dir}: the disk is full{where}; the run stopped: {kept}; {then}"

    def _threads(self) -> int:
        """The CPU thread count of this session: `run.threads`, except that a resumed run whose
        setting is `auto` continues with the count it recorded, since the count changes how float
        sums are split and so the numbers (docs/reliability.md)."""
        wanted = resolve_threads(self.run_opts.threads)
        if not self.resuming or self.run_opts.threads != "auto":
            return wanted
        recorded = self._recorded("threads")
        if not isinstance(recorded, int) or isinstance(recorded, bool) or recorded < 1 or recorded == wanted:
            return wanted
        if not self.quiet:
            _say(
                f"note: continuing with {recorded} CPU threads as this run recorded (not {wanted}), so its numbers "
                f"match an uninterrupted run; set run.threads in a new run to choose otherwise"
            )
        return recorded

    def _recorded(self, key: str) -> Any:
        """What the last session of this run recorded under `key` in run.json (None if nothing)."""
        sessions = (self.files.read_info() or {}).get("sessions")
        last = sessions[-1] if isinstance(sessions, list) and sessions else None
        return last.get(key) if isinstance(last, dict) else None

    def _run_locked(self) -> RunSummary:
        try:
            opened = self._open_run()
            distributed.barrier()  # a resumed run: every process has read the checkpoint before rank 0 writes
            if not opened:
                return self._summary(ran=False)
            self._announce()
            try:
                self._open_logs()
                self._search()
            finally:
                self._close_logs()
                if not self.state.finished and self._consistent():
                    self._checkpoint()
            distributed.barrier()  # the history rank 0 wrote is complete on disk before every process reads it
            result = self._finish()
        finally:
            self._close_writers()
            self.parts.evaluator.close()
        return RunSummary(self.run_dir, self.state.evaluations, self.state.stopped_because, result)

    def _open_run(self) -> bool:
        """Prepare the folder; False when a resumed run is already finished and nothing extends it."""
        session = provenance(str(self.device), torch.get_num_threads(), self.command)
        if not self.resuming:
            # config.yaml is what makes the folder "hold a run", so it comes last: a kill before it
            # leaves a folder that the same command simply starts again
            self._wrote_files = True
            self.files.start_files()
            self.files.record_session(session, new=True)
            self.files.write_config(dump_yaml(self.config.to_dict()))
            return True
        self._restore()
        if self.state.finished:
            reason = self._finished_reason()
            if reason is not None and self.budget_changed:
                hint = (
                    "the strategy has nothing more to propose"
                    if reason == self.state.stopped_because
                    else "--budget raises run.max_evaluations"
                )
                raise RunDirError(
                    f"{self.run_dir} already finished ({reason}); the new budget does not extend it ({hint})"
                )
            if reason is not None and self._result_readable():
                return False
            if reason is None:
                self.state.finished = False  # resumed with a larger budget: keep searching
                self.files.remove_result()  # no stale result while it runs
        self.files.truncate_logs(self.state.evaluations, self.state.work_lines)
        self._warn_on_other_threads(session)
        if self.config_changed:
            self.files.write_config(dump_yaml(self.config.to_dict()))
        self.files.record_session(session)
        return True

    def _result_readable(self) -> bool:
        """Whether a finished run's best.json reads; a damaged (or missing) one is set aside and the
        result is computed again from the final checkpoint (the same numbers: all seeded)."""
        if not self.files.is_finished():
            self._note(f"{self.files / RunDir.BEST} is missing; computing the run's result again")
            return False
        try:
            self.files.read_result()
            return True
        except RunDirError as exc:
            kept = self.files.set_aside(RunDir.BEST)
            self._note(f"{exc.args[0].split(';')[0]}; kept as {kept.name}, computing the run's result again")
            return False

    def _restore(self) -> None:
        """Load the newest checkpoint whose state the history fully covers, falling back to the one
        before it (see `save_checkpoint`) when the newest is unreadable or malformed, or when
        history.jsonl is damaged inside the part it covers; a file that cannot be used is set aside
        as `*.damaged`, never deleted. Without any checkpoint the run starts from the beginning."""
        candidates = [name for name in (RunDir.CHECKPOINT, RunDir.PREVIOUS_CHECKPOINT) if (self.files / name).is_file()]
        if not candidates:
            return
        problems: list[str] = []
        for k, name in enumerate(candidates):
            path = self.files / name
            try:
                data = self.files.load_checkpoint(name)
                loop = self._checked_loop_state(data, path)
            except RunDirError as exc:
                problems.append(str(exc))
                continue
            self._check_names(data, path)  # an edited config.yaml is no damage to fall back from
            _, problem = self.files.intact_history_lines(loop.evaluations)
            if problem is not None:
                problems.append(f"{problem}, but {name} covers {loop.evaluations} records")
                continue
            if k:  # falling back: keep every file that could not be used, and the history as it was
                kept = [self.files.set_aside(n).name for n in candidates[:k]]
                if (self.files / RunDir.HISTORY).exists():
                    kept.append(self.files.set_aside(RunDir.HISTORY, copy=True).name)
                self._note(
                    f"{problems[0]}; resuming from the checkpoint before ({loop.evaluations} evaluations), "
                    f"kept {', '.join(kept)}"
                )
            self.load_state_dict(data, path)
            return
        before = f"; {RunDir.PREVIOUS_CHECKPOINT} cannot be used either" if len(problems) > 1 else ""
        raise RunDirError(f"{problems[0]}{before}")

    def _note(self, message: str) -> None:
        """A one-line note on stderr that even --quiet shows: something was repaired."""
        _say(f"note: {message}")

    def _warn_on_other_threads(self, session: dict[str, Any]) -> None:
        """Say in one line when this session computes differently from the last one: another thread
        count (float sums split differently), torch version, CPU kernel set or device."""
        changed = []
        labels = {"threads": "CPU threads", "torch": "torch", "cpu": "CPU kernels", "device": "device"}
        for key, label in labels.items():
            before, now = self._recorded(key), session.get(key)
            if before is not None and now is not None and before != now:
                changed.append(f"{label} {before} -> {now}")
        if changed and not self.quiet:
            _say(
                f"note: this run continues with {', '.join(changed)}; its numbers may now differ from an "
                f"uninterrupted run"
            )

    def _finished_reason(self) -> str | None:
        """Why a finished run cannot go on: a budget still reached, or a strategy that ran out of
        architectures or ended its search (those stay true whatever the budget)."""
        stopped = self.state.stopped_because
        if stopped == "strategy_done" or stopped.startswith("space_exhausted"):
            return stopped
        return self._stop_reason()

    def _announce(self) -> None:
        """Say up front what the strategy's settings ask for, and when the budget cuts it short."""
        if self.quiet or self.state.evaluations or self.state.work_done:
            return
        strategy, name = self.parts.strategy, self.config.names["strategy"]
        plan = strategy.plan()
        if plan:
            _say(f"{name}: {plan}")
        evaluator, training = self.parts.evaluator, strategy.planned_training_epochs()
        if training and isinstance(evaluator, SharedWeights):
            note = evaluator.training_plan_note(training)
            if note:
                _say(f"note: {note}")
        planned, budget = strategy.planned_evaluations(), self.run_opts.max_evaluations
        if planned is not None and budget is not None and budget < planned:
            _say(
                f"note: {name} plans up to {planned} evaluations but the budget stops it after {budget}; raise "
                f"--budget to let it finish"
            )

    def _nothing_recorded(self) -> bool:
        s = self.state
        return s.evaluations == 0 and s.work_lines == 0 and s.infeasible == 0

    def _discard(self) -> None:
        """A new run that failed before recording anything leaves no files to trip over (the folder
        itself goes too, after the lock, when this run created it)."""
        import shutil

        for name in (RunDir.CONFIG, RunDir.INFO, RunDir.HISTORY, RunDir.WORK, RunDir.CHECKPOINT):
            (self.run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / RunDir.TENSORBOARD, ignore_errors=True)

    def _consistent(self) -> bool:
        """Whether the current state is a valid checkpoint: between items, or inside the evaluator's
        call with an evaluator that holds no state (then the item simply runs again on resume)."""
        if self._stage is None:
            return True
        return self._stage == "executing" and not self.parts.evaluator.holds_state

    # ---- the loop ----------------------------------------------------------------------------
    def _stop_reason(self) -> str | None:
        ro, s = self.run_opts, self.state
        if ro.max_evaluations is not None and s.evaluations >= ro.max_evaluations:
            return "max_evaluations"
        if ro.max_epochs is not None and s.total_epochs >= ro.max_epochs:
            return "max_epochs"
        if ro.max_seconds is not None and distributed.agree_flag(self._clock() >= ro.max_seconds):  # rank 0's clock
            return "max_seconds"
        if self.parts.strategy.done and not s.pending:
            return "strategy_done"
        return None

    def _search(self) -> None:
        self._pool = open_pool(
            self.run_opts, self.executor, self.config.to_dict(), torch.get_num_threads(), self._say_unless_quiet
        )
        try:
            while True:
                reason = self._stop_reason()
                if reason:
                    self.state.stopped_because = reason
                    return
                request = self._next_request()
                if request is None:
                    return
                if self._progress is not None:
                    self._progress.phase(request.phase if not request.is_evaluation else self.parts.strategy.phase)
                if isinstance(request, (Evaluate, ScoreShared)):
                    self._evaluate_next()
                    self._checkpoint_if_due()
                else:
                    self._work(request)
                    self._checkpoint()
        finally:
            self._window = []  # evaluations still in flight stay pending: resume submits them again
            self._pool.close()  # ends them (Ray: kills the workers)
            self._pool = None

    def _next_request(self) -> Request | None:
        s = self.state
        if not s.pending:
            self._stage = "asking"  # the strategy changes as it answers: no checkpoint until it has
            try:
                items = self.parts.strategy.ask()
            except SpaceExhausted as exc:
                s.stopped_because = f"space_exhausted: {exc}"
                self._stage = None
                return None
            if not items:
                s.stopped_because = "strategy_done"
                self._stage = None
                return None
            s.pending = [self._admit(as_request(item)) for item in items]
            s.ahead_refused = False
            self._stage = None
        return s.pending[0]

    def _admit(self, request: Request) -> Request:
        """Validate a request's architecture and check that the strategy declared its capability."""
        needs = request.needs
        if needs is not None:
            if not any(issubclass(c, needs) for c in self.declared):
                raise CapabilityError(
                    f"strategy {self.config.names['strategy']!r} requested {request.kind} without "
                    f"declaring {needs.__name__} in its `requires`"
                )
        if isinstance(request, (Evaluate, ScoreShared)):
            return dataclasses.replace(request, arch=self.parts.space.validate(request.arch))
        return request

    # ---- evaluations ---------------------------------------------------------------------------
    def _evaluate_next(self) -> None:
        """Hand out evaluations up to `run.parallel`, then tell one result: the oldest, or with
        `run.tell_order: completion` the first to finish. With one slot this is simply: check the
        constraints, evaluate, tell, record."""
        s, strategy = self.state, self.parts.strategy
        self._fill_window()
        position = self._next_to_tell()
        ticket = self._window[position]
        arch = ticket.request.arch
        constraints = self.parts.constraints
        if ticket.rejected is not None:
            assert constraints is not None
            self._stage = "telling"
            del self._window[position], s.pending[position]
            s.infeasible += 1
            s.rejection_streak += 1
            strategy.tell(arch, ticket.rejected)
            self._stage = None
            if s.rejection_streak >= constraints.options.max_rejections:
                raise ConstraintError(constraints.give_up_message(self.config.names["strategy"], s.rejection_streak))
            return
        s.rejection_streak = 0
        self._stage = "executing"
        assert self._pool is not None
        result = self._pool.result(ticket.handle)
        self._stage = "telling"
        del self._window[position], s.pending[position]
        strategy.tell(arch, result)
        self._record(arch, result)
        self._stage = None

    def _fill_window(self) -> None:
        """Submit pending evaluations (asking a `ProposesAhead` strategy for more) while slots are free.

        Each gets the evaluation index it will be recorded under in submission order, so its seed,
        and therefore its result, is the one a one-slot run computes for that index."""
        s, window = self.state, self._window
        assert self._pool is not None
        remaining = self.run_opts.max_evaluations
        while len(window) < self.run_opts.parallel:
            submitted = sum(t.rejected is None for t in window)
            if remaining is not None and s.evaluations + submitted >= remaining:
                return
            if len(window) < len(s.pending):
                request = s.pending[len(window)]
                if not isinstance(request, (Evaluate, ScoreShared)):
                    return
                window.append(self._ticket(request, s.evaluations + submitted))
            elif not self._may_ask_ahead() or not self._ask_ahead():
                return

    def _ticket(self, request: Evaluate | ScoreShared, index: int) -> Ticket:
        constraints = self.parts.constraints
        rejected = constraints.check(request.arch) if constraints is not None else None
        if rejected is not None:
            return Ticket(request, index, rejected=rejected)
        assert self._pool is not None
        return Ticket(request, index, handle=self._pool.submit(request, index))

    def _may_ask_ahead(self) -> bool:
        s, strategy = self.state, self.parts.strategy
        return bool(self._window) and isinstance(strategy, ProposesAhead) and not strategy.done and not s.ahead_refused

    def _ask_ahead(self) -> bool:
        """Ask for more while results are out; False (and no more asking until all is told) when the
        strategy has nothing more now."""
        s = self.state
        self._stage = "asking"
        try:
            items = self.parts.strategy.ask()
        except SpaceExhausted:
            items = []
        self._stage = None
        if not items:
            s.ahead_refused = True
            return False
        s.pending.extend(self._admit(as_request(item)) for item in items)
        return True

    def _next_to_tell(self) -> int:
        """The window position told next: the oldest, or the first finished (`tell_order: completion`)."""
        if self.run_opts.tell_order == "submission" or len(self._window) == 1:
            return 0
        for i, ticket in enumerate(self._window):
            if ticket.rejected is not None:
                return i
        assert self._pool is not None
        return self._pool.first_done([t.handle for t in self._window])

    def _record(self, arch: Arch, result: Result) -> None:
        s = self.state
        index = s.evaluations
        s.evaluations += 1
        s.total_seconds += result.cost.seconds
        s.total_epochs += result.cost.epochs
        acc = result.accuracy
        improved = acc is not None and math.isfinite(acc) and (s.best_acc is None or acc > s.best_acc)
        if improved:
            s.best_acc, s.best_index = acc, index
        extra = self.parts.strategy.metrics()
        record = EvaluationRecord(
            index=index,
            arch=arch.to_dict(),
            status=result.status,
            metrics=result.metrics,
            params=result.params,
            macs=result.macs,
            cost={"seconds": result.cost.seconds, "epochs": result.cost.epochs},
            reason=result.reason,
            best_val_acc=s.best_acc,
            time=round(self._clock(), 4),
            phase=self.parts.strategy.phase,
            strategy=extra or None,
            notes=list(result.notes),
        )
        self._history.write(record.to_json() + "\n")
        self._say_notes(result.notes)
        writer = self._writers.get("search")
        # TensorBoard's writer costs ~50 us a scalar: with evaluations faster than that (tables),
        # log at most every tensorboard_interval seconds, new bests always
        if writer is not None and (improved or time.monotonic() - self._last_tb >= self.run_opts.tensorboard_interval):
            self._log_evaluation(writer, index, result, extra)
            self._last_tb = time.monotonic()
        if self._progress is not None:
            self._progress.evaluated(s.best_acc)

    # ---- weight-sharing work ---------------------------------------------------------------------
    def _work(self, request: Request) -> None:
        if isinstance(request, (TrainShared, TrainMixed)):
            self._train_piece(request)
            return
        self._stage = "executing"
        report = self.executor.measure(request, self.state.work_done)
        self._stage = "telling"
        self._charge(report.cost)
        self._log_work(request, 0, report)
        self._finish_work(request, report)

    def _train_piece(self, request: TrainShared | TrainMixed) -> None:
        """One piece of a TrainShared request: at most run.work_chunk_epochs epochs."""
        s = self.state
        self._stage = "executing"
        progress = s.partial or self.executor.start_training(request, s.work_done)
        report, progress = self.executor.train_piece(request, s.work_done, progress)
        self._stage = "telling"
        self._charge(report.cost)
        self._log_work(request, progress["piece"] - 1, report)
        self._report_training(request, progress)
        if progress["done"] >= progress["steps"]:
            s.partial = None
            self._finish_work(request, self.executor.training_report(progress))
        else:
            s.partial = progress
            self._stage = None

    def _report_training(self, request: TrainShared | TrainMixed, progress: dict[str, Any]) -> None:
        """The progress bar's work text, and once per request an estimate of the time left."""
        done_epochs = progress["done"] / progress["steps_per_epoch"]
        if self._progress is not None:
            self._progress.work(round(done_epochs, 3), request.epochs, "epochs", progress["seconds"])
        left = progress["seconds"] / progress["done"] * (progress["steps"] - progress["done"])
        if progress["piece"] == 1 and left > 60 and not self.quiet:  # an estimate for logs too
            _say(
                f"{request.phase}: {progress['seconds'] / done_epochs:.1f} s per epoch, about {format_seconds(left)} "
                f"left in this phase ({request.epochs:g} epochs)"
            )

    def _charge(self, cost: Cost) -> None:
        s = self.state
        s.total_seconds += cost.seconds
        s.total_epochs += cost.epochs
        s.work_seconds += cost.seconds
        s.work_epochs += cost.epochs

    def _finish_work(self, request: Request, report: WorkReport) -> None:
        s = self.state
        s.pending.pop(0)
        s.work_done += 1
        self.parts.strategy.tell_work(request, report)
        self._stage = None

    def _log_work(self, request: Request, piece: int, report: WorkReport) -> None:
        s = self.state
        record = WorkRecord(
            work=s.work_done,
            chunk=piece,
            kind=request.kind,
            phase=request.phase,
            epochs=report.cost.epochs,
            cost={"seconds": report.cost.seconds, "epochs": report.cost.epochs},
            metrics=report.metrics,
            time=round(self._clock(), 4),
            notes=list(report.notes),
        )
        self._worklog.write(record.to_json() + "\n")
        self._say_notes(report.notes)
        self._worklog.flush()
        writer = self._writers.get("work")
        if writer is not None:
            for key, value in report.metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(f"work/{request.kind}/{key}", value, s.work_lines)
            writer.add_scalar("work/supernet_epochs", s.work_epochs, s.work_lines)
        s.work_lines += 1

    def _say_unless_quiet(self, text: str) -> None:
        if not self.quiet:
            _say(text)

    def _say_notes(self, notes: list[str]) -> None:
        if not self.quiet:
            for note in notes:
                _say(f"note: {note}")

    # ---- files and logs --------------------------------------------------------------------------
    def _open_logs(self) -> None:
        self._history = self.files.open_log(RunDir.HISTORY)
        self._worklog = self.files.open_log(RunDir.WORK)
        if self.run_opts.tensorboard and distributed.is_writer():
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events logged after the checkpoint we resumed from
            tb = self.run_dir / RunDir.TENSORBOARD
            resumed = self.resuming
            self._writers = {
                "search": SummaryWriter(str(tb), purge_step=self.state.evaluations if resumed else None),
                "work": SummaryWriter(str(tb / "work"), purge_step=self.state.work_lines if resumed else None),
            }
        names = self.config.names
        show = self.run_opts.progress and not self.quiet
        self._progress = Progress(
            f"{names['strategy']}/{names['space']}/{names['evaluator']}",
            self.run_opts.max_evaluations,
            self.state.evaluations,
            show,
        )
        self._last_ckpt = (self.state.evaluations, time.monotonic())

    def _close_logs(self) -> None:
        for handle in (self._history, self._worklog):
            if handle is not None:
                handle.close()
        self._history = self._worklog = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def _checkpoint_if_due(self) -> None:
        n, t = self._last_ckpt
        now = time.monotonic()
        every = self.run_opts.checkpoint_every
        if (every is not None and self.state.evaluations - n >= every) or now - t >= self.run_opts.checkpoint_seconds:
            self._checkpoint()
        elif now - self._last_flush > 1.0:
            self._history.flush()
            self._last_flush = now

    def _checkpoint(self) -> None:
        for handle in (self._history, self._worklog):
            if handle is not None:
                handle.flush()
        self.files.save_checkpoint(self.state_dict())
        self._last_ckpt = (self.state.evaluations, time.monotonic())

    def _log_evaluation(self, writer: Any, index: int, result: Result, extra: dict[str, Any]) -> None:
        acc = result.accuracy
        if acc is not None:
            writer.add_scalar("search/val_acc", acc, index)
        if self.state.best_acc is not None:
            writer.add_scalar("search/best_val_acc", self.state.best_acc, index)
        writer.add_scalar("search/cost_seconds", result.cost.seconds, index)
        writer.add_scalar("search/failed", float(not result.ok), index)
        for key, value in extra.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(f"strategy/{key}", value, index)
            elif isinstance(value, (np.ndarray, torch.Tensor, list)):
                try:
                    arr = np.asarray(value, dtype=np.float64)
                except (TypeError, ValueError):
                    continue
                if arr.size:
                    writer.add_histogram(f"strategy/{key}", arr, index)

    # ---- the result --------------------------------------------------------------------------------
    def _finish(self) -> RunResult:
        """Pick the final architecture, describe it (counts, an evaluation at the end, held-out
        metrics, the space's export), write best.json and a last checkpoint."""
        s, parts = self.state, self.parts
        s.finished = True
        # what `resume --budget` continues from: the state before the final evaluation, which may
        # train (a supernet path) and must not change how an extended search goes on
        snapshot = self.state_dict()
        final, source = parts.strategy.final(), "strategy"
        best = self.files.evaluation(s.best_index) if s.best_index is not None else None
        if final is None and best is not None:
            final, source = parts.space.validate(best.arch), "best evaluated"
        searched = self._search_records()
        final_info = self._describe_final(final, source, searched) if final is not None else None
        result = RunResult(
            strategy=self.config.names["strategy"],
            space=self.config.names["space"],
            evaluator=self.config.names["evaluator"],
            data=self.config.options["data"].name,
            seed=self.run_opts.seed,
            evaluations=s.evaluations,
            stopped_because=s.stopped_because,
            cost={"seconds": s.total_seconds, "epochs": s.total_epochs, "wall_seconds": self._clock()},
            final=final_info,
            best_evaluated=None if best is None else {"index": best.index, "arch": best.arch, "metrics": best.metrics},
            alternatives=self._describe_alternatives(searched),
            infeasible=s.infeasible,
            work={"seconds": s.work_seconds, "epochs": s.work_epochs, "requests": s.work_done},
            data_split=parts.data.split_record,
            produced_by=provenance(str(self.device), torch.get_num_threads(), self.command),
        )
        self.files.write_result(result)
        self.files.save_checkpoint(snapshot)
        return result

    def _search_records(self) -> dict[str, EvaluationRecord]:
        """The last successful search evaluation of every architecture, keyed by `_arch_key`."""
        return {_arch_key(rec.arch): rec for rec in self.files.evaluations() if rec.status == "ok"}

    def _describe_alternatives(self, searched: dict[str, EvaluationRecord]) -> dict[str, Any]:
        """The strategy's other possible answers: each with whether the search evaluated it, its search
        metrics if so, and its held-out metrics (so best.json shows what the other answer would have scored)."""
        parts = self.parts
        out: dict[str, Any] = {}
        for name, arch in parts.strategy.final_alternatives().items():
            target = parts.space.validate(arch)
            rec = searched.get(_arch_key(target.to_dict()))
            out[name] = {
                "arch": target.to_dict(),
                "evaluated": rec is not None,
                "metrics": rec.metrics if rec else None,
                "held_out": parts.evaluator.final_metrics(target),
            }
        return out

    def _describe_final(self, final: Arch, source: str, searched: dict[str, EvaluationRecord]) -> FinalArch:
        """Counts, an evaluation at the end and held-out metrics of the run's answer: the space's derived
        architecture when its export gives one (the DARTS genotype), else the final architecture."""
        parts = self.parts
        export = parts.space.export(final, parts.strategy.final_weights())
        derived = export.get("derived_arch")
        answer, where = (
            (parts.space.validate(derived), "export.derived_arch") if isinstance(derived, dict) else (final, "arch")
        )
        evaluated = searched.get(_arch_key(answer.to_dict()))
        params: int | None
        macs: int | None
        try:
            params, macs = parts.costs.counts(answer)
        except NasframeError:
            params = macs = None
        mode = self.run_opts.final_evaluation
        final_eval = None
        if mode == "always" or (mode == "auto" and evaluated is None):
            request = self._admit(as_request(parts.strategy.final_evaluation(answer)))
            if not isinstance(request, (Evaluate, ScoreShared)):
                raise CapabilityError(
                    f"strategy {self.config.names['strategy']!r}: final_evaluation must give an "
                    f"architecture, Evaluate or ScoreShared, not {request.kind}"
                )
            outcome = evaluate_with_limit(
                self.executor, request, self.state.evaluations, self.run_opts.evaluation_timeout_s
            )
            final_eval = {
                "request": request.kind,
                "status": outcome.status,
                "metrics": outcome.metrics,
                "reason": outcome.reason,
                "cost": {"seconds": outcome.cost.seconds, "epochs": outcome.cost.epochs},
            }
        return FinalArch(
            arch=final.to_dict(),
            source=source,
            answer=where,
            metrics=evaluated.metrics if evaluated else None,
            params=params,
            macs=macs,
            final_evaluation=final_eval,
            held_out=parts.evaluator.final_metrics(answer),
            export=export,
            evaluated=evaluated is not None,
        )

    def _summary(self, ran: bool) -> RunSummary:
        result = self.files.read_result() if self.files.is_finished() else None
        return RunSummary(self.run_dir, self.state.evaluations, self.state.stopped_because, result, ran=ran)


def _allowed_types(hint: Any) -> tuple[type, ...] | None:
    """The plain-data types a checkpoint may hold for a field annotated `hint` (None: not checked)."""
    import types
    import typing

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


def _loop_state(data: Any, where: Path) -> LoopState:
    """A checkpoint's loop part as a LoopState, its field types checked (one RunDirError otherwise)."""
    import typing

    if not isinstance(data, dict):
        raise RunDirError(f"{where}: the checkpoint's loop state is {type(data).__name__}, not a mapping")
    hints = typing.get_type_hints(LoopState)
    for f in dataclasses.fields(LoopState):
        if f.name not in data:
            raise RunDirError(f"{where}: the checkpoint's loop state lacks {f.name!r}")
        allowed = _allowed_types(hints[f.name])
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


def _holds_run_message(run_dir: Path) -> str:
    return f"{run_dir} already holds a run; use `nasframe resume {run_dir}` or another --out"


def _arch_key(arch: dict[str, Any]) -> str:
    """One string per architecture (plain data from history or `Arch.to_dict`), order-independent."""
    return json.dumps(arch, sort_keys=True)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


__all__ = [
    "AngleMetric",
    "Components",
    "LoopState",
    "RunSummary",
    "Runner",
    "SharedWeights",
    "build_components",
    "evaluation_seed",
    "work_seed",
]
