"""NSE's networks: the cell layout, the stand-alone multi-branch network and the weight-sharing supernet.

Layout (reference 11.1): a stem (3x3 conv, BN, ReLU), then cells N (stride 1, width kept), R (stride 2,
next width) and E (stride 1, next width) in the order "NR" = N^a0 R N^a1 R N^a2 R N^a3 R N^a4 or "NER" =
N^a0 R N^a1 R N^a2 R N^a3 E N^a4 R N^a5 E, then a 1x1 conv to 1024 channels without BatchNorm, ReLU,
global average pooling and a linear classifier. A cell outputs the mean of its branches; an N cell adds
its input to that mean ((b1 + ... + bn + x) / (n + 1)) and is the identity with no branch.

The stand-alone network and the supernet build their ops with the same `build_op`, so a path of the
supernet has exactly the arithmetic of the stand-alone network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import cast

import torch
from torch import nn

from nasframe.common.model_stats import count_macs, count_parameters
from nasframe.core.blocks import Block, shape_text
from nasframe.core.multibranch import BranchCosts, MultiBranchSupernet
from nasframe.core.space import Arch

from .nse_ops import OpSpec, build_op
from .param_index import ParamIndex


def gate_name(cell: int, op: int) -> str:
    """The decision that switches op `op` of cell `cell` on or off."""
    return f"cell{cell:02d}.op{op:02d}"


def make_divisible(v: float, divisor: int = 8) -> int:
    """Nearest multiple of `divisor` (at least `divisor`), plus one more if that lost over 10% of v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def cell_sequence(alloc_plan: str, alloc_space: Sequence[int]) -> str:
    """The cell kinds in order, e.g. "NRNNNR..." (reference 11.1)."""
    a = list(alloc_space)
    if alloc_plan == "NR":
        return "R".join("N" * n for n in a)
    return (
        "N" * a[0] + "R" + "N" * a[1] + "R" + "N" * a[2] + "R" + "N" * a[3] + "E" + "N" * a[4] + "R" + "N" * a[5] + "E"
    )


@dataclass(frozen=True)
class CellSlot:
    kind: str  # "N", "R" or "E"
    cin: int
    cout: int
    stride: int
    size: tuple[int, int]  # input height and width

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout


@dataclass(frozen=True)
class NseLayout:
    """Everything but the branches: widths, cell slots, stem stride, head width, input size."""

    widths: tuple[int, ...]
    slots: tuple[CellSlot, ...]
    stem_stride: int
    last_channels: int
    in_channels: int
    input_size: tuple[int, int]

    @classmethod
    def build(
        cls,
        alloc_plan: str,
        alloc_space: Sequence[int],
        channel_dist: Sequence[int],
        scale: float,
        last_channels: int,
        stem_stride: int,
        in_channels: int,
        input_size: tuple[int, int],
    ) -> NseLayout:
        widths = (int(channel_dist[0]),) + tuple(make_divisible(c * scale) for c in channel_dist[1:])
        h, w = ((input_size[0] - 1 + stem_stride) // stem_stride, (input_size[1] - 1 + stem_stride) // stem_stride)
        stage, slots = 0, []
        for kind in cell_sequence(alloc_plan, alloc_space):
            if kind == "N":
                cin = cout = widths[stage]
                stride = 1
            else:
                stage += 1
                cin, cout, stride = widths[stage - 1], widths[stage], 2 if kind == "R" else 1
            slots.append(CellSlot(kind, cin, cout, stride, (h, w)))
            h, w = (h - 1 + stride) // stride, (w - 1 + stride) // stride
        return cls(widths, tuple(slots), stem_stride, last_channels, in_channels, input_size)

    @property
    def final_width(self) -> int:
        return self.slots[-1].cout if self.slots else self.widths[0]

    @property
    def final_size(self) -> tuple[int, int]:
        if not self.slots:
            s = self.stem_stride
            return (self.input_size[0] - 1 + s) // s, (self.input_size[1] - 1 + s) // s
        last = self.slots[-1]
        return (last.size[0] - 1 + last.stride) // last.stride, (last.size[1] - 1 + last.stride) // last.stride


def _init(model: nn.Module) -> None:
    """The released initialisation: conv Kaiming-normal (fan_out, ReLU), BatchNorm weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _Frame(nn.Module):
    """Stem, head conv and classifier, shared by the stand-alone network and the supernet."""

    def __init__(self, layout: NseLayout, num_classes: int):
        super().__init__()
        c0 = layout.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(layout.in_channels, c0, 3, layout.stem_stride, 1, bias=False),
            nn.BatchNorm2d(c0),
            nn.ReLU(inplace=True),
        )
        self.last_conv = nn.Sequential(
            nn.Conv2d(layout.final_width, layout.last_channels, 1, bias=False), nn.ReLU(inplace=True)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(layout.last_channels, num_classes)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.last_conv(x)), 1))


def cell_output(x: torch.Tensor, branches: Sequence[nn.Module], residual: bool) -> torch.Tensor:
    """Mean of the branches' outputs, the input included in a residual cell (identity with no branch)."""
    if not branches:
        return x
    out = branches[0](x)
    for op in branches[1:]:
        out = out + op(x)
    if residual:
        return (out + x) / (len(branches) + 1)
    return out / len(branches) if len(branches) > 1 else out


def straight_through(y_s: torch.Tensor, y_u: torch.Tensor, q_s: torch.Tensor, q_u: torch.Tensor) -> torch.Tensor:
    """NSE's two-sample output y_S (q_S + 1 - sg(q_S)) + y_U (q_U - sg(q_U)), written as
    y_S + y_S (q_S - sg(q_S)) + y_U (q_U - sg(q_U)) so that the value is y_S bit for bit (q - sg(q) is
    exactly zero, while 1 + q - q need not be one in floating point); the gradient is the same."""
    return y_s + y_s * (q_s - q_s.detach()) + y_u * (q_u - q_u.detach())


class NseCell(nn.Module):
    """A stand-alone multi-branch cell."""

    def __init__(self, slot: CellSlot, ops: Sequence[OpSpec]):
        super().__init__()
        self.branches = nn.ModuleList(build_op(op, slot.cin, slot.cout, slot.stride) for op in ops)
        self.residual = slot.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cell_output(x, list(self.branches), self.residual)


class NseNet(_Frame):
    """The stand-alone network of one architecture (released ValImageNet, ReLU, no SE)."""

    def __init__(self, layout: NseLayout, pool: Sequence[OpSpec], branches: Sequence[Sequence[int]], num_classes: int):
        super().__init__(layout, num_classes)
        self.cells = nn.Sequential(
            *(NseCell(slot, [pool[j] for j in on]) for slot, on in zip(layout.slots, branches, strict=True))
        )
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.cells(self.stem(x)))


