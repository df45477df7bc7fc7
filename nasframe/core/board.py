"""Cream's prioritized path board: the best paths seen in training, the teachers of the others.

Peng et al., "Cream of the Crop: Distilling Prioritized Paths For One-Shot Neural Architecture
Search" (NeurIPS 2020), as its released trainer keeps the board (reference algorithms-2.md 9.3,
9.4). The board is plain data that travels with a `TrainDistilled` request: the runner executes the
training steps, the board picks each step's teacher and is offered each step's student, and the
updated board comes back to the strategy in the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nasframe.common.errors import ConfigError
from nasframe.core.space import Arch, Choice, SearchSpace


@dataclass
class BoardEntry:
    """A path on the board: its training-batch top-1 (percent), its MACs, the architecture, and its
    choice indices (per decision, in the space's order, the index of its choice)."""

    prec1: float
    macs: float
    arch: Arch
    indices: tuple[int, ...] = ()

    def key(self) -> tuple[float, float, tuple[int, ...]]:
        """The board's order, as the reference's tuple sort of (top-1, top-1, FLOPs, op-index lists): top-1
        first, then the larger MACs, then the larger choice indices, compared decision by decision."""
        return (self.prec1, self.macs, self.indices)


@dataclass
class PrioritizedBoard:
    """At most `size` paths, best first.

    A student enters when the board is not full, or its top-1 beats the worst entry's by more than
    `acc_gap`, or beats it with fewer MACs (reference PrioritizedBoard.isUpdate); then the board is
    sorted by (top-1, MACs, choice indices), descending, and cut to `size`. `choices` (decision name ->
    its choices, in the space's order) gives the choice indices; without it, entries that tie on top-1
    and MACs keep the order they entered in. The teacher is the first entry with
    distillation weight 0.5 (the reference's `top1` pick method; its `meta` method is not built,
    see docs/strategies/cream.md).
    """

    size: int = 10
    acc_gap: float = 5.0
    entries: list[BoardEntry] = field(default_factory=list)
    choices: dict[str, tuple[Choice, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"prioritized board: size must be at least 1, got {self.size}")
        if not (math.isfinite(self.acc_gap) and self.acc_gap >= 0):
            raise ConfigError(f"prioritized board: acc_gap must be a non-negative number, got {self.acc_gap}")
        self._index = {name: {c: i for i, c in enumerate(cs)} for name, cs in self.choices.items()}
        for e in self.entries:
            e.indices = self.indices(e.arch)

    @classmethod
    def for_space(cls, space: SearchSpace[Any], size: int = 10, acc_gap: float = 5.0) -> PrioritizedBoard:
        """An empty board that breaks ties by the choice indices of `space`'s decisions."""
        return cls(size, acc_gap, choices={d.name: tuple(d.choices) for d in space.decisions})

    def indices(self, arch: Arch) -> tuple[int, ...]:
        """Per decision of `choices`, in order, the index of `arch`'s choice (empty without `choices`)."""
        return tuple(self._index[name][arch[name]] for name in self._index)

    def teacher(self) -> tuple[Arch, float] | None:
        """(teacher path, distillation weight m), or None while the board is empty (plain CE then)."""
        return (self.entries[0].arch, 0.5) if self.entries else None

    def offer(self, arch: Arch, prec1: float, macs_of: Callable[[Arch], float]) -> bool:
        """Offer a trained student; True when it entered. `macs_of` is asked only when the rule
        needs the student's MACs (a comparison with the worst entry, or an insertion)."""
        if len(self.entries) >= self.size:
            worst = self.entries[-1]
            if not (prec1 > worst.prec1 + self.acc_gap or (prec1 > worst.prec1 and macs_of(arch) < worst.macs)):
                return False
        self.entries.append(BoardEntry(float(prec1), float(macs_of(arch)), arch, self.indices(arch)))
        self.entries.sort(key=BoardEntry.key, reverse=True)  # stable: an equal newcomer goes after
        del self.entries[self.size :]  # a full board drops its worst, never the newcomer (it beat the worst)
        return True

    # ---- plain data ---------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "acc_gap": self.acc_gap,
            "entries": [[e.prec1, e.macs, [list(p) for p in e.arch.items()]] for e in self.entries],
            "choices": [[name, list(cs)] for name, cs in self.choices.items()],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> PrioritizedBoard:
        entries = [
            BoardEntry(float(p), float(m), Arch([(str(k), v) for k, v in pairs])) for p, m, pairs in state["entries"]
        ]
        choices = {str(name): tuple(cs) for name, cs in state.get("choices", [])}
        return cls(int(state["size"]), float(state["acc_gap"]), entries, choices)

    def archs(self) -> Sequence[Arch]:
        return [e.arch for e in self.entries]
