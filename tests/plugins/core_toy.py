"""A tiny space and a scripted evaluator for testing the runner, CLI and plugins.

Loaded with `--plugin tests/plugins/core_toy.py`. The evaluator's accuracy is a known function
of the architecture plus noise drawn from torch's global RNG, so tests can check both the
search logic and the runner's per-evaluation seeding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from nasframe import (
    Arch,
    Decision,
    Evaluator,
    Result,
    SearchSpace,
    option,
    register_evaluator,
    register_space,
)
from nasframe.core.evaluator import Cost


@dataclass(frozen=True)
class ToyOptions:
    decisions: int = option(4, "number of decisions", min=1)
    choices: int = option(3, "choices per decision", min=1)


@register_space("core_toy")
class CoreToySpace(SearchSpace):
    """Decisions d0..dN with choices c0..cK; builds a one-layer net for stats tests."""

    Options = ToyOptions

    def define_decisions(self) -> list[Decision]:
        return [
            Decision(f"d{i}", tuple(f"c{j}" for j in range(self.options.choices)))
            for i in range(self.options.decisions)
        ]

    def named_architectures(self) -> dict[str, Arch]:
        return {"all_first": Arch([(d.name, d.choices[0]) for d in self.define_decisions()])}

    def build(self, arch: Arch, data) -> nn.Module:
        width = 1 + sum(int(str(v)[1:]) for v in arch.values())
        return nn.Sequential(
            nn.Flatten(), nn.Linear(data.channels * data.height * data.width, width), nn.Linear(width, data.num_classes)
        )


@dataclass(frozen=True)
class ToyEvalOptions:
    noise: float = option(0.5, "std of the torch-RNG noise added to the score", min=0)
    sleep: float = option(0.0, "seconds to sleep per evaluation (to test kills)", min=0)
    fail_on: str | None = option(None, "choice that makes an evaluation fail (e.g. c2 on d0)")


@register_evaluator("core_toy_eval")
class CoreToyEvaluator(Evaluator):
    """Accuracy = 10 x (index of the choice, summed over decisions) + noise; one 'epoch' per call."""

    Options = ToyEvalOptions

    def __init__(self, space, options=None, *, data=None, device="cpu"):
        super().__init__(space, options, data=data, device=device)
        self.calls = 0

    def evaluate(self, arch: Arch, budget=None) -> Result:
        self.calls += 1
        if self.options.sleep:
            time.sleep(self.options.sleep)
        if self.options.fail_on is not None and arch["d0"] == self.options.fail_on:
            return Result.failed("scripted failure", Cost(0.0, 1.0))
        score = sum(10.0 * int(str(v)[1:]) for v in arch.values())
        noise = float(torch.randn(()).item()) * self.options.noise
        return Result(metrics={"val_acc": score + noise, "test_acc": score}, cost=Cost(0.001, 1.0))

    def final_metrics(self, arch: Arch) -> dict[str, float]:
        return {"test_acc": sum(10.0 * int(str(v)[1:]) for v in arch.values())}

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = state["calls"]
