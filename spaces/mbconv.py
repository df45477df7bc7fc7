"""MBConv layers, the stand-alone MBConv network and its weight-sharing supernet.

The stand-alone net and the supernet are built from the same `MBConv` module, so a path taken
out of a trained supernet has exactly the parameter names, shapes and arithmetic of the
stand-alone network (ProxylessNAS's MobileInvertedResidualBlock, reference 5.1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import nn

from nasframe.common.errors import InvalidArchitecture
from nasframe.core.space import Arch, Supernet

from .mobilenet_layouts import ZERO, Layout, Slot, parse_op
from .param_index import ParamIndex

BN_MOMENTUM = 0.1
BN_EPS = 1e-3  # ProxylessNAS's bn_param (0.1, 1e-3)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias) + BN (+ ReLU6): the only layer shape MBConv networks use."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (absent when expand is 1), kxk depthwise, linear 1x1 project.

    The shortcut is added when stride is 1 and the shape is kept, unless `residual=False` (the
    fixed first block, which ProxylessNAS builds without one).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, residual: bool = True):
        super().__init__()
        mid = round(cin * expand)
        self.expand = conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, cout, 1, act=False)
        self.residual = residual and stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y

    def conv_weight_names(self) -> list[str]:
        """Relative names of the conv weights, expand -> depthwise -> project (the ABS order)."""
        names = [] if isinstance(self.expand, nn.Identity) else ["expand.0.weight"]
        return names + ["depthwise.0.weight", "project.0.weight"]


def make_op(choice: str, slot: Slot, residual: bool = True) -> MBConv:
    kernel, expand = parse_op(choice)
    return MBConv(slot.cin, slot.cout, kernel, slot.stride, expand, residual)


def init_he_fout(model: nn.Module) -> None:
    """ProxylessNAS's "he_fout": conv N(0, 2/(k*k*out)), BN (1, 0), Linear U(+-1/sqrt(in)) with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.weight.size(1))
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _key(decision: str) -> str:
    return decision.replace(".", "_")  # module names may not contain dots


class _Frame(nn.Module):
    """Stem, fixed first block, head and classifier shared by the net and the supernet."""

    def __init__(self, layout: Layout, in_channels: int, num_classes: int, dropout: float, search_first: bool):
        super().__init__()
        last = layout.widths[-1]
        self.stem = conv_bn(in_channels, layout.first_conv, 3, layout.first_stride)
        if not search_first:
            self.first_block = MBConv(layout.first_conv, layout.first_block, 3, 1, 1, residual=False)
        self.head = conv_bn(last, layout.head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(layout.head, num_classes)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(self.head(x)), 1)))

    def frame_angle_terms(self) -> list[str]:
        """First conv, fixed block (dw, pw), final 1x1 conv, classifier weights (ABS order, reference 2.1)."""
        first = getattr(self, "first_block", None)
        fixed = [f"first_block.{n}" for n in first.conv_weight_names()] if first is not None else []
        return ["stem.0.weight", *fixed, "head.0.weight", "classifier.weight"]


class MBConvNet(_Frame):
    """A stand-alone network: stem, first block, one module per slot (Identity for zero), head."""

    def __init__(
        self,
        layout: Layout,
        slots: Sequence[Slot],
        arch: Mapping[str, str],
        in_channels: int,
        num_classes: int,
        dropout: float = 0.0,
        first_slot: Slot | None = None,
    ):
        super().__init__(layout, in_channels, num_classes, dropout, search_first=first_slot is not None)
        if first_slot is not None:
            self.first_block = make_op(str(arch[first_slot.name]), first_slot, residual=False)
        self.blocks = nn.Sequential()
        for slot in slots:
            choice = str(arch[slot.name])
            block = nn.Identity() if choice == ZERO else make_op(choice, slot)
            self.blocks.add_module(_key(slot.name), block)
        init_he_fout(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.blocks(self.first_block(self.stem(x))))


