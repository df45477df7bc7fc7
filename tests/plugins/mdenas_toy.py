"""A toy space with one strictly better op per decision, and an evaluator that scores it.

Loaded with `--plugin tests/plugins/mdenas_toy.py` (or `plugins:` in a config). Accuracy is
`signal` x (fraction of decisions choosing 'good') plus uniform noise in [0, noise) from torch's
global RNG, which the runner seeds per evaluation, so runs are reproducible and resumable
(`signal` 0 gives a noise-only control).
"""

from __future__ import annotations

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
class MdenasToyOptions:
    decisions: int = option(3, "number of decisions", min=1)
    choices: int = option(4, "choices per decision, one of them 'good'", min=2)
    good_index: int = option(
        2, "position of 'good' among the choices (not first, so argmax ties cannot find it)", min=0
    )


@register_space("mdenas_toy")
class MdenasToySpace(SearchSpace):
    """Decisions d0..dN; choices bad0, bad1, ... with 'good' at `good_index`."""

    Options = MdenasToyOptions

    def define_decisions(self) -> list[Decision]:
        o = self.options
        names = [f"bad{k}" for k in range(o.choices - 1)]
        names.insert(min(o.good_index, o.choices - 1), "good")
        return [Decision(f"d{i}", tuple(names)) for i in range(o.decisions)]

    def build(self, arch: Arch, data) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(data.channels * data.height * data.width, data.num_classes))


@dataclass(frozen=True)
class MdenasToyEvalOptions:
    signal: float = option(100.0, "accuracy of an all-'good' architecture (0: noise only, a null control)", min=0)
    noise: float = option(1.0, "width of the uniform noise added to the accuracy", min=0)
    fail_every: int | None = option(None, "every n-th evaluation fails (to test failure handling)", min=1)


@register_evaluator("mdenas_toy_eval")
class MdenasToyEvaluator(Evaluator):
    """Accuracy = signal x fraction of decisions on 'good' + noise; one epoch per call."""

    Options = MdenasToyEvalOptions

    def __init__(self, space, options=None, *, data=None, device="cpu"):
        super().__init__(space, options, data=data, device=device)
        self.calls = 0

    def evaluate(self, arch: Arch, budget=None) -> Result:
        self.calls += 1
        if self.options.fail_every and self.calls % self.options.fail_every == 0:
            return Result.failed("scripted failure", Cost(0.0, 1.0))
        score = self.options.signal * sum(v == "good" for v in arch.values()) / len(arch)
        noise = float(torch.rand(())) * self.options.noise
        return Result(metrics={"val_acc": score + noise}, cost=Cost(0.0, 1.0))

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = state["calls"]
