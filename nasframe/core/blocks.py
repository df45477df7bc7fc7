"""Space capability: the stand-alone network as blocks that can be timed one at a time (latency tables).

A latency table (`nasframe.core.latency_table`) times every block a space can put into a network once, on
its real input shape, and predicts a network's latency as the sum of its blocks' entries (plus a
correction fitted on whole networks). A space offers this by inheriting `BlockSpace` and listing, for an
architecture, the blocks its stand-alone network runs: the fixed ones (stem, head) and the chosen ones.
What the network does between blocks (a residual addition, an ensemble's mean, a branch sum) is not
timed; keep such glue inside a block where it matters.

A block's `key` names its table entry: two blocks with the same key must be the same computation on the
same input shape (the key usually spells both out, e.g. `mbconv 40>40 k5e3 s1 @40x28x28`), so that
repeated shapes are timed once. `build` makes the module (fresh weights); it is called only when the
block is timed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nasframe.core.space import Arch, SearchSpace

if TYPE_CHECKING:
    from torch import nn

    from nasframe.data import DataSpec


@dataclass(frozen=True)
class Block:
    """One timed part of a stand-alone network: its table key, one sample's input shape and its builder."""

    key: str
    input_shape: tuple[int, ...]
    build: Callable[[], nn.Module]


class BlockSpace(ABC):
    """Space capability: lists the blocks of an architecture's stand-alone network (see the module docstring)."""

    @abstractmethod
    def blocks(self, arch: Arch, spec: DataSpec) -> list[Block]:
        """The blocks `space.build(arch, spec)` runs, fixed ones included, in network order."""

    def all_blocks(self, spec: DataSpec) -> list[Block]:
        """Every block any architecture can run (one per key). The default takes the blocks of the
        architecture with every decision at its first choice and of each architecture that differs from
        it in one decision, which is complete when each decision picks its own blocks; override it where
        a decision changes which blocks another one picks."""
        assert isinstance(self, SearchSpace)
        full = self.define_decisions()
        reference = Arch([(d.name, d.choices[0]) for d in full])
        found: dict[str, Block] = {}
        for arch in [reference] + [reference.replace(**{d.name: c}) for d in full for c in d.choices[1:]]:
            for block in self.blocks(arch, spec):
                found.setdefault(block.key, block)
        return list(found.values())


def shape_text(shape: tuple[int, ...]) -> str:
    """(40, 28, 28) -> '40x28x28', for block keys."""
    return "x".join(str(int(s)) for s in shape)
