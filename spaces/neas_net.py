"""NEAS ensemble networks: K members sharing a trunk up to a split layer, and their K-path supernet.

Stand-alone (`EnsembleNet`, the released `NEAS` model, reference algorithms-2.md 10.2-10.3): stem, the
fixed depthwise-separable block and the first `split` choice layers form the trunk; each of the K
members continues with its own remaining choice layers and its own head; between trunk and members
sits `GradDivide` (gradient / K). In train mode the net returns `EnsembleLogits` (the mean of the
members' logits and each member's logits: the training loss is the sum of the members' cross-entropies);
in eval mode the mean of the members' pre-softmax logits.

Supernet (`EnsembleSupernet`, inferred, see docs/spaces/neas.md): one candidate module per (choice
layer, op) and one head, all shared by the members, so a member path is a single path of a
single-path supernet; the members of an ensemble run through the same weights, each on its own path
above the split. Members whose paths above the split are identical are computed once and counted
with their multiplicity, so the outputs equal those of computing each member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import nn

from nasframe.common.errors import InvalidArchitecture
from nasframe.core.blocks import Block, shape_text
from nasframe.core.space import Arch, EnsembleLogits, Supernet

from .neas_blocks import DepthwiseSeparable, GradDivide, InvertedResidual, MemberHead, conv_bn, init_released
from .neas_layout import SKIP, Chain, EnsembleNames, Layer, read_ensemble
from .param_index import ParamIndex


def parse_op(op: str) -> tuple[int, int]:
    """`k5e6` -> (5, 6)."""
    kernel, expand = op[1:].split("e")
    return int(kernel), int(expand)


def make_layer(chain: Chain, layer: Layer, op: str) -> InvertedResidual:
    kernel, expand = parse_op(op)
    return InvertedResidual(layer.cin, layer.cout, kernel, layer.stride, expand, chain.unused_released_tail)


def _key(name: str) -> str:
    return name.replace(".", "_")  # module names may not contain dots


class _Stem(nn.Module):
    """Stem conv and the fixed depthwise-separable block."""

    def __init__(self, chain: Chain, in_channels: int):
        super().__init__()
        self.stem = conv_bn(in_channels, chain.stem, 3, chain.first_stride)
        self.first_block = DepthwiseSeparable(chain.stem, chain.stem, 3, 1)


class EnsembleNet(_Stem):
    """A stand-alone ensemble: `trunk` ops for the first layers, one op list per member for the rest
    (`skip` omits a layer: it builds no module)."""

    def __init__(
        self,
        chain: Chain,
        trunk: Sequence[str],
        members: Sequence[Sequence[str]],
        in_channels: int,
        num_classes: int,
    ):
        super().__init__(chain, in_channels)
        split = len(trunk)
        if not members or any(len(m) != len(chain.layers) - split for m in members):
            raise InvalidArchitecture("every member needs one op per layer after the split")
        self.k = len(members)
        self.trunk = nn.Sequential()
        for layer, op in zip(chain.layers[:split], trunk):
            if op != SKIP:
                self.trunk.add_module(_key(layer.name), make_layer(chain, layer, op))
        self.members = nn.ModuleList()
        cin = chain.layers[-1].cout if chain.layers else chain.stem
        for ops in members:
            body = nn.Sequential()
            for layer, op in zip(chain.layers[split:], ops):
                if op != SKIP:
                    body.add_module(_key(layer.name), make_layer(chain, layer, op))
            body.add_module("head", MemberHead(cin, chain.last, chain.features, num_classes, chain.dropout))
            self.members.append(body)
        init_released(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | EnsembleLogits:
        x = GradDivide.apply(self.trunk(self.first_block(self.stem(x))), self.k)
        logits = tuple(member(x) for member in self.members)
        mean = torch.stack(logits).mean(0)
        return EnsembleLogits(mean, logits) if self.training else mean


class EnsembleSupernet(_Stem, Supernet):
    """Every (layer, op) once, one head, shared by all members; `set_path` fixes the trunk and the
    distinct member branches, so `forward` is a straight loop."""

    def __init__(
        self,
        chain: Chain,
        choices: Mapping[str, Sequence[str]],
        names: EnsembleNames,
        in_channels: int,
        num_classes: int,
    ):
        super().__init__(chain, in_channels)
        self.k = len(names.members)
        self.names = names
        self.layers = nn.ModuleDict()
        for layer in chain.layers:
            ops = {op: make_layer(chain, layer, op) for op in choices[layer.name] if op != SKIP}
            self.layers[_key(layer.name)] = nn.ModuleDict(ops)
        cin = chain.layers[-1].cout if chain.layers else chain.stem
        self.head = MemberHead(cin, chain.last, chain.features, num_classes, chain.dropout)
        init_released(self)
        self.layer_names = [layer.name for layer in chain.layers]
        self._trunk: list[nn.Module] | None = None
        self._branches: list[tuple[list[nn.Module], int]] = []
        self._param_index = ParamIndex(self)  # per-step path_parameter_names without a scan of all parameters

    def _module(self, layer: str, op: str) -> nn.Module:
        ops = cast(nn.ModuleDict, self.layers[_key(layer)])
        if op not in ops:
            raise InvalidArchitecture(f"{layer}={op!r} is not in the supernet; choose one of {', '.join(ops)}")
        return ops[op]

    def _used(self, arch: Arch) -> tuple[list[tuple[str, str]], list[tuple[tuple[str, str], ...]]]:
        """(layer, op) of the trunk, and of each member's branch, skips left out."""
        trunk, members = read_ensemble(arch, self.names)
        split = len(trunk)
        kept = [(n, op) for n, op in zip(self.layer_names, trunk) if op != SKIP]
        branches = [tuple((n, op) for n, op in zip(self.layer_names[split:], ops) if op != SKIP) for ops in members]
        return kept, branches

    def set_path(self, arch: Arch) -> None:
        trunk, branches = self._used(arch)
        self._trunk = [self._module(n, op) for n, op in trunk]
        distinct: dict[tuple[tuple[str, str], ...], int] = {}
        for b in branches:
            distinct[b] = distinct.get(b, 0) + 1
        self._branches = [([self._module(n, op) for n, op in b], count) for b, count in distinct.items()]

    def forward(self, x: torch.Tensor) -> torch.Tensor | EnsembleLogits:
        if self._trunk is None:
            raise RuntimeError("call set_path(arch) before forward")
        x = self.first_block(self.stem(x))
        for module in self._trunk:
            x = module(x)
        x = GradDivide.apply(x, self.k)
        logits: list[torch.Tensor] = []
        for modules, count in self._branches:
            y = x
            for module in modules:
                y = module(y)
            logits += [self.head(y)] * count
        mean = torch.stack(logits).mean(0)
        return EnsembleLogits(mean, tuple(logits)) if self.training else mean

    def path_parameter_names(self, arch: Arch) -> list[str]:
        trunk, branches = self._used(arch)
        used = {f"layers.{_key(n)}.{op}." for n, op in trunk}
        used |= {f"layers.{_key(n)}.{op}." for b in branches for n, op in b}
        return self._param_index.select(["stem.", "first_block.", "head.", *sorted(used)])


