"""The NEAS space's plain description, apart from its networks: the skip choice, the layer chain and
the ensemble's decision names (`nasframe.spaces.neas_net` builds the networks from them).

Separate from the networks so that the space's module loads without torch (`nasframe list`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from nasframe.common.errors import InvalidArchitecture

SKIP = "skip"


@dataclass(frozen=True)
class EnsembleNames:
    """Decision names of an ensemble architecture: the split, and each member's decision per layer."""

    split: str
    members: tuple[tuple[str, ...], ...]


def read_ensemble(arch: Mapping[str, object], names: EnsembleNames) -> tuple[list[str], list[list[str]]]:
    """(trunk ops, each member's ops after the split): the trunk takes member 0's choices below the
    split; the other members' choices there are not used."""
    for n in (names.split, *(n for decisions in names.members for n in decisions)):
        if n not in arch:
            raise InvalidArchitecture(f"architecture misses decision {n!r}")
    split = int(cast(int, arch[names.split]))
    trunk = [str(arch[n]) for n in names.members[0][:split]]
    return trunk, [[str(arch[n]) for n in decisions[split:]] for decisions in names.members]


@dataclass(frozen=True)
class Layer:
    """One choice layer: its name (`stage<i>.layer<j>`), channels, stride and whether it may be skipped."""

    name: str
    cin: int
    cout: int
    stride: int
    skippable: bool


@dataclass(frozen=True)
class Chain:
    """Everything about the networks except the choices: widths, layers, strides, head sizes."""

    stem: int
    first_stride: int
    layers: tuple[Layer, ...]
    last: int
    features: int
    dropout: float
    unused_released_tail: bool
