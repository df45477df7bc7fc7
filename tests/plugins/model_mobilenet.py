"""The MBConv (ProxylessNAS) space written a second time with `nasframe.nn` mutables (tests only), twice:

- `model_mobilenet`: one `LayerChoice` per block slot over the MBConv ops (and zero), separate weights per
  op, as the hand-written `mobilenet` space and its supernet;
- `model_mobilenet_ofa`: one MBConv per slot whose kernel size and expansion ratio are choices of mutable
  layers, sharing weights by slicing (OFA's elastic kernel and width; no zero op).

The stage table comes from the space's layout presets (`nasframe.spaces.mobilenet_layouts`), as a user
would copy ProxylessNAS' table; the modules are written here. tests/test_nn_rebuilt.py compares both with
`mobilenet`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import nasframe
from nasframe import nn as nas
from nasframe.spaces.mobilenet_layouts import block_slots, resolve_layout

EPS = 1e-3


@dataclass(frozen=True)
class ModelMobileNetOptions:
    layout: str = nasframe.option("fairnas", "stage table preset")
    custom_layout: dict | None = nasframe.option(None, "stage table entries replacing the preset's")
    width_mult: float = nasframe.option(0.25, "width multiplier")
    small_input: bool = nasframe.option(True, "stride 1 in the stem and first stage")
    kernels: list[int] = nasframe.option(default_factory=lambda: [3, 5, 7], help="depthwise kernel sizes")
    expand_ratios: list[int] = nasframe.option(default_factory=lambda: [3, 6], help="expansion ratios")
    allow_zero: bool = nasframe.option(False, "offer zero (identity) where the shape is kept")


def conv_bn(c_in, c_out, kernel, stride=1, groups=1, act=True, bn=nn.BatchNorm2d, conv=nn.Conv2d):
    layers = [conv(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), bn(c_out, eps=EPS)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, k x k depthwise, 1x1 project; `kernel` and `expand` may be choices."""

    def __init__(self, c_in, c_out, kernel, stride, expand, residual=True):
        super().__init__()
        mid = round(c_in * expand)
        fixed_one = isinstance(expand, int) and expand == 1  # a choice of expansion never includes 1 here
        self.expand = nn.Identity() if fixed_one else conv_bn(c_in, mid, 1, bn=nas.BatchNorm2d, conv=nas.Conv2d)
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid, bn=nas.BatchNorm2d, conv=nas.Conv2d)
        self.project = conv_bn(mid, c_out, 1, act=False, conv=nas.Conv2d)
        self.residual = residual and stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class MobileNetModel(nn.Module):
    """MBConv slots on a ProxylessNAS stage table (a test rebuild of the mobilenet space)."""

    def __init__(self, data, options: ModelMobileNetOptions, elastic: bool = False):
        super().__init__()
        o = options
        layout = resolve_layout(o.layout, o.custom_layout, small_input=o.small_input, width_mult=o.width_mult)
        self.stem = conv_bn(data.channels, layout.first_conv, 3, layout.first_stride)
        self.first_block = MBConv(layout.first_conv, layout.first_block, 3, 1, 1, residual=False)
        self.blocks = nn.Sequential()
        for slot in block_slots(layout):
            if elastic:
                kernel = nas.choice(f"{slot.name}.kernel", sorted(o.kernels))
                expand = nas.choice(f"{slot.name}.expand", sorted(o.expand_ratios))
                block: nn.Module = MBConv(slot.cin, slot.cout, kernel, slot.stride, expand)
            else:
                ops = {f"k{k}e{e}": MBConv(slot.cin, slot.cout, k, slot.stride, e)
                       for k in sorted(o.kernels) for e in sorted(o.expand_ratios)}  # fmt: skip
                if o.allow_zero and slot.zero_allowed:
                    ops["zero"] = nn.Identity()
                block = nas.LayerChoice(ops, label=slot.name)
            self.blocks.add_module(slot.name.replace(".", "_"), block)
        self.head = conv_bn(layout.widths[-1], layout.head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.0)
        self.classifier = nn.Linear(layout.head, data.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.first_block(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(self.head(x)), 1)))


nasframe.model_space("model_mobilenet", MobileNetModel, options=ModelMobileNetOptions, additive_costs=True)
# not additive: a slot's kernel and expansion multiply in its depthwise layer's parameters and MACs
nasframe.model_space(
    "model_mobilenet_ofa",
    lambda data, options: MobileNetModel(data, options, elastic=True),
    options=ModelMobileNetOptions,
)