class NseSupernet(_Frame, MultiBranchSupernet):
    """Every op of the pool in every cell; `set_branches` picks the ones the next forwards run."""

    def __init__(self, layout: NseLayout, pool: Sequence[OpSpec], num_classes: int):
        super().__init__(layout, num_classes)
        self.layout, self.op_pool = layout, tuple(pool)
        self.cells = nn.ModuleList(
            nn.ModuleList(build_op(op, s.cin, s.cout, s.stride) for op in self.op_pool) for s in layout.slots
        )
        self.residual = [s.residual for s in layout.slots]
        _init(self)
        self._path: list[list[nn.Module]] | None = None
        self._branches: list[list[int]] = []
        self._param_index = ParamIndex(self)
        self._costs: BranchCosts | None = None

    def _ops(self, cell: int) -> nn.ModuleList:
        return cast(nn.ModuleList, self.cells[cell])

    def _checked(self, branches: Sequence[Sequence[int]]) -> list[list[int]]:
        if len(branches) != len(self.layout.slots):
            raise ValueError(f"expected branches for {len(self.layout.slots)} cells, got {len(branches)}")
        return [sorted(int(j) for j in on) for on in branches]

    def branches_of_arch(self, arch: Arch) -> list[list[int]]:
        n = len(self.op_pool)
        items = arch.to_dict()  # one dict: Arch lookups scan its pairs
        return [[j for j in range(n) if items[gate_name(c, j)] == 1] for c in range(len(self.layout.slots))]

    def set_branches(self, branches: Sequence[Sequence[int]]) -> None:
        self._branches = self._checked(branches)
        self._path = [[self._ops(c)[j] for j in on] for c, on in enumerate(self._branches)]

    def set_path(self, arch: Arch) -> None:
        self.set_branches(self.branches_of_arch(arch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._path is None:
            raise RuntimeError("call set_path(arch) or set_branches(...) before forward")
        x = self.stem(x)
        for ops, residual in zip(self._path, self.residual):
            x = cell_output(x, ops, residual)
        return self.classify(x)

    def forward_two_sample(
        self,
        x: torch.Tensor,
        selected: Sequence[Sequence[int]],
        unselected: Sequence[Sequence[int]],
        weights: Sequence[tuple[torch.Tensor, torch.Tensor] | None],
    ) -> torch.Tensor:
        x = self.stem(x)
        for c, residual in enumerate(self.residual):
            ops = self._ops(c)
            y_s = cell_output(x, [ops[j] for j in selected[c]], residual)
            w = weights[c]
            if w is None:
                x = y_s
                continue
            q_s, q_u = w
            with torch.no_grad():
                y_u = cell_output(x, [ops[j] for j in unselected[c]], residual)
            x = straight_through(y_s, y_u, q_s, q_u)
        return self.classify(x)

    def path_parameter_names(self, arch: Arch) -> list[str]:
        return self.branch_parameter_names(self.branches_of_arch(arch))

    def branch_parameter_names(self, branches: Sequence[Sequence[int]]) -> list[str]:
        prefixes = ["stem.", "last_conv.", "fc."]
        prefixes += [f"cells.{c}.{j}." for c, on in enumerate(branches) for j in on]
        return self._param_index.select(prefixes)

    def reset_parameters(self) -> None:
        """The released re_init: convs Kaiming-normal (fan_out), BatchNorm weight 1 and bias 0; the
        classifier keeps its weights and BatchNorm its running statistics, as there."""
        _init(self)

    def branch_costs(self) -> BranchCosts:
        if self._costs is None:
            self._costs = layout_costs(self.layout, self.op_pool, self.fc.out_features)
        return self._costs


def layout_costs(layout: NseLayout, pool: Sequence[OpSpec], num_classes: int) -> BranchCosts:
    """MACs and parameters of the frame and of every (cell, op), counted like `nasframe inspect`
    (Conv2d and Linear multiply-accumulates), on the meta device."""
    with torch.device("meta"):
        frame = _Frame(layout, num_classes)
        h, w = layout.input_size
        base_macs = count_macs(frame.stem, (layout.in_channels, h, w))
        fh, fw = layout.final_size
        base_macs += count_macs(
            nn.Sequential(frame.last_conv, frame.pool, nn.Flatten(), frame.fc), (layout.final_width, fh, fw)
        )
        macs, params = [], []
        counted: dict[tuple[int, int, int, tuple[int, int], OpSpec], tuple[float, float]] = {}
        for slot in layout.slots:
            row_m, row_p = [], []
            for op in pool:
                key = (slot.cin, slot.cout, slot.stride, slot.size, op)
                if key not in counted:
                    module = build_op(op, slot.cin, slot.cout, slot.stride)
                    counted[key] = (float(count_macs(module, (slot.cin, *slot.size))), float(count_parameters(module)))
                row_m.append(counted[key][0])
                row_p.append(counted[key][1])
            macs.append(tuple(row_m))
            params.append(tuple(row_p))
    return BranchCosts(float(base_macs), float(count_parameters(frame)), tuple(macs), tuple(params))


class _Head(nn.Module):
    """`_Frame.classify` as one timed block: the last 1x1 conv, pooling and the classifier."""

    def __init__(self, layout: NseLayout, num_classes: int):
        super().__init__()
        self.last_conv = nn.Sequential(
            nn.Conv2d(layout.final_width, layout.last_channels, 1, bias=False), nn.ReLU(inplace=True)
        )
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(layout.last_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.last_conv(x)), 1))


