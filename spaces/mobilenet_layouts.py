"""Stage tables of MBConv networks and the published architectures that live on them.

A layout fixes everything except the op of each block slot: stem width and stride, the fixed
MBConv1 block, per-stage widths, slot counts and strides, and the head width. Keeping layouts
as data (presets here, or a YAML mapping in the space options) lets one space class cover
ProxylessNAS, MobileNetV2, FairNAS and MDENAS without code per paper. Numbers follow
reference/algorithms.md sections 1.7(b), 2.5 and 5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from nasframe.common.errors import ConfigError

#: the choice that leaves a slot out (an identity; allowed where `space.allow_zero` and the slot allow it)
ZERO = "zero"


@dataclass(frozen=True)
class Layout:
    """A stage table. `blocks[i]` slots in stage i+1; only the first slot of a stage has its stride."""

    first_conv: int
    first_block: int
    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    strides: tuple[int, ...]
    head: int
    first_stride: int = 2

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass(frozen=True)
class Slot:
    """One searchable block position: its decision name, channels and stride."""

    name: str
    cin: int
    cout: int
    stride: int

    @property
    def zero_allowed(self) -> bool:
        """Zero (identity) keeps the shape only when nothing changes size (ProxylessNAS's rule)."""
        return self.stride == 1 and self.cin == self.cout


_PROXYLESS_SLOTS: dict[str, Any] = {"blocks": (4, 4, 4, 4, 4, 1), "strides": (2, 2, 2, 1, 2, 1)}

LAYOUTS: dict[str, Layout] = {
    # the ProxylessNAS / SPOS-on-MobileNet search space (reference 5.1)
    "proxyless": Layout(32, 16, (24, 40, 80, 96, 192, 320), head=1280, **_PROXYLESS_SLOTS),
    # the same slots with MobileNetV2's widths, so MobileNetV2 itself is a member (reference 5.3)
    "mobilenetv2": Layout(32, 16, (24, 32, 64, 96, 160, 320), head=1280, **_PROXYLESS_SLOTS),
    # skeletons of the published ProxylessNAS nets; also SPOS_ABS / ProxylessNAS_ABS (reference 5.2, 2.5)
    "proxyless_gpu": Layout(40, 24, (32, 56, 112, 128, 256, 432), head=1728, **_PROXYLESS_SLOTS),
    "proxyless_cpu": Layout(40, 24, (32, 48, 88, 104, 216, 360), head=1432, **_PROXYLESS_SLOTS),
    # FairNAS: 19 slots, no identity in the original space (use allow_zero=false) (reference 2.5)
    "fairnas": Layout(32, 16, (32, 40, 80, 96, 192, 320), (2, 4, 4, 4, 4, 1), (2, 2, 2, 1, 2, 1), head=1280),
}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of `divisor`, never dropping more than 10% (MobileNetV2 rule)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def _positive_ints(value: Any, key: str, allowed: tuple[int, ...] | None = None) -> tuple[int, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (allowed and v not in allowed):
            want = f"one of {', '.join(map(str, allowed))}" if allowed else "positive integers"
            raise ConfigError(f"space.custom_layout.{key}: {v!r} is not allowed; use {want}")
        out.append(v)
    return tuple(out)


def resolve_layout(preset: str, custom: Mapping[str, Any] | None, *, small_input: bool, width_mult: float) -> Layout:
    """The preset, with `custom` keys replacing its entries, then input-size and width scaling."""
    if preset not in LAYOUTS:
        raise ConfigError(f"space.layout: {preset!r} is not a preset; choose one of {', '.join(LAYOUTS)}")
    layout = LAYOUTS[preset]
    if custom:
        names = [f.name for f in fields(Layout)]
        unknown = [k for k in custom if k not in names]
        if unknown:
            raise ConfigError(f"space.custom_layout: unknown key {unknown[0]!r}; keys: {', '.join(names)}")
        changes: dict[str, Any] = {}
        for key, value in custom.items():
            allowed = (1, 2) if key in ("strides", "first_stride") else None
            ints = _positive_ints(value, key, allowed)
            changes[key] = ints if key in ("widths", "blocks", "strides") else ints[0]
        layout = replace(layout, **changes)
    if not len(layout.widths) == len(layout.blocks) == len(layout.strides):
        raise ConfigError(
            f"space.custom_layout: widths, blocks and strides need one entry per stage, got "
            f"{len(layout.widths)}, {len(layout.blocks)} and {len(layout.strides)}"
        )
    if small_input:  # CIFAR-size images: keep resolution through the stem and the first stage
        layout = replace(layout, first_stride=1, strides=(1, *layout.strides[1:]))
    if width_mult != 1.0:
        layout = replace(
            layout,
            first_conv=make_divisible(layout.first_conv * width_mult),
            first_block=make_divisible(layout.first_block * width_mult),
            widths=tuple(make_divisible(w * width_mult) for w in layout.widths),
            head=make_divisible(layout.head * width_mult) if width_mult > 1.0 else layout.head,
        )
    return layout


def block_slots(layout: Layout) -> list[Slot]:
    """The searchable slots `stage<i>.block<j>` (stages from 1), in network order."""
    slots, cin = [], layout.first_block
    for i, (width, count, stride) in enumerate(zip(layout.widths, layout.blocks, layout.strides), start=1):
        for j in range(count):
            slots.append(Slot(f"stage{i}.block{j}", cin, width, stride if j == 0 else 1))
            cin = width
    return slots


def op_name(kernel: int, expand: int) -> str:
    return f"k{kernel}e{expand}"


def parse_op(name: str) -> tuple[int, int]:
    """`k5e3` -> (5, 3)."""
    kernel, expand = name[1:].split("e")
    return int(kernel), int(expand)


# ---- published architectures ---------------------------------------------------------------------


@dataclass(frozen=True)
class NamedArch:
    """A published network: its layout preset, first-block op (None: the fixed k3e1) and slot ops."""

    layout: str
    stages: tuple[tuple[str, ...], ...]
    first_block: str | None = None
    source: str = ""

    def choices(self) -> dict[str, str]:
        out = {"stage0.block0": self.first_block} if self.first_block else {}
        for i, ops in enumerate(self.stages, start=1):
            out.update({f"stage{i}.block{j}": op for j, op in enumerate(ops)})
        return out


def _stages(text: str) -> tuple[tuple[str, ...], ...]:
    """'k3e6 k3e6 Z Z | k3e6 ...' -> per-stage tuples, Z meaning zero (the notation of reference 5.2)."""
    return tuple(tuple("zero" if op == "Z" else op for op in stage.split()) for stage in text.split("|"))


def _from_indices(indices: str, counts: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
    """ABS/SPOS op indices into [k3e3, k3e6, k5e3, k5e6, k7e3, k7e6], -1 = identity (reference 2.5)."""
    order = ["k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6"]
    ops = ["zero" if int(i) < 0 else order[int(i)] for i in indices.split()]
    out, start = [], 0
    for n in counts:
        out.append(tuple(ops[start : start + n]))
        start += n
    return tuple(out)


def _gene_on_skeleton(skeleton: NamedArch, gene: list[tuple[int, int]]) -> NamedArch:
    """MDENAS mobile genes: one (kernel, expand) per non-zero block of a frozen skeleton, block 0 first."""
    ops = iter(op_name(k, e) for k, e in gene)
    first = next(ops)
    stages = tuple(tuple(op if op == "zero" else next(ops) for op in stage) for stage in skeleton.stages)
    return NamedArch(skeleton.layout, stages, first_block=first, source="MDENAS mobile gene (reference 1.7b)")


_GPU = NamedArch(
    "proxyless_gpu",
    _stages("k5e3 Z Z Z | k7e3 Z Z k3e3 | k7e6 Z Z k5e3 | k5e6 Z k3e3 k5e3 | k7e6 k7e6 k7e6 k5e6 | k7e6"),
    source="ProxylessNAS-GPU (reference 5.2)",
)
_CPU = NamedArch(
    "proxyless_cpu",
    _stages(
        "k3e6 k3e3 k3e3 k3e3 | k3e6 k3e3 k3e3 k5e3 | k3e6 Z Z k3e3 | k5e6 k3e3 k3e3 k3e3 | k5e6 k5e3 k5e3 k3e3 | k5e6"
    ),
    source="ProxylessNAS-CPU (reference 5.2)",
)

NAMED_ARCHS: dict[str, NamedArch] = {
    "mobilenetv2": NamedArch(
        "mobilenetv2",
        _stages("k3e6 k3e6 Z Z | k3e6 k3e6 k3e6 Z | k3e6 k3e6 k3e6 k3e6 | k3e6 k3e6 k3e6 Z | k3e6 k3e6 k3e6 Z | k3e6"),
        source="MobileNetV2 (reference 5.3)",
    ),
    "proxyless_gpu": _GPU,
    "proxyless_cpu": _CPU,
    "spos_abs": NamedArch(
        "proxyless_gpu",
        _from_indices("2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3", _PROXYLESS_SLOTS["blocks"]),
        source="SPOS + ABS (reference 2.5)",
    ),
    "proxyless_abs": NamedArch(
        "proxyless_gpu",
        _from_indices("2 2 -1 -1 0 2 2 -1 5 -1 4 4 0 0 4 2 3 4 4 4 3", _PROXYLESS_SLOTS["blocks"]),
        source="ProxylessNAS + ABS (reference 2.5)",
    ),
    "fairnas_abs": NamedArch(
        "fairnas",
        _from_indices("4 2 4 2 2 2 5 2 4 4 2 2 2 4 5 4 2 2 5", LAYOUTS["fairnas"].blocks),
        source="FairNAS + ABS (reference 2.5)",
    ),
    "mdenas_gpu": _gene_on_skeleton(
        _GPU,
        [
            (7, 6),
            (5, 6),
            (7, 3),
            (3, 6),
            (5, 6),
            (3, 1),
            (7, 3),
            (7, 6),
            (3, 3),
            (3, 6),
            (7, 3),
            (3, 3),
            (3, 3),
            (5, 6),
        ],
    ),
    "mdenas_cpu": _gene_on_skeleton(
        _CPU,
        [
            (5, 3),
            (7, 1),
            (3, 6),
            (5, 3),
            (5, 3),
            (5, 3),
            (5, 1),
            (5, 6),
            (5, 1),
            (5, 6),
            (7, 3),
            (5, 3),
            (7, 3),
            (7, 6),
            (3, 6),
            (5, 3),
            (7, 6),
            (7, 1),
            (3, 3),
            (3, 3),
        ],
    ),
}


def needed_options(named: NamedArch) -> dict[str, Any]:
    """Space options under which `named` is a member (the op sets are the least that suffice)."""
    ops = [parse_op(op) for op in named.choices().values() if op != "zero"]
    need: dict[str, Any] = {
        "layout": named.layout,
        "kernels": sorted({k for k, _ in ops}),
        "expand_ratios": sorted({e for _, e in ops}),
    }
    if named.first_block:
        need["search_first_block"] = True
    return need
