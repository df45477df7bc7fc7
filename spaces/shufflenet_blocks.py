"""ShuffleNetV2 choice blocks, the stand-alone SPOS network and its weight-sharing supernet.

Both networks are built from the same `ChoiceBlock`, so a path of the supernet has exactly the
layers, parameter shapes and arithmetic of the stand-alone network; they differ only in the
BatchNorms: affine in the stand-alone (evaluation) network, affine-free in the supernet, as in
SPOS's code (reference 3.1). The layer order inside a branch follows SPOS's blocks, so
`branch_main.<i>` indexes the same layer as there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import cast

import torch
from torch import nn

from nasframe.common.errors import InvalidArchitecture
from nasframe.core.blocks import Block, shape_text
from nasframe.core.space import Arch, Supernet

from .param_index import ParamIndex
from .shufflenet_layout import ShuffleLayout, Slot

_KERNELS = {"shuffle3x3": 3, "shuffle5x5": 5, "shuffle7x7": 7, "xception": 3}

BN_BIAS_INIT = 1e-4  # SPOS initialises affine BN biases to 1e-4, not 0
FIRST_CONV_STD = 0.01
LINEAR_STD = 0.01


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int, affine: bool, *, depthwise: bool = False, relu: bool = True
) -> list[nn.Module]:
    """Conv (no bias) + BN (+ ReLU) as flat layers, so a branch is one Sequential as in SPOS."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=cin if depthwise else 1, bias=False),
        nn.BatchNorm2d(cout, affine=affine),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


def split_shuffled(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Even channels (passed through) and odd channels (main branch).

    This is ShuffleNetV2's channel shuffle (2 groups) of the previous block's concatenation fused
    with the channel split of this one: SPOS's `channel_shuffle` returns exactly these halves.
    """
    even, odd = x.unflatten(1, (x.shape[1] // 2, 2)).unbind(2)
    return even, odd


class ChoiceBlock(nn.Module):
    """One candidate op in one slot: a ShuffleNetV2 unit with a kxk main branch, or the Xception variant.

    Main branch (shuffle k): 1x1 -> BN -> ReLU -> dw kxk (stride) -> BN -> 1x1 -> BN -> ReLU.
    Main branch (xception): three (dw 3x3 -> BN -> 1x1 -> BN -> ReLU), the first dw with the stride.
    Projection branch (project slots only): dw kxk (stride) -> BN -> 1x1 -> BN -> ReLU (k = 3 for xception).
    """

    def __init__(self, choice: str, slot: Slot, affine: bool):
        super().__init__()
        kernel, mid, s = _KERNELS[choice], slot.mid, slot.stride
        if choice == "xception":
            main = [
                *_conv_bn(slot.main_in, slot.main_in, 3, s, affine, depthwise=True, relu=False),
                *_conv_bn(slot.main_in, mid, 1, 1, affine),
                *_conv_bn(mid, mid, 3, 1, affine, depthwise=True, relu=False),
                *_conv_bn(mid, mid, 1, 1, affine),
                *_conv_bn(mid, mid, 3, 1, affine, depthwise=True, relu=False),
                *_conv_bn(mid, slot.main_out, 1, 1, affine),
            ]
        else:
            main = [
                *_conv_bn(slot.main_in, mid, 1, 1, affine),
                *_conv_bn(mid, mid, kernel, s, affine, depthwise=True, relu=False),
                *_conv_bn(mid, slot.main_out, 1, 1, affine),
            ]
        self.branch_main = nn.Sequential(*main)
        self.branch_proj = (
            nn.Sequential(
                *_conv_bn(slot.cin, slot.cin, kernel, s, affine, depthwise=True, relu=False),
                *_conv_bn(slot.cin, slot.cin, 1, 1, affine),
            )
            if slot.project
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch_proj is None:
            kept, x = split_shuffled(x)
            return torch.cat((kept, self.branch_main(x)), 1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)

    def conv_weight_names(self) -> list[str]:
        """Relative names of the conv weights, in `named_parameters` order (main branch, then projection)."""
        return [f"{name}.weight" for name, m in self.named_modules() if isinstance(m, nn.Conv2d)]


def init_spos(model: nn.Module, first_conv: nn.Conv2d) -> None:
    """SPOS's initialisation: conv weights N(0, std = 1 / input channels per group), the first conv
    N(0, 0.01); BN weight 1, bias 1e-4 where affine; linear N(0, 0.01), no bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            std = FIRST_CONV_STD if m is first_conv else 1.0 / m.weight.shape[1]
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.constant_(m.bias, BN_BIAS_INIT)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, LINEAR_STD)


