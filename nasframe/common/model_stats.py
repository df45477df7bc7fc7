"""Parameter and MAC counts of a network, the way NAS papers quote them.

Parameters exclude auxiliary heads (modules marked `is_auxiliary = True`). MACs are the
multiply-accumulates of convolutions and matrix products (linear layers, mm, bmm) for one image
at the data set's input size, with the net in eval mode. They are read from the shapes of the
ops one forward pass dispatches, with the same formulas as torch's FLOP counter
(`torch.utils.flop_counter`, 2 FLOPs per MAC). That counter is not used itself: its first use
imports sympy (1.5 s, once per process) and it tracks the module tree with hooks on every module
(60 ms per DARTS network), a cost every evaluation of a search would pay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _auxiliary_prefixes(model: nn.Module) -> list[str]:
    return [name + "." for name, m in model.named_modules() if getattr(m, "is_auxiliary", False) and name]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, excluding auxiliary heads (shared tensors counted once)."""
    skip = _auxiliary_prefixes(model)
    seen: set[int] = set()
    total = 0
    for name, p in model.named_parameters():
        if any(name.startswith(s) for s in skip) or id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def _conv_macs(args: Sequence[Any], out: torch.Tensor) -> int:
    """(input, weight, bias, stride, padding, dilation, transposed, ...): every output element of a
    convolution takes in_channels/groups x kernel MACs; of a transposed one, every input element."""
    x, w, transposed = args[0], args[1], bool(args[6])
    return (x if transposed else out).numel() * w.shape[1] * math.prod(w.shape[2:])


def _mm_macs(a: torch.Tensor, b: torch.Tensor) -> int:
    """(..., m, k) @ (..., k, n): m x k x n per matrix pair."""
    return a.numel() * b.shape[-1]


#: op -> MACs from (args, output); the ops torch's FLOP counter counts for conv and linear layers
_MAC_RULES: dict[Any, Callable[[Sequence[Any], Any], int]] = {
    aten.convolution: _conv_macs,
    aten._convolution: _conv_macs,
    aten.mm: lambda args, out: _mm_macs(args[0], args[1]),
    aten.bmm: lambda args, out: _mm_macs(args[0], args[1]),
    aten.addmm: lambda args, out: _mm_macs(args[1], args[2]),
    aten.baddbmm: lambda args, out: _mm_macs(args[1], args[2]),
}


class _MacCounter(TorchDispatchMode):
    """Adds up the MACs of the counted ops that reach the dispatcher (each op once: the ops an op
    calls inside its own implementation are not seen by the mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch otherwise wraps __torch_dispatch__ to keep its compiler out of it, importing that compiler
        # (torch._dynamo, about 2 s) at the first op; a plain forward pass never compiles anything
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        rule = _MAC_RULES.get(func.overloadpacket)
        if rule is not None:
            self.macs += int(rule(args, out))
        return out


def count_macs(model: nn.Module, input_shape: tuple[int, ...], forward_kwargs: dict | None = None) -> int:
    """Conv and linear multiply-accumulates of one forward pass of a single image (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(1, *input_shape, device=device)
        counter = _MacCounter()
        with torch.no_grad(), counter:
            model(x, **(forward_kwargs or {}))
        return counter.macs
    finally:
        model.train(was_training)
