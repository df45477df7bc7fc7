"""A stateless scripted evaluator for the executor tests: it can hang, die, or raise on a chosen choice.

Loaded with `--plugin tests/plugins/faulty_toy.py` (the core toy plugin supplies the space). Its
accuracy is the core toy's (10 x the choice indices, plus torch-RNG noise), so a seeded run gives the
same history in this process and in a Ray worker. `die_on` makes the worker process kill itself
(SIGKILL) the first `die_times` times it evaluates an architecture with that choice on d0; the count
is kept in files under `marks` because each attempt runs in a fresh worker process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nasframe import Arch, Evaluator, Result, option, register_evaluator
from nasframe.common.errors import ConfigError
from nasframe.core.evaluator import Cost


@dataclass(frozen=True)
class FaultyOptions:
    noise: float = option(0.5, "std of the torch-RNG noise added to the score", min=0)
    sleep: float = option(0.0, "seconds to sleep per evaluation", min=0)
    hang_on: str | None = option(None, "choice on d0 whose evaluation sleeps for an hour")
    die_on: str | None = option(None, "choice on d0 whose evaluation kills its own process")
    die_times: int = option(1, "how many attempts die_on kills", min=0)
    marks: str = option("", "folder counting the die_on attempts")
    raise_on: str | None = option(None, "choice on d0 whose evaluation raises a ConfigError")
    bug_on: str | None = option(None, "choice on d0 whose evaluation raises a ValueError (a plugin's bug)")
    exit_on: str | None = option(None, "choice on d0 whose evaluation calls sys.exit")


@register_evaluator("faulty_toy_eval")
class FaultyToyEvaluator(Evaluator):
    """Accuracy = 10 x (index of the choice, summed over decisions) + noise; holds no state."""

    Options = FaultyOptions
    holds_state = False

    def evaluate(self, arch: Arch, budget=None) -> Result:
        o, first = self.options, arch["d0"]
        if o.sleep:
            time.sleep(o.sleep)
        if first == o.hang_on:
            time.sleep(3600)
        if first == o.raise_on:
            raise ConfigError(f"faulty_toy_eval: scripted error on {first}")
        if first == o.bug_on:
            raise ValueError(f"scripted bug on {first}")
        if first == o.exit_on:
            sys.exit(f"scripted exit on {first}")
        if first == o.die_on:
            marks, name = Path(o.marks), hashlib.sha1(arch.key().encode()).hexdigest()[:12]
            attempts = len(list(marks.glob(f"{name}-*")))
            if attempts < o.die_times:
                (marks / f"{name}-{attempts}").touch()
                os.kill(os.getpid(), signal.SIGKILL)
        score = sum(10.0 * int(str(v)[1:]) for v in arch.values())
        noise = float(torch.randn(()).item()) * o.noise
        return Result(metrics={"val_acc": score + noise, "test_acc": score}, cost=Cost(0.001, 1.0))

    def final_metrics(self, arch: Arch) -> dict[str, float]:
        return {"test_acc": sum(10.0 * int(str(v)[1:]) for v in arch.values())}
