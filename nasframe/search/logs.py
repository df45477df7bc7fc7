"""What a run writes as it goes: history.jsonl, work.jsonl, TensorBoard events and the progress bar.

The loop hands each outcome to `RunLogs` once it is final; nothing here changes what a run
computes. TensorBoard's writer costs about 50 us a scalar, so with evaluations faster than that
(tables) evaluations are logged at most every `run.tensorboard_interval` seconds, new bests always.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np
import torch

from nasframe.common import distributed
from nasframe.common.progress import Progress, format_seconds
from nasframe.core.evaluator import Result, WorkReport
from nasframe.core.requests import Request
from nasframe.search.executor import WorkProgress
from nasframe.search.records import EvaluationRecord, WorkRecord
from nasframe.search.rundir import RunDir


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class RunLogs:
    """The open log files, TensorBoard writers and progress bar of one session of a run."""

    def __init__(self, files: RunDir, *, quiet: bool, tensorboard_interval: float):
        self.files = files
        self.quiet = quiet
        self.tensorboard_interval = tensorboard_interval
        self.progress: Progress | None = None
        self._history: Any = None
        self._worklog: Any = None
        self._writers: dict[str, Any] = {}
        self._last_tb = float("-inf")
        self._last_flush = time.monotonic()

    # ---- opening and closing -------------------------------------------------------------------
    def open(self, *, resumed: bool, evaluations: int, work_lines: int, tensorboard: bool) -> None:
        self._history = self.files.open_log(RunDir.HISTORY)
        self._worklog = self.files.open_log(RunDir.WORK)
        if tensorboard and distributed.is_writer():
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events logged after the checkpoint we resumed from
            tb = self.files.path / RunDir.TENSORBOARD
            self._writers = {
                "search": SummaryWriter(str(tb), purge_step=evaluations if resumed else None),
                "work": SummaryWriter(str(tb / "work"), purge_step=work_lines if resumed else None),
            }

    def open_progress(self, label: str, total: int | None, done: int, show: bool) -> None:
        self.progress = Progress(label, total, done, show)

    def close(self) -> None:
        """Close the log files and the progress bar (the writers stay open for the final result)."""
        for handle in (self._history, self._worklog):
            if handle is not None:
                handle.close()
        self._history = self._worklog = None
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def flush(self) -> None:
        """Flush both logs (before a checkpoint, which must not cover lines still in a buffer)."""
        for handle in (self._history, self._worklog):
            if handle is not None:
                handle.flush()

    def flush_history_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._last_flush > 1.0:
            self._history.flush()
            self._last_flush = now

    # ---- records ---------------------------------------------------------------------------------
    def evaluation(self, record: EvaluationRecord, result: Result, extra: dict[str, Any], improved: bool) -> None:
        """One evaluation: its history line, notes, TensorBoard scalars and the progress bar."""
        self._history.write(record.to_json() + "\n")
        self.notes(result.notes)
        writer = self._writers.get("search")
        if writer is not None and (improved or time.monotonic() - self._last_tb >= self.tensorboard_interval):
            _tensorboard_evaluation(writer, record.index, result, extra, record.best_val_acc)
            self._last_tb = time.monotonic()
        if self.progress is not None:
            self.progress.evaluated(record.best_val_acc)

    def work(self, record: WorkRecord, request: Request, report: WorkReport, line: int, work_epochs: float) -> None:
        """One piece of work: its work.jsonl line, notes and TensorBoard scalars."""
        self._worklog.write(record.to_json() + "\n")
        self.notes(report.notes)
        self._worklog.flush()
        writer = self._writers.get("work")
        if writer is not None:
            for key, value in report.metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(f"work/{request.kind}/{key}", value, line)
            writer.add_scalar("work/supernet_epochs", work_epochs, line)

    def training(self, request: Request, progress: WorkProgress, planned_epochs: float) -> None:
        """The progress bar's work text, and once per request an estimate of the time left."""
        if self.progress is not None:
            self.progress.work(round(progress.done_epochs, 3), planned_epochs, "epochs", progress.seconds)
        left = progress.seconds / progress.done * (progress.steps - progress.done)
        if progress.piece == 1 and left > 60 and not self.quiet:  # an estimate for logs too
            say(
                f"{request.phase}: {progress.seconds / progress.done_epochs:.1f} s per epoch, about "
                f"{format_seconds(left)} left in this phase ({planned_epochs:g} epochs)"
            )

    def notes(self, notes: list[str]) -> None:
        if not self.quiet:
            for note in notes:
                say(f"note: {note}")


def _tensorboard_evaluation(writer: Any, index: int, result: Result, extra: dict[str, Any], best: float | None) -> None:
    acc = result.accuracy
    if acc is not None:
        writer.add_scalar("search/val_acc", acc, index)
    if best is not None:
        writer.add_scalar("search/best_val_acc", best, index)
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