def ensemble_blocks(
    chain: Chain, trunk: Sequence[str], members: Sequence[Sequence[str]], shape: tuple[int, int, int], num_classes: int
) -> list[Block]:
    """The timed blocks of `EnsembleNet`: stem, fixed block, the trunk's layers, then each member's layers
    and head (a layer's key does not name its member: equal layers are timed once and counted per use)."""
    c, h, w = shape
    s = chain.first_stride
    size = ((h - 1) // s + 1, (w - 1) // s + 1)
    stem_out = (chain.stem, *size)
    out = [
        Block(f"stem conv3x3 {c}>{chain.stem} s{s} @{shape_text(shape)}", shape, lambda: conv_bn(c, chain.stem, 3, s)),
        Block(
            f"dwsep {chain.stem}>{chain.stem} @{shape_text(stem_out)}",
            stem_out,
            lambda: DepthwiseSeparable(chain.stem, chain.stem, 3, 1),
        ),
    ]
    sizes = []
    for layer in chain.layers:
        sizes.append(size)
        size = ((size[0] - 1) // layer.stride + 1, (size[1] - 1) // layer.stride + 1)

    def layer_block(i: int, op: str) -> Block:
        layer = chain.layers[i]
        block_in = (layer.cin, *sizes[i])
        tail = " tail" if chain.unused_released_tail else ""
        key = f"ir {layer.cin}>{layer.cout} {op} s{layer.stride}{tail} @{shape_text(block_in)}"
        return Block(key, block_in, lambda: make_layer(chain, layer, op))

    split = len(trunk)
    out += [layer_block(i, op) for i, op in enumerate(trunk) if op != SKIP]
    cin = chain.layers[-1].cout if chain.layers else chain.stem
    last = (cin, *size)
    head_key = f"member head {cin}>{chain.last}>{chain.features} fc>{num_classes} @{shape_text(last)}"
    for ops in members:
        out += [layer_block(split + i, op) for i, op in enumerate(ops) if op != SKIP]
        out.append(
            Block(head_key, last, lambda: MemberHead(cin, chain.last, chain.features, num_classes, chain.dropout))
        )
    return out
