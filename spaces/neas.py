"""The NEAS ensemble space: K MobileNetV3-style members that share their first `split` choice layers.

Chen et al., "One-shot Neural Ensemble Architecture Search by Diversity-Guided Search Space
Shrinking" (CVPR 2021); the chain and the ensemble encoding are the released model code's
(reference algorithms-2.md 10.1-10.3). Decisions: `split` (how many choice layers the members share,
0..L) and, for each member k and choice layer, `member<k>.stage<i>.layer<j>` with the six Cream ops
[k3e4, k3e6, k5e4, k5e6, k7e4, k7e6] plus `skip` (the layer is omitted) on every layer but the first
of a stage (a skipped first layer would drop the stage's stride). The trunk takes member 0's choices
below the split; the other members' choices there are unused (`canonical` rewrites them).

Because the ensemble is encoded as ordinary decisions, every strategy searches ensembles unchanged;
`build` gives the ensemble network (mean of the members' logits; summed member losses in training,
see `nasframe.core.space.EnsembleLogits`) and `build_supernet` a K-path supernet. The released models
are named `neas_s`, `neas_m` and `neas_l` (NEAS-314, -472, -574); the text form also reads
the released flat tuples (split, K, c_DS, trunk choices, then each member's choices and c_last).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.common.options import option
from nasframe.core.blocks import Block, BlockSpace
from nasframe.core.ensemble import EnsembleSpace
from nasframe.core.registry import register_space
from nasframe.core.space import Arch, Choice, Decision, SearchSpace
from nasframe.data import DataSpec

from .neas_layout import SKIP, Chain, EnsembleNames, Layer, read_ensemble

if TYPE_CHECKING:  # the networks import torch: loaded when built, so `nasframe list` runs without it
    from .neas_net import EnsembleNet, EnsembleSupernet

#: the released op order: index i of a NEAS tuple is OPS[i], -1 is skip
OPS = ("k3e4", "k3e6", "k5e4", "k5e6", "k7e4", "k7e6")
_OP = re.compile(r"^k([1-9][0-9]*)e([1-9][0-9]*)$")

#: the released arch tuples (configs/subnets/{314,472,574}.yaml arch_list)
RELEASED: dict[str, tuple[int, ...]] = {
    "neas_s": (20, 2, 0, 0, -1, 0, 2, 0, 0, 2, -1, 0, -1, 0, 3, 2, 4, 0, 2, 5, 0, 4, 3, 0, 0),
    "neas_m": (16, 2, 0, 3, 2, 0, 2, 5, 0, -1, 3, 0, 2, 0, 0, 3, 5, 4, 0, 5, 0, 5, 4, 0, 3, 5, 2, 5, 0),
    "neas_l": (16, 2, 0, 5, 5, 1, 3, 5, 1, 3, 4, 1, 2, 5, 4, 1, 3, 3, 1, 3, 1, 5, 1, 0, 5, 4, 4, 3, 0),
}


@dataclass(frozen=True)
class NeasOptions:
    members: int = option(2, "K: sub-networks per ensemble (released models: 2)", min=1, max=16)
    stage_layers: list[int] = option(
        default_factory=lambda: [4, 4, 4, 4, 4], help="choice layers per stage (released: 4 x 5 = 20)"
    )
    widths: list[int] = option(default_factory=lambda: [24, 40, 80, 112, 160], help="output width of each stage")
    strides: list[int] = option(
        default_factory=lambda: [2, 2, 2, 1, 2], help="stride of each stage's first layer (1 or 2)"
    )
    stem_width: int = option(16, "stem conv and fixed depthwise-separable block width", min=1)
    last_width: int = option(960, "each member's last 1x1 conv width", min=1)
    head_width: int = option(1280, "each member's head 1x1 conv width (after pooling)", min=1)
    ops: list[str] = option(default_factory=lambda: list(OPS), help="candidate ops k<kernel>e<expand> of every layer")
    allow_skip: bool = option(True, "offer skip (omit the layer) on every layer but the first of a stage")
    splits: list[int] | None = option(
        None, "split values offered (shared choice layers); null: every value 0..L (L = the number of layers)"
    )
    small_input: bool = option(False, "CIFAR-size images: stem and first stage at stride 1")
    dropout: float = option(0.0, "dropout before each classifier (NEAS retrains with 0.2)", min=0.0, max=0.99)
    unused_released_layers: bool = option(
        False,
        "also build the depthwise conv + BN the released InvertedResidual creates but never runs (they "
        "are in the published parameter counts; `inspect --arch neas_*` turns this on)",
    )

    def __post_init__(self) -> None:
        n = len(self.stage_layers)
        if n == 0 or len(self.widths) != n or len(self.strides) != n:
            raise ConfigError(
                f"space.stage_layers, widths and strides need one entry per stage, got "
                f"{len(self.stage_layers)}, {len(self.widths)} and {len(self.strides)}"
            )
        for key, values, allowed in (
            ("stage_layers", self.stage_layers, None),
            ("widths", self.widths, None),
            ("strides", self.strides, (1, 2)),
        ):
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (allowed and v not in allowed):
                    want = "1 or 2" if allowed else "positive integers"
                    raise ConfigError(f"space.{key}: {v!r} is not allowed; use {want}")
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise ConfigError("space.ops: give at least one op, each once (e.g. [k3e4, k5e6])")
        for op in self.ops:
            m = _OP.match(str(op))
            if m is None or int(m.group(1)) % 2 == 0:
                raise ConfigError(f"space.ops: {op!r} is not allowed; use k<odd kernel>e<expansion>, e.g. k3e4")
        total = sum(self.stage_layers)
        if self.splits is not None:
            bad = [s for s in self.splits if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= total]
            if bad or not self.splits or len(set(self.splits)) != len(self.splits):
                raise ConfigError(
                    f"space.splits: {bad[0] if bad else self.splits!r} is not allowed; give distinct "
                    f"integers in 0..{total} (the number of shared choice layers), or null for all"
                )


@register_space("neas")
class NeasSpace(SearchSpace[NeasOptions], EnsembleSpace, BlockSpace):
    """Ensembles of K MobileNetV3-style members sharing a trunk up to a searched split layer (NEAS)."""

    Options = NeasOptions
    reference_data = "imagenet"
    supports_supernet = True

    def __init__(self, options: NeasOptions | None = None):
        super().__init__(options)
        o = self.options
        layers, cin = [], o.stem_width
        for i, (count, width, stride) in enumerate(zip(o.stage_layers, o.widths, o.strides), start=1):
            for j in range(count):
                first_stride = 1 if (o.small_input and i == 1) else stride
                layers.append(Layer(f"stage{i}.layer{j}", cin, width, first_stride if j == 0 else 1, j > 0))
                cin = width
        self.chain = Chain(
            stem=o.stem_width,
            first_stride=1 if o.small_input else 2,
            layers=tuple(layers),
            last=o.last_width,
            features=o.head_width,
            dropout=o.dropout,
            unused_released_tail=o.unused_released_layers,
        )
        self.names = EnsembleNames(
            "split", tuple(tuple(f"member{k}.{layer.name}" for layer in layers) for k in range(o.members))
        )

    # ---- decisions -------------------------------------------------------------------------------
    def define_decisions(self) -> list[Decision]:
        o = self.options
        total = len(self.chain.layers)
        out = [Decision("split", tuple(sorted(o.splits)) if o.splits is not None else tuple(range(total + 1)))]
        for member in self.names.members:
            for name, layer in zip(member, self.chain.layers):
                skip = (SKIP,) if o.allow_skip and layer.skippable else ()
                out.append(Decision(name, tuple(o.ops) + skip))
        return out

    def decision_groups(self) -> list[list[str]]:
        """The split alone, then each member's layers: a mutation touches the split or one member
        as often as any other member [inferred: NEAS' evolution is not released]."""
        decisions = {d.name for d in self.decisions}
        return [["split"]] + [[n for n in member if n in decisions] for member in self.names.members]

    # ---- EnsembleSpace ---------------------------------------------------------------------------
    @property
    def members(self) -> int:
        return self.options.members

    def layer_decisions(self) -> dict[str, tuple[str, ...]]:
        return {
            layer.name: tuple(member[i] for member in self.names.members) for i, layer in enumerate(self.chain.layers)
        }

    def member_layers(self, arch: Arch) -> list[list[tuple[str, Choice]]]:
        trunk, members = read_ensemble(arch, self.names)
        names = [layer.name for layer in self.chain.layers]
        return [list(zip(names, trunk + ops)) for ops in members]

    def canonical(self, arch: Arch) -> Arch:
        split = int(arch["split"])
        trunk = {i: arch[n] for i, n in enumerate(self.names.members[0][:split])}
        changes = {member[i]: choice for member in self.names.members[1:] for i, choice in trunk.items()}
        return Arch([(k, changes.get(k, v)) for k, v in arch.items()])

    def solo(self, arch: Arch, member: int) -> Arch:
        if not 0 <= member < self.members:
            raise InvalidArchitecture(f"member {member} does not exist; members are 0..{self.members - 1}")
        split = int(arch["split"])
        own = self.names.members[member]
        path = [arch[n] for n in self.names.members[0][:split]] + [arch[n] for n in own[split:]]
        changes = {n: c for names in self.names.members for n, c in zip(names, path)}
        return Arch([(k, changes.get(k, v)) for k, v in arch.items()])

    # ---- the released tuples -----------------------------------------------------------------------
    def named_architectures(self) -> dict[str, Arch]:
        """The released NEAS models, on the released chain (defaults but `members` 2 and any dropout)."""
        if not self._released_chain():
            return {}
        return {name: self.from_tuple(values) for name, values in RELEASED.items()}

    def _released_chain(self) -> bool:
        o, d = self.options, NeasOptions()
        same = (o.stage_layers, o.widths, o.strides, o.stem_width, o.last_width, o.head_width, o.small_input)
        ref = (d.stage_layers, d.widths, d.strides, d.stem_width, d.last_width, d.head_width, d.small_input)
        return same == ref and o.members == 2 and set(OPS) <= set(o.ops) and o.allow_skip and o.splits is None

    @classmethod
    def published_names(cls) -> dict[str, tuple[str, ...]]:
        return {name: () for name in RELEASED}

    def name_unavailable(self, name: str) -> str:
        return (
            f"{name!r} is defined on the released chain with K = 2; use the default space options "
            f"with --set space.members=2 (no stage, width, op or split changes)"
        )

    @classmethod
    def options_for_arch(cls, name: str) -> dict[str, Any] | None:
        """The released models need the default chain with K = 2; their published parameter counts
        include the released code's unused layers, so `inspect` builds those too."""
        return {"members": 2, "unused_released_layers": True} if name in RELEASED else None

    def from_tuple(self, values: Sequence[int]) -> Arch:
        """A released flat tuple (split, K, c_DS, c_1..c_split, then per member c_split+1..c_L, c_last;
        op indices into OPS, -1 = skip) as an architecture of this space."""
        total = len(self.chain.layers)
        if len(values) < 3 or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise InvalidArchitecture("a NEAS tuple is a list of integers: split, K, c_DS, choices...")
        split, k = values[0], values[1]
        if not 0 <= split <= total or k != self.members:
            raise InvalidArchitecture(
                f"NEAS tuple has split {split} and K {k}; this space has {total} layers and members={self.members}"
            )
        want = 2 + (split + 1) + k * (total - split + 1)
        if len(values) != want:
            raise InvalidArchitecture(
                f"a NEAS tuple with split {split} and K {k} has 2 + {split + 1} + {k} x {total - split + 1} = "
                f"{want} entries, got {len(values)}"
            )
        trunk = list(values[3 : 3 + split])
        start, members = 3 + split, []
        for _ in range(k):
            members.append(list(values[start : start + total - split]))
            start += total - split + 1
        pairs: list[tuple[str, Choice]] = [("split", split)]
        for names, own in zip(self.names.members, members):
            for i, (name, index) in enumerate(zip(names, trunk + own)):
                if not -1 <= index < len(OPS):
                    raise InvalidArchitecture(f"NEAS op index {index} at {name}: use 0..{len(OPS) - 1} or -1 (skip)")
                if index == -1 and not self.chain.layers[i].skippable:
                    raise InvalidArchitecture(
                        f"{name}: -1 (skip) on the first layer of a stage would drop the stage's stride; not allowed"
                    )
                pairs.append((name, SKIP if index == -1 else OPS[index]))
        return self.validate(dict(pairs))

    def to_tuple(self, arch: Arch) -> list[int]:
        """The released flat tuple of `arch` (needs ops from OPS; c_DS and c_last are 0)."""
        trunk, members = read_ensemble(arch, self.names)

        def index(op: str) -> int:
            if op == SKIP:
                return -1
            if op not in OPS:
                raise InvalidArchitecture(f"op {op!r} has no index in the released tuple form (ops: {', '.join(OPS)})")
            return OPS.index(op)

        out = [int(arch["split"]), self.members, 0, *map(index, trunk)]
        for ops in members:
            out += [*map(index, ops), 0]
        return out

    def parse_arch(self, text: str) -> Arch:
        """A named model, a JSON/YAML mapping, or a released flat tuple such as `[16, 2, 0, 3, ...]`."""
        text = text.strip()
        found = self.arch_by_name(text)
        if found is not None:
            return found
        if text.startswith("["):
            import yaml

            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise InvalidArchitecture(f"cannot read the NEAS tuple: {str(exc).splitlines()[0]}") from None
            if not isinstance(value, list):
                raise InvalidArchitecture("a NEAS tuple is a list of integers")
            return self.from_tuple(value)
        return super().parse_arch(text)

    def export(self, arch: Arch, weights: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """The trunk's ops, each member's ops after the split, and the released tuple when it exists."""
        trunk, members = read_ensemble(arch, self.names)
        out: dict[str, Any] = {
            "split": int(arch["split"]),
            "members": self.members,
            "trunk": trunk,
            "branches": members,
        }
        if all(op in OPS or op == SKIP for op in trunk + [op for m in members for op in m]):
            out["neas_tuple"] = self.to_tuple(arch)
        return out

    # ---- networks ------------------------------------------------------------------------------------
    def build(self, arch: Arch, data: DataSpec) -> EnsembleNet:
        from .neas_net import EnsembleNet

        trunk, members = read_ensemble(self.check_buildable(arch), self.names)
        return EnsembleNet(self.chain, trunk, members, data.channels, data.num_classes)

    def blocks(self, arch: Arch, data: DataSpec) -> list[Block]:
        """Stem, fixed block, trunk layers, then each member's layers and head (for latency tables)."""
        from .neas_net import ensemble_blocks

        trunk, members = read_ensemble(self.check_buildable(arch), self.names)
        return ensemble_blocks(self.chain, trunk, members, data.input_shape, data.num_classes)

    def build_supernet(self, data: DataSpec) -> EnsembleSupernet:
        from .neas_net import EnsembleSupernet

        full = {d.name: d.choices for d in self.define_decisions()}
        choices = {
            layer.name: tuple(map(str, full[self.names.members[0][i]])) for i, layer in enumerate(self.chain.layers)
        }
        return EnsembleSupernet(self.chain, choices, self.names, data.channels, data.num_classes)