class MBConvSupernet(_Frame, Supernet):
    """One MBConv per (slot, candidate op) with its own weights and BN; only the chosen path runs.

    `set_path` stores the chosen modules in a plain list, so `forward` is a straight loop.
    """

    def __init__(
        self,
        layout: Layout,
        slots: Sequence[Slot],
        choices: Mapping[str, Sequence[str]],
        in_channels: int,
        num_classes: int,
        dropout: float = 0.0,
        first_slot: Slot | None = None,
    ):
        super().__init__(layout, in_channels, num_classes, dropout, search_first=first_slot is not None)
        all_slots = ([first_slot] if first_slot is not None else []) + list(slots)
        self.choices = {s.name: tuple(choices[s.name]) for s in all_slots}
        self.first_decision = first_slot.name if first_slot is not None else None
        self.blocks = nn.ModuleDict()
        for slot in all_slots:
            residual = slot is not first_slot
            ops = {c: make_op(c, slot, residual) for c in self.choices[slot.name] if c != ZERO}
            self.blocks[_key(slot.name)] = nn.ModuleDict(ops)
        init_he_fout(self)
        self._path: list[nn.Module] | None = None
        self._mixed = [
            (name, [None if c == ZERO else self._candidates(name)[c] for c in ops])
            for name, ops in self.choices.items()
        ]
        self._param_index = ParamIndex(self)  # per-step path_parameter_names without a scan of all parameters

    def _chosen(self, arch: Arch) -> list[tuple[str, str]]:
        """(decision, op) for every non-zero slot, checking the ops exist in this supernet."""
        out = []
        for name, ops in self.choices.items():
            if name not in arch:
                raise InvalidArchitecture(f"architecture misses decision {name!r} of this supernet")
            op = arch[name]
            if op not in ops:
                raise InvalidArchitecture(f"{name}={op!r} is not in the supernet; choose one of {', '.join(ops)}")
            if op != ZERO:
                out.append((name, str(op)))
        return out

    def _candidates(self, name: str) -> nn.ModuleDict:
        """The candidate ops of decision `name` (the frame types `blocks` as a plain module)."""
        return cast(nn.ModuleDict, self.blocks[_key(name)])

    def set_path(self, arch: Arch) -> None:
        path = [self._candidates(name)[op] for name, op in self._chosen(arch)]
        if self.first_decision is None:
            path.insert(0, self.first_block)
        self._path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._path is None:
            raise RuntimeError("call set_path(arch) before forward")
        x = self.stem(x)
        for module in self._path:
            x = module(x)
        return self.classify(x)

    def forward_mixed(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Sum of every op's output weighted by `weights[decision]` (aligned with `self.choices`);
        zero contributes its input, so with weights summing to 1 a residual slot is x + sum w_i f_i(x)."""
        x = self.stem(x)
        if self.first_decision is None:
            x = self.first_block(x)
        for name, ops in self._mixed:
            w = weights[name]
            x = torch.stack([w[i] * (x if op is None else op(x)) for i, op in enumerate(ops)]).sum(0)
        return self.classify(x)

    def path_parameter_names(self, arch: Arch) -> list[str]:
        prefixes = ["stem.", "head.", "classifier."] + ([] if self.first_decision else ["first_block."])
        prefixes += [f"blocks.{_key(name)}.{op}." for name, op in self._chosen(arch)]
        return self._param_index.select(prefixes)

    def angle_terms(self, arch: Arch) -> list[str | torch.Tensor]:
        """Conv and linear weights of the path (reference 2.1); zero slots add nothing."""
        terms: list[str | torch.Tensor] = list(self.frame_angle_terms())
        for name, op in self._chosen(arch):
            module = cast(MBConv, self._candidates(name)[op])
            terms += [f"blocks.{_key(name)}.{op}.{n}" for n in module.conv_weight_names()]
        return terms


class HeadBlock(nn.Module):
    """The head conv, pooling, dropout and classifier of `MBConvNet.classify`, as one block (for latency tables)."""

    def __init__(self, conv: nn.Module, width: int, num_classes: int, dropout: float):
        super().__init__()
        self.conv, self.pool, self.dropout = conv, nn.AdaptiveAvgPool2d(1), nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(self.conv(x)), 1)))
