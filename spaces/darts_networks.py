"""Stand-alone DARTS networks for any single-path cell pair (DARTS' NetworkCIFAR / NetworkImageNet).

Each intermediate node is the sum of the ops on its non-'none' incoming edges; a node without a
live input outputs zeros of the node's shape. For a genotype (two live inputs per node) the
network has exactly the modules and parameters of quark0's NetworkCIFAR / NetworkImageNet.

Forward contract: `model(x)` returns logits, except in train mode with an auxiliary head, where it
returns `(logits, aux_logits)`; weight the auxiliary loss by `model.auxiliary_weight` (0.4 in
DARTS). `model.drop_path_prob` (settable between epochs, as DARTS schedules it) drops whole
samples of every non-identity op output in train mode.

Deviations from DARTS, none of which changes a parameter count or a result at DARTS' sizes:
the ImageNet head pools adaptively (DARTS' AvgPool(7) at 224x224 is the same thing); the
auxiliary head pools adaptively to 2x2 when DARTS' fixed pooling would not give 2x2 (inputs
other than 32x32 / 224x224); ReLUs never work in place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, cast

import torch
from torch import nn

from nasframe.data import DataSpec

from .darts_genotype import EDGES, NODES, decision_name, edge_index
from .darts_ops import FactorizedReduce, ReLUConvBN, drop_path, make_op

Variant = Literal["cifar", "imagenet"]
#: one node's live inputs: (op module, source state index, drop-path applies)
NodePlan = tuple[tuple[nn.Module, int, bool], ...]


def reduction_cells(layers: int) -> tuple[int, ...]:
    """Indices of the reduction cells, as DARTS places them."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


class PlannedCell(nn.Module):
    """A cell that runs a precomputed plan: per node, the (op, input) pairs to sum.

    The plan holds module references, so `forward` does no lookup or graph walk; it is set once
    (stand-alone network) or by every `set_path` (supernet).
    """

    def __init__(
        self, c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool, search: bool
    ):
        super().__init__()
        affine = not search
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, channels, affine=affine)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=affine)
        )
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=affine)
        self.reduction = reduction
        self.channels = channels
        self._plan: tuple[NodePlan, ...] = ()
        self._need0 = self._need1 = False

    def set_plan(self, nodes: Sequence[Sequence[tuple[nn.Module, int]]]) -> None:
        self._plan = tuple(tuple((op, src, not isinstance(op, nn.Identity)) for op, src in node) for node in nodes)
        used = {src for node in nodes for _, src in node}
        self._need0, self._need1 = 0 in used, 1 in used

    @property
    def needs(self) -> tuple[bool, bool]:
        """Whether the plan reads input 0 (c_{k-2}) and input 1 (c_{k-1})."""
        return self._need0, self._need1

    def _zeros(self, s1: torch.Tensor) -> torch.Tensor:
        n, _, h, w = s1.shape
        if self.reduction:
            h, w = (h + 1) // 2, (w + 1) // 2
        return s1.new_zeros(n, self.channels, h, w)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states: list[torch.Tensor | None] = [
            self.preprocess0(s0) if self._need0 else None,
            self.preprocess1(s1) if self._need1 else None,
        ]
        drop = self.training and drop_prob > 0.0
        for node in self._plan:
            out = None
            for op, src, droppable in node:
                y = op(states[src])
                if drop and droppable:
                    y = drop_path(y, drop_prob)
                out = y if out is None else out + y
            states.append(out if out is not None else self._zeros(s1))
        return torch.cat(cast(list[torch.Tensor], states[2:]), dim=1)  # nodes always hold a tensor


class EvalCell(PlannedCell):
    """A stand-alone cell: one evaluation op per live edge, in `edges[str(edge index)]`."""

    def __init__(
        self, ops: Sequence[str], c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool
    ):
        super().__init__(c_prev_prev, c_prev, channels, reduction, reduction_prev, search=False)
        self.edges = nn.ModuleDict()
        nodes: list[list[tuple[nn.Module, int]]] = [[] for _ in NODES]
        for (j, k), op_name in zip(EDGES, ops):
            if op_name == "none":
                continue
            op = make_op(op_name, channels, 2 if reduction and k < 2 else 1)
            self.edges[str(edge_index(j, k))] = op
            nodes[j - 2].append((op, k))
        self.set_plan(nodes)


