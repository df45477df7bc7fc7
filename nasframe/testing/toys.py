"""A toy space and a network-free evaluator that answers every request of the one-shot protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nasframe.common.errors import NotSupported
from nasframe.core.angles import angle
from nasframe.core.capabilities import (
    AlphaOptimizer,
    AngleMetric,
    BNRecalibration,
    BranchImportance,
    Differentiable,
    Distillation,
    ImportanceSettings,
)
from nasframe.core.evaluator import Budget, Cost, Evaluator, Result, WorkReport
from nasframe.core.multibranch import BranchCosts, MultiBranchSpace
from nasframe.core.space import Arch, Decision, SearchSpace
from nasframe.data import DataSpec


class ToySpace(SearchSpace):
    """`decisions` decisions d0.. with choices op0..; a tiny network whose width grows with the choices."""

    def __init__(self, decisions: int = 4, choices: int = 3):
        super().__init__(None)
        self.n_decisions, self.n_choices = decisions, choices

    def define_decisions(self) -> list[Decision]:
        ops = tuple(f"op{j}" for j in range(self.n_choices))
        return [Decision(f"d{i}", ops) for i in range(self.n_decisions)]

    def build(self, arch: Arch, data: DataSpec) -> nn.Module:
        width = 1 + sum(int(str(c)[2:]) for c in arch.values())
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(data.channels * data.height * data.width, width),
            nn.ReLU(),
            nn.Linear(width, data.num_classes),
        )


def scripted_accuracy(arch: Arch) -> float:
    """A deterministic score for toy architectures: 10 x the mean choice index (op0 < op1 < ...)."""
    values = [int(str(c)[2:]) if str(c).startswith("op") else 0 for c in arch.values()]
    return 10.0 * sum(values) / max(1, len(values))


def scripted_importance_round(
    space: SearchSpace, steps: int, state: dict[str, Any], optimizer: AlphaOptimizer, steps_per_epoch: int
) -> WorkReport:
    """A network-free `BranchImportance.train_importance` for strategy tests on a multi-branch space:
    the logits of even ops rise and those of odd ops fall by lr x steps (plus a little noise from torch's
    global RNG), nothing is pruned, and op j of every cell costs (j + 1) million MACs and parameters."""
    if not isinstance(space, MultiBranchSpace):
        raise NotSupported(f"scripted importance learning needs a multi-branch space, not {space.name!r}")
    cells = space.branch_cells()
    alphas = state["alphas"].detach().clone().float()
    ramp = torch.tensor([1.0 if j % 2 == 0 else -1.0 for j in range(alphas.shape[1])])
    alphas += optimizer.lr * steps * ramp + 1e-4 * torch.randn(alphas.shape)
    per_op = tuple(tuple(float(j + 1) * 1e6 for j in range(len(c.gates))) for c in cells)
    costs = BranchCosts(0.0, 0.0, per_op, per_op)
    new_state = {
        **state,
        "alphas": alphas,
        "iteration": int(state["iteration"]) + steps,
        "fresh": False,
        "costs": costs.to_state(),
    }
    return WorkReport(Cost(0.0, steps / steps_per_epoch), {"train_loss": 1.0}, state=new_state)


class ScriptedSharedWeights(Evaluator, AngleMetric, Differentiable, Distillation, BranchImportance):
    """A weight-sharing evaluator without a network, for testing one-shot strategies on any space.

    Every (decision, choice) owns a small weight vector; training moves the vectors of the choices
    the drawn paths use by random steps (torch's global RNG, which the runner seeds); a path's angle
    is measured on the concatenation of its choices' vectors; its score is `scripted_accuracy` plus
    a little noise. One evaluation or one scoring costs one epoch.
    """

    def __init__(
        self,
        space: SearchSpace,
        options: Any = None,
        *,
        data: Any = None,
        device: Any = "cpu",
        dim: int = 4,
        paths_per_epoch: int = 16,
    ):
        super().__init__(space, options, data=data, device=device)
        g = torch.Generator().manual_seed(0)
        self.current = {(d.name, c): torch.randn(dim, generator=g) for d in space.define_decisions() for c in d.choices}
        self.base = {k: v.clone() for k, v in self.current.items()}
        self.paths_per_epoch = paths_per_epoch
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        self._count("evaluate")
        noise = 0.1 * float(torch.rand(()))
        return Result(metrics={"val_acc": scripted_accuracy(arch) + noise}, cost=Cost(0.0, 1.0))

    def steps_per_epoch(self) -> int:
        return self.paths_per_epoch

    def train_paths(self, steps: int, next_path: Callable[[], Arch]) -> WorkReport:
        self._count("train_paths")
        for _ in range(steps):
            for item in next_path().items():
                self.current[item] += 0.05 * torch.randn(self.current[item].shape)
        return WorkReport(Cost(0.0, steps / self.paths_per_epoch), {"train_loss": 1.0})

    def score_path(self, arch: Arch, recalibration: BNRecalibration | None) -> Result:
        self._count("score_path")
        return self.evaluate(arch)

    def train_mixed(
        self,
        steps: int,
        state: dict[str, Any],
        order: int,
        optimizer: AlphaOptimizer,
        next_path: Callable[[], Arch] | None,
    ) -> WorkReport:
        """Moves each alpha toward its higher choices (`scripted_accuracy` prefers them), with a little
        noise; trains the vectors of the paths `next_path` draws, if any."""
        self._count("train_mixed")
        alphas = {}
        for name, logits in state["alphas"].items():
            ramp = torch.linspace(-0.5, 0.5, len(logits))
            alphas[name] = logits + optimizer.lr * steps * ramp + 1e-4 * torch.randn(len(logits))
        if next_path is not None:
            for _ in range(steps):
                for item in next_path().items():
                    self.current[item] += 0.05 * torch.randn(self.current[item].shape)
        new_state = {"choices": state["choices"], "alphas": alphas, "adam": state.get("adam")}
        return WorkReport(Cost(0.0, steps / self.paths_per_epoch), {"train_loss": 1.0}, state=new_state)

    def train_distilled(
        self,
        steps: int,
        next_path: Callable[[], Arch],
        teacher: Callable[[], tuple[Arch, float] | None],
        observe: Callable[[Arch, float], None],
        label_smoothing: float,
    ) -> WorkReport:
        """Trains the drawn paths' vectors as `train_paths` does (a teacher pulls them a little toward
        its own); each student's training top-1 is `scripted_accuracy` plus noise."""
        self._count("train_distilled")
        for _ in range(steps):
            arch = next_path()
            picked = teacher()
            for item in arch.items():
                self.current[item] += 0.05 * torch.randn(self.current[item].shape)
                if picked is not None and item in picked[0].items():
                    self.current[item] *= 0.99
            observe(arch, scripted_accuracy(arch) + 10.0 * float(torch.rand(())))
        return WorkReport(Cost(0.0, steps / self.paths_per_epoch), {"train_loss": 1.0})

    def train_importance(
        self, steps: int, state: dict[str, Any], settings: ImportanceSettings, optimizer: AlphaOptimizer
    ) -> WorkReport:
        """`scripted_importance_round` (multi-branch spaces only)."""
        self._count("train_importance")
        return scripted_importance_round(self.space, steps, state, optimizer, self.paths_per_epoch)

    def save_base_weights(self) -> None:
        self._count("save_base_weights")
        self.base = {k: v.clone() for k, v in self.current.items()}

    def path_angles(self, archs: Sequence[Arch]) -> list[float]:
        self._count("path_angles")
        return [
            float(angle(torch.cat([self.base[i] for i in a.items()]), torch.cat([self.current[i] for i in a.items()])))
            for a in archs
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            "current": [[list(k), v] for k, v in self.current.items()],
            "base": [[list(k), v] for k, v in self.base.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current = {(str(k[0]), k[1]): v.clone() for k, v in state["current"]}
        self.base = {(str(k[0]), k[1]): v.clone() for k, v in state["base"]}