def network_blocks(
    layout: NseLayout, pool: Sequence[OpSpec], branches: Sequence[Sequence[int]], num_classes: int
) -> list[Block]:
    """The timed blocks of `NseNet`: the stem, every branch of every cell on the cell's input, and the head
    (a cell's sum and mean of its branches are not timed)."""
    c0 = layout.widths[0]
    shape = (layout.in_channels, *layout.input_size)
    s = layout.stem_stride
    out = [
        Block(
            f"stem conv3x3 {layout.in_channels}>{c0} s{s} @{shape_text(shape)}",
            shape,
            lambda: nn.Sequential(
                nn.Conv2d(layout.in_channels, c0, 3, s, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)
            ),
        )
    ]
    for slot, on in zip(layout.slots, branches, strict=True):
        cell_in = (slot.cin, *slot.size)
        for j in on:
            op = pool[j]
            key = f"{op.label} {slot.cin}>{slot.cout} s{slot.stride} @{shape_text(cell_in)}"
            out.append(Block(key, cell_in, partial(build_op, op, slot.cin, slot.cout, slot.stride)))
    last = (layout.final_width, *layout.final_size)
    key = f"head conv1x1 {layout.final_width}>{layout.last_channels} fc>{num_classes} @{shape_text(last)}"
    out.append(Block(key, last, lambda: _Head(layout, num_classes)))
    return out
