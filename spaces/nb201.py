"""The NAS-Bench-201 cell space, with the benchmark's own tables shipped in the package.

A cell has 4 nodes and 6 edges `i<-j` (j < i); each edge takes one of 5 ops, so the space holds
5^6 = 15,625 cells. Decisions follow the benchmark's cell-string order
(`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`), and every cell maps to its row in the benchmark's
tables (the benchmark's index order, read from the table, not an enumeration), so the `tabular`
evaluator can answer in microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nasframe.errors import DataError, InvalidArchitecture
from nasframe.options import option
from nasframe.registry import register_space
from nasframe.space import Arch, Decision, SearchSpace

if TYPE_CHECKING:
    from torch import nn

    from nasframe.data import DataSpec

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (target node, source node) of each edge, in the cell string's order
EDGES = tuple((i, j) for i in range(1, 4) for j in range(i))
EDGE_NAMES = tuple(f"{i}<-{j}" for i, j in EDGES)
DATASETS = ("cifar10", "cifar100", "imagenet16-120")
TABLE_PATH = Path(__file__).resolve().parent / "data" / "nb201.npz"
RESNET_CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

_CELL_RE = re.compile(r"^\|(\w+)~0\|\+\|(\w+)~0\|(\w+)~1\|\+\|(\w+)~0\|(\w+)~1\|(\w+)~2\|$")


def cell_string(ops: tuple[str, ...] | list[str]) -> str:
    """Six ops in edge order -> the benchmark's cell string."""
    a, b, c, d, e, f = ops
    return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"


def parse_cell_string(text: str) -> tuple[str, ...]:
    """The benchmark's cell string -> six ops in edge order; InvalidArchitecture if malformed."""
    m = _CELL_RE.match(text.strip())
    if m is None:
        raise InvalidArchitecture(
            f"cannot read NB201 cell {text[:80]!r}: expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        )
    ops = m.groups()
    bad = [op for op in ops if op not in OPS]
    if bad:
        raise InvalidArchitecture(f"unknown NB201 op {bad[0]!r} in {text.strip()!r}; ops: {', '.join(OPS)}")
    return ops


class NB201Table:
    """Both benchmark tables (200-epoch test; 12-epoch val and test) for all 15,625 cells.

    Columns are float64 arrays in row (= benchmark index) order, keyed `<dataset>_<split>_<epochs>`,
    e.g. `cifar10_val_12`, `cifar10_test_200`. Load it with `load_table()`, which caches it.
    """

    def __init__(self, path: Path = TABLE_PATH):
        with np.load(path, allow_pickle=False) as z:
            self.ops: np.ndarray = z["ops"]
            names = tuple(str(s) for s in z["op_names"])
            self.columns: dict[str, np.ndarray] = {k: z[k] for k in z.files if k not in ("ops", "op_names")}
        if names != OPS:
            raise DataError(f"{path}: op order {names} differs from {OPS}; rebuild the table")
        rows = [tuple(OPS[c] for c in r) for r in self.ops.tolist()]
        #: ops tuple (an Arch's `values_tuple()`) -> row index
        self.row_of: dict[tuple[str, ...], int] = {r: i for i, r in enumerate(rows)}
        self.rows: list[tuple[str, ...]] = rows

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, dataset: str, split: str, epochs: int) -> np.ndarray:
        key = f"{dataset}_{split}_{epochs}"
        if key not in self.columns:
            raise KeyError(f"no column {key!r}; columns: {', '.join(self.columns)}")
        return self.columns[key]


_TABLE: NB201Table | None = None


def load_table() -> NB201Table:
    """The shipped tables, read once per process (a few milliseconds)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = NB201Table()
    return _TABLE


@dataclass(frozen=True)
class NB201Options:
    C: int = option(16, "channels of the first stage (doubled at each of the two reductions)", min=1)
    N: int = option(5, "cells per stage (3 stages)", min=1)


@register_space("nb201")
class NB201Space(SearchSpace):
    """NAS-Bench-201 cell: 6 edges x 5 ops (15,625 cells), with the benchmark's tables built in."""

    Options = NB201Options
    reference_data = "cifar10"

    def define_decisions(self) -> list[Decision]:
        return [Decision(name, OPS) for name in EDGE_NAMES]

    # ---- benchmark index --------------------------------------------------------------------
    def benchmark_table(self) -> NB201Table:
        """The benchmark tables (what the `tabular` evaluator answers from)."""
        return load_table()

    def index_of(self, arch: Arch) -> int:
        """Benchmark index (table row) of a cell."""
        return load_table().row_of[tuple(arch[n] for n in EDGE_NAMES)]

    def arch_at(self, index: int) -> Arch:
        """The cell at benchmark index `index`."""
        table = load_table()
        if not 0 <= index < len(table):
            raise InvalidArchitecture(f"NB201 index {index} is out of range; indices are 0..{len(table) - 1}")
        return Arch(zip(EDGE_NAMES, table.rows[index]))

    def from_string(self, text: str) -> Arch:
        return self.validate(dict(zip(EDGE_NAMES, parse_cell_string(text))))

    def to_string(self, arch: Arch) -> str:
        return cell_string([arch[n] for n in EDGE_NAMES])

    # ---- text forms ----------------------------------------------------------------------------
    def named_architectures(self) -> dict[str, Arch]:
        return {"resnet": Arch(zip(EDGE_NAMES, parse_cell_string(RESNET_CELL)))}

    def parse_arch(self, text: str) -> Arch:
        """A cell string (`|nor_conv_3x3~0|+|...|`), a benchmark index, a name, or a JSON mapping."""
        stripped = text.strip()
        if stripped.startswith("|"):
            return self.from_string(stripped)
        if stripped.isdigit():
            return self.validate(self.arch_at(int(stripped)))
        return super().parse_arch(text)

    def export(self, arch: Arch, weights: Any = None) -> dict[str, Any]:
        return {"arch_str": self.to_string(arch), "index": self.index_of(arch)}

    # ---- networks ----------------------------------------------------------------------------
    def build(self, arch: Arch, data: DataSpec) -> nn.Module:
        """The benchmark's network: stem, 3 stages of N cells (C, 2C, 4C) joined by ResNet blocks."""
        from nasframe.spaces.nb201_net import NB201Network

        ops = [arch[n] for n in EDGE_NAMES]
        return NB201Network(ops, C=self.options.C, N=self.options.N, in_channels=data.channels,
                            num_classes=data.num_classes)
