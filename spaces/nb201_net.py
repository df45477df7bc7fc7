"""NAS-Bench-201 networks: the blocks shared by the stand-alone network and the supernet, and the
stand-alone network of one cell (the benchmark's evaluation network).

Layout: 3x3 stem conv + BN, three stages of N identical cells with C, 2C and 4C channels, a
ResNet basic block (stride 2) between stages, then BN + ReLU, global average pooling and a
linear classifier. Convolutions in cells are ReLU -> conv -> BN. A cell runs a precomputed plan
(`PlannedCell`): `none` edges contribute nothing, so they are left out of it (a node with no live
input is zero). The supernet (nb201_supernet.py) builds its cells, frame and ops from the same
classes, so a path of it computes exactly the logits of the stand-alone network; it also leaves out
edges whose target node never reaches the cell's output, which change nothing but the work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .nb201 import EDGES

#: per node 1..3, the (source node, op module) pairs it sums
Plan = tuple[tuple[tuple[int, nn.Module], ...], ...]


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv -> BN (`1.weight` is the conv weight, `2` the BN). The supernet's cells use an
    affine-free BN, optionally without running statistics, and may give the conv a bias as the
    benchmark's search code does (`bias=not affine` there)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        *,
        affine: bool = True,
        track_running_stats: bool = True,
        bias: bool = False,
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats),
        )


class Zero(nn.Module):
    """The `none` op. Planned forwards never call it (a `none` edge is not in the plan); it keeps
    op index 0 of a supernet edge, so `ops[i]` is `OPS[i]`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def make_op(
    name: str, c: int, *, affine: bool = True, track_running_stats: bool = True, bias: bool = False
) -> nn.Module:
    """One NB201 op on `c` channels, stride 1 (cells never change the shape)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        kernel = 1 if name == "nor_conv_1x1" else 3
        return ReLUConvBN(c, c, kernel, 1, affine=affine, track_running_stats=track_running_stats, bias=bias)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {name!r}")


def live_nodes(ops: Sequence[str]) -> tuple[bool, bool, bool, bool]:
    """Whether each node's value reaches node 3 (the cell's output) through edges that are not `none`."""
    live = [False, False, False, True]
    for node in (2, 1, 0):
        live[node] = any(op != "none" and live[i] for (i, j), op in zip(EDGES, ops) if j == node)
    return live[0], live[1], live[2], live[3]


def live_edges(ops: Sequence[str]) -> tuple[bool, ...]:
    """Per edge, whether a forward must run it: not `none`, and its target node reaches node 3.

    An edge whose source is a zero node still runs: in eval mode its BN turns zeros into a constant."""
    live = live_nodes(ops)
    return tuple(op != "none" and live[i] for (i, _), op in zip(EDGES, ops))


def reads_input(ops: Sequence[str]) -> bool:
    """Whether the cell's output depends on its input (node 0 reaches node 3); if not, nothing
    before the cell gets a gradient."""
    return live_nodes(ops)[0]


class PlannedCell(nn.Module):
    """Node i = sum of op(node j) over the plan's pairs for i; the cell's output is node 3.

    The plan holds module references, so `forward` does no lookup or graph walk; it is set once
    (stand-alone network) or by every `set_path` (supernet)."""

    def __init__(self) -> None:
        super().__init__()
        self._plan: Plan = ((), (), ())

    def set_plan(self, edge_modules: Sequence[nn.Module | None]) -> None:
        """`edge_modules[e]`: the module edge e runs (in `EDGES` order), or None when it runs nothing."""
        self._plan = tuple(
            tuple((j, m) for (i, j), m in zip(EDGES, edge_modules) if i == node and m is not None) for node in (1, 2, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for inputs in self._plan:
            if not inputs:
                nodes.append(torch.zeros_like(x))
                continue
            out = inputs[0][1](nodes[inputs[0][0]])
            for j, op in inputs[1:]:
                out = out + op(nodes[j])
            nodes.append(out)
        return nodes[3]


class Cell(PlannedCell):
    """A stand-alone cell: one module per edge that is not `none`, in edge order, in `edges`.

    Every such edge runs, also one whose target never reaches node 3, as in the benchmark's network:
    its MACs count (the benchmark's FLOPs and `additive_costs` include them) though its output is unused.
    """

    def __init__(self, ops: Sequence[str], c: int):
        super().__init__()
        self.edges = nn.ModuleList(make_op(name, c) for name in ops if name != "none")
        modules = iter(self.edges)
        self.set_plan([next(modules) if name != "none" else None for name in ops])


class ResNetBlock(nn.Module):
    """Reduction between stages: two 3x3 ReLU-conv-BN (the first with stride 2) plus an
    avg-pool + 1x1-conv shortcut. Affine BNs, in the supernet too (as in the benchmark)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Frame(nn.Module):
    """Stem, the 3N + 2 layers of `cells` (N cells per stage from `make_cell(channels)`, a
    `ResNetBlock` between stages), last BN + ReLU, global pooling, classifier."""

    def __init__(self, make_cell: Callable[[int], nn.Module], *, C: int, N: int, in_channels: int, num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        c = C
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetBlock(c, 2 * c))
                c *= 2
            layers.extend(make_cell(c) for _ in range(N))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Last BN + ReLU, pooling and classifier on the last cell's output."""
        return self.classifier(torch.flatten(self.pool(self.lastact(features)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.cells(self.stem(x)))


class NB201Network(NB201Frame):
    """The benchmark's evaluation network for one cell (`ops`: six op names in edge order)."""

    def __init__(self, ops: list[str], *, C: int = 16, N: int = 5, in_channels: int = 3, num_classes: int = 10):
        super().__init__(lambda c: Cell(ops, c), C=C, N=N, in_channels=in_channels, num_classes=num_classes)
