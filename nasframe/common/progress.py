"""The run's progress bar: evaluations done, the phase the strategy is in, and an ETA.

One tqdm bar counts evaluations against the budget (its ETA comes from the evaluation rate).
While the runner executes weight-sharing work, the bar's text shows the work's own progress
and an estimate of the time left in it, from the pieces done so far. On anything but a terminal
the bar hides itself, so logs stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def format_seconds(seconds: float) -> str:
    """12 -> '12s', 754 -> '12m34s', 7384 -> '2h03m'."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """A tqdm bar over evaluations, with phase names and work progress (or nothing when disabled)."""

    def __init__(self, label: str, total: int | None, initial: int, enabled: bool, unit: str = "eval"):
        self.label = label
        self._bar: Any = None
        self._phase = ""
        self._best: float | None = None
        if enabled:
            from tqdm import tqdm

            # disable=None: tqdm hides itself when stderr is not a terminal
            self._bar = tqdm(
                total=total, initial=initial, desc=label, unit=unit, disable=None, file=sys.stderr, dynamic_ncols=True
            )

    def phase(self, name: str) -> None:
        if self._bar is not None and name != self._phase:
            self._phase = name
            self._bar.set_description(f"{self.label} [{name}]", refresh=False)

    def evaluated(self, best: float | None) -> None:
        if self._bar is None:
            return
        self._best = best
        self._bar.set_postfix_str(f"best={best:.2f}" if best is not None else "", refresh=False)
        self._bar.update(1)

    def work(self, done: float, total: float, unit: str, seconds_so_far: float) -> None:
        """Show `done`/`total` of a piece of work with the time left at the rate so far."""
        if self._bar is None:
            return
        left = ""
        if done > 0 and total > done:
            left = f", ~{format_seconds(seconds_so_far / done * (total - done))} left"
        best = f"best={self._best:.2f}, " if self._best is not None else ""
        self._bar.set_postfix_str(f"{best}{done:g}/{total:g} {unit}{left}", refresh=True)

    def update(self, n: int = 1) -> None:
        """Count `n` more units done (training steps for `nasframe train`)."""
        if self._bar is not None:
            self._bar.update(n)

    def note(self, text: str) -> None:
        """Show `text` after the bar (e.g. the last epoch's loss)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Stopwatch:
    """Monotonic seconds since creation, offset by time already spent before a resume."""

    def __init__(self, already: float = 0.0):
        self._start = time.monotonic() - already

    def __call__(self) -> float:
        return time.monotonic() - self._start
