"""The architecture-weight gradient of bilevel search (DARTS), as functions of a mixed-forward model.

DARTS (Liu et al., ICLR 2019; reference 4.5) trains architecture weights alpha on search-val while
the shared weights w train on search-train. The mixed forward weights every choice of a decision by
softmax(alpha). The gradient of the validation loss with respect to alpha is taken either at the
current weights (first order) or at the weights one SGD step ahead, w' = w - xi (momentum buffer +
grad_w L_train + weight decay w), which DARTS approximates with a central finite difference:

    grad_alpha L_val(w', alpha) - xi [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / (2 eps)
    w+- = w +- eps grad_w' L_val(w', alpha),   eps = 0.01 / ||grad_w' L_val(w', alpha)||

Nothing here knows a strategy or a space: the model is any module whose forward runs the mixed
network with the `weights` it holds (`MixedForward`), and `to_weights` turns alphas into them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from nasframe.evaluators.training import StepSettings, autocast, classification_loss

Batch = tuple[torch.Tensor, torch.Tensor]
#: alphas (one logit vector per decision) -> the mixed forward's weights, differentiably
ToWeights = Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]


class MixedForward(nn.Module):
    """Runs a supernet's `forward_mixed` with the weights set before the call (so a step runner that
    calls `model(x)` trains the shared weights through the mixed network)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.weights: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> Any:
        return self.net.forward_mixed(x, self.weights)  # type: ignore[operator]


class Peekable:
    """An iterator whose next item can be looked at first: the unrolled step needs the train batch
    that the weight step right after it will use."""

    def __init__(self, items: Iterator[Batch]):
        self._items = items
        self._next: Batch | None = None

    def peek(self) -> Batch:
        if self._next is None:
            self._next = next(self._items)
        return self._next

    def __iter__(self) -> Peekable:
        return self

    def __next__(self) -> Batch:
        item = self.peek()
        self._next = None
        return item


def _loss(
    model: MixedForward,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: StepSettings,
    params: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    with autocast(x.device, settings.amp):
        out = model(x) if params is None else functional_call(model, dict(params), (x,))
        return classification_loss(out, y, settings)


def first_order(
    model: MixedForward, alphas: Mapping[str, torch.Tensor], to_weights: ToWeights, val: Batch
) -> tuple[dict[str, torch.Tensor], float]:
    """grad_alpha L_val(w, alpha) at the current weights, and the loss (DARTS first order, SETN)."""
    names = list(alphas)
    model.weights = to_weights(alphas)
    loss = _loss(model, *val, _plain_settings())
    # a decision the network never uses (no normal cell in a 2-cell supernet) gets a zero gradient
    grads = torch.autograd.grad(loss, [alphas[n] for n in names], allow_unused=True)
    return {n: torch.zeros_like(alphas[n]) if g is None else g for n, g in zip(names, grads)}, float(loss.detach())


def second_order(
    model: MixedForward,
    alphas: Mapping[str, torch.Tensor],
    to_weights: ToWeights,
    train: Batch,
    val: Batch,
    xi: float,
    momentum: float,
    weight_decay: float,
    momentum_buffers: Mapping[str, torch.Tensor],
    fd_scale: float = 0.01,
    decay_1d: bool = True,
) -> tuple[dict[str, torch.Tensor], float]:
    """DARTS' unrolled gradient with its finite-difference Hessian-vector product, and the val loss.

    `momentum_buffers` maps parameter names (as in `model.named_parameters()`) to the SGD momentum
    buffers of the weight optimizer (missing ones count as zero); `xi` is the current weight lr;
    `decay_1d` False exempts 1-D parameters from the weight decay, as the weight step then does;
    the difference step is eps = fd_scale / |grad_w' L_val| (DARTS: 0.01). On networks with ReLU and
    max pooling, 0.01 can step over kinks: the tests measure how far that is from the exact gradient.
    BatchNorm running statistics take in the train batch at w, w+ and w-, never the val batch at w'
    (the reference evaluates that on an unrolled copy of the network).
    """
    settings = _plain_settings()
    named = [(n, p) for n, p in model.named_parameters()]
    names_w = [n for n, _ in named]
    w = [p.detach() for _, p in named]
    names_a = list(alphas)
    a = [alphas[n] for n in names_a]
    # w' = w - xi (momentum * buffer + grad_w L_train(w, alpha) + weight_decay * w), alpha held fixed
    model.weights = {k: v.detach() for k, v in to_weights(alphas).items()}
    g_train = torch.autograd.grad(_loss(model, *train, settings), [p for _, p in named], allow_unused=True)
    unrolled = []
    for (name, p), g in zip(named, g_train):
        buf = momentum_buffers.get(name)
        decay = weight_decay if decay_1d or p.dim() > 1 else 0.0
        step = (torch.zeros_like(p) if g is None else g) + decay * p.detach()
        if buf is not None:
            step = step + momentum * buf
        unrolled.append((p.detach() - xi * step).requires_grad_(True))
    # grad of L_val at w' with respect to alpha and to w', on an unrolled copy as DARTS' code runs it: the
    # copy's buffers (BatchNorm running statistics) start as the shared ones and take in the val batch, so
    # the shared statistics see only the train batches (at w, w+ and w-), as in the reference
    model.weights = to_weights(alphas)
    copy_buffers = {n: b.clone() for n, b in model.named_buffers()}
    val_loss = _loss(model, *val, settings, params={**dict(zip(names_w, unrolled)), **copy_buffers})
    grads = torch.autograd.grad(val_loss, a + unrolled, allow_unused=True)
    d_alpha = [torch.zeros_like(x) if g is None else g for x, g in zip(a, grads[: len(a)])]
    d_w = [torch.zeros_like(x) if g is None else g for x, g in zip(unrolled, grads[len(a) :])]
    eps = fd_scale / torch.cat([g.reshape(-1) for g in d_w]).norm().clamp_min(1e-12)
    implicit = _finite_difference(model, a, to_weights, alphas, names_w, w, d_w, eps, train, settings)
    return {n: da - xi * h for n, da, h in zip(names_a, d_alpha, implicit)}, float(val_loss.detach())


def _finite_difference(
    model: MixedForward,
    a: Sequence[torch.Tensor],
    to_weights: ToWeights,
    alphas: Mapping[str, torch.Tensor],
    names_w: Sequence[str],
    w: Sequence[torch.Tensor],
    d_w: Sequence[torch.Tensor],
    eps: torch.Tensor,
    train: Batch,
    settings: StepSettings,
) -> list[torch.Tensor]:
    """[grad_alpha L_train(w + eps d, alpha) - grad_alpha L_train(w - eps d, alpha)] / (2 eps)."""
    out = []
    for sign in (1.0, -1.0):
        shifted = {n: x + sign * eps * d for n, x, d in zip(names_w, w, d_w)}
        model.weights = to_weights(alphas)
        loss = _loss(model, *train, settings, params=shifted)
        grads = torch.autograd.grad(loss, list(a), allow_unused=True)
        out.append([torch.zeros_like(x) if g is None else g for x, g in zip(a, grads)])
    return [(plus - minus) / (2 * eps) for plus, minus in zip(*out)]


def _plain_settings() -> StepSettings:
    """Plain cross-entropy in full precision for the architecture step (DARTS' loss; bf16 would drown
    the finite difference of the second-order step)."""
    return StepSettings(grad_clip=None, auxiliary_weight=0.0, label_smoothing=0.0, amp=False)
