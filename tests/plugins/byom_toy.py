"""A user's own model as a search space (nasframe.nn mutables), for the bring-your-own-model tests.

Loaded with `--plugin tests/plugins/byom_toy.py --space byom_toy`. A small residual network on any
image data set with every kind of choice: a width tied across layers (one label), a kernel size per
block, a depth, an op (LayerChoice) and which earlier tensor feeds the head (InputChoice).
"""

from __future__ import annotations

import torch
from torch import nn

import nasframe
from nasframe import nn as nas


class Block(nn.Module):
    def __init__(self, width, i: int):
        super().__init__()
        k = nas.choice(f"block{i}.kernel", [3, 5])
        self.conv = nas.Conv2d(width, width, k, padding=k // 2, bias=False)
        self.bn = nas.BatchNorm2d(width)
        self.act = nas.LayerChoice({"relu": nn.ReLU(), "hardswish": nn.Hardswish()}, label=f"block{i}.act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.bn(self.conv(x)))


class ByomToy(nn.Module):
    """A small residual network with width, kernel, depth, op and input choices."""

    def __init__(self, data):
        super().__init__()
        width = nas.choice("width", [4, 8])
        self.stem = nas.Conv2d(data.channels, width, 3, padding=1, bias=False)
        self.stem_bn = nas.BatchNorm2d(width)
        self.blocks = nas.Repeat(lambda i: Block(width, i), depth=nas.choice("depth", [1, 2]))
        self.pool = nas.LayerChoice([nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)], label="pool")
        self.skip = nas.InputChoice(2, 1, label="head_input")
        self.head = nas.Linear(width, data.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = torch.relu(self.stem_bn(self.stem(x)))
        features = self.skip([stem, self.blocks(stem)])
        return self.head(torch.flatten(self.pool(features), 1))


nasframe.model_space("byom_toy", ByomToy)
