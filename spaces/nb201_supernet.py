"""The NAS-Bench-201 weight-sharing supernet: all 5 ops on all 6 edges of every cell.

This is the benchmark's search model (SETN's template network, reference 8.1): the frame of the
stand-alone network (stem, 3 stages of N cells joined by ResNet blocks, BN + ReLU, pooling,
classifier) with search cells whose BNs are affine-free. All 3N cells share one architecture: a
decision (an edge) picks the op of that edge in every cell, as the benchmark's single alpha
tensor of shape (6, 5) does. The supernet holds no architecture parameters; strategies own them.

Single-path use (SPOS, MDENAS, ABS): `set_path(arch)` gives every cell a plan of the modules its
nodes sum, so `forward(x)` runs exactly what the stand-alone network of that cell runs; ops off the
path get no gradient (`.grad` stays None). Differentiable use: `forward_mixed(x, weights)` sums
every allowed op of an edge, weighted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import nn

from nasframe.common.errors import InvalidArchitecture
from nasframe.core.space import Arch, Decision, Supernet
from nasframe.data import DataSpec

from .nb201 import EDGE_NAMES, EDGES, OPS
from .nb201_net import NB201Frame, PlannedCell, ResNetBlock, live_edges, make_op, reads_input
from .param_index import ParamIndex

_OP_INDEX = {name: i for i, name in enumerate(OPS)}
_CONVS = ("nor_conv_1x1", "nor_conv_3x3")
#: ABS' NB201 paths through a cell, as node sequences (node 0 = the cell's input, node 3 its output)
ANGLE_PATHS: tuple[tuple[int, ...], ...] = ((0, 3), (0, 2, 3), (0, 1, 2, 3), (0, 1, 3))
_EDGE_OF = {edge: e for e, edge in enumerate(EDGES)}


class MixedEdge(nn.Module):
    """One edge holding all 5 ops (`ops[i]` is `OPS[i]`)."""

    def __init__(self, c: int, track_running_stats: bool, bias: bool):
        super().__init__()
        self.ops = nn.ModuleList(
            make_op(name, c, affine=False, track_running_stats=track_running_stats, bias=bias) for name in OPS
        )


class SearchCell(PlannedCell):
    """A cell of the supernet: `edges[e].ops[o]` is op `OPS[o]` on edge `EDGES[e]`."""

    def __init__(self, c: int, track_running_stats: bool, bias: bool):
        super().__init__()
        self.channels = c
        self.edges = nn.ModuleList(MixedEdge(c, track_running_stats, bias) for _ in EDGES)
        #: op_table[e][o] is `edges[e].ops[o]`, as plain lists so `set_path` indexes without module lookups
        self.op_table: list[list[nn.Module]] = [list(cast(MixedEdge, edge).ops) for edge in self.edges]

    def forward_mixed(
        self, x: torch.Tensor, rows: Sequence[torch.Tensor], allowed: Sequence[tuple[int, ...]]
    ) -> torch.Tensor:
        """Node i sums, over its edges e, `rows[e][k] * op_{allowed[e][k]}(node j)`; 'none' adds exact zeros."""
        nodes = [x]
        for node in (1, 2, 3):
            total: torch.Tensor | None = None
            for e, (i, j) in enumerate(EDGES):
                if i != node:
                    continue
                ops, w = self.op_table[e], rows[e]
                for pos, o in enumerate(allowed[e]):
                    if o == 0:  # w * zeros: no value and no gradient, so skip the work
                        continue
                    y = w[pos] * ops[o](nodes[j])
                    total = y if total is None else total + y
            nodes.append(total if total is not None else torch.zeros_like(x))
        return nodes[3]


class NB201Supernet(NB201Frame, Supernet):
    """All NB201 ops on all edges, one architecture for all cells; run one path (`set_path` +
    `forward`) or a weighted mix (`forward_mixed`)."""

    def __init__(
        self,
        data: DataSpec,
        *,
        C: int = 16,
        N: int = 5,
        track_running_stats: bool = True,
        conv_bias: bool = False,
        decisions: Sequence[Decision] | None = None,
    ):
        super().__init__(
            lambda c: SearchCell(c, track_running_stats, conv_bias),
            C=C,
            N=N,
            in_channels=data.channels,
            num_classes=data.num_classes,
        )
        choices = {d.name: d.choices for d in decisions} if decisions else {}
        #: per decision, the op indices `forward_mixed` weights (the space's allowed choices)
        self.mixed_choices: dict[str, tuple[int, ...]] = {
            n: tuple(_OP_INDEX[str(c)] for c in choices.get(n, OPS)) for n in EDGE_NAMES
        }
        self._layers: list[nn.Module] = list(self.cells)
        self._path: Arch | None = None
        self._param_index = ParamIndex(self)  # per-step path_parameter_names without a scan of all parameters

    def search_cells(self) -> list[tuple[int, SearchCell]]:
        """(position in `cells`, cell) of the 3N search cells."""
        return [(k, layer) for k, layer in enumerate(self._layers) if isinstance(layer, SearchCell)]

    # ---- single path ----------------------------------------------------------------------
    @staticmethod
    def _ops(arch: Mapping[str, object]) -> list[str]:
        """The six chosen op names in edge order, checked."""
        out = []
        for name in EDGE_NAMES:
            op = arch.get(name)
            if op not in _OP_INDEX:
                what = "misses" if op is None else f"has unknown op {op!r} for"
                raise InvalidArchitecture(
                    f"NB201 supernet: architecture {what} decision {name!r}; ops: {', '.join(OPS)}"
                )
            out.append(str(op))
        return out

    def set_path(self, arch: Arch) -> None:
        ops = self._ops(arch)
        chosen = [_OP_INDEX[op] if live else None for op, live in zip(ops, live_edges(ops))]
        for _, cell in self.search_cells():
            cell.set_plan([None if o is None else cell.op_table[e][o] for e, o in enumerate(chosen)])
        self._path = arch if isinstance(arch, Arch) else Arch(arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._path is None:
            raise RuntimeError("NB201Supernet.forward needs set_path(arch) first (or use forward_mixed)")
        return super().forward(x)

    def path_parameter_names(self, arch: Arch) -> list[str]:
        """Exactly the parameters that receive a gradient when the path runs.

        In every cell, the ops of the live edges (`live_edges`: not `none`, target node reaching the
        output); every ResNet block, the stem, the last BN and the classifier. A cell whose output
        does not depend on its input (no path of live edges from node 0 to node 3) cuts the gradient
        off: then only the last cell's ops, the last BN and the classifier get one.
        """
        ops = self._ops(arch)
        live = [(e, _OP_INDEX[op]) for e, (op, ok) in enumerate(zip(ops, live_edges(ops))) if ok]
        through = reads_input(ops)
        prefixes = ["lastact.", "classifier."]
        reached = True  # whether the gradient reaches the output of the layer being looked at
        for k in reversed(range(len(self._layers))):
            if not reached:
                break
            if isinstance(self._layers[k], ResNetBlock):
                prefixes.append(f"cells.{k}.")
            else:
                prefixes += [f"cells.{k}.edges.{e}.ops.{o}." for e, o in live]
                reached = through
        if reached:
            prefixes.append("stem.")
        return self._param_index.select(prefixes)

    # ---- angle metric (ABS) ---------------------------------------------------------------
    def angle_terms(self, arch: Arch) -> list[str | torch.Tensor]:
        """ABS' weight vector of a path on NB201 (AngleNAS' NB201 study, reference 2.1), in its order.

        First the fixed parts: the last BN's weight and bias, the classifier's weight and bias, the
        stem conv weight and stem BN weight and bias, then for each ResNet block its conv_a conv
        weight, BN weight and bias, the same for conv_b, and its shortcut conv weight. Then, for each
        of the paths 0->3, 0->2->3, 0->1->2->3 and 0->1->3 in turn, for every cell in order: a path
        through a 'none' edge is dropped; skip_connect adds nothing; avg_pool adds a constant
        [C, 3, 3] tensor of 1/9 (C: the cell's channels); nor_conv_1x1 / nor_conv_3x3 add their conv
        weight (not the conv bias that `supernet_conv_bias` adds). An edge on several paths appears
        once per path.
        """
        ops = self._ops(arch)
        terms: list[str | torch.Tensor] = [
            "lastact.0.weight",
            "lastact.0.bias",
            "classifier.weight",
            "classifier.bias",
            "stem.0.weight",
            "stem.1.weight",
            "stem.1.bias",
        ]
        for k, layer in enumerate(self._layers):
            if isinstance(layer, ResNetBlock):
                for conv in ("conv_a", "conv_b"):
                    terms += [f"cells.{k}.{conv}.1.weight", f"cells.{k}.{conv}.2.weight", f"cells.{k}.{conv}.2.bias"]
                terms.append(f"cells.{k}.shortcut.1.weight")
        cells = self.search_cells()
        for path in ANGLE_PATHS:
            edges = [_EDGE_OF[(i, j)] for j, i in zip(path, path[1:])]
            if any(ops[e] == "none" for e in edges):
                continue
            for k, cell in cells:
                for e in edges:
                    op = ops[e]
                    if op in _CONVS:
                        terms.append(f"cells.{k}.edges.{e}.ops.{_OP_INDEX[op]}.1.weight")
                    elif op == "avg_pool_3x3":
                        like = cast(nn.Conv2d, cast(nn.Sequential, cell.op_table[e][_OP_INDEX["nor_conv_3x3"]])[1])
                        w = like.weight
                        terms.append(torch.full((cell.channels, 3, 3), 1.0 / 9.0, device=w.device, dtype=w.dtype))
        return terms

    # ---- differentiable -------------------------------------------------------------------
    def forward_mixed(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum over the allowed ops of every edge, in every cell; `weights[name]` aligns with
        `mixed_choices[name]` (all 5 OPS for an unrestricted space), e.g. a softmax of alphas."""
        rows: list[torch.Tensor] = []
        for name in EDGE_NAMES:
            w = weights.get(name)
            expected = len(self.mixed_choices[name])
            if w is None or w.dim() != 1 or w.shape[0] != expected:
                got = "nothing" if w is None else f"shape {tuple(w.shape)}"
                raise InvalidArchitecture(
                    f"forward_mixed: weights[{name!r}] needs {expected} entries "
                    f"({', '.join(OPS[o] for o in self.mixed_choices[name])}), got {got}"
                )
            rows.append(w)
        allowed = [self.mixed_choices[name] for name in EDGE_NAMES]
        out = self.stem(x)
        for layer in self._layers:
            out = layer.forward_mixed(out, rows, allowed) if isinstance(layer, SearchCell) else layer(out)
        return self.classify(out)
