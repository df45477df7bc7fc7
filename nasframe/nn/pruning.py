"""Single paths without their dead code: zero candidates, and what only feeds them, are not run.

A cell space offers a zero op (NAS-Bench-201's and DARTS' `none`), and a user's cell sums its edges
whatever they chose: on a path where an edge is zero, the sum still adds zeros, and an intermediate node
whose every outgoing edge is zero is still computed, though nothing uses it. A hand-written supernet
plans around both (nasframe's NB201 supernet does); a model space's supernet does the same, generically:
the user's module is traced once (`torch.fx`, mutables as leaves) and, for every pattern of zero choices a
path selects, `set_path` picks a copy of that graph where `a + zero` is `a`, a sum of zeros is its first
zero, and every node nothing uses any more is gone (a `LayerChoice` call included, with all it computed).
The copies share the supernet's modules and are cached by pattern; the network of one architecture
(`ModelSpace.build`) still runs the user's own forward, dead code included, as its MAC count says.

A candidate is zero when its class says `is_zero = True` (`nasframe.nn.Zero` does): its output is all
zeros, of the shape of what it is added to. A module that cannot be traced (control flow on tensor
values) keeps its own forward on every path, with the same results, only without the saving.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from nasframe.core.space import Choice
from nasframe.nn.choices import InputChoice, LayerChoice, Repeat
from nasframe.nn.layers import MutableLayer

#: distinct zero patterns whose pruned graphs are kept
_CACHED_PATTERNS = 256
_ADDS = (operator.add, torch.add)


class Zero(nn.Module):
    """A zero op for a `LayerChoice` (the `none` of cell spaces): zeros shaped like its input, or, with
    `stride` 2, like a stride-2 reduction of it. A path that chooses it skips the work it makes dead."""

    is_zero = True

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return torch.zeros_like(x)
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])


def is_zero(module: nn.Module) -> bool:
    """Whether `module` declares that it outputs zeros (`is_zero = True` on its class)."""
    return bool(getattr(type(module), "is_zero", False))


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (LayerChoice, InputChoice, Repeat, MutableLayer)) or super().is_leaf_module(
            m, module_qualified_name
        )


class PathPruner:
    """The forward a path needs: the user's module, or a traced copy of it without the path's dead code."""

    def __init__(self, net: nn.Module):
        self.net = net
        self.graph: fx.Graph | None = None
        self._cache: dict[tuple[bool, ...], Callable[..., Any]] = {}
        self.choices = [m for m in net.modules() if isinstance(m, LayerChoice) and any(map(is_zero, m._choices))]
        #: per such choice, its label and the values that select a zero candidate
        self._zeros = [(c.label, {v for v in c.values if is_zero(c.candidate(v))}) for c in self.choices]
        if not self.choices:
            return
        try:
            self.graph = _Tracer().trace(net)
        except Exception:  # noqa: BLE001 (any tracing failure: the user's forward stays, unpruned)
            self.graph = None

    def __deepcopy__(self, memo: dict[int, Any]) -> PathPruner:
        """A pruner of the copied network (few-shot splitting copies supernets): traced again, cache empty."""
        return PathPruner(copy.deepcopy(self.net, memo))

    def forward_for_path(self, arch: Mapping[str, Choice]) -> Callable[..., Any]:
        """The forward of `arch`'s path (the mutables already activated for it)."""
        if self.graph is None:
            return self.net
        pattern = tuple(arch[label] in zeros for label, zeros in self._zeros)
        if not any(pattern):
            return self.net
        found = self._cache.get(pattern)
        if found is None:
            if len(self._cache) >= _CACHED_PATTERNS:
                self._cache.clear()
            found = self._cache[pattern] = self._prune()
        return found

    def _prune(self) -> Callable[..., Any]:
        assert self.graph is not None
        gm = fx.GraphModule(self.net, copy.deepcopy(self.graph))
        zero: dict[fx.Node, fx.Node] = {}  # node known to be all zeros -> the zero candidate call standing for it
        for node in list(gm.graph.nodes):
            if node.op == "call_module":
                module = gm.get_submodule(str(node.target))
                if isinstance(module, LayerChoice) and is_zero(module._active):
                    zero[node] = node
            elif node.op == "call_function" and node.target in _ADDS and len(node.args) == 2 and not node.kwargs:
                a, b = node.args
                if a in zero and b in zero:
                    zero[node] = zero[a]
                elif a in zero:
                    node.replace_all_uses_with(b)
                elif b in zero:
                    node.replace_all_uses_with(a)
        for node, standing in zero.items():
            if node is not standing and node.users:
                node.replace_all_uses_with(standing)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        return gm
