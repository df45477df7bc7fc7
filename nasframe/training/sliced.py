"""Weight sharing by slicing, on the evaluator's side: the optimizer step, BatchNorm recalibration and
angle vectors of a path that uses only part of some parameters (`Supernet.path_parameter_slices`).

A supernet that shares weights by slicing (a narrow width takes the first channels of the widest layer,
a small kernel the centre of the largest: `nasframe.nn`'s mutable layers) runs a path on views of its
parameters. The gradient of such a parameter is zero outside the view, but a plain SGD step would
still move the rest through momentum and weight decay. What happens here follows SPOS (Guo et al.,
2020; reference algorithms.md 3.2 and S3), where parameters off the sampled path get no update at
all: its code sets their gradient to None, so momentum and weight decay skip them. Applied to parts
of parameters, the part a path uses takes exactly the step torch's SGD would take on it as a
parameter of its own, and everything outside it (weights and momentum buffers) is left as it was.
OFA's elastic layers instead step the whole tensors, so there the unused channels keep moving with
momentum and weight decay; that is not done here.

- `path_parameters` turns a path's slices into what the step runner trains: a plain list when every
  parameter is used whole (the built-in supernets: nothing changes for them), else a `SlicedPath`;
- `SlicedPath.step` is the step: torch's SGD on the whole parameters, torch's functional SGD on views
  of the parts, with the parts' momentum buffers as views of the full buffers (checkpointed as usual);
- `keep_unused_statistics` wraps BatchNorm recalibration: the statistics outside the path's part of
  each BatchNorm (`Supernet.path_buffer_slices`) are put back as they were;
- `slice_vectors` reads a `ParamSlice` angle term from the base and the current weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import torch
from torch.optim.sgd import sgd

from nasframe.common.errors import NotSupported
from nasframe.core.space import Arch, Index, ParamSlice, Supernet


class SlicedPath(list[torch.Tensor]):  # a list of parameters, as every consumer of a path expects
    """The parameters a path trains, in the supernet's order, with the part of each it uses
    (`indices[i]`: an `Index`, or None for the whole tensor).

    It is a list of the full parameters, so gradient clipping, gradient averaging and the evaluator's
    divergence snapshot treat it as any path; only the step differs (`step`)."""

    def __init__(self, params: Sequence[torch.Tensor], indices: Sequence[Index | None]):
        super().__init__(params)
        self.indices = list(indices)
        self.whole = [p for p, i in zip(params, indices) if i is None]
        self.parts = [(p, i) for p, i in zip(params, indices) if i is not None]

    @torch.no_grad()
    def step(self, optimizer: torch.optim.Optimizer, all_params: list[torch.Tensor], *, decay_1d: bool = True) -> None:
        """One SGD step at the group's current settings: the whole parameters through `optimizer.step()`
        with its group narrowed to them (as for any path), the parts through torch's functional SGD on
        views. A part's momentum buffer is created as zeros over the whole tensor the first time: with
        no dampening, a zero buffer's first update equals torch's first-step copy of the gradient.
        `decay_1d` False: the weight decay reaches only parameters of two or more dimensions (added to
        their gradients here, the optimizer running without decay), as for a whole path."""
        group = optimizer.param_groups[0]
        decay = float(group.get("weight_decay", 0.0))
        if decay and not decay_1d:
            add_decay_nd(self, decay)
            group["weight_decay"] = 0.0
        try:
            self._step(optimizer, all_params)
        finally:
            group["weight_decay"] = decay

    def _step(self, optimizer: torch.optim.Optimizer, all_params: list[torch.Tensor]) -> None:
        group = optimizer.param_groups[0]
        if self.whole:
            group["params"] = self.whole
            try:
                optimizer.step()
            finally:
                group["params"] = all_params
        if not self.parts:
            return
        momentum, dampening = float(group["momentum"]), float(group.get("dampening", 0.0))
        if momentum and dampening:
            raise NotSupported("a sliced path's SGD step supports momentum without dampening (dampening=0)")
        views, grads, buffers = [], [], []
        for p, index in self.parts:
            if p.grad is None:  # as torch's SGD: a parameter without gradient gets no step
                continue
            views.append(p.detach()[index])
            grads.append(p.grad[index])
            if momentum:
                state = optimizer.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buffers.append(buf[index])
            else:
                buffers.append(None)
        if not views:
            return
        sgd(
            views,
            grads,
            buffers,
            foreach=False,  # the views are not contiguous; one small kernel call per part
            weight_decay=float(group["weight_decay"]),
            momentum=momentum,
            lr=group["lr"],
            dampening=dampening,
            nesterov=bool(group["nesterov"]),
            maximize=bool(group.get("maximize", False)),
        )


def path_parameters(
    supernet: Supernet, arch: Arch, params: Mapping[str, torch.nn.Parameter]
) -> list[torch.nn.Parameter] | SlicedPath:
    """The parameters `arch`'s path trains (`params`: the supernet's by name): a plain list when the path
    uses every one whole, else a `SlicedPath` carrying the parts."""
    slices = supernet.path_parameter_slices(arch)
    try:
        chosen = [params[n] for n in slices]
    except KeyError as exc:
        raise NotSupported(f"supernet path names unknown parameter {exc.args[0]!r}") from None
    indices = list(slices.values())
    if all(i is None for i in indices):
        return chosen
    return SlicedPath(chosen, indices)


@contextlib.contextmanager
def keep_unused_statistics(net: Any, arch: Arch) -> Iterator[None]:
    """Around BatchNorm recalibration of `arch`'s path on `net`: the statistics of each BatchNorm the path
    uses only part of (`Supernet.path_buffer_slices`) are afterwards as recalibrated inside that part and
    as they were before outside it (recalibration resets whole BatchNorms, and puts back only those the
    forward did not reach)."""
    slices = net.path_buffer_slices(arch) if isinstance(net, Supernet) else {}
    if not slices:
        yield
        return
    buffers = dict(net.named_buffers())
    unknown = [n for n in slices if n not in buffers]
    if unknown:
        raise NotSupported(f"supernet path names unknown buffer {unknown[0]!r}")
    saved = {name: buffers[name].detach().clone() for name in slices}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, index in slices.items():
                buf = buffers[name]
                used = buf[index].clone()
                buf.copy_(saved[name])
                buf[index] = used


def slice_vectors(
    term: ParamSlice, base: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The flattened part `term` names, from the base weights and from the current weights."""
    if term.name not in base or term.name not in params:
        raise NotSupported(f"angle term names unknown parameter {term.name!r}")
    return base[term.name][term.part].reshape(-1), params[term.name].detach()[term.part].reshape(-1)


@torch.no_grad()
def add_decay_nd(params: Sequence[torch.Tensor], decay: float) -> None:
    """grad += decay * p for the parameters of two or more dimensions that have a gradient (one fused
    launch on CUDA, as SGD's own foreach path adds its decay): weight decay that exempts 1-D parameters."""
    decayed = [p for p in params if p.grad is not None and p.dim() > 1]
    if decayed:
        torch._foreach_add_([cast(torch.Tensor, p.grad) for p in decayed], decayed, alpha=decay)
