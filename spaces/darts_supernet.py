"""The DARTS weight-sharing supernet: all 8 search ops on all 14 edges of every cell.

Single-path use (SPOS, MDENAS, ABS): `set_path(arch)` stores, per cell, which op module each node
sums, so `forward(x)` runs exactly the ops a stand-alone child would and nothing else; unchosen
ops get no gradient (`.grad` stays None). Differentiable use (DARTS): `forward_mixed(x, weights)`
sums every allowed op of an edge, weighted. Ops are DARTS' search versions (affine-free BN, an
affine-free BN after pooling); stems and classifier are as in DARTS' search network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import nn

from nasframe.common.errors import InvalidArchitecture
from nasframe.core.space import Arch, Decision, Supernet
from nasframe.data import DataSpec

from .darts_genotype import CELL_TYPES, DECISION_NAMES, EDGES, NODES, PRIMITIVES, decision_name
from .darts_networks import Backbone, PlannedCell, Variant
from .darts_ops import FactorizedReduce, make_op
from .param_index import ParamIndex

_OP_INDEX = {name: i for i, name in enumerate(PRIMITIVES)}
_SEP = {"sep_conv_3x3", "sep_conv_5x5"}
_DIL = {"dil_conv_3x3", "dil_conv_5x5"}
_POOL = {"max_pool_3x3", "avg_pool_3x3"}
#: ABS' path list: every path from an input (0 or 1) through intermediate nodes to node 5, in ABS' order
ANGLE_PATHS: tuple[tuple[int, ...], ...] = tuple(
    (start, *mid, 5) for start in (0, 1) for mid in ((2, 3, 4), (2, 3), (2, 4), (2,), (3, 4), (3,), (4,), ())
)


class MixedEdge(nn.Module):
    """One edge holding all 8 search ops (`ops[i]` is `PRIMITIVES[i]`)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.ops = nn.ModuleList(make_op(p, channels, stride, search=True) for p in PRIMITIVES)


