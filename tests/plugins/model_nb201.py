"""NAS-Bench-201 written a second time, as a user's own model with `nasframe.nn` mutables (tests only).

The benchmark's network (stem, three stages of N cells joined by residual reduction blocks, BN + ReLU,
pooling, a linear classifier) as a plain PyTorch module; each cell edge is a `LayerChoice` over the five
ops, labelled by the edge, so one label is shared by the edge in every cell: one decision per edge, as in
the hand-written space. tests/test_nn_rebuilt.py checks its counts and logits against `nb201`;
benchmarks/byom_supernet_step.py times its supernet against the hand-written one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import nasframe
from nasframe import nn as nas

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


@dataclass(frozen=True)
class ModelNB201Options:
    C: int = nasframe.option(16, "channels of the first stage", min=1)
    N: int = nasframe.option(5, "cells per stage", min=1)
    affine: bool = nasframe.option(True, "cell BatchNorms with affine parameters (false: the benchmark's search cells)")


def relu_conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, affine: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out, affine=affine),
    )


def op(name: str, c: int, affine: bool) -> nn.Module:
    return {
        "none": lambda: nas.Zero(),
        "skip_connect": lambda: nn.Identity(),
        "nor_conv_1x1": lambda: relu_conv_bn(c, c, 1, affine=affine),
        "nor_conv_3x3": lambda: relu_conv_bn(c, c, 3, affine=affine),
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
    }[name]()


class Cell(nn.Module):
    def __init__(self, c: int, affine: bool = True):
        super().__init__()
        self.edges = nn.ModuleList(
            nas.LayerChoice({o: op(o, c, affine) for o in OPS}, label=f"{i}<-{j}") for i, j in EDGES
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.edges
        n1 = e[0](x)
        n2 = e[1](x) + e[2](n1)
        return e[3](x) + e[4](n1) + e[5](n2)


class Reduction(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, 2)
        self.conv_b = relu_conv_bn(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Model(nn.Module):
    """NAS-Bench-201 cells written with nasframe.nn (a test rebuild of the nb201 space)."""

    def __init__(self, data, options: ModelNB201Options):
        super().__init__()
        c = options.C
        self.stem = nn.Sequential(nn.Conv2d(data.channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        for stage in range(3):
            if stage:
                layers.append(Reduction(c, 2 * c))
                c *= 2
            layers += [Cell(c, options.affine) for _ in range(options.N)]
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, data.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.lastact(self.cells(self.stem(x)))), 1))


nasframe.model_space("model_nb201", NB201Model, options=ModelNB201Options, additive_costs=True)
