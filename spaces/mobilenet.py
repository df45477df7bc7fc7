"""The MBConv (MobileNet / ProxylessNAS) search space: one candidate op per block slot of a stage table.

Decisions are the block slots `stage<i>.block<j>`; choices are `k<kernel>e<expand>` MBConv ops,
plus `zero` (the block becomes the identity) only where the stride is 1 and the width is kept,
as in ProxylessNAS (reference 5.1). The stage table is a space option (a preset or YAML), so a
published architecture is a member only of the space built on its own layout: `mobilenetv2`
needs `layout=mobilenetv2`, `proxyless_gpu` needs `layout=proxyless_gpu`; asking for it in
another layout fails with the `--set` flags that fix it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.common.options import option
from nasframe.core.blocks import Block, BlockSpace, shape_text
from nasframe.core.registry import register_space
from nasframe.core.space import Arch, Decision, SearchSpace
from nasframe.data import DataSpec

from .mobilenet_layouts import (
    LAYOUTS,
    NAMED_ARCHS,
    ZERO,
    Slot,
    block_slots,
    needed_options,
    op_name,
    resolve_layout,
)

if TYPE_CHECKING:  # the networks import torch: loaded when built, so `nasframe list` runs without it
    from .mbconv import MBConvNet, MBConvSupernet


@dataclass(frozen=True)
class MobileNetOptions:
    layout: str = option("proxyless", "stage table preset (widths, slots, strides, head)", choices=tuple(LAYOUTS))
    custom_layout: dict[str, Any] | None = option(
        None,
        "stage table entries replacing the preset's: first_conv, first_block, widths, blocks, strides, "
        "head, first_stride",
    )
    small_input: bool = option(False, "CIFAR-size images: stem and first stage at stride 1")
    kernels: list[int] = option(default_factory=lambda: [3, 5, 7], help="depthwise kernel sizes of candidate ops")
    expand_ratios: list[int] = option(
        default_factory=lambda: [3, 6], help="expansion ratios of candidate ops (add 1 for MDENAS genes)"
    )
    allow_zero: bool = option(True, "offer zero (identity) on slots with stride 1 and in == out")
    search_first_block: bool = option(
        False, "make the fixed MBConv1 block a decision too (stage0.block0), as MDENAS genes do"
    )
    width_mult: float = option(1.0, "scale every width (rounded to multiples of 8)", min=0.1, max=4.0)
    dropout: float = option(0.0, "dropout before the classifier (ProxylessNAS trains with 0.2-0.3)", min=0.0, max=0.99)

    def __post_init__(self) -> None:
        for k in self.kernels:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ConfigError(f"space.kernels: {k!r} is not allowed; use odd sizes such as 3, 5, 7")
        for e in self.expand_ratios:
            if isinstance(e, bool) or not isinstance(e, int) or e < 1:
                raise ConfigError(f"space.expand_ratios: {e!r} is not allowed; use integers >= 1")
        if not self.kernels or not self.expand_ratios:
            raise ConfigError("space.kernels and space.expand_ratios need at least one value each")


@register_space("mobilenet")
class MobileNetSpace(SearchSpace[MobileNetOptions], BlockSpace):
    """MBConv blocks (kernel x expansion, or zero) on a ProxylessNAS / MobileNetV2 stage table."""

    Options = MobileNetOptions
    reference_data = "imagenet"
    supports_supernet = True
    supernet_extras = frozenset({"angle_terms", "forward_mixed"})
    additive_costs = True

    def __init__(self, options: MobileNetOptions | None = None):
        super().__init__(options)
        o = self.options
        self.layout = resolve_layout(o.layout, o.custom_layout, small_input=o.small_input, width_mult=o.width_mult)
        self.slots = block_slots(self.layout)
        self.first_slot = (
            Slot("stage0.block0", self.layout.first_conv, self.layout.first_block, 1) if o.search_first_block else None
        )
        self.ops = tuple(op_name(k, e) for k in sorted(set(o.kernels)) for e in sorted(set(o.expand_ratios)))

    def _all_slots(self) -> list[Slot]:
        return ([self.first_slot] if self.first_slot else []) + self.slots

    def define_decisions(self) -> list[Decision]:
        decisions = []
        for slot in self._all_slots():
            zero = self.options.allow_zero and slot.zero_allowed and slot is not self.first_slot
            decisions.append(Decision(slot.name, self.ops + ((ZERO,) if zero else ())))
        return decisions

    # ---- published architectures ---------------------------------------------------------------
    def named_architectures(self) -> dict[str, Arch]:
        """Published nets defined on this space's layout (with its op set), by name."""
        o = self.options
        if o.custom_layout or o.width_mult != 1.0:
            return {}
        out = {}
        for name, named in NAMED_ARCHS.items():
            choices = named.choices()
            if named.layout != o.layout or set(choices) != {d.name for d in self.decisions}:
                continue
            if all(choices[d.name] in d.choices for d in self.decisions):
                out[name] = Arch([(d.name, choices[d.name]) for d in self.decisions])
        return out

    @classmethod
    def published_names(cls) -> dict[str, tuple[str, ...]]:
        """The papers' spellings beyond case and separators: ProxylessNAS' and ABS' tables."""
        spellings = {
            "proxyless_gpu": ("ProxylessNAS-GPU",),
            "proxyless_cpu": ("ProxylessNAS-CPU",),
            "proxyless_abs": ("ProxylessNAS_ABS",),
        }
        return {name: spellings.get(name, ()) for name in NAMED_ARCHS}

    @classmethod
    def options_for_arch(cls, name: str) -> dict[str, Any] | None:
        """Space options under which the published architecture `name` is a member (None: no such
        name), with the default op sets kept. A CLI can merge them under the user's own `--set`
        values, so `--arch proxyless_gpu` needs no flags."""
        if name not in NAMED_ARCHS:
            return None
        need = needed_options(NAMED_ARCHS[name])
        defaults = cls.Options()
        for key in ("kernels", "expand_ratios"):
            need[key] = sorted(set(getattr(defaults, key)) | set(need[key]))
        return need

    def parse_arch(self, text: str) -> Arch:
        """A named architecture, a JSON/YAML mapping, or a list of choices in decision order."""
        text = text.strip()
        found = self.arch_by_name(text)
        if found is not None:
            return found
        if text.startswith("["):
            from nasframe.common.loading import parse_yaml

            value = parse_yaml(text, "architecture list", InvalidArchitecture)
            if not isinstance(value, list):
                raise InvalidArchitecture(f"cannot read architecture list {text[:60]!r}: expected [choice, ...]")
            return self._from_list(value)
        return super().parse_arch(text)

    def _from_list(self, value: Sequence[Any]) -> Arch:
        flat = [c for item in value for c in (item if isinstance(item, list) else [item])]
        names = [d.name for d in self.decisions]
        if len(flat) != len(names):
            raise InvalidArchitecture(
                f"expected {len(names)} choices (one per block slot, {names[0]} first), got {len(flat)}"
            )
        return self.validate(dict(zip(names, flat)))

    def name_unavailable(self, name: str) -> str:
        o = self.options
        need = needed_options(NAMED_ARCHS[name])
        sets = []
        for key, wanted in need.items():
            current = getattr(o, key)
            if isinstance(wanted, list):
                if not set(wanted) <= set(current):
                    sets.append(f"--set space.{key}={_yaml_value(sorted(set(current) | set(wanted)))}")
            elif current != wanted:
                sets.append(f"--set space.{key}={_yaml_value(wanted)}")
        if o.custom_layout:
            sets.append("--set space.custom_layout=null")
        if o.width_mult != 1.0:
            sets.append("--set space.width_mult=1")
        if not o.allow_zero and "zero" in NAMED_ARCHS[name].choices().values():
            sets.append("--set space.allow_zero=true")
        return (
            f"architecture {name!r} is defined on layout {need['layout']!r}, not on this space "
            f"(layout {o.layout!r}); add {' '.join(sets) or 'the matching space options'}"
        )

    # ---- networks ----------------------------------------------------------------------------------
    def build(self, arch: Arch, data: DataSpec) -> MBConvNet:
        from .mbconv import MBConvNet

        return MBConvNet(
            self.layout,
            self.slots,
            self.check_buildable(arch),
            data.channels,
            data.num_classes,
            self.options.dropout,
            self.first_slot,
        )

    def build_supernet(self, data: DataSpec) -> MBConvSupernet:
        from .mbconv import MBConvSupernet

        choices = {d.name: tuple(map(str, d.choices)) for d in self.define_decisions()}
        return MBConvSupernet(
            self.layout, self.slots, choices, data.channels, data.num_classes, self.options.dropout, self.first_slot
        )

    def blocks(self, arch: Arch, data: DataSpec) -> list[Block]:
        """Stem, first block, each slot's op (none for zero) and the head with the classifier, on their
        input shapes (for latency tables)."""
        from .mbconv import HeadBlock, conv_bn, make_op

        lay, o = self.layout, self.options
        arch = Arch(self.check_buildable(arch))
        size = ((data.height - 1) // lay.first_stride + 1, (data.width - 1) // lay.first_stride + 1)
        shape = (data.channels, data.height, data.width)
        out = [
            Block(
                f"stem conv3x3 {data.channels}>{lay.first_conv} s{lay.first_stride} @{shape_text(shape)}",
                shape,
                lambda: conv_bn(data.channels, lay.first_conv, 3, lay.first_stride),
            )
        ]
        slots = (
            self._all_slots() if self.first_slot else [Slot("first", lay.first_conv, lay.first_block, 1)] + self.slots
        )
        for slot in slots:
            shape = (slot.cin, *size)
            size = ((size[0] - 1) // slot.stride + 1, (size[1] - 1) // slot.stride + 1)
            first = slot.name == "first" or slot is self.first_slot
            choice = "k3e1" if slot.name == "first" else str(arch[slot.name])
            if choice == ZERO:
                continue
            key = (
                f"mbconv {slot.cin}>{slot.cout} {choice} s{slot.stride}{' nores' if first else ''} @{shape_text(shape)}"
            )
            out.append(Block(key, shape, partial(make_op, choice, slot, residual=not first)))
        shape = (lay.widths[-1], *size)
        out.append(
            Block(
                f"head conv1x1 {lay.widths[-1]}>{lay.head} fc>{data.num_classes} @{shape_text(shape)}",
                shape,
                lambda: HeadBlock(conv_bn(lay.widths[-1], lay.head, 1), lay.head, data.num_classes, o.dropout),
            )
        )
        return out

    def export(self, arch: Arch, weights: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """The stage table and the ops per stage, in the notation of the ProxylessNAS configs."""
        stages = [
            [arch[s.name] for s in self.slots if s.name.startswith(f"stage{i}.")]
            for i in range(1, len(self.layout.widths) + 1)
        ]
        out: dict[str, Any] = {"layout": self.options.layout, "stage_table": self.layout.to_dict(), "stages": stages}
        if self.first_slot:
            out["first_block"] = arch[self.first_slot.name]
        return out


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)
