"""Parameter names of a supernet grouped by module prefix, built once.

`path_parameter_names` runs every training step of a weight-sharing search; scanning all
named parameters with `startswith` there costs milliseconds. Here each module prefix maps to
its contiguous slice of `named_parameters()`, so a path's names are a few list slices.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


class ParamIndex:
    """Module prefix ("cells.3.edges.5.ops.2.") -> that subtree's parameter names, in `named_parameters` order."""

    def __init__(self, module: nn.Module):
        self.names: list[str] = [name for name, _ in module.named_parameters()]
        # a module subtree is one contiguous run of named_parameters (pre-order), so a (start, stop) span suffices
        self.spans: dict[str, tuple[int, int]] = {}
        for i, name in enumerate(self.names):
            parts = name.split(".")
            for depth in range(1, len(parts)):
                prefix = ".".join(parts[:depth]) + "."
                start, _ = self.spans.get(prefix, (i, i))
                self.spans[prefix] = (start, i + 1)

    def select(self, prefixes: Iterable[str]) -> list[str]:
        """The names starting with any of `prefixes` (each ending in "."), in `named_parameters` order,
        exactly as a `startswith` scan would return them; a prefix without parameters adds nothing."""
        spans = sorted(self.spans[p] for p in prefixes if p in self.spans)
        out: list[str] = []
        end = 0
        for start, stop in spans:
            if start < end:  # nested in (or equal to) a span already taken
                start = end
            if start < stop:
                out += self.names[start:stop]
                end = stop
        return out