class SearchCell(PlannedCell):
    def __init__(self, c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool):
        super().__init__(c_prev_prev, c_prev, channels, reduction, reduction_prev, search=True)
        self.edges = nn.ModuleList(MixedEdge(channels, 2 if reduction and k < 2 else 1) for _, k in EDGES)
        #: op_table[e][o] is `edges[e].ops[o]`, as plain lists so `set_path` indexes without module lookups
        self.op_table: list[list[nn.Module]] = [list(cast(MixedEdge, edge).ops) for edge in self.edges]

    def edge(self, e: int) -> MixedEdge:
        return cast(MixedEdge, self.edges[e])

    def forward_mixed(
        self, s0: torch.Tensor, s1: torch.Tensor, rows: Sequence[torch.Tensor], allowed: Sequence[tuple[int, ...]]
    ) -> torch.Tensor:
        """Every node sums, over its edges, `rows[e][i] * op_{allowed[e][i]}(input)`; 'none' adds exact zeros."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for j in NODES:
            total: torch.Tensor | None = None
            for k in range(j):
                ops, w = self.op_table[e], rows[e]
                for pos, o in enumerate(allowed[e]):
                    if o == 0:  # w * zeros: no value and no gradient, so skip the work
                        continue
                    y = w[pos] * ops[o](states[k])
                    total = y if total is None else total + y
                e += 1
            states.append(total if total is not None else self._zeros(s1))
        return torch.cat(states[2:], dim=1)


class DartsSupernet(Backbone, Supernet):
    """All DARTS ops on all edges; run one path (`set_path` + `forward`) or a weighted mix (`forward_mixed`)."""

    def __init__(
        self,
        data: DataSpec,
        *,
        channels: int = 16,
        layers: int = 8,
        stem_multiplier: int = 3,
        variant: Variant = "cifar",
        decisions: Sequence[Decision] | None = None,
    ):
        def make_cell(i: int, cpp: int, cp: int, c: int, reduction: bool, reduction_prev: bool) -> PlannedCell:
            return SearchCell(cpp, cp, c, reduction, reduction_prev)

        super().__init__(data, channels, layers, stem_multiplier, variant, make_cell)
        choices = {d.name: d.choices for d in decisions} if decisions else {}
        #: per decision, the op indices `forward_mixed` weights (the space's allowed choices)
        self.mixed_choices: dict[str, tuple[int, ...]] = {
            n: tuple(_OP_INDEX[str(c)] for c in choices.get(n, PRIMITIVES)) for n in DECISION_NAMES
        }
        self._path: Arch | None = None
        self._param_index = ParamIndex(self)  # per-step path_parameter_names without a scan of all parameters

    # ---- single path ----------------------------------------------------------------------
    @staticmethod
    def _ops(arch: Mapping[str, object]) -> dict[str, list[int]]:
        """Per cell type, the 14 chosen op indices in edge order."""
        plain = arch.to_dict() if isinstance(arch, Arch) else dict(arch)
        out = {}
        for cell in CELL_TYPES:
            row = []
            for j, k in EDGES:
                name = decision_name(cell, j, k)
                op = plain.get(name)
                if op not in _OP_INDEX:
                    what = "misses" if op is None else f"has unknown op {op!r} for"
                    raise InvalidArchitecture(f"DARTS supernet: architecture {what} decision {name!r}")
                row.append(_OP_INDEX[op])
            out[cell] = row
        return out

    def search_cells(self) -> list[SearchCell]:
        """The cells, typed (the backbone keeps them in a ModuleList)."""
        return cast(list[SearchCell], list(self.cells))

    def set_path(self, arch: Arch) -> None:
        ops = self._ops(arch)
        for cell in self.search_cells():
            row, table = ops["reduce" if cell.reduction else "normal"], cell.op_table
            nodes: list[list[tuple[nn.Module, int]]] = [[] for _ in NODES]
            for e, (j, k) in enumerate(EDGES):
                if row[e] != 0:
                    nodes[j - 2].append((table[e][row[e]], k))
            cell.set_plan(nodes)
        self._path = arch if isinstance(arch, Arch) else Arch(arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._path is None:
            raise RuntimeError("DartsSupernet.forward needs set_path(arch) first (or use forward_mixed)")
        s0, s1 = self.stems(x)
        for cell in self.search_cells():
            s0, s1 = s1, cell(s0, s1)
        return self.head(s1)

    def _liveness(self, ops: dict[str, list[int]]) -> tuple[list[bool], list[tuple[bool, bool]], bool, bool]:
        """Which cells feed the output, what each reads, and whether stem outputs s0 / s1 are read."""
        needs = []
        for cell in self.search_cells():
            row = ops["reduce" if cell.reduction else "normal"]
            used = {k for e, (_, k) in enumerate(EDGES) if row[e] != 0}
            needs.append((0 in used, 1 in used))
        n = len(self.cells)
        live = [False] * n
        # outputs[i + 2] is cell i's output; outputs[0] / outputs[1] are the stems' s0 / s1
        read = [False] * (n + 2)
        read[n + 1] = True
        for i in reversed(range(n)):
            live[i] = read[i + 2]
            if live[i]:
                read[i] |= needs[i][0]
                read[i + 1] |= needs[i][1]
        return live, needs, read[0], read[1]

    def path_parameter_names(self, arch: Arch) -> list[str]:
        """Exactly the parameters that receive a gradient when the path runs."""
        ops = self._ops(arch)
        live, needs, stem0_read, stem1_read = self._liveness(ops)
        prefixes = ["classifier."]
        if self.imagenet:
            if stem1_read:
                prefixes += ["stem0.", "stem1."]
            elif stem0_read:
                prefixes.append("stem0.")
        elif stem0_read or stem1_read:
            prefixes.append("stem.")
        for i, cell in enumerate(self.search_cells()):
            if not live[i]:
                continue
            if needs[i][0]:
                prefixes.append(f"cells.{i}.preprocess0.")
            if needs[i][1]:
                prefixes.append(f"cells.{i}.preprocess1.")
            row = ops["reduce" if cell.reduction else "normal"]
            prefixes += [f"cells.{i}.edges.{e}.ops.{o}." for e, o in enumerate(row) if o != 0]
        return self._param_index.select(prefixes)

    # ---- angle metric (ABS) ---------------------------------------------------------------
    def angle_terms(self, arch: Arch) -> list[str | torch.Tensor]:
        """ABS' weight vector of a path: per cell, its input->node-5 paths, then stems, preprocess, classifier.

        A path through a 'none' edge is dropped; skip_connect adds nothing (also as a stride-2
        FactorizedReduce); pooling adds a constant [C, 3, 3] tensor of 1/9; sep convs their 4 conv
        weights, dil convs their 2. An edge on several paths appears once per path.
        """
        ops = self._ops(arch)
        terms: list[str | torch.Tensor] = []
        for i, cell in enumerate(self.search_cells()):
            row = ops["reduce" if cell.reduction else "normal"]
            for path in ANGLE_PATHS:
                edges = [k + sum(range(2, j)) for k, j in zip(path, path[1:])]
                if any(row[e] == 0 for e in edges):
                    continue
                for e in edges:
                    name = PRIMITIVES[row[e]]
                    prefix = f"cells.{i}.edges.{e}.ops.{row[e]}"
                    if name in _POOL:
                        sep = cell.edge(e).ops[_OP_INDEX["sep_conv_3x3"]]
                        dw = cast(nn.Conv2d, cast(nn.Sequential, sep.op)[1]).weight
                        terms.append(torch.full((dw.shape[0], 3, 3), 1.0 / 9.0, device=dw.device, dtype=dw.dtype))
                    elif name in _SEP or name in _DIL:
                        op = cell.edge(e).ops[row[e]]
                        terms += [f"{prefix}.{n}" for n, p in op.named_parameters() if p.dim() == 4]
        if self.imagenet:
            terms += ["stem0.0.weight", "stem0.3.weight", "stem1.1.weight"]
        else:
            terms.append("stem.0.weight")
        for i, cell in enumerate(self.search_cells()):
            if isinstance(cell.preprocess0, FactorizedReduce):
                terms += [f"cells.{i}.preprocess0.conv_1.weight", f"cells.{i}.preprocess0.conv_2.weight"]
            else:
                terms.append(f"cells.{i}.preprocess0.op.1.weight")
            terms.append(f"cells.{i}.preprocess1.op.1.weight")
        terms.append("classifier.weight")
        return terms

    # ---- differentiable (DARTS) -----------------------------------------------------------
    def forward_mixed(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum over the allowed ops of every edge; `weights[name]` aligns with `mixed_choices[name]`
        (all 8 PRIMITIVES for an unrestricted space), e.g. a softmax of DARTS' alphas."""
        rows: dict[str, list[torch.Tensor]] = {}
        allowed: dict[str, list[tuple[int, ...]]] = {}
        for cell in CELL_TYPES:
            rows[cell], allowed[cell] = [], []
            for j, k in EDGES:
                name = decision_name(cell, j, k)
                w = weights[name]
                if w.shape[-1] != len(self.mixed_choices[name]):
                    raise InvalidArchitecture(
                        f"forward_mixed: weights[{name!r}] has {w.shape[-1]} entries, "
                        f"expected {len(self.mixed_choices[name])}"
                    )
                rows[cell].append(w)
                allowed[cell].append(self.mixed_choices[name])
        s0, s1 = self.stems(x)
        for search_cell in self.search_cells():
            t = "reduce" if search_cell.reduction else "normal"
            s0, s1 = s1, search_cell.forward_mixed(s0, s1, rows[t], allowed[t])
        return self.head(s1)