def _key(decision: str) -> str:
    return decision.replace(".", "_")  # module names may not contain dots


class _Frame(nn.Module):
    """Stem, the blocks (given by the subclass), conv_last, global pool, dropout and classifier.

    Global pooling is adaptive: at 224x224 the last map is 7x7, where it equals SPOS's AvgPool(7);
    other input sizes work too.
    """

    def __init__(
        self, layout: ShuffleLayout, blocks: nn.Module, in_channels: int, num_classes: int, dropout: float, affine: bool
    ):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, layout.stem, 3, layout.stem_stride, affine))
        self.blocks = blocks
        self.conv_last = nn.Sequential(*_conv_bn(layout.widths[-1], layout.last, 1, 1, affine))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(layout.last, num_classes, bias=False)
        init_spos(self, self.stem[0])  # type: ignore[arg-type]  # the stem's first layer is its conv

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(self.conv_last(x)), 1)))

    @staticmethod
    def frame_angle_terms() -> list[str]:
        """First conv, conv_last and classifier weights (the frame of ABS's vector, reference 2.1)."""
        return ["stem.0.weight", "conv_last.0.weight", "classifier.weight"]


class ShuffleNetV2Net(_Frame):
    """The stand-alone network of one architecture (SPOS's evaluation network, affine BN by default)."""

    def __init__(
        self,
        layout: ShuffleLayout,
        arch: Mapping[str, str],
        in_channels: int,
        num_classes: int,
        dropout: float = 0.1,
        affine: bool = True,
    ):
        blocks = nn.Sequential()
        for slot in layout.slots():
            blocks.add_module(_key(slot.name), ChoiceBlock(str(arch[slot.name]), slot, affine))
        super().__init__(layout, blocks, in_channels, num_classes, dropout, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.blocks(self.stem(x)))


