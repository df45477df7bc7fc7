"""NSE's multi-branch search space (Ci et al., "Evolving Search Space for Neural Architecture Search").

A cell may run any subset of its candidate ops at once (reference algorithms-2.md section 11.1). The
space expresses this through `nasframe.core.multibranch`: every (cell, op) is a binary gate decision
`cellCC.opJJ` (0 off, 1 on), grouped per cell by `branch_cells()`. A cell that keeps its width at
stride 1 (N) may have no branch (the identity); the others (R, E) need at least one, which `check`
enforces and `sample` respects by redrawing such a cell.

The op pool (`cell_plan`), the cell layout (`alloc_plan`, `alloc_space`), the widths
(`channel_dist`, `scale`) are options; the defaults are NSE-27's search space. The published nets are
named architectures on their own layouts (`nasframe inspect --space nse --arch NSENet` applies them):
they were picked from the search's Pareto list and lost the N cells that had no branch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.common.options import option
from nasframe.core.blocks import Block, BlockSpace
from nasframe.core.multibranch import OFF, ON, BranchCell, MultiBranchSpace, arch_of, branches_of
from nasframe.core.registry import register_space
from nasframe.core.space import Arch, Decision, SearchSpace
from nasframe.data import DataSpec

if TYPE_CHECKING:  # the networks import torch: loaded when built, so `nasframe list` runs without it
    from .nse_net import NseLayout, NseNet, NseSupernet

#: the released final networks (utils/supernet_utils.py NSENet / NSENet27 / NSENet_GPU): op indices per
#: cell, and the space options they are defined on
PUBLISHED: dict[str, tuple[dict[str, Any], list[list[int]]]] = {
    "NSENet": (
        {"cell_plan": "multi_mac_group", "alloc_plan": "NER", "alloc_space": [1, 1, 2, 3, 2, 3],
         "channel_dist": [16, 24, 40, 80, 96, 192, 320], "scale": 1.045},
        [[0], [34], [3], [52], [35], [38], [17, 11, 49], [41], [35], [12], [1, 10, 6], [9], [0, 9], [35, 52, 61],
         [10, 32], [3, 57], [13], [3, 19, 44]],
    ),
    "NSENet-27": (
        {"cell_plan": "multi_mac", "alloc_plan": "NER", "alloc_space": [1, 2, 2, 2, 2, 3],
         "channel_dist": [16, 24, 40, 80, 96, 192, 320], "scale": 1.04},
        [[0], [6], [3], [0], [16], [3], [9], [11, 17], [9, 2], [12], [1, 6], [9, 12], [9], [17, 14], [21], [3],
         [13], [19, 3, 14]],
    ),
    "NSENet-GPU": (
        {"cell_plan": "multi_branch", "alloc_plan": "NR", "alloc_space": [0, 1, 3, 4, 2],
         "channel_dist": [16, 32, 64, 128, 256], "scale": 1.0},
        [[15], [11], [1, 17], [16, 1], [11], [11], [2, 7], [3], [1, 6], [11], [11, 6], [8, 2], [0, 1, 8, 11],
         [2, 6, 8, 12, 14]],
    ),
}  # fmt: skip


@dataclass(frozen=True)
class NseOptions:
    cell_plan: Literal["multi_branch", "multi_mac", "multi_mac_group"] = option(
        "multi_mac",
        "candidate op pool per cell: multi_branch (19 ops, the GPU space), multi_mac (27, NSE-27), "
        "multi_mac_group (72: the 27 plus 45 grouped bottlenecks, the second space)",
    )
    alloc_plan: Literal["NR", "NER"] = option(
        "NER", "cell order: NR = N^a0 R N^a1 R ... N^a4; NER = N^a0 R N^a1 R N^a2 R N^a3 E N^a4 R N^a5 E"
    )
    alloc_space: list[int] = option(
        default_factory=lambda: [1, 3, 3, 3, 3, 3],
        help="N cells per stage (NR: 5 numbers, NER: 6; NSE-27 search: [1,3,3,3,3,3])",
    )
    channel_dist: list[int] = option(
        default_factory=lambda: [16, 24, 40, 80, 96, 192, 320],
        help="stage widths before scaling (NR: 5, NER: 7; the first is never scaled)",
    )
    scale: float = option(1.0, "width multiplier of every stage but the first (rounded to multiples of 8)", min=0.05)
    last_channels: int = option(1024, "width of the 1x1 conv before pooling", min=1)
    small_input: bool = option(False, "small images (digits, CIFAR): the stem keeps the resolution (stride 1)")

    def __post_init__(self) -> None:
        stages = 5 if self.alloc_plan == "NR" else 6
        widths = 5 if self.alloc_plan == "NR" else 7
        if len(self.alloc_space) != stages or any(
            isinstance(a, bool) or int(a) != a or a < 0 for a in self.alloc_space
        ):
            raise ConfigError(
                f"space.alloc_space: {self.alloc_plan} needs {stages} non-negative integers, got {self.alloc_space}"
            )
        if len(self.channel_dist) != widths or any(
            isinstance(c, bool) or int(c) != c or c < 1 for c in self.channel_dist
        ):
            raise ConfigError(
                f"space.channel_dist: {self.alloc_plan} needs {widths} positive integers, got {self.channel_dist}"
            )


@register_space("nse")
class NseSpace(SearchSpace[NseOptions], MultiBranchSpace, BlockSpace):
    """Multi-branch cells (any subset of a pool of inverted-bottleneck and full-conv ops) on NSE's layouts."""

    Options = NseOptions
    reference_data = "imagenet"
    supports_supernet = True

    def __init__(self, options: NseOptions | None = None):
        from .nse_net import gate_name
        from .nse_ops import POOLS

        super().__init__(options)
        o = self.options
        self.pool = POOLS[o.cell_plan]
        # the layout without sizes: which cells are residual (sizes come with the data set in build)
        self._plain = self._layout((3, 224, 224))
        self._cells = [
            BranchCell(f"cell{c:02d}", tuple(gate_name(c, j) for j in range(len(self.pool))), slot.residual)
            for c, slot in enumerate(self._plain.slots)
        ]

    def _layout(self, shape: tuple[int, int, int]) -> NseLayout:
        from .nse_net import NseLayout

        o = self.options
        return NseLayout.build(
            o.alloc_plan,
            o.alloc_space,
            o.channel_dist,
            o.scale,
            o.last_channels,
            1 if o.small_input else 2,
            shape[0],
            (shape[1], shape[2]),
        )

    # ---- decisions -----------------------------------------------------------------------------------
    def define_decisions(self) -> list[Decision]:
        return [Decision(g, (OFF, ON)) for cell in self._cells for g in cell.gates]

    def branch_cells(self) -> list[BranchCell]:
        return list(self._cells)

    def validate(self, arch: Mapping[str, Any]) -> Arch:
        """The base class's checks with one dict lookup per gate (hundreds of gates: its scans of the
        decision list per key would cost milliseconds per architecture, and a round scores thousands)."""
        if not isinstance(arch, Mapping):
            raise InvalidArchitecture(f"an architecture is a mapping decision -> choice, got {type(arch).__name__}")
        items = arch.to_dict() if isinstance(arch, Arch) else dict(arch)  # Arch lookups scan its pairs
        allowed = {d.name: d.choices for d in self.decisions}
        unknown = [k for k in items if k not in allowed]
        if unknown:
            raise InvalidArchitecture(f"unknown decision {unknown[0]!r} for space {self.name!r}")
        missing = [n for n in allowed if n not in items]
        if missing:
            raise InvalidArchitecture(f"architecture misses decision {missing[0]!r} ({len(missing)} missing)")
        for name, choices in allowed.items():
            if items[name] not in choices:
                raise InvalidArchitecture(
                    f"{name}={items[name]!r} is not allowed; choose one of {', '.join(map(str, choices))}"
                )
        out = Arch([(n, items[n]) for n in allowed])
        self.check(out)
        return out

    def check(self, arch: Arch) -> None:
        for cell, on in zip(self._cells, branches_of(self._cells, arch)):
            if not on and not cell.residual:
                raise InvalidArchitecture(
                    f"{cell.name} changes width or stride and needs at least one op on (gates {cell.gates[0]}..)"
                )

    def sample(self, rng: np.random.Generator) -> Arch:
        """Each allowed gate on with probability 1/2 (NSE's balanced paths, balance_s_rate 0.5); a cell
        that needs a branch and got none is drawn again, so the draw is uniform over valid architectures."""
        allowed = {d.name: d.choices for d in self.decisions}
        items: list[tuple[str, Any]] = []
        for cell in self._cells:
            choices = [allowed[g] for g in cell.gates]
            if not cell.residual and all(ON not in c for c in choices):
                raise InvalidArchitecture(f"{cell.name} needs a branch but every op of it is restricted off")
            while True:
                drawn = [c[int(rng.integers(len(c)))] for c in choices]
                if cell.residual or ON in drawn:
                    break
            items += list(zip(cell.gates, drawn))
        return Arch(items)

    # ---- published architectures and text forms ------------------------------------------------------
    def named_architectures(self) -> dict[str, Arch]:
        out = {}
        for name, (opts, cells) in PUBLISHED.items():
            o = self.options
            if all(getattr(o, k) == v for k, v in opts.items()) and len(cells) == len(self._cells):
                out[name] = arch_of(self._cells, cells)
        return out

    @classmethod
    def published_names(cls) -> dict[str, tuple[str, ...]]:
        return {name: () for name in PUBLISHED}

    @classmethod
    def options_for_arch(cls, name: str) -> dict[str, Any] | None:
        found = PUBLISHED.get(name)
        return dict(found[0]) if found is not None else None

    def name_unavailable(self, name: str) -> str:
        opts = " ".join(f"--set space.{k}={_yaml(v)}" for k, v in PUBLISHED[name][0].items())
        return f"architecture {name!r} is defined on another layout; add {opts}"

    def parse_arch(self, text: str) -> Arch:
        """A named architecture, a JSON/YAML mapping of gates, or a list of op-index lists, one per cell
        (the released code's notation, e.g. [[0], [6], [3, 9], ...])."""
        text = text.strip()
        found = self.arch_by_name(text)
        if found is not None:
            return found
        if text.startswith("["):
            import yaml

            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise InvalidArchitecture(f"cannot read the list of cells: {str(exc).splitlines()[0]}") from None
            return self.from_branches(value)
        return super().parse_arch(text)

    def from_branches(self, cells: Any) -> Arch:
        """The architecture of op-index lists, one per cell (checked)."""
        n = len(self.pool)
        if not isinstance(cells, list) or len(cells) != len(self._cells) or not all(isinstance(c, list) for c in cells):
            raise InvalidArchitecture(f"expected a list of {len(self._cells)} lists of op indices, one per cell")
        for c, on in enumerate(cells):
            bad = [j for j in on if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < n]
            if bad:
                raise InvalidArchitecture(f"cell {c}: op {bad[0]!r} is not an index of the {n}-op pool")
        return self.validate(arch_of(self._cells, cells))

    def export(self, arch: Arch, weights: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """The op indices per cell (the released notation) and the op names."""
        cells = branches_of(self._cells, arch)
        return {
            "cells": cells,
            "ops": [[self.pool[j].label for j in on] for on in cells],
            "cell_kinds": "".join(s.kind for s in self._plain.slots),
        }

    # ---- networks ------------------------------------------------------------------------------------
    def build_check(self, arch: Arch) -> list[list[int]]:
        """The branches of a buildable `arch` (every gate given; a cell that changes shape has a branch)."""
        items = arch.to_dict()
        missing = [g for cell in self._cells for g in cell.gates if g not in items]
        if missing:
            raise InvalidArchitecture(f"architecture misses decision {missing[0]!r} of space {self.name!r}")
        branches = branches_of(self._cells, items)
        for cell, on in zip(self._cells, branches):
            if not on and not cell.residual:
                raise InvalidArchitecture(f"{cell.name} changes width or stride and needs at least one op on")
        return branches

    def build(self, arch: Arch, data: DataSpec) -> NseNet:
        from .nse_net import NseNet

        branches = self.build_check(arch)
        layout = self._layout((data.channels, data.height, data.width))
        return NseNet(layout, self.pool, branches, data.num_classes)

    def blocks(self, arch: Arch, data: DataSpec) -> list[Block]:
        """The stem, every branch of every cell and the head, on their input shapes (for latency tables)."""
        from .nse_net import network_blocks

        branches = self.build_check(arch)
        return network_blocks(self._layout(data.input_shape), self.pool, branches, data.num_classes)

    def all_blocks(self, data: DataSpec) -> list[Block]:
        """Every op of every cell: the blocks of the architecture with every gate on."""
        everything = arch_of(self._cells, [list(range(len(self.pool)))] * len(self._cells))
        return list({b.key: b for b in self.blocks(everything, data)}.values())

    def build_supernet(self, data: DataSpec) -> NseSupernet:
        from .nse_net import NseSupernet

        return NseSupernet(self._layout((data.channels, data.height, data.width)), self.pool, data.num_classes)


def _yaml(value: Any) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
