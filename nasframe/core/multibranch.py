"""Multi-branch decisions: a cell that may run several of its candidate ops at once (NSE).

The architecture encoding stays one choice per decision. A multi-branch cell is a group of binary
decisions, one gate per candidate op (`OFF` = 0, `ON` = 1), named in the cell's op order; a cell's
branches are the ops whose gate is on. So single-choice spaces and every strategy written for them
are untouched, a restriction of a gate to (0,) removes an op from the search (NSE's active subset),
and a random or evolutionary strategy searches multi-branch spaces as they are.

A space declares the grouping by inheriting `MultiBranchSpace` (checked with `isinstance`, like
`TabularSpace`); its supernet implements `MultiBranchSupernet`, the contract an evaluator's importance
learning needs (the two-sample forward and per-op costs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasframe.core.space import Arch, Choice, Supernet

if TYPE_CHECKING:
    import torch

OFF: Choice = 0
ON: Choice = 1


@dataclass(frozen=True)
class BranchCell:
    """One multi-branch cell: its gate decisions (one per candidate op, in op order) and whether it is
    residual (stride 1, width kept: the input joins the mean of the branches, and no branch at all is
    allowed: the cell is then the identity)."""

    name: str
    gates: tuple[str, ...]
    residual: bool


class MultiBranchSpace(ABC):
    """Space capability: its decisions are the gates of multi-branch cells (see the module docstring)."""

    @abstractmethod
    def branch_cells(self) -> list[BranchCell]:
        """Every cell, in network order; together their gates are exactly the space's decisions."""


def branches_of(cells: Sequence[BranchCell], arch: Mapping[str, Choice]) -> list[list[int]]:
    """The op indices whose gate is on, per cell."""
    items = arch.to_dict() if isinstance(arch, Arch) else arch  # an Arch lookup scans its pairs
    return [[j for j, g in enumerate(cell.gates) if items[g] == ON] for cell in cells]


def arch_of(cells: Sequence[BranchCell], branches: Sequence[Sequence[int]]) -> Arch:
    """The architecture whose cells run exactly `branches` (op indices per cell)."""
    if len(branches) != len(cells):
        raise ValueError(f"expected branches for {len(cells)} cells, got {len(branches)}")
    items: list[tuple[str, Choice]] = []
    for cell, on in zip(cells, branches):
        chosen = set(on)
        items += [(g, ON if j in chosen else OFF) for j, g in enumerate(cell.gates)]
    return Arch(items)


@dataclass(frozen=True)
class BranchCosts:
    """Per-op costs of a multi-branch supernet's stand-alone networks: a network's count is `base` plus
    the sum over cells of its branches' entries (the mean of branches costs no MAC in the Conv/Linear
    convention)."""

    base_macs: float
    base_params: float
    macs: tuple[tuple[float, ...], ...]  # [cell][op]
    params: tuple[tuple[float, ...], ...]

    def of(self, branches: Sequence[Sequence[int]]) -> tuple[float, float]:
        """(MACs, parameters) of the network running `branches`."""
        macs = self.base_macs + sum(self.macs[c][j] for c, on in enumerate(branches) for j in on)
        params = self.base_params + sum(self.params[c][j] for c, on in enumerate(branches) for j in on)
        return macs, params

    def to_state(self) -> dict[str, Any]:
        return {
            "base_macs": self.base_macs,
            "base_params": self.base_params,
            "macs": [list(r) for r in self.macs],
            "params": [list(r) for r in self.params],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BranchCosts:
        return cls(
            float(state["base_macs"]),
            float(state["base_params"]),
            tuple(tuple(float(x) for x in row) for row in state["macs"]),
            tuple(tuple(float(x) for x in row) for row in state["params"]),
        )


class MultiBranchSupernet(Supernet):
    """Supernet contract of a `MultiBranchSpace`: runs a set of branches per cell, and the two-sample
    straight-through forward of NSE's importance learning."""

    @abstractmethod
    def set_branches(self, branches: Sequence[Sequence[int]]) -> None:
        """Run `branches` (op indices per cell) in the next forwards (`set_path` of a gate architecture)."""

    @abstractmethod
    def forward_two_sample(
        self,
        x: torch.Tensor,
        selected: Sequence[Sequence[int]],
        unselected: Sequence[Sequence[int]],
        weights: Sequence[tuple[torch.Tensor, torch.Tensor] | None],
    ) -> torch.Tensor:
        """Per cell, y = y_S (q_S + 1 - sg(q_S)) + y_U (q_U - sg(q_U)) where y_S and y_U are the cell's
        outputs with the `selected` and `unselected` branches on the same input (y_U without gradient)
        and (q_S, q_U) = `weights[cell]`; a cell whose weights are None runs `selected` alone. The value
        is exactly the selected network's; the gradient reaches q through y_S dq_S + y_U dq_U."""

    @abstractmethod
    def branch_parameter_names(self, branches: Sequence[Sequence[int]]) -> list[str]:
        """Names (as in `named_parameters`) of the parameters a forward with `branches` uses."""

    @abstractmethod
    def reset_parameters(self) -> None:
        """Draw the weights again as at construction, from torch's global RNG (NSE retrains every round)."""

    @abstractmethod
    def branch_costs(self) -> BranchCosts:
        """MACs and parameters of the frame and of every (cell, op), at the input size it was built for."""
