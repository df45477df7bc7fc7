"""A toy space and a fake weight-sharing evaluator whose path vectors the ABS tests control.

Loaded with `--plugin tests/plugins/abs_fakes.py` (or `load_plugin`). Every (decision, choice)
owns a small weight vector; a path's vector is a fixed frame vector followed by the vectors of
its choices ('zero' and 'none' add nothing, like an identity block). `train_paths` draws one path
per step (64 steps an epoch) and moves the vector of every choice they used by a random step from
torch's global RNG, choice j of a decision moving (1 + j) times as far (option `spread`), except
operators listed as frozen, which never move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from nasframe import Arch, Decision, Evaluator, Result, SearchSpace, option, register_evaluator, register_space
from nasframe.core.capabilities import AngleMetric, BranchImportance, Differentiable, Distillation
from nasframe.core.evaluator import Cost, WorkReport
from nasframe.testing import scripted_importance_round

EMPTY = ("zero", "none")


@dataclass(frozen=True)
class AbsToyOptions:
    decisions: int = option(4, "number of decisions", min=1)
    choices: int = option(3, "ordinary choices per decision (op0, op1, ...)", min=1)
    zero_on: list[int] = option(default_factory=list, help="decisions that also offer 'zero' (identity)")


@register_space("abs_toy")
class AbsToySpace(SearchSpace):
    """Decisions d0..dN with choices op0..opK, plus 'zero' on the decisions listed in zero_on."""

    Options = AbsToyOptions

    def define_decisions(self) -> list[Decision]:
        ops = tuple(f"op{j}" for j in range(self.options.choices))
        return [
            Decision(f"d{i}", ops + (("zero",) if i in self.options.zero_on else ()))
            for i in range(self.options.decisions)
        ]

    def build(self, arch: Arch, data) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(data.channels * data.height * data.width, data.num_classes))


@dataclass(frozen=True)
class FakeWSOptions:
    dim: int = option(4, "elements per operator vector", min=1)
    frozen: list[str] = option(default_factory=list, help="operators 'decision=choice' that never move")
    step: float = option(0.05, "size of a training move per epoch", min=0)
    spread: bool = option(True, "choice j of a decision moves (1 + j) times as far; false: all alike")


@register_evaluator("abs_fake_ws")
class FakeWeightSharing(Evaluator, AngleMetric, Differentiable, Distillation, BranchImportance):
    """Weight sharing without a network: per-operator vectors, random-walk training, a scripted accuracy."""

    Options = FakeWSOptions
    #: training steps (one path each) per epoch: enough to use every allowed choice of the toy spaces
    paths_per_epoch = 64

    def __init__(self, space, options=None, *, data=None, device="cpu"):
        super().__init__(space, options, data=data, device=device)
        g = torch.Generator().manual_seed(1234)
        dim = self.options.dim
        self.frame = torch.randn(3 * dim, generator=g)
        self.current = {
            f"{d.name}={c}": torch.randn(dim, generator=g)
            for d in space.define_decisions()
            for c in d.choices
            if c not in EMPTY
        }
        self.base = {k: v.clone() for k, v in self.current.items()}
        self.frame_base = self.frame.clone()
        self.trained: list[tuple[float, float]] = []  # (log10 size of the space trained on, epochs)
        self.resets = 0

    def steps_per_epoch(self) -> int:
        return self.paths_per_epoch

    def train_paths(self, steps, next_path) -> WorkReport:
        frozen, o = set(self.options.frozen), self.options
        epochs = steps / self.paths_per_epoch
        seen: dict[str, set] = {}
        for _ in range(steps):
            for name, choice in next_path().items():
                seen.setdefault(name, set()).add(choice)
        for d in self.space.define_decisions():
            for j, c in enumerate(d.choices):
                key = f"{d.name}={c}"
                if c in EMPTY or key in frozen or c not in seen.get(d.name, ()):
                    continue
                self.current[key] += torch.randn(o.dim) * o.step * epochs * (1 + j if o.spread else 1)
        self.frame += torch.randn(self.frame.shape) * self.options.step * epochs
        self.trained.append((sum(math.log10(len(v)) for v in seen.values()), float(epochs)))
        return WorkReport(Cost(0.0, float(epochs)), {"train_loss": 1.0})

    def score_path(self, arch: Arch, recalibration) -> Result:
        return self.evaluate(arch)

    def train_mixed(self, steps, state, order, optimizer, next_path) -> WorkReport:
        """Moves each alpha toward its higher choices by lr per step, plus torch-RNG noise."""
        alphas = {
            n: a + optimizer.lr * steps * torch.linspace(-0.5, 0.5, len(a)) + 1e-4 * torch.randn(len(a))
            for n, a in state["alphas"].items()
        }
        epochs = steps / self.paths_per_epoch
        return WorkReport(Cost(0.0, epochs), {"train_loss": 1.0}, state={**state, "alphas": alphas})

    def train_importance(self, steps, state, settings, optimizer) -> WorkReport:
        """NSE's round, scripted (`nasframe.testing.scripted_importance_round`; multi-branch spaces only)."""
        return scripted_importance_round(self.space, steps, state, optimizer, self.paths_per_epoch)

    def train_distilled(self, steps, next_path, teacher, observe, label_smoothing) -> WorkReport:
        """Trains like `train_paths`, asking the teacher before each step and reporting each student's
        scripted accuracy after it."""
        drawn = []

        def path():
            teacher()
            drawn.append(next_path())
            return drawn[-1]

        report = self.train_paths(steps, path)
        for arch in drawn:
            observe(arch, float(self.evaluate(arch).metrics["val_acc"]))
        return report

    def _parts(self, arch: Arch, table: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [table[f"{n}={c}"] for n, c in arch.items() if c not in EMPTY]

    def path_vectors(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.cat([self.frame_base, *self._parts(arch, self.base)]),
            torch.cat([self.frame, *self._parts(arch, self.current)]),
        )

    def path_angles(self, archs) -> list[float]:
        from nasframe.core.angles import angle

        return [float(angle(*self.path_vectors(a))) for a in archs]

    def save_base_weights(self) -> None:
        self.base = {k: v.clone() for k, v in self.current.items()}
        self.frame_base = self.frame.clone()
        self.resets += 1

    def evaluate(self, arch: Arch, budget=None) -> Result:
        score = sum(float(str(c)[2:]) if str(c).startswith("op") else 0.0 for c in arch.values())
        return Result(metrics={"val_acc": score + 0.1 * float(torch.rand(()))}, cost=Cost(0.0, 1.0))

    def state_dict(self) -> dict:
        return {
            "current": dict(self.current),
            "base": dict(self.base),
            "frame": self.frame,
            "frame_base": self.frame_base,
            "resets": self.resets,
            "trained": [list(t) for t in self.trained],
        }

    def load_state_dict(self, state: dict) -> None:
        self.current = {k: v.clone() for k, v in state["current"].items()}
        self.base = {k: v.clone() for k, v in state["base"].items()}
        self.frame, self.frame_base = state["frame"].clone(), state["frame_base"].clone()
        self.resets = state["resets"]
        self.trained = [tuple(t) for t in state["trained"]]
