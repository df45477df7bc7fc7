"""Structural mutables: `LayerChoice` (one of several modules), `InputChoice` (which earlier tensors feed a
node) and `Repeat` (how many blocks).

Inside a supernet each holds every candidate; `set_path` stores what the path runs (the chosen module, the
chosen input indices, the first `depth` blocks) so `forward` only calls it. A mixed forward (DARTS, SETN)
runs every candidate and sums the outputs weighted by the decision's mixing weights (`Repeat`: the output
after each candidate depth). Inside the network of one architecture each constructor returns the plain
module that architecture runs: the chosen candidate itself, an `nn.Sequential` of the chosen blocks, or a
`ChosenInputs` of the chosen indices.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nasframe.core.space import Choice
from nasframe.nn.context import current_frame
from nasframe.nn.mixing import indicator, mix, one_hot
from nasframe.nn.values import ModelSpaceError, Value, positive_ints, value_of


def _candidates(candidates: Any, label: Any, what: str) -> tuple[list[Choice], list[nn.Module]]:
    """(decision values, modules): a dict's keys (module names), or a list's indices 0..n-1."""
    if label is None:
        raise ModelSpaceError(f"{what} needs label=... (the decision's name, which strategies and results show)")
    if isinstance(candidates, Mapping):
        keys: list[Choice] = list(candidates)
        modules = list(candidates.values())
        for k in keys:
            if not isinstance(k, str) or not k or "." in k:
                raise ModelSpaceError(
                    f"{what} {label!r}: candidate name {k!r} must be a non-empty string without '.' (a module name)"
                )
    elif isinstance(candidates, (list, tuple, nn.ModuleList)):
        modules = list(candidates)
        keys = list(range(len(modules)))
    else:
        raise ModelSpaceError(f"{what} {label!r}: candidates must be a list or a dict of modules")
    for k, m in zip(keys, modules):
        if not isinstance(m, nn.Module):
            raise ModelSpaceError(f"{what} {label!r}: candidate {k!r} is a {type(m).__name__}, not an nn.Module")
    return keys, modules


class LayerChoice(nn.Module):
    """One of `candidates` (a list: the decision's values are the indices; a dict: its keys) runs, chosen by
    the decision `label`. Candidates take the same inputs and give outputs of one shape."""

    _active: nn.Module

    def __new__(cls, candidates: Any = None, *, label: str | None = None) -> Any:
        if candidates is None and label is None:  # copy.deepcopy and pickle create the object first
            return super().__new__(cls)
        what = "nasframe.nn.LayerChoice"
        frame = current_frame(f"{what}(label={label!r})")
        keys, modules = _candidates(candidates, label, what)
        assert label is not None  # checked by _candidates
        frame.declare(label, keys, what)
        if frame.mode == "frozen":
            return modules[keys.index(frame.chosen(label))]
        return super().__new__(cls)

    def __init__(self, candidates: Any, *, label: str):
        super().__init__()
        frame = current_frame("nasframe.nn.LayerChoice")
        keys, modules = _candidates(candidates, label, "nasframe.nn.LayerChoice")
        self.label = label
        self.values: tuple[Choice, ...] = tuple(keys)
        for key, module in zip(keys, modules):
            try:
                self.add_module(str(key), module)
            except KeyError:
                raise ModelSpaceError(
                    f"nasframe.nn.LayerChoice {label!r}: candidate name {key!r} is taken by an attribute; rename it"
                ) from None
        self._shared = frame.shared
        self._choices: list[nn.Module] = modules  # a list: not registered twice
        self._by_value = dict(zip(keys, modules))
        object.__setattr__(self, "_active", modules[0])  # a plain reference, not a registered submodule

    def candidate(self, value: Choice) -> nn.Module:
        """The candidate the decision's `value` selects."""
        return self._by_value[value]

    def activate(self, arch: Mapping[str, Choice]) -> None:
        object.__setattr__(self, "_active", self._by_value[arch[self.label]])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._shared.mixed is None:
            return self._active(*args, **kwargs)
        w = self._shared.mixed[self.label]
        out = None
        for i, module in enumerate(self._choices):
            y = w[i] * module(*args, **kwargs)
            out = y if out is None else out + y
        return out


def _input_values(n_candidates: Any, n_chosen: Any, label: Any, what: str) -> list[Choice]:
    for name, v, low in (("n_candidates", n_candidates, 2), ("n_chosen", n_chosen, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ModelSpaceError(f"{what} {label!r}: {name} must be an integer >= {low}, got {v!r}")
    if n_chosen >= n_candidates:
        raise ModelSpaceError(
            f"{what} {label!r}: choosing {n_chosen} of {n_candidates} inputs leaves nothing to decide; n_chosen must "
            f"be below n_candidates"
        )
    if n_chosen == 1:
        return list(range(n_candidates))
    return [",".join(map(str, c)) for c in itertools.combinations(range(n_candidates), n_chosen)]


def _indices(value: Choice) -> list[int]:
    return [int(value)] if isinstance(value, int) else [int(i) for i in str(value).split(",")]


REDUCTIONS = ("sum", "mean", "concat")


class ChosenInputs(nn.Module):
    """What an `InputChoice` becomes in the network of one architecture: the chosen inputs, reduced (a plain,
    scriptable module with no search left in it)."""

    def __init__(self, indices: list[int], reduction: str):
        super().__init__()
        self.indices = list(indices)
        self.reduction = reduction

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        chosen = [inputs[i] for i in self.indices]
        if self.reduction == "concat":
            return torch.cat(chosen, 1)
        out = chosen[0]
        for t in chosen[1:]:
            out = out + t
        return out / len(chosen) if self.reduction == "mean" else out


class InputChoice(nn.Module):
    """`n_chosen` of `n_candidates` tensors feed a node (DARTS-cell style), reduced by "sum", "mean" or
    "concat" (along channels). Called with the list of candidate tensors. The decision's values are the
    input indices (`n_chosen` 1) or the chosen indices as text, e.g. "0,2"."""

    _members: torch.Tensor

    def __new__(
        cls, n_candidates: Any = None, n_chosen: Any = 1, reduction: str = "sum", *, label: str | None = None
    ) -> Any:
        if n_candidates is None and label is None:
            return super().__new__(cls)
        what = "nasframe.nn.InputChoice"
        frame = current_frame(f"{what}(label={label!r})")
        if label is None:
            raise ModelSpaceError(f"{what} needs label=... (the decision's name)")
        if reduction not in REDUCTIONS:
            raise ModelSpaceError(f"{what} {label!r}: reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")
        values = _input_values(n_candidates, n_chosen, label, what)
        frame.declare(label, values, what)
        if frame.mode == "frozen":
            return ChosenInputs(_indices(frame.chosen(label)), reduction)
        return super().__new__(cls)

    def __init__(self, n_candidates: int, n_chosen: int = 1, reduction: str = "sum", *, label: str):
        super().__init__()
        frame = current_frame("nasframe.nn.InputChoice")
        self.label = label
        self.n_candidates, self.n_chosen, self.reduction = n_candidates, n_chosen, reduction
        self.values = tuple(_input_values(n_candidates, n_chosen, label, "nasframe.nn.InputChoice"))
        self._shared = frame.shared
        self._chosen = _indices(self.values[0])
        # which inputs each value picks (the mixed forward's coefficients of a sum or mean)
        members = torch.zeros(len(self.values), n_candidates)
        for row, value in enumerate(self.values):
            members[row, _indices(value)] = 1.0
        self.register_buffer("_members", members, persistent=False)

    def activate(self, arch: Mapping[str, Choice]) -> None:
        self._chosen = _indices(arch[self.label])

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != self.n_candidates:
            raise ModelSpaceError(
                f"nasframe.nn.InputChoice {self.label!r}: called with {len(inputs)} inputs, declared with "
                f"n_candidates={self.n_candidates}"
            )
        if self._shared.mixed is not None:
            return self._forward_mixed(inputs)
        chosen = [inputs[i] for i in self._chosen]
        if self.reduction == "concat":
            return torch.cat(chosen, 1)
        out = chosen[0]
        for t in chosen[1:]:
            out = out + t
        return out / len(chosen) if self.reduction == "mean" else out

    def _forward_mixed(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        assert self._shared.mixed is not None
        w = self._shared.mixed[self.label]
        if self.reduction == "concat":
            parts = [w[r] * torch.cat([inputs[i] for i in _indices(v)], 1) for r, v in enumerate(self.values)]
            out = parts[0]
            for p in parts[1:]:
                out = out + p
            return out
        coefficients = w.to(self._members.dtype) @ self._members  # per input: the weight of every value using it
        if self.reduction == "mean":
            coefficients = coefficients / self.n_chosen
        out = coefficients[0] * inputs[0]
        for i in range(1, self.n_candidates):
            out = out + coefficients[i] * inputs[i]
        return out


class Repeat(nn.Module):
    """`depth` blocks in sequence, block i built by `block_factory(i)`; `depth` a number or a choice (a path
    runs the first `depth` blocks; depth 0 passes the input through)."""

    _depth_rows: torch.Tensor

    def __new__(cls, block_factory: Callable[[int], nn.Module] | None = None, depth: Any = None) -> Any:
        if block_factory is None and depth is None:
            return super().__new__(cls)
        what = "nasframe.nn.Repeat"
        if not callable(block_factory):
            raise ModelSpaceError(
                f"{what}: block_factory must take the block index and return a module, got {block_factory!r}"
            )
        if not isinstance(depth, Value):
            positive_ints(depth, "depth", what, minimum=0)
            return nn.Sequential(*(_block(block_factory, i) for i in range(depth)))
        frame = current_frame(f"{what}(depth={depth!r})")
        if frame.mode == "frozen":
            assert frame.arch is not None
            return nn.Sequential(*(_block(block_factory, i) for i in range(value_of(depth, frame.arch))))
        return super().__new__(cls)

    def __init__(self, block_factory: Callable[[int], nn.Module], depth: Any):
        super().__init__()
        frame = current_frame("nasframe.nn.Repeat")
        depths = positive_ints(depth, "depth", "nasframe.nn.Repeat", minimum=0)
        for i in range(max(depths)):
            self.add_module(str(i), _block(block_factory, i))
        self.depth = depth
        self._shared = frame.shared
        self._blocks: list[nn.Module] = list(self.children())
        self._active: list[nn.Module] = self._blocks
        self._depths = sorted(set(depths))
        positions = {d: k for k, d in enumerate(self._depths)}
        rows, self._mix_key = indicator(depth, len(self._depths), one_hot(positions, len(self._depths)))
        self.register_buffer("_depth_rows", rows, persistent=False)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.depth.labels

    def active_blocks(self, arch: Mapping[str, Choice]) -> int:
        """How many blocks `arch`'s path runs."""
        return int(value_of(self.depth, arch))

    def activate(self, arch: Mapping[str, Choice]) -> None:
        self._active = self._blocks[: self.active_blocks(arch)]

    def forward(self, x: Any) -> Any:
        if self._shared.mixed is None:
            for block in self._active:
                x = block(x)
            return x
        mass = mix(self._shared, self.depth.labels, self._mix_key, self._depth_rows)  # the weight of each depth
        out = mass[0] * x if self._depths[0] == 0 else None
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i + 1 in self._depths:
                y = mass[self._depths.index(i + 1)] * x
                out = y if out is None else out + y
        return out


def _block(factory: Callable[[int], nn.Module], i: int) -> nn.Module:
    block = factory(i)
    if not isinstance(block, nn.Module):
        raise ModelSpaceError(f"nasframe.nn.Repeat: block_factory({i}) returned a {type(block).__name__}, not a module")
    return block