class Backbone(nn.Module):
    """Stem(s), a chain of cells with reductions at layers//3 and 2*layers//3, pooling and classifier.

    `make_cell(index, c_prev_prev, c_prev, channels, reduction, reduction_prev)` builds each cell,
    so the stand-alone network and the supernet share the layout (and DARTS' channel arithmetic).
    """

    def __init__(
        self,
        data: DataSpec,
        channels: int,
        layers: int,
        stem_multiplier: int,
        variant: Variant,
        make_cell: Callable[[int, int, int, int, bool, bool], PlannedCell],
    ):
        super().__init__()
        self.imagenet = variant == "imagenet"
        c = channels
        if self.imagenet:
            self.stem0 = nn.Sequential(
                nn.Conv2d(data.channels, c // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c // 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c),
            )
            c_prev_prev, c_prev, c_curr, reduction_prev = c, c, c, True
        else:
            c_stem = stem_multiplier * c
            self.stem = nn.Sequential(
                nn.Conv2d(data.channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
            )
            c_prev_prev, c_prev, c_curr, reduction_prev = c_stem, c_stem, c, False
        reductions = reduction_cells(layers)
        self.cells = nn.ModuleList()
        self.cell_out_channels: list[int] = []
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            self.cells.append(make_cell(i, c_prev_prev, c_prev, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, len(NODES) * c_curr
            self.cell_out_channels.append(c_prev)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, data.num_classes)

    def stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.imagenet:
            s0 = self.stem0(x)
            return s0, self.stem1(s0)
        s = self.stem(x)
        return s, s

    def head(self, s: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(s).flatten(1))


def _halve(n: int, times: int) -> int:
    for _ in range(times):
        n = (n + 1) // 2
    return n


class AuxiliaryHead(nn.Module):
    """DARTS' auxiliary classifier (ReLU, pool to 2x2, 1x1 conv 128, BN, ReLU, 2x2 conv 768, [BN], ReLU, FC).

    Marked `is_auxiliary` so parameter counts exclude it, as papers quote them.
    """

    is_auxiliary = True

    def __init__(self, channels: int, num_classes: int, size: tuple[int, int], imagenet: bool):
        super().__init__()
        stride = 2 if imagenet else 3  # DARTS: AvgPool(5, stride 3) on 8x8 (CIFAR), stride 2 on 7x7 (ImageNet)
        if all((s - 5) // stride + 1 == 2 for s in size):
            pool: nn.Module = nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)
        else:
            pool = nn.AdaptiveAvgPool2d(2)
        layers: list[nn.Module] = [
            nn.ReLU(inplace=False),
            pool,
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if not imagenet:  # DARTS' ImageNet head omits this BN (a typo kept for the paper's numbers)
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(Backbone):
    """A stand-alone network of one normal and one reduction cell (each a list of 14 edge ops)."""

    def __init__(
        self,
        normal: Sequence[str],
        reduce: Sequence[str],
        data: DataSpec,
        *,
        channels: int = 16,
        layers: int = 8,
        auxiliary: bool = False,
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.0,
        stem_multiplier: int = 3,
        variant: Variant = "cifar",
    ):
        def make_cell(i: int, cpp: int, cp: int, c: int, reduction: bool, reduction_prev: bool) -> PlannedCell:
            return EvalCell(reduce if reduction else normal, cpp, cp, c, reduction, reduction_prev)

        super().__init__(data, channels, layers, stem_multiplier, variant, make_cell)
        self.drop_path_prob = drop_path_prob
        self.auxiliary_weight = auxiliary_weight
        self._aux_index = 2 * layers // 3
        self.auxiliary_head: AuxiliaryHead | None = None
        if auxiliary:
            n_red = sum(1 for r in reduction_cells(layers) if r <= self._aux_index) + (3 if self.imagenet else 0)
            size = (_halve(data.height, n_red), _halve(data.width, n_red))
            self.auxiliary_head = AuxiliaryHead(
                self.cell_out_channels[self._aux_index], data.num_classes, size, self.imagenet
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0, s1 = self.stems(x)
        aux = None
        with_aux = self.auxiliary_head is not None and self.training
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if with_aux and i == self._aux_index:
                aux = self.auxiliary_head(s1)  # type: ignore[misc]
        logits = self.head(s1)
        return (logits, aux) if aux is not None else logits


def cell_ops(arch: dict, cell: str) -> list[str]:
    """The 14 op names of one cell type, in edge order."""
    return [str(arch[decision_name(cell, j, k)]) for j, k in EDGES]
