"""Parameter and MAC counts of a network, the way NAS papers quote them.

Parameters exclude auxiliary heads (modules marked `is_auxiliary = True`). MACs are the
multiply-accumulates of convolutions and linear layers for one image at the data set's input
size, taken from torch's FLOP counter (which counts 2 FLOPs per MAC) with the net in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


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


def count_macs(model: nn.Module, input_shape: tuple[int, ...], forward_kwargs: dict | None = None) -> int:
    """Conv and linear multiply-accumulates of one forward pass of a single image (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(1, *input_shape, device=device)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x, **(forward_kwargs or {}))
        ops = counter.get_flop_counts().get("Global", {})
        wanted = ("convolution", "addmm", "mm", "bmm", "linear")
        flops = sum(v for k, v in ops.items() if any(w in str(k) for w in wanted))
        return int(flops // 2)
    finally:
        model.train(was_training)
