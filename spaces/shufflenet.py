"""The SPOS ShuffleNetV2 block space (Guo et al., Single Path One-Shot NAS; reference 3.1).

Twenty choice blocks `stage<i>.block<j>` (stage repeats 4, 4, 8, 4; widths 64, 160, 320, 640);
each picks one of shuffle3x3, shuffle5x5, shuffle7x7 or xception, in the order of SPOS's choice
indices 0..3, so an architecture also reads as SPOS's index list ("2,1,0,1,..."). Everything else
is fixed: the 3x3 stem to 16 channels, the projection branch of each stage's first block, the
channel split of the others, conv_last to 1024 channels, pooling, dropout 0.1 and a bias-free
classifier. Widths, repeats and input strides are options, so the space also runs on 8x8 digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.common.options import option
from nasframe.core.blocks import Block, BlockSpace
from nasframe.core.registry import register_space
from nasframe.core.space import Arch, Decision, SearchSpace
from nasframe.data import DataSpec

from .shufflenet_layout import CHOICES, ShuffleLayout

if TYPE_CHECKING:  # the networks import torch: loaded when built, so `nasframe list` runs without it
    from .shufflenet_blocks import ShuffleNetSupernet, ShuffleNetV2Net

REFERENCE_REPEATS = (4, 4, 8, 4)

#: published architectures as SPOS choice indices (reference 3.5)
NAMED_INDICES: dict[str, tuple[int, ...]] = {
    "SPOS": (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3),
}

#: what separates the choices of a list form: commas, spaces, brackets and quotes (so nested and
#: Python-printed lists such as export's `stages` read too)
_LIST_SEPARATORS = re.compile(r"[\s,\[\]()'\"]+")


def _is_index(token: str) -> bool:
    """A short run of ASCII digits (`str.isdigit` also accepts digits `int` cannot read, e.g. '²')."""
    return token.isascii() and token.isdigit() and len(token) < 19


#: inputs lower than this get stride 1 in the stem and first stage under `small_input: auto`
SMALL_INPUT_HEIGHT = 64


@dataclass(frozen=True)
class ShuffleNetOptions:
    stage_repeats: list[int] = option(
        default_factory=lambda: list(REFERENCE_REPEATS),
        help="choice blocks per stage; the first of each stage has the projection branch",
    )
    widths: list[int] = option(
        default_factory=lambda: [64, 160, 320, 640],
        help="output channels per stage: even, and each above the previous width (the stem's for stage 1)",
    )
    stem_width: int = option(16, "output channels of the 3x3 stem conv", min=1)
    last_width: int = option(1024, "output channels of conv_last, the 1x1 conv before pooling", min=1)
    small_input: bool | Literal["auto"] = option(
        "auto",
        f"stem and first stage at stride 1, for CIFAR- or digits-size images; auto: for inputs under "
        f"{SMALL_INPUT_HEIGHT} px (the reference's 224 px ImageNet keeps stride 2)",
    )
    dropout: float = option(0.1, "dropout before the classifier (SPOS: 0.1)", min=0.0, max=0.99)

    def __post_init__(self) -> None:
        for key in ("stage_repeats", "widths"):
            for v in getattr(self, key):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ConfigError(f"space.{key}: {v!r} is not allowed; use positive integers")
        if not self.stage_repeats or len(self.widths) != len(self.stage_repeats):
            raise ConfigError(
                f"space.widths and space.stage_repeats need one entry per stage (at least one), "
                f"got {len(self.widths)} and {len(self.stage_repeats)}"
            )
        odd = [w for w in self.widths if w % 2]
        if odd:
            raise ConfigError(
                f"space.widths: {odd[0]} is odd; widths must be even, since a block splits its input into two halves"
            )
        previous = self.stem_width
        for i, w in enumerate(self.widths, start=1):
            if w <= previous:
                raise ConfigError(
                    f"space.widths: stage {i} width {w} must exceed its input width {previous}, "
                    f"since the projection branch keeps {previous} and the main branch adds the rest"
                )
            previous = w


@register_space("shufflenet")
class ShuffleNetSpace(SearchSpace[ShuffleNetOptions], BlockSpace):
    """SPOS's ShuffleNetV2 choice blocks: kernel 3/5/7 or Xception per block, fixed channels."""

    Options = ShuffleNetOptions
    reference_data = "imagenet"
    supports_supernet = True
    supernet_extras = frozenset({"angle_terms", "forward_mixed"})
    additive_costs = True

    def __init__(self, options: ShuffleNetOptions | None = None):
        super().__init__(options)
        o = self.options
        stages = len(o.widths)
        small = o.small_input is True
        self.layout = ShuffleLayout(
            stem=o.stem_width,
            widths=tuple(o.widths),
            repeats=tuple(o.stage_repeats),
            strides=(1 if small else 2,) + (2,) * (stages - 1),
            last=o.last_width,
            stem_stride=1 if small else 2,
        )
        self.slots = self.layout.slots()

    def layout_for(self, data: DataSpec) -> ShuffleLayout:
        """The stage table for this data: with `small_input: auto`, stride 1 in the stem and the first
        stage for inputs under SMALL_INPUT_HEIGHT px (the decisions do not depend on it)."""
        if self.options.small_input != "auto" or data.height >= SMALL_INPUT_HEIGHT:
            return self.layout
        stages = len(self.layout.widths)
        return replace(self.layout, strides=(1,) + (2,) * (stages - 1), stem_stride=1)

    def define_decisions(self) -> list[Decision]:
        return [Decision(slot.name, CHOICES) for slot in self.slots]

    # ---- published architectures and text forms ---------------------------------------------
    def named_architectures(self) -> dict[str, Arch]:
        """SPOS's searched architecture, where this space has its 20 blocks (and, if restricted, its ops).

        Widths and input strides may differ from the reference's; the published counts hold at the
        defaults only.
        """
        out = {}
        for name, indices in NAMED_INDICES.items():
            if len(indices) != len(self.decisions):
                continue
            choices = [CHOICES[i] for i in indices]
            if all(c in d.choices for c, d in zip(choices, self.decisions)):
                out[name] = Arch([(d.name, c) for c, d in zip(choices, self.decisions)])
        return out

    @classmethod
    def published_names(cls) -> dict[str, tuple[str, ...]]:
        return {name: () for name in NAMED_INDICES}

    def parse_arch(self, text: str) -> Arch:
        """A named architecture, a JSON/YAML mapping, or one choice per block in order: SPOS indices
        0..3 or op names, separated by commas or spaces, optionally in (nested) brackets ("2,1,0,...")."""
        text = text.strip()
        found = self.arch_by_name(text)
        if found is not None:
            return found
        if ":" in text or not text:  # a JSON/YAML mapping
            return super().parse_arch(text)
        tokens = [t for t in _LIST_SEPARATORS.split(text) if t]
        if len(tokens) == 1 and tokens[0] not in CHOICES and not _is_index(tokens[0]):
            raise InvalidArchitecture(
                f"cannot read architecture {text[:60]!r}: give a named architecture "
                f"({', '.join(self.architecture_names())}), a JSON mapping, or "
                f"{len(self.decisions)} choices such as 2,1,0,... (indices 0..3 or op names)"
                f"{self.name_suggestion(text)}"
            )
        return self._from_list(tokens)

    def _from_list(self, tokens: Sequence[str]) -> Arch:
        names = [d.name for d in self.decisions]
        if len(tokens) != len(names):
            raise InvalidArchitecture(
                f"expected {len(names)} choices (one per block, {names[0]} first), got {len(tokens)}"
            )
        choices = []
        for name, token in zip(names, tokens):
            if _is_index(token) and int(token) < len(CHOICES):
                choices.append(CHOICES[int(token)])
            elif token in CHOICES:
                choices.append(token)
            else:
                raise InvalidArchitecture(
                    f"{name}={token!r} is not a choice; use an index 0..3 or one of {', '.join(CHOICES)}"
                )
        return self.validate(dict(zip(names, choices)))

    def name_unavailable(self, name: str) -> str:
        if len(NAMED_INDICES[name]) != len(self.decisions):
            return (
                f"architecture {name!r} has {len(NAMED_INDICES[name])} blocks, this space "
                f"{len(self.decisions)}; add --set space.stage_repeats="
                f"[{','.join(map(str, REFERENCE_REPEATS))}]"
            )
        return f"architecture {name!r} uses ops that the restricted space no longer offers"

    def export(self, arch: Arch, weights: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """SPOS's index list (readable back by `parse_arch`), the ops per stage and the stage table."""
        stages = [
            [str(arch[s.name]) for s in self.slots if s.name.startswith(f"stage{i}.")]
            for i in range(1, len(self.layout.widths) + 1)
        ]
        layout = self.layout
        return {
            "choice_indices": ",".join(str(CHOICES.index(str(arch[s.name]))) for s in self.slots),
            "stages": stages,
            "stage_table": {
                "stem": layout.stem,
                "stem_stride": layout.stem_stride,
                "widths": list(layout.widths),
                "repeats": list(layout.repeats),
                "strides": list(layout.strides),
                "last": layout.last,
            },
        }

    # ---- networks ----------------------------------------------------------------------------
    def build(self, arch: Arch, data: DataSpec) -> ShuffleNetV2Net:
        """SPOS's evaluation network for `arch`: affine BNs, SPOS's initialisation."""
        from .shufflenet_blocks import ShuffleNetV2Net

        return ShuffleNetV2Net(
            self.layout_for(data), self.check_buildable(arch), data.channels, data.num_classes, self.options.dropout
        )

    def blocks(self, arch: Arch, data: DataSpec) -> list[Block]:
        """Stem, one choice block per slot and the head, on their input shapes (for latency tables)."""
        from .shufflenet_blocks import network_blocks

        layout = self.layout_for(data)
        return network_blocks(
            layout, self.check_buildable(arch), data.input_shape, data.num_classes, self.options.dropout
        )

    def build_supernet(self, data: DataSpec) -> ShuffleNetSupernet:
        """All four candidates in every block, whatever the restriction (shared weights stay valid)."""
        from .shufflenet_blocks import ShuffleNetSupernet

        choices = {d.name: tuple(map(str, d.choices)) for d in self.define_decisions()}
        return ShuffleNetSupernet(self.layout_for(data), choices, data.channels, data.num_classes, self.options.dropout)
