"""The Runner owns a search's lifecycle in its run folder: create or resume, run under the folder's
lock, checkpoint, and write the result.

Loop: take the next request (asking the strategy when none is pending), execute it, tell the
strategy, log, and checkpoint now and then (`nasframe.search.loop`). An architecture (or
`Evaluate` / `ScoreShared` request) is one evaluation: checked against the constraints, seeded from
(run seed, evaluation index), measured, told with `tell`, one line in history.jsonl. Weight-sharing
work (`TrainShared`, `MeasureAngles`, ...) is seeded from (run seed, work index, piece), executed in
pieces of at most `run.work_chunk_epochs`, charged to the budget, told with `tell_work`, one line
per piece in work.jsonl, and checkpointed after every piece. Because all randomness derives from
those indices and the checkpoint holds strategy, evaluator and pending requests, a run resumed
after a kill in any phase ends exactly where the uninterrupted run would have ended (on the CPU).

The jobs around it live beside it: assembling the components (`components`), the loop state and
checkpoint format (`loop_state`), the logs (`logs`), the loop (`loop`) and the result (`result`).
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from nasframe.common import distributed
from nasframe.common.device import resolve_device
from nasframe.common.errors import ConfigError, NasframeError, PluginError, RunDirError
from nasframe.common.loading import check_text_path
from nasframe.common.options import cut
from nasframe.common.progress import Stopwatch
from nasframe.common.threads import apply_threads, resolve_threads
from nasframe.core.capabilities import SharedWeights
from nasframe.core.faults import component_name, fault_of
from nasframe.search.components import Components, build_components
from nasframe.search.config import (
    RESUME_SETTABLE,
    ResolvedConfig,
    dump_yaml,
    merge_config,
    parse_set,
    resolve,
    run_identity,
)
from nasframe.search.executor import Executor
from nasframe.search.logs import RunLogs, say
from nasframe.search.loop import SearchLoop
from nasframe.search.loop_state import (
    CHECKPOINT_VERSION,
    LoopState,
    check_names,
    checked_loop_state,
    component_state,
    read_checkpoint,
    resume_point,
)
from nasframe.search.records import RunResult
from nasframe.search.result import ResultWriter
from nasframe.search.rundir import RunDir, provenance, run_files


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
        self.files = run_files(check_text_path(run_dir, "run folder"))  # under torchrun, rank 0 alone writes
        self.run_dir = self.files.path
        self.resuming = resume
        self.quiet = quiet or not distributed.is_writer()
        self.command = command
        self.config_changed = False  # set by resume when flags override the stored config
        self.budget_changed = False  # set by resume when they change a budget
        self.run_opts = config.options["run"]
        self.device = resolve_device(self.run_opts.device)
        #: the hash of what decides this run's results; its records and checkpoints carry it
        self.identity = run_identity(config)
        try:
            self.parts: Components = build_components(config, self.device)
        except (Exception, SystemExit) as exc:  # a component's constructor: one line naming it
            fault = fault_of(exc)
            if fault is None:
                raise
            raise fault from exc
        p = self.parts
        self.executor = Executor(p.evaluator, p.space, p.costs, self.run_opts.seed, self.run_opts.work_chunk_epochs)
        self.state = LoopState()
        self._clock = Stopwatch()
        self.logs = RunLogs(self.files, quiet=self.quiet, tensorboard_interval=self.run_opts.tensorboard_interval)
        self.loop = self._new_loop()
        self._last_ckpt = (0, time.monotonic())
        self._made_folder = False  # this Runner created the run folder (create() claimed a default name)
        self._wrote_files = False  # this Runner wrote a new run's files (only then may a failure remove them)

    def _new_loop(self) -> SearchLoop:
        loop = SearchLoop(self.config, self.parts, self.executor, self.state, self.logs, self._clock, self._checkpoint)
        loop.identity = self.identity
        return loop

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def create(cls, cfg: dict[str, Any], *, quiet: bool = False, command: list[str] | None = None) -> Runner:
        """A new run from a merged config mapping (see `nasframe.search.config.merge_config`)."""
        distributed.start()  # under torchrun: join the other processes of this run
        config = resolve(cfg)
        ro = config.options["run"]
        if ro.out:
            run_dir = Path(ro.out)
            if run_dir.exists() and not run_dir.is_dir():
                raise RunDirError(f"--out {run_dir} is a file, not a folder; give a new folder for the run")
            if RunDir(run_dir).holds_run():  # early, friendly; `run` checks again under the lock
                raise RunDirError(_holds_run_message(run_dir))
            RunDir(check_text_path(run_dir, "--out")).check_owner(run_identity(config))  # nothing written yet
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
        self.files = run_files(Path(distributed.agree_text(str(run_dir))))
        self.run_dir = self.files.path
        self.logs.files = self.files

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
        recorded, _ = files.expected_run()
        if recorded is not None:  # the identity the run was started with (computed again only for older folders)
            runner.identity = recorded
            runner.loop.identity = recorded
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
        p = self.parts
        return {
            "version": CHECKPOINT_VERSION,
            "names": dict(self.config.names),
            "run": self.identity,
            "loop": self.state.to_state(),
            "strategy": component_state(p.strategy, component_name(p.strategy)),
            "evaluator": component_state(p.evaluator, component_name(p.evaluator)),
        }

    def load_state_dict(self, state: Any, source: Path | None = None) -> None:
        """Restore loop, strategy and evaluator from a checkpoint's data (`source` names its file)."""
        where = source or self.files / RunDir.CHECKPOINT
        loop = checked_loop_state(state, where)
        check_names(state, self.config.names, where)
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
        self.loop = self._new_loop()

    # ---- the run -----------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Search until the budget or the strategy ends, then write best.json.

        The folder's marker comes first (`RunDir.claim`: a folder holding anything but this run is
        refused before anything is written). On every exit path the logs are closed, the evaluator is
        closed, and the last consistent state is checkpointed. A new run that fails before recording
        anything (a missing data root, say) removes the files it created, and only those, so the same
        command can simply be run again. Whether the folder already holds a run is decided under the
        folder's lock, so of two runs started at once on one --out exactly one proceeds. A full disk,
        and an exception or `sys.exit` inside a component, stop the run with one line; the files
        written before stay as they were.
        """
        distributed.barrier()  # under torchrun: every process has looked at the folder before rank 0 writes
        if not distributed.is_writer():
            apply_threads(self._threads())
            return self._run_locked()
        claim = None if self.resuming else self.files.claim(self.identity)  # the marker first
        if claim is not None:
            claim.made_folder |= self._made_folder
        discarded = False
        try:
            with self.files.lock():
                try:
                    if not self.resuming and self.files.holds_run():
                        raise RunDirError(_holds_run_message(self.run_dir))
                    apply_threads(self._threads())  # before any training work; see nasframe/common/threads.py
                    return self._run_locked()
                except (Exception, SystemExit):
                    if claim is not None and self._wrote_files and self._nothing_recorded():
                        claim.undo(RunDir.NEW_RUN_FILES)
                        discarded = True
                    raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise RunDirError(self.files.disk_full_message(exc, self._last_ckpt[0])) from None
            raise
        except (Exception, SystemExit) as exc:
            fault = exc if isinstance(exc, PluginError) else fault_of(exc)
            if fault is None:
                raise
            if not discarded and self.files.has_checkpoint():
                fault = PluginError(f"{fault}; the run's last checkpoint is intact ({_count(self._last_ckpt[0])})")
            raise fault from exc
        finally:
            if claim is not None and discarded:
                claim.remove_folder_if_made()  # only if nothing else is in it

    def _run_locked(self) -> RunSummary:
        try:
            opened = self._open_run()
            distributed.barrier()  # a resumed run: every process has read the checkpoint before rank 0 writes
            if not opened:
                return self._summary(ran=False)
            self._announce()
            try:
                self._open_logs()
                self.loop.run(self._checkpoint_due)
            finally:
                self.logs.close()
                if not self.state.finished and self._consistent():
                    self._checkpoint()
            distributed.barrier()  # the history rank 0 wrote is complete on disk before every process reads it
            result = self._finish()
        finally:
            self.logs.close_writers()
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
        found = read_checkpoint(self.files, self.config.names, _note)
        if found is not None:
            self.load_state_dict(*found)
        if self.files.expected_run()[0] is None:  # made before markers existed: from now on this run's
            self.files.claim(self.identity, adopt=True)
        fell_back = found is not None and found[1].name == RunDir.PREVIOUS_CHECKPOINT
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
        if not self.quiet:
            say(resume_point(self.state, self.run_opts.max_evaluations, self.parts.strategy.phase, found is not None))
        odd = self.files.truncate_logs(self.state.evaluations, self.state.work_lines, kept=fell_back)
        if odd is not None:
            _note(odd)
        self._warn_on_other_threads(session)
        if self.config_changed:
            self.files.write_config(dump_yaml(self.config.to_dict()))
        self.files.record_session(session)
        return True

    def _open_logs(self) -> None:
        s, ro, names = self.state, self.run_opts, self.config.names
        self.logs.open(
            resumed=self.resuming, evaluations=s.evaluations, work_lines=s.work_lines, tensorboard=ro.tensorboard
        )
        label = f"{names['strategy']}/{names['space']}/{names['evaluator']}"
        self.logs.open_progress(label, ro.max_evaluations, s.evaluations, ro.progress and not self.quiet)
        self._last_ckpt = (s.evaluations, time.monotonic())

    def _checkpoint_due(self) -> bool:
        n, t = self._last_ckpt
        every = self.run_opts.checkpoint_every
        if every is not None and self.state.evaluations - n >= every:
            return True
        return time.monotonic() - t >= self.run_opts.checkpoint_seconds

    def _checkpoint(self) -> None:
        self.logs.flush()
        self.files.save_checkpoint(self.state_dict())
        self._last_ckpt = (self.state.evaluations, time.monotonic())

    def _finish(self) -> RunResult:
        """Describe the answer, write best.json, and checkpoint what `resume --budget` continues from:
        the state before the final evaluation, which may train (a supernet path) and must not change
        how an extended search goes on."""
        self.state.finished = True
        snapshot = self.state_dict()
        writer = ResultWriter(self.config, self.parts, self.executor, self.files, self.loop.admit)
        result = writer.result(self.state, self._clock, self.device, self.command)
        result.produced_by = {**(result.produced_by or {}), "run": self.identity}
        self.files.write_result(result)
        self.files.save_final_checkpoint(snapshot)
        return result

    def _summary(self, ran: bool) -> RunSummary:
        result = self.files.read_result() if self.files.is_finished() else None
        return RunSummary(self.run_dir, self.state.evaluations, self.state.stopped_because, result, ran=ran)

    # ---- the folder ------------------------------------------------------------------------------
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
            say(
                f"note: continuing with {recorded} CPU threads as this run recorded (not {wanted}), so its numbers "
                f"match an uninterrupted run; set run.threads in a new run to choose otherwise"
            )
        return recorded

    def _recorded(self, key: str) -> Any:
        """What the last session of this run recorded under `key` in run.json (None if nothing)."""
        sessions = (self.files.read_info() or {}).get("sessions")
        last = sessions[-1] if isinstance(sessions, list) and sessions else None
        return last.get(key) if isinstance(last, dict) else None

    def _result_readable(self) -> bool:
        """Whether a finished run's best.json reads; a damaged (or missing) one is set aside and the
        result is computed again from the final checkpoint (the same numbers: all seeded)."""
        if not self.files.is_finished():
            _note(f"{self.files / RunDir.BEST} is missing; computing the run's result again")
            return False
        try:
            self.files.read_result()
            return True
        except RunDirError as exc:
            kept = self.files.set_aside(RunDir.BEST)
            _note(f"{exc.args[0].split(';')[0]}; kept as {kept.name}, computing the run's result again")
            return False

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
            say(
                f"note: this run continues with {', '.join(changed)}; its numbers may now differ from an "
                f"uninterrupted run"
            )

    def _finished_reason(self) -> str | None:
        """Why a finished run cannot go on: a budget still reached, or a strategy that ran out of
        architectures or ended its search (those stay true whatever the budget)."""
        stopped = self.state.stopped_because
        if stopped == "strategy_done" or stopped.startswith("space_exhausted"):
            return stopped
        return self.loop.stop_reason()

    def _announce(self) -> None:
        """Say up front what the strategy's settings ask for, and when the budget cuts it short."""
        if self.quiet or self.state.evaluations or self.state.work_done:
            return
        strategy, name = self.parts.strategy, self.config.names["strategy"]
        plan = strategy.plan()
        if plan:
            say(f"{name}: {plan}")
        evaluator, training = self.parts.evaluator, strategy.planned_training_epochs()
        if training and isinstance(evaluator, SharedWeights):
            note = evaluator.training_plan_note(training)
            if note:
                say(f"note: {note}")
        planned, budget = strategy.planned_evaluations(), self.run_opts.max_evaluations
        if planned is not None and budget is not None and budget < planned:
            say(
                f"note: {name} plans up to {planned} evaluations but the budget stops it after {budget}; raise "
                f"--budget to let it finish"
            )

    def _nothing_recorded(self) -> bool:
        s = self.state
        return s.evaluations == 0 and s.work_lines == 0 and s.infeasible == 0

    def _consistent(self) -> bool:
        """Whether the current state is a valid checkpoint: between items, or inside the evaluator's
        call with an evaluator that holds no state (then the item simply runs again on resume)."""
        stage = self.loop.stage
        if stage is None:
            return True
        return stage == "executing" and not self.parts.evaluator.holds_state


def _count(n: int) -> str:
    return f"{n} evaluation{'' if n == 1 else 's'}"


def _holds_run_message(run_dir: Path) -> str:
    return f"{run_dir} already holds a run; use `nasframe resume {run_dir}` or another --out"


def _note(message: str) -> None:
    """A one-line note on stderr that even --quiet shows: something was repaired."""
    say(f"note: {message}")


__all__ = ["RunSummary", "Runner"]
