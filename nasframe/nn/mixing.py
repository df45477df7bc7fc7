"""Weights of a mixed forward (DARTS, SETN) over the values a `Value` takes.

`forward_mixed` gets one weight vector per decision (label), aligned with its values. A value that
depends on several labels (`a * b`) takes one result per combination of their values; a combination's
weight is the product of its labels' weights (the decisions are independent). A layer turns those into
what it multiplies: a width into a channel mask (the weight of every width that keeps channel c), a
kernel size into a kernel mask, a depth into a weight per depth. The combination -> result table is
fixed, so it is stored once as an indicator matrix; a mixed forward is one small matrix product per
distinct value, cached for the duration of the call and shared by every layer that uses the same value.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import torch

from nasframe.nn.context import Shared
from nasframe.nn.values import Value


def indicator(value: Value, width: int, row: Callable[[Any], torch.Tensor]) -> tuple[torch.Tensor, Hashable]:
    """(matrix with one row per combination of `value`'s labels, `row(result)` each; a key that is equal for
    equal matrices), the rows in `Value.table` order."""
    table = value.table()
    rows = torch.stack([row(result).reshape(width).float() for _, result in table])
    key = (value.labels, tuple(result for _, result in table), width, row.__qualname__)
    return rows, key


def prefix(size: int) -> Callable[[Any], torch.Tensor]:
    """A width's row: 1 on its first `result` channels (of `size`)."""

    def row(result: Any) -> torch.Tensor:
        return (torch.arange(size) < int(result)).float()

    return row


def centre(size: int) -> Callable[[Any], torch.Tensor]:
    """A kernel size's row: 1 on the centred `result` x `result` square of a `size` x `size` kernel."""

    def row(result: Any) -> torch.Tensor:
        k = int(result)
        a = (size - k) // 2
        square = torch.zeros(size, size)
        square[a : a + k, a : a + k] = 1.0
        return square

    return row


def one_hot(positions: Mapping[Any, int], size: int) -> Callable[[Any], torch.Tensor]:
    """A row with a single 1 at `positions[result]` (a depth's slot among the depths)."""

    def row(result: Any) -> torch.Tensor:
        out = torch.zeros(size)
        out[positions[result]] = 1.0
        return out

    return row


def combination_weights(labels: tuple[str, ...], weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The weight of every combination of the labels' values, the first label varying slowest."""
    out = weights[labels[0]]
    for label in labels[1:]:
        out = torch.outer(out, weights[label]).reshape(-1)
    return out


def mix(shared: Shared, labels: tuple[str, ...], key: Hashable, rows: torch.Tensor) -> torch.Tensor:
    """combination weights @ `rows` for the current mixed forward, computed once per call and `key`."""
    found = shared.masks.get(key)
    if found is None:
        assert shared.mixed is not None  # only called inside forward_mixed
        w = combination_weights(labels, shared.mixed).to(rows.dtype)
        found = shared.masks[key] = w @ rows
    return found
