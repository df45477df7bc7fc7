"""Layers of the NEAS / Cream networks: MobileNetV3-style blocks with squeeze-and-excitation and Swish.

Shapes and arithmetic follow the released NEAS model code (reference algorithms-2.md 10.1, timm 0.1.20
semantics): an inverted residual is 1x1 expand -> BN -> Swish -> kxk depthwise -> BN -> Swish -> SE ->
1x1 project -> BN (+ input when the shape is kept); SE squeezes to make_divisible(mid / 4, 8) channels
with ReLU and gates with a hard sigmoid. `GradDivide` is the released `GradDivHeads`: identity forward,
gradient divided by the number of members backward, placed between the shared trunk and the members.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .mobilenet_layouts import make_divisible

SE_RATIO = 0.25


class Swish(nn.Module):
    """x * sigmoid(x) (the networks' activation everywhere except inside SE)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """relu6(x + 3) / 6: the SE gate."""
    return F.relu6(x + 3.0) / 6.0


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> hard-sigmoid gate on the input."""

    def __init__(self, channels: int, reduced_from: int):
        super().__init__()
        reduced = make_divisible(reduced_from * SE_RATIO, 8)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(F.relu(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * hard_sigmoid(s)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BN (+ Swish)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(Swish())
    return nn.Sequential(*layers)


class DepthwiseSeparable(nn.Module):
    """The fixed first block: kxk depthwise -> BN -> Swish -> SE (squeezed from its input width) ->
    1x1 conv -> BN, plus the input when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.depthwise = conv_bn(cin, cin, kernel, stride, groups=cin)
        self.se = SqueezeExcite(cin, cin)
        self.project = conv_bn(cin, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(x)))
        return x + y if self.residual else y


class InvertedResidual(nn.Module):
    """A choice layer: expand to make_divisible(cin x expand, 8), kxk depthwise, SE squeezed from the
    expanded width (MobileNetV3's `reduce_mid`), linear 1x1 projection; residual when the shape is kept.

    `unused_released_tail` adds the two modules the released `InvertedResidual` constructs but never
    calls (a kxk depthwise conv on the output width and its BN): they change nothing the network
    computes, only its parameter count, which the published counts include (see docs/spaces/neas.md).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, unused_released_tail: bool = False):
        super().__init__()
        mid = make_divisible(cin * expand, 8)
        self.expand = conv_bn(cin, mid, 1)
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.se = SqueezeExcite(mid, mid)
        self.project = conv_bn(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        if unused_released_tail:
            self.unused_tail = conv_bn(cout, cout, kernel, groups=cout, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class MemberHead(nn.Module):
    """One member's fixed end: 1x1 conv to `last` (BN, Swish), global pool, 1x1 conv to `features` with
    bias, Swish, dropout, linear classifier (the released head pools before its 1x1 conv)."""

    def __init__(self, cin: int, last: int, features: int, num_classes: int, dropout: float):
        super().__init__()
        self.last_conv = conv_bn(cin, last, 1)
        self.conv_head = nn.Conv2d(last, features, 1, bias=True)
        self.act = Swish()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv_head(self.last_conv(x).mean((2, 3), keepdim=True)))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


class GradDivide(torch.autograd.Function):
    """Identity forward; the gradient divided by `k` backward (released `GradDivHeads`): with the
    members' losses summed, the trunk receives the mean of their gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: int) -> torch.Tensor:
        ctx.k = k
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad / ctx.k, None


def init_released(model: nn.Module) -> None:
    """The released code's initialisation (timm's `_init_weight_goog`): conv N(0, 2 / fan_out) with
    fan_out = k*k*out/groups and zero bias, BN (1, 0), linear U(+-1/sqrt(out features)) with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.weight.size(0))
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
