"""The stand-alone NAS-Bench-201 network for one cell (the benchmark's evaluation network).

Layout: 3x3 stem conv + BN, three stages of N identical cells with C, 2C and 4C channels, a
ResNet basic block (stride 2) between stages, then BN + ReLU, global average pooling and a
linear classifier. Convolutions in cells are ReLU -> conv -> BN; `none` edges contribute nothing,
so they are left out of the cell's precomputed edge lists (a node with no live input is zero).
"""

from __future__ import annotations

import torch
from torch import nn

#: (target node, source node) of each edge, in the cell string's order
_EDGES = tuple((i, j) for i in range(1, 4) for j in range(i))


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def _op(name: str, c: int) -> nn.Module:
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {name!r}")


class Cell(nn.Module):
    """Node i = sum of op(node j) over its live edges; the cell's output is node 3."""

    def __init__(self, ops: list[str], c: int):
        super().__init__()
        self.edges = nn.ModuleList()
        self.plan: list[list[tuple[int, int]]] = [[] for _ in range(4)]  # node -> [(source, edge module index)]
        for (i, j), name in zip(_EDGES, ops):
            if name != "none":
                self.plan[i].append((j, len(self.edges)))
                self.edges.append(_op(name, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for inputs in self.plan[1:]:
            if not inputs:
                nodes.append(torch.zeros_like(x))
                continue
            out = self.edges[inputs[0][1]](nodes[inputs[0][0]])
            for j, k in inputs[1:]:
                out = out + self.edges[k](nodes[j])
            nodes.append(out)
        return nodes[3]


class ResNetBlock(nn.Module):
    """Reduction between stages: two 3x3 ReLU-conv-BN (the first with stride 2) plus an
    avg-pool + 1x1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    def __init__(self, ops: list[str], *, C: int = 16, N: int = 5, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        c = C
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetBlock(c, 2 * c))
                c *= 2
            layers.extend(Cell(ops, c) for _ in range(N))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(out), 1))
