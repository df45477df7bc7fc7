"""Cream's distillation on the supernet (`Distillation`; reference 9.5): single-path training in which a
teacher path of the same supernet distils into each step's student."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from nasframe.common import distributed
from nasframe.core.capabilities import Distillation
from nasframe.core.evaluator import WorkReport
from nasframe.core.space import Arch
from nasframe.evaluators.supernet.shared import SharedSupernet, diverged_error
from nasframe.training.step_options import deterministic_mode, resolve_deterministic
from nasframe.training.steps import Diverged, distillation_loss


class SupernetDistillation(SharedSupernet, Distillation):
    """The supernet's `Distillation`: `train_distilled`."""

    def train_distilled(
        self,
        steps: int,
        next_path: Callable[[], Arch],
        teacher: Callable[[], tuple[Arch, float] | None],
        observe: Callable[[Arch, float], None],
        label_smoothing: float,
    ) -> WorkReport:
        """Cream's supernet step (reference 9.5): the student path trains on (m KD + (2 - m) CE) / 2,
        KD from the teacher path's softmax on the same batch, computed by the same supernet in train
        mode without gradient; plain label-smoothed CE while there is no teacher. Each student's
        top-1 on its batch goes to `observe` after its step (one host sync per step: the board needs it)."""
        start = time.perf_counter()
        self._notes = []
        distilled = _DistilledSteps(self, next_path, teacher, observe, label_smoothing)
        with deterministic_mode(resolve_deterministic(self.options, self.device)):
            self._build()
            spe = self._steps_per_epoch()
            try:
                stats = self._train(
                    steps,
                    distilled.params_for,
                    lambda: list(self._params.values()),
                    loss_for=distilled.loss_for,
                    after_step=distilled.after_step,
                )
            except Diverged as exc:
                raise diverged_error(exc) from None
        return self._work_report(start, steps, spe, stats)


class _DistilledSteps:
    """The per-step callbacks of one `train_distilled` call: each step's student and its teacher are
    picked before the step, and the student's top-1 is observed after it."""

    def __init__(
        self,
        ev: SharedSupernet,
        next_path: Callable[[], Arch],
        teacher: Callable[[], tuple[Arch, float] | None],
        observe: Callable[[Arch, float], None],
        label_smoothing: float,
    ):
        self.ev = ev
        self.next_path, self.teacher, self.observe = next_path, teacher, observe
        self.label_smoothing = label_smoothing
        self.students: dict[int, tuple[Arch, tuple[Arch, float] | None]] = {}

    def params_for(self, i: int) -> Sequence[torch.Tensor]:
        arch = self.next_path()
        self.students[i] = (arch, self.teacher())
        self.ev.supernet.set_path(arch)
        return self.ev.path_params(arch)

    def loss_for(self, i: int, x: torch.Tensor, out: Any, y: torch.Tensor) -> torch.Tensor:
        student, picked = self.students[i]
        logits = (out[0] if isinstance(out, (tuple, list)) else out).float()  # auxiliary logits: not distilled
        if picked is None:
            return torch.nn.functional.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        teacher_arch, m = picked
        net = self.ev.supernet
        net.set_path(teacher_arch)
        with torch.no_grad():
            t_out = net(x)
            t_logits = t_out[0] if isinstance(t_out, (tuple, list)) else t_out
            soft = torch.softmax(t_logits.float(), dim=-1)
        net.set_path(student)
        return distillation_loss(logits, soft, y, m, self.label_smoothing)

    def after_step(self, i: int, out: Any, y: torch.Tensor) -> None:
        logits = out[0] if isinstance(out, (tuple, list)) else out
        correct = (logits.argmax(dim=-1) == y).float().mean()
        # under torchrun: the global batch's top-1, so the board stays the same on every process
        self.observe(self.students.pop(i)[0], float(distributed.average_(correct)) * 100.0)
