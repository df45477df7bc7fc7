"""A tiny convolutional space with a weight-sharing supernet, for the evaluator tests.

Loaded with `--plugin tests/plugins/supernet_toy.py` (or `load_plugin`). Each of `layers`
decisions picks conv3x3, conv5x5, avg_pool or identity between a fixed stem and a linear head.
The supernet implements the whole `nasframe.core.space.Supernet` contract, the angle terms included
(a pooling op contributes a constant 1/9 tensor, identity contributes nothing, as in ABS).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nasframe import Arch, Decision, SearchSpace, option, register_space
from nasframe.core.space import Supernet

CHOICES = ("conv3x3", "conv5x5", "avg_pool", "identity")


@dataclass(frozen=True)
class ToySupernetOptions:
    layers: int = option(3, "number of decisions (layers)", min=1)
    width: int = option(8, "channels of every layer", min=1)


def _op(choice: str, c: int) -> nn.Module:
    if choice.startswith("conv"):
        k = int(choice[4])
        return nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU())
    if choice == "avg_pool":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    return nn.Identity()


class _Net(nn.Module):
    def __init__(self, in_channels: int, c: int, classes: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.head = nn.Linear(c, classes)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean((2, 3)))


class ToyChild(_Net):
    def __init__(self, arch: Arch, in_channels: int, c: int, classes: int):
        super().__init__(in_channels, c, classes)
        self.layers = nn.ModuleList(_op(str(v), c) for v in arch.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for op in self.layers:
            x = op(x)
        return self._finish(x)


class ToySupernet(_Net, Supernet):
    def __init__(self, names: list[str], in_channels: int, c: int, classes: int):
        super().__init__(in_channels, c, classes)
        self.names = names
        self.width = c
        self.layers = nn.ModuleList(nn.ModuleDict({ch: _op(ch, c) for ch in CHOICES}) for _ in names)
        self._path: list[nn.Module] = []

    def set_path(self, arch: Arch) -> None:
        self._path = [self.layers[i][str(arch[n])] for i, n in enumerate(self.names)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for op in self._path:
            x = op(x)
        return self._finish(x)

    def path_parameter_names(self, arch: Arch) -> list[str]:
        keep = ["stem.", "head."] + [f"layers.{i}.{arch[n]}." for i, n in enumerate(self.names)]
        return [name for name, _ in self.named_parameters() if name.startswith(tuple(keep))]

    def angle_terms(self, arch: Arch) -> list[str | torch.Tensor]:
        terms: list[str | torch.Tensor] = ["stem.0.weight"]
        for i, n in enumerate(self.names):
            choice = str(arch[n])
            if choice.startswith("conv"):
                terms.append(f"layers.{i}.{choice}.0.weight")
            elif choice == "avg_pool":
                terms.append(torch.full((self.width, 3, 3), 1 / 9))
        return terms + ["head.weight"]


@register_space("supernet_toy")
class ToySupernetSpace(SearchSpace):
    """`layers` decisions of conv3x3 / conv5x5 / avg_pool / identity between a stem and a linear head."""

    Options = ToySupernetOptions
    supports_supernet = True
    supernet_extras = frozenset({"angle_terms"})

    def define_decisions(self) -> list[Decision]:
        return [Decision(f"layer{i}", CHOICES) for i in range(self.options.layers)]

    def build(self, arch: Arch, data) -> nn.Module:
        return ToyChild(self.validate(arch), data.channels, self.options.width, data.num_classes)

    def build_supernet(self, data) -> ToySupernet:
        names = [d.name for d in self.define_decisions()]
        return ToySupernet(names, data.channels, self.options.width, data.num_classes)
