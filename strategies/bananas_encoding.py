"""Feature vectors of architectures for BANANAS' predictor: the path encoding, or a one-hot of decisions.

Path encoding (White et al., BANANAS, AAAI 2021): one binary feature per possible op sequence of up to
`max_length` steps; a cell sets the features of the sequences found on its input-to-output paths. On
nb201 (5 ops, paths of 1 to 3 steps) that is 5 + 25 + 125 = 155 features, of which a cell sets at most
4. The released code truncates nb201's encoding to its first 30 features (the paths of one and two
steps), which leaves out the one path through edge 2<-1; `max_length` chooses.

One-hot encoding: for every decision, one feature per allowed choice. It is what spaces without the
`CellPaths` capability get (every space can give it).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import numpy as np

from nasframe.common.errors import ConfigError
from nasframe.core.cell_paths import CellPaths
from nasframe.core.space import Arch, Choice, SearchSpace

Encoding = Literal["auto", "path", "onehot"]


class ArchEncoder:
    """Turns architectures into rows of a float matrix, by the path or the one-hot encoding."""

    def __init__(self, space: SearchSpace, kind: Encoding = "auto", max_length: int | None = None):
        if kind == "auto":
            kind = "path" if isinstance(space, CellPaths) else "onehot"
        self.kind = kind
        self.space = space
        if kind == "path":
            if not isinstance(space, CellPaths):
                raise ConfigError(
                    f"strategy.encoding: path needs a space that lists its cells' paths; space {space.name!r} does not "
                    "(use onehot or auto)"
                )
            longest = space.longest_path()
            length = longest if max_length is None else min(max_length, longest)
            self._paths = space
            self.index: dict[tuple[Choice, ...], int] = {}
            for steps in range(1, length + 1):
                for seq in itertools.product(space.path_ops(), repeat=steps):
                    self.index[seq] = len(self.index)
            self.size = len(self.index)
        elif kind == "onehot":
            self._slots: list[tuple[str, dict[Choice, int]]] = []
            offset = 0
            for d in space.decisions:
                self._slots.append((d.name, {c: offset + i for i, c in enumerate(d.choices)}))
                offset += len(d.choices)
            self.size = offset
        else:
            raise ConfigError(f"strategy.encoding: {kind!r} is not allowed; choose auto, path or onehot")

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        """One row per architecture (len(archs) x size), zeros and ones."""
        out = np.zeros((len(archs), self.size))
        for row, arch in enumerate(archs):
            if self.kind == "path":
                for path in self._paths.cell_paths(arch):
                    col = self.index.get(tuple(path))
                    if col is not None:  # longer than max_length: left out
                        out[row, col] = 1.0
            else:
                for name, cols in self._slots:
                    out[row, cols[arch[name]]] = 1.0
        return out
