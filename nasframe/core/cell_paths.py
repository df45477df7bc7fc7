"""Space capability: architectures are cells whose input-to-output paths are sequences of operations.

BANANAS' path encoding (White et al., 2021) describes a cell by which op sequences occur on its paths
from the input node to the output node, rather than by which op sits on which edge; a predictor
trained on it generalises across cells that share paths. A space that can list those paths declares
this capability by inheriting `CellPaths`; a strategy checks it with `isinstance` (the nb201 space
declares it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nasframe.core.space import Arch, Choice


class CellPaths(ABC):
    """Space capability: every input-to-output path of an architecture's cell, as a sequence of ops."""

    @abstractmethod
    def path_ops(self) -> tuple[Choice, ...]:
        """The operations a step of a path can carry (the path encoding's alphabet)."""

    @abstractmethod
    def longest_path(self) -> int:
        """The most steps an input-to-output path of a cell can have."""

    @abstractmethod
    def cell_paths(self, arch: Arch) -> list[tuple[Choice, ...]]:
        """The op sequence of every input-to-output path of `arch`'s cell, from input to output."""