class ShuffleNetSupernet(_Frame, Supernet):
    """Every candidate of every slot, each with its own weights and affine-free BNs; one path runs.

    `set_path` stores the chosen blocks in a plain list, so `forward` is a straight loop.
    """

    def __init__(
        self,
        layout: ShuffleLayout,
        choices: Mapping[str, Sequence[str]],
        in_channels: int,
        num_classes: int,
        dropout: float = 0.1,
    ):
        slots = layout.slots()
        blocks = nn.ModuleDict(
            {
                _key(slot.name): nn.ModuleDict({c: ChoiceBlock(c, slot, affine=False) for c in choices[slot.name]})
                for slot in slots
            }
        )
        super().__init__(layout, blocks, in_channels, num_classes, dropout, affine=False)
        self.choices = {slot.name: tuple(choices[slot.name]) for slot in slots}
        self._mixed = [(name, [self._candidates(name)[c] for c in ops]) for name, ops in self.choices.items()]
        self._path: list[nn.Module] | None = None
        self._param_index = ParamIndex(self)  # per-step path_parameter_names without a scan of all parameters

    def _chosen(self, arch: Arch) -> list[tuple[str, str]]:
        """(decision, op) for every slot, checking the ops exist in this supernet."""
        out = []
        for name, ops in self.choices.items():
            if name not in arch:
                raise InvalidArchitecture(f"architecture misses decision {name!r} of this supernet")
            op = arch[name]
            if op not in ops:
                raise InvalidArchitecture(f"{name}={op!r} is not in the supernet; choose one of {', '.join(ops)}")
            out.append((name, str(op)))
        return out

    def _candidates(self, name: str) -> nn.ModuleDict:
        """The candidate ops of decision `name` (the frame types `blocks` as a plain module)."""
        return cast(nn.ModuleDict, cast(nn.ModuleDict, self.blocks)[_key(name)])

    def set_path(self, arch: Arch) -> None:
        self._path = [self._candidates(name)[op] for name, op in self._chosen(arch)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._path is None:
            raise RuntimeError("call set_path(arch) before forward")
        x = self.stem(x)
        for block in self._path:
            x = block(x)
        return self.classify(x)

    def forward_mixed(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Every slot outputs the sum of its candidates' outputs weighted by `weights[decision]`
        (aligned with `self.choices[decision]`), e.g. a softmax of architecture parameters."""
        x = self.stem(x)
        for name, ops in self._mixed:
            w = weights.get(name)
            if w is None or w.shape[-1] != len(ops):
                got = "none" if w is None else f"{w.shape[-1]} entries"
                raise InvalidArchitecture(
                    f"forward_mixed: weights[{name!r}] needs {len(ops)} entries "
                    f"({', '.join(self.choices[name])}), got {got}"
                )
            x = sum(w[i] * op(x) for i, op in enumerate(ops))
        return self.classify(x)

    def path_parameter_names(self, arch: Arch) -> list[str]:
        prefixes = ["stem.", "conv_last.", "classifier."]
        prefixes += [f"blocks.{_key(name)}.{op}." for name, op in self._chosen(arch)]
        return self._param_index.select(prefixes)

    def angle_terms(self, arch: Arch) -> list[str | torch.Tensor]:
        """Frame weights, then each slot's chosen op's conv weights in network order (reference 2.1):
        conv and linear weights only (the supernet's BNs have no parameters anyway)."""
        terms: list[str | torch.Tensor] = list(self.frame_angle_terms())
        for name, op in self._chosen(arch):
            block = cast(ChoiceBlock, self._candidates(name)[op])
            terms += [f"blocks.{_key(name)}.{op}.{n}" for n in block.conv_weight_names()]
        return terms


class _Head(nn.Module):
    """conv_last, pooling, dropout and the classifier of `_Frame.classify`, as one timed block."""

    def __init__(self, layout: ShuffleLayout, num_classes: int, dropout: float):
        super().__init__()
        self.conv_last = nn.Sequential(*_conv_bn(layout.widths[-1], layout.last, 1, 1, True))
        self.pool, self.dropout = nn.AdaptiveAvgPool2d(1), nn.Dropout(dropout)
        self.classifier = nn.Linear(layout.last, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(self.conv_last(x)), 1)))


def network_blocks(
    layout: ShuffleLayout, arch: Mapping[str, str], shape: tuple[int, int, int], num_classes: int, dropout: float
) -> list[Block]:
    """The timed blocks of `ShuffleNetV2Net`: the stem, one `ChoiceBlock` per slot and the head, on their inputs."""
    c, h, w = shape
    s = layout.stem_stride
    out = [
        Block(
            f"stem conv3x3 {c}>{layout.stem} s{s} @{shape_text(shape)}",
            shape,
            lambda: nn.Sequential(*_conv_bn(c, layout.stem, 3, s, True)),
        )
    ]
    size = ((h - 1) // s + 1, (w - 1) // s + 1)
    for slot in layout.slots():
        block_in = (slot.cin, *size)
        choice = str(arch[slot.name])
        kind = "proj" if slot.project else "split"
        key = f"shuffle {slot.cin}>{slot.cout} {choice} s{slot.stride} {kind} @{shape_text(block_in)}"
        out.append(Block(key, block_in, partial(ChoiceBlock, choice, slot, True)))
        size = ((size[0] - 1) // slot.stride + 1, (size[1] - 1) // slot.stride + 1)
    last = (layout.widths[-1], *size)
    key = f"head conv1x1 {layout.widths[-1]}>{layout.last} fc>{num_classes} @{shape_text(last)}"
    out.append(Block(key, last, lambda: _Head(layout, num_classes, dropout)))
    return out
