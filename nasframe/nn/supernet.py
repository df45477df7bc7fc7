"""The weight-sharing supernet of a model space: the user's module built with every choice, as a `Supernet`.

Built once, the module tree is read into a tree of scopes: parameters a path always uses, mutable layers
(which use a slice of theirs), and the candidates of each `LayerChoice` and blocks of each `Repeat` (used
when chosen). A path's parameters, with the part of each it uses, are read off that tree
(`path_parameter_slices`); they are exactly the parameters of the network `ModelSpace.build` gives for the
architecture, slice for tensor (the conformance kit checks the counts). `set_path` tells every mutable what
the path runs, so `forward` is the user's own forward with no lookup beyond an attribute per mutable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nasframe.common.errors import InvalidArchitecture
from nasframe.core.space import Arch, Choice, Decision, Index, ParamSlice, Supernet
from nasframe.nn.choices import InputChoice, LayerChoice, Repeat
from nasframe.nn.context import Shared
from nasframe.nn.layers import MutableLayer
from nasframe.nn.pruning import PathPruner

#: paths whose slices are kept (uniform sampling over a large space rarely repeats one: a bounded cache)
_CACHED_PATHS = 512


@dataclass
class _Scope:
    """What a part of the model contributes to a path, in `named_parameters` order: ("fixed", names),
    ("layer", prefix, layer), ("choice", layer choice, {value: scope}), ("repeat", repeat, [scope per block])."""

    entries: list[tuple[Any, ...]] = field(default_factory=list)


def _read(module: nn.Module, prefix: str, scope: _Scope, seen: set[int]) -> None:
    if isinstance(module, LayerChoice):
        subs = {}
        for value in module.values:
            subs[value] = _Scope()
            _read(module.candidate(value), f"{prefix}{value}.", subs[value], seen)
        scope.entries.append(("choice", module, subs))
        return
    if isinstance(module, Repeat):
        blocks = []
        for i, block in enumerate(module.children()):
            blocks.append(_Scope())
            _read(block, f"{prefix}{i}.", blocks[-1], seen)
        scope.entries.append(("repeat", module, blocks))
        return
    if isinstance(module, MutableLayer):
        scope.entries.append(("layer", prefix, module))
        seen.update(id(p) for p in module.parameters(recurse=False))
        return
    own = []
    for name, p in module.named_parameters(recurse=False):
        if id(p) not in seen:  # a parameter shared by two modules counts once, under its first name
            seen.add(id(p))
            own.append(prefix + name)
    if own:
        scope.entries.append(("fixed", own))
    for name, child in module.named_children():
        _read(child, f"{prefix}{name}.", scope, seen)


def _collect(
    scope: _Scope, arch: Mapping[str, Choice], params: dict[str, Index | None], buffers: dict[str, Index]
) -> None:
    for entry in scope.entries:
        kind = entry[0]
        if kind == "fixed":
            params.update(dict.fromkeys(entry[1]))
        elif kind == "layer":
            prefix, layer = entry[1], entry[2]
            for name, index in layer.param_slices(arch).items():
                params[prefix + name] = index
            for name, index in layer.buffer_slices(arch).items():
                buffers[prefix + name] = index
        elif kind == "choice":
            _collect(entry[2][arch[entry[1].label]], arch, params, buffers)
        else:
            for block in entry[2][: entry[1].active_blocks(arch)]:
                _collect(block, arch, params, buffers)


class ModelSupernet(nn.Module, Supernet):
    """The supernet of a `ModelSpace`: `net` is the user's module built with every choice (parameter names
    are the user's, under `net.`; a `LayerChoice`'s candidates under their value, `Repeat`'s blocks under
    their index)."""

    _run: Callable[..., Any]

    def __init__(
        self,
        net: nn.Module,
        shared: Shared,
        decisions: Sequence[Decision],
        build_frozen: Callable[[Arch], nn.Module] | None = None,
    ):
        super().__init__()
        self.net = net
        self._shared = shared
        self._choices = {d.name: tuple(d.choices) for d in decisions}
        self._build_frozen = build_frozen
        self._mutables: list[Any] = []
        for name, m in net.named_modules():
            if isinstance(m, (MutableLayer, LayerChoice, InputChoice, Repeat)):
                self._mutables.append(m)
                if isinstance(m, MutableLayer):
                    m.where = name
        self._scope = _Scope()
        _read(net, "net.", self._scope, set())
        self._dims = {name: p.dim() for name, p in self.named_parameters()}
        self._paths: dict[Arch, tuple[dict[str, Index | None], dict[str, Index]]] = {}
        self._path: Arch | None = None
        #: the forward of the current path: `net`, or a traced copy without its dead code (nasframe/nn/pruning.py)
        self._pruner = PathPruner(net)
        object.__setattr__(self, "_run", net)  # a plain reference, not a registered submodule

    # ---- single path ----------------------------------------------------------------------------------
    def _checked(self, arch: Mapping[str, Any]) -> Arch:
        for name, values in self._choices.items():
            if name not in arch:
                raise InvalidArchitecture(f"architecture misses decision {name!r} of this supernet")
            if arch[name] not in values:
                raise InvalidArchitecture(
                    f"{name}={arch[name]!r} is not in the supernet; choose one of {', '.join(map(str, values))}"
                )
        return arch if isinstance(arch, Arch) else Arch(arch)

    def set_path(self, arch: Arch) -> None:
        arch = self._checked(arch)
        chosen = arch.to_dict()  # dict lookups: an Arch looks a decision up by scanning its items
        for m in self._mutables:
            m.activate(chosen)
        object.__setattr__(self, "_run", self._pruner.forward_for_path(chosen))
        self._path = arch

    def forget_path(self) -> None:
        """No path is selected any more (`forward` needs `set_path` again)."""
        self._path = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._path is None:
            raise RuntimeError("ModelSupernet.forward needs set_path(arch) first (or use forward_mixed)")
        return self._run(*args, **kwargs)

    def _slices(self, arch: Arch) -> tuple[dict[str, Index | None], dict[str, Index]]:
        found = self._paths.get(arch)
        if found is None:
            params: dict[str, Index | None] = {}
            buffers: dict[str, Index] = {}
            _collect(self._scope, self._checked(arch).to_dict(), params, buffers)
            if len(self._paths) >= _CACHED_PATHS:
                self._paths.clear()
            found = self._paths[arch] = (params, buffers)
        return found

    def path_parameter_slices(self, arch: Arch) -> dict[str, Index | None]:
        """Every parameter of the path's modules, with the part of it the path uses (None: whole)."""
        return dict(self._slices(arch)[0])

    def path_parameter_names(self, arch: Arch) -> list[str]:
        return list(self._slices(arch)[0])

    def path_buffer_slices(self, arch: Arch) -> dict[str, Index]:
        """The running statistics of BatchNorms whose width the path narrows: their first channels."""
        return dict(self._slices(arch)[1])

    def angle_terms(self, arch: Arch) -> list[str | ParamSlice | torch.Tensor]:
        """ABS' weight vector of the path: the weights of its convolutions and linear layers (tensors of two or
        more dimensions; no BatchNorm parameters, no biases, as ABS' MobileNet-space code), each sliced to
        the part the path uses, in the order of `named_parameters`. Parameter-free candidates (pooling,
        identity, zero) add nothing."""
        out: list[str | ParamSlice | torch.Tensor] = []
        for name, index in self._slices(arch)[0].items():
            if self._dims[name] >= 2:
                out.append(name if index is None else ParamSlice(name, index))
        return out

    # ---- mixed forward ----------------------------------------------------------------------------------
    def forward_mixed(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The user's forward with every mutable mixing its candidates by `weights[label]` (aligned with the
        decision's values): a weighted sum of candidates and depths, masked channels and kernels."""
        for name, values in self._choices.items():
            w = weights.get(name)
            if w is None or w.dim() != 1 or w.shape[0] != len(values):
                got = "nothing" if w is None else f"shape {tuple(w.shape)}"
                raise InvalidArchitecture(
                    f"forward_mixed: weights[{name!r}] needs {len(values)} entries "
                    f"({', '.join(map(str, values))}), got {got}"
                )
        self._shared.mixed, self._shared.masks = weights, {}
        try:
            return self.net(x)
        finally:
            self._shared.mixed, self._shared.masks = None, {}

    # ---- the path as a plain module ---------------------------------------------------------------------
    @torch.no_grad()
    def freeze(self, arch: Arch) -> nn.Module:
        """The network of `arch` as a plain module (as `ModelSpace.build` gives it) holding the path's trained
        weights and BatchNorm statistics (copies: training one does not change the other)."""
        if self._build_frozen is None:
            raise InvalidArchitecture("this supernet was built without its space; freeze through ModelSpace")
        arch = self._checked(arch)
        frozen = self._build_frozen(arch)
        state = {name: self._source(name, arch).clone() for name in frozen.state_dict()}
        frozen.load_state_dict(state)
        return frozen

    def _source(self, frozen_name: str, arch: Arch) -> torch.Tensor:
        """The supernet tensor (sliced to the path) that the frozen network's `frozen_name` corresponds to."""
        module: nn.Module = self.net
        parts = frozen_name.split(".")
        for part in parts[:-1]:
            module = module._modules[part]  # type: ignore[assignment]
            while isinstance(module, LayerChoice):  # frozen: the chosen candidate sits where the choice was
                module = module.candidate(arch[module.label])
        leaf = parts[-1]
        tensor = getattr(module, leaf)
        if isinstance(module, MutableLayer):
            index = {**module.param_slices(arch), **module.buffer_slices(arch)}.get(leaf)
            if index is not None:
                tensor = tensor[index]
        return tensor
