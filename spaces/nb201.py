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

from nasframe.common.errors import DataError, InvalidArchitecture
from nasframe.common.options import option
from nasframe.core.cell_paths import CellPaths
from nasframe.core.registry import register_space
from nasframe.core.space import Arch, Choice, Decision, SearchSpace, TabularSpace

if TYPE_CHECKING:
    from torch import nn

    from nasframe.data import DataSpec
    from nasframe.spaces.nb201_supernet import NB201Supernet

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (target node, source node) of each edge, in the cell string's order
EDGES = tuple((i, j) for i in range(1, 4) for j in range(i))
EDGE_NAMES = tuple(f"{i}<-{j}" for i, j in EDGES)
#: the edges of each input-to-output path of the cell (node routes 0-3, 0-1-3, 0-2-3, 0-1-2-3)
PATHS = (("3<-0",), ("1<-0", "3<-1"), ("2<-0", "3<-2"), ("1<-0", "2<-1", "3<-2"))
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
        raise InvalidArchitecture(f"cannot read NB201 cell {text[:80]!r}: expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    ops = m.groups()
    bad = [op for op in ops if op not in OPS]
    if bad:
        raise InvalidArchitecture(f"unknown NB201 op {bad[0]!r} in {text.strip()!r}; ops: {', '.join(OPS)}")
    return ops


class NB201Table:
    """Both benchmark tables (200-epoch test; 12-epoch val and test) for all 15,625 cells.

    Columns are float64 arrays in row (= benchmark index) order, keyed `<dataset>_<split>_<epochs>`,
    e.g. `cifar10_val_12`, `cifar10_test_200`. `archs[i]` is the cell of row i and `row_of` maps a
    cell back to its row. Load it with `load_table()`, which caches it.
    """

    def __init__(self, path: Path = TABLE_PATH):
        with np.load(path, allow_pickle=False) as z:
            codes = z["ops"].tolist()
            names = tuple(str(s) for s in z["op_names"])
            self.columns: dict[str, np.ndarray] = {k: z[k] for k in z.files if k not in ("ops", "op_names")}
        if names != OPS:
            raise DataError(f"{path}: op order {names} differs from {OPS}; rebuild the table")
        # One (name, op) pair object per edge and op, shared by every Arch: 15,625 Archs cost ~2 MB.
        pairs = [[(name, op) for op in OPS] for name in EDGE_NAMES]
        #: the cell of each row; the space samples these very objects, so lookups hit on identity
        self.archs: list[Arch] = [Arch([pairs[e][c] for e, c in enumerate(row)]) for row in codes]
        #: cell (hashed by its (edge, op) pairs, i.e. by its op tuple) -> row index
        self.row_of: dict[Arch, int] = {a: i for i, a in enumerate(self.archs)}

    def __len__(self) -> int:
        return len(self.archs)

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
    supernet_track_running_stats: bool = option(
        True,
        "supernet cells' BNs keep running statistics (the benchmark's README runs pass 1; NATS-Bench's "
        "default is 0: eval-mode BN then normalises with each batch's own statistics)",
    )
    supernet_conv_bias: bool = option(
        False,
        "give the supernet cells' convs a bias, as the benchmark's search code does (bias=not affine): "
        "6,720 more parameters at C=16, which the affine-free BN that follows cancels in training (the "
        "benchmark's search weights load into either supernet: nb201_search_weights folds the biases)",
    )


@register_space("nb201")
class NB201Space(SearchSpace[NB201Options], TabularSpace, CellPaths):
    """NAS-Bench-201 cell: 6 edges x 5 ops (15,625 cells), with the benchmark's tables built in."""

    Options = NB201Options
    reference_data = "cifar10"
    additive_costs = True
    supports_supernet = True
    supernet_extras = frozenset({"angle_terms", "forward_mixed"})

    def __init__(self, options: NB201Options | None = None):
        super().__init__(options)
        self._all: tuple[list[Decision], list[Arch]] | None = None

    def define_decisions(self) -> list[Decision]:
        return [Decision(name, OPS) for name in EDGE_NAMES]

    def decision_groups(self) -> list[list[str]]:
        """Edges grouped by target node (`1<-0` | `2<-0`, `2<-1` | `3<-0`, `3<-1`, `3<-2`).

        The benchmark's R-EA mutates by picking a node uniformly, then one of its incoming edges,
        so the edges of node 1, 2 and 3 mutate with probability 1/3, 1/6 and 1/9 each.
        """
        return [[name for (target, _), name in zip(EDGES, EDGE_NAMES) if target == node] for node in (1, 2, 3)]

    # ---- paths (BANANAS' path encoding) --------------------------------------------------------------
    def path_ops(self) -> tuple[str, ...]:
        return OPS

    def longest_path(self) -> int:
        return 3

    def cell_paths(self, arch: Arch) -> list[tuple[Choice, ...]]:
        """The ops on the cell's four node routes (a route through `none` is kept, as BANANAS' code keeps it)."""
        return [tuple(arch[edge] for edge in route) for route in PATHS]

    # ---- fast paths (with the tabular evaluator the runner's own overhead is the bottleneck) ------
    def all_archs(self) -> list[Arch]:
        """Every cell of the current (possibly restricted) space, in benchmark index order."""
        decisions = self.decisions
        if self._all is None or self._all[0] is not decisions:
            archs = load_table().archs
            if self._restriction:
                allowed = [set(d.choices) for d in decisions]
                archs = [a for a in archs if all(v in ok for v, ok in zip(a.values_tuple(), allowed))]
            self._all = (decisions, archs)
        return self._all[1]

    def sample(self, rng: np.random.Generator) -> Arch:
        """Uniform over the current choices: one integer draw indexes the list of all cells."""
        archs = self.all_archs()
        return archs[int(rng.integers(len(archs)))]

    def validate(self, arch: Any) -> Arch:
        # A table cell as an Arch (names in decision order) is valid as it is, unless restricted.
        if not self._restriction and isinstance(arch, Arch) and arch in load_table().row_of:
            return arch
        return super().validate(arch)

    # ---- benchmark index --------------------------------------------------------------------
    def benchmark_table(self) -> NB201Table:
        """The benchmark tables (what the `tabular` evaluator answers from)."""
        return load_table()

    def index_of(self, arch: Arch) -> int:
        """Benchmark index (table row) of a cell."""
        row_of = load_table().row_of
        row = row_of.get(arch) if isinstance(arch, Arch) else None
        return row if row is not None else row_of[self.validate(arch)]

    def arch_at(self, index: int) -> Arch:
        """The cell at benchmark index `index`."""
        table = load_table()
        if not 0 <= index < len(table):
            raise InvalidArchitecture(f"NB201 index {index} is out of range; indices are 0..{len(table) - 1}")
        return table.archs[index]

    def from_string(self, text: str) -> Arch:
        return self.validate(dict(zip(EDGE_NAMES, parse_cell_string(text))))

    def to_string(self, arch: Arch) -> str:
        return cell_string([str(arch[n]) for n in EDGE_NAMES])

    # ---- text forms ----------------------------------------------------------------------------
    def named_architectures(self) -> dict[str, Arch]:
        return {"resnet": Arch(list(zip(EDGE_NAMES, parse_cell_string(RESNET_CELL))))}

    @classmethod
    def published_names(cls) -> dict[str, tuple[str, ...]]:
        """The benchmark's ResNet cell (its other 15,624 cells have indices, not names)."""
        return {"resnet": ()}

    def parse_arch(self, text: str) -> Arch:
        """A cell string (`|nor_conv_3x3~0|+|...|`), a benchmark index, a name, or a JSON mapping."""
        stripped = text.strip()
        if stripped.startswith("|"):
            return self.from_string(stripped)
        if stripped.isascii() and stripped.isdigit() and len(stripped) < 19:
            return self.validate(self.arch_at(int(stripped)))
        return super().parse_arch(text)

    def export(self, arch: Arch, weights: Any = None) -> dict[str, Any]:
        """The cell string, the benchmark index and the tables' accuracies of the cell.

        `benchmark` holds, per data set, the 12-epoch validation accuracy (`<dataset>_val_12`) and the
        200-epoch test accuracy (`<dataset>_test_200`), so every run on this space reports the
        benchmark's verdict on its answer, whichever evaluator searched (the `tabular` evaluator also
        reports the chosen data set's 200-epoch test accuracy as `final.held_out.test_acc`).
        """
        index = self.index_of(arch)
        table = load_table()
        benchmark = {
            f"{dataset}_{split}_{epochs}": float(table.column(dataset, split, epochs)[index])
            for dataset in DATASETS
            for split, epochs in (("val", 12), ("test", 200))
        }
        return {"arch_str": self.to_string(arch), "index": index, "benchmark": benchmark}

    # ---- networks ----------------------------------------------------------------------------
    def build(self, arch: Arch, data: DataSpec) -> nn.Module:
        """The benchmark's network: stem, 3 stages of N cells (C, 2C, 4C) joined by ResNet blocks."""
        from nasframe.spaces.nb201_net import NB201Network

        ops = [str(arch[n]) for n in EDGE_NAMES]
        return NB201Network(
            ops, C=self.options.C, N=self.options.N, in_channels=data.channels, num_classes=data.num_classes
        )

    def build_supernet(self, data: DataSpec) -> NB201Supernet:
        """The benchmark's search model: the same frame, every op on every edge, one architecture
        shared by all 3N cells, affine-free BNs in the cells (see nb201_supernet.py)."""
        from nasframe.spaces.nb201_supernet import NB201Supernet

        o = self.options
        return NB201Supernet(
            data,
            C=o.C,
            N=o.N,
            track_running_stats=o.supernet_track_running_stats,
            conv_bias=o.supernet_conv_bias,
            decisions=self.decisions,
        )
