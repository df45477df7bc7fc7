"""Zero-cost proxies: scores of an untrained network from one forward/backward pass (higher = better).

Each proxy is one function. Gradient proxies add up over the weights of the convolution and linear
layers (`scored_layers`), as the reference code of Abdelfattah et al. (ICLR 2021) does; biases,
BatchNorm affine parameters and other tensors are not scored. The data proxies run the network in
train mode (BatchNorm normalises with the batch's own statistics), as that code does. Every function
may change the model it is given (hooks, dtype, signs of the weights): hand it a freshly built one.

Formulas (L: mean cross-entropy of the batch; W: a scored weight tensor; g = dL/dW):
    synflow    sum |W * dR/dW| with R = sum of the outputs for an all-ones input, every weight and
               buffer replaced by its absolute value, float64, BatchNorm bypassed (Tanaka et al. 2020)
    grad_norm  sum over layers of ||g||_2
    snip       sum |W * g| (Lee et al. 2019)
    grasp      sum -W * (H g), H the Hessian of L, g held fixed (Wang et al. 2020)
    fisher     sum over layers of fan_in x sum over output channels k of 1/2 mean_n (sum_{h,w} a * dL/da)^2,
               a the layer's output (Theis et al. 2018; the fan-in factor is the reference code's)
    jacov      -sum_i log(l_i + 1e-5) + 1 / (l_i + 1e-5), l the eigenvalues of the correlation matrix of
               the per-image input gradients of the summed outputs (Mellor et al. 2020, first version)
    naswot     log|K|, K_ij = number of rectifier units on which images i and j are on the same side
               of zero (Mellor et al. 2021)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: the layers whose weights the gradient proxies score (the reference's "prunable" layers)
SCORED_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: the modules whose inputs give NASWOT's binary codes (positive or not)
RECTIFIERS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
#: jacov's eigenvalue offset (the reference code's k)
JACOV_EPS = 1e-5


def scored_layers(model: nn.Module) -> list[tuple[nn.Module, torch.Tensor]]:
    """(layer, weight) of the convolution and linear layers, in module order (each once)."""
    return [(m, cast(torch.Tensor, m.weight)) for m in model.modules() if isinstance(m, SCORED_LAYERS)]


def scored_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights the gradient proxies score."""
    return [w for _, w in scored_layers(model)]


def logits_of(out: Any) -> torch.Tensor:
    """The logits of a forward pass: models with an auxiliary head return (logits, aux) in train mode."""
    return cast(torch.Tensor, out[0] if isinstance(out, (tuple, list)) else out)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits_of(model(x)), y)


def _total(values: Sequence[torch.Tensor]) -> float:
    """One float from per-layer sums, summed in float64 (one host sync)."""
    if not values:
        return 0.0
    return float(torch.stack([v.detach().double() for v in values]).sum())


def _bypass(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    """Forward hook that makes a module pass its input through unchanged."""
    return inputs[0]


# ---- data-free ------------------------------------------------------------------------------------
def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Synaptic flow: sum |W * dR/dW| with R the summed outputs of the all-absolute network on an all-ones image.

    float64 throughout, as the reference code runs it: R is a product of sums of absolute weights over
    the depth of the network, so float32 overflows on deep ones (it is 1e20-1e40 on NB201 cells). The
    result is still infinite when float64 overflows too (or NaN); the caller reports that as a failure.

    BatchNorm is bypassed (a forward hook returns each BatchNorm's input), which is what the reference's
    `bn=False` asks for: its NB201 copy is built without BatchNorm in the stem, cells and head. (Its
    reduction blocks ignore that flag and keep BatchNorm in train mode; see docs/evaluators/zero_cost.md.)
    The network runs in eval mode, so dropout, drop-path and auxiliary heads are off.
    """
    model = model.double().eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_hook(_bypass)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    weights = scored_weights(model)
    for w in weights:
        w.grad = None
    param = next(model.parameters())
    x = torch.ones(1, *input_shape, dtype=torch.float64, device=param.device)
    logits_of(model(x)).sum().backward()
    return _total([(w * w.grad).abs().sum() for w in weights if w.grad is not None])


# ---- gradient proxies -----------------------------------------------------------------------------
def _weight_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(W, dL/dW) of every scored layer the loss reaches, in train mode."""
    model.train()
    weights = scored_weights(model)
    grads = torch.autograd.grad(_loss(model, x, y), weights, allow_unused=True)
    return [(w, g) for w, g in zip(weights, grads) if g is not None]


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over scored layers of the L2 norm of the loss gradient of the layer's weight."""
    return _total([g.norm() for _, g in _weight_grads(model, x, y)])


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """SNIP saliency summed over all scored weights: sum |W * dL/dW| (the gradient of the loss with respect
    to a multiplicative mask of ones on the weights, in absolute value)."""
    return _total([(w * g).abs().sum() for w, g in _weight_grads(model, x, y)])


def grasp(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """GraSP summed over the scored weights: sum -W * (H g), with g = dL/dW held fixed and H the Hessian of L.

    H g is the gradient of the scalar g . dL/dW (g detached), a Hessian-vector product through double
    backward; the sign is the reference code's (there, accuracy rises with this score).
    """
    model.train()
    weights = scored_weights(model)
    first = torch.autograd.grad(_loss(model, x, y), weights, allow_unused=True)
    used = [(w, g.detach()) for w, g in zip(weights, first) if g is not None]
    if not used:
        return 0.0
    ws = [w for w, _ in used]
    grads = torch.autograd.grad(_loss(model, x, y), ws, create_graph=True)
    inner = torch.stack([(fixed * g).sum() for (_, fixed), g in zip(used, grads)]).sum()
    hvp = torch.autograd.grad(inner, ws, allow_unused=True)
    return _total([(-w.detach() * h).sum() for w, h in zip(ws, hvp) if h is not None])


def fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fisher information of the scored layers' output channels (Theis et al. 2018), as the reference sums it.

    For a layer with output a (N, K, ...), s_nk = sum over positions of a * dL/da, the channel's score is
    1/2 mean_n s_nk^2; the reference spreads it over the channel's fan-in weights before summing, so a
    layer adds fan_in x sum_k of them (fan_in = weight.numel() / K).
    """
    model.train()
    terms: list[torch.Tensor] = []

    def watch(weight: torch.Tensor) -> Callable[..., None]:
        fan_in = weight[0].numel()

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if not out.requires_grad:
                return
            act = out.detach()

            def on_grad(grad: torch.Tensor) -> None:
                s = act * grad
                s = s.sum(dim=tuple(range(2, s.dim()))) if s.dim() > 2 else s
                terms.append(0.5 * s.pow(2).mean(0).sum() * fan_in)

            out.register_hook(on_grad)

        return hook

    handles = [layer.register_forward_hook(watch(w)) for layer, w in scored_layers(model)]
    try:
        _loss(model, x, y).backward()
    finally:
        for h in handles:
            h.remove()
    return _total(terms)


# ---- activation proxies ---------------------------------------------------------------------------
def jacov_from_jacobian(jacobian: np.ndarray) -> float:
    """jacov of an (images x input elements) matrix of input gradients; NaN when a row is constant."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(jacobian)
    if not np.all(np.isfinite(corr)):
        return math.nan
    eig = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(eig + JACOV_EPS) + 1.0 / (eig + JACOV_EPS)))


def jacov(model: nn.Module, x: torch.Tensor) -> float:
    """Score of the correlations between the images' input gradients (each image's gradient of the sum
    of its outputs): the less correlated, the higher. One backward pass gives all rows, because every
    output of image n depends only on image n (BatchNorm in train mode couples the images slightly, as in
    the reference, which computes it the same way)."""
    model.train()
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(logits_of(model(x)).sum(), x, allow_unused=True)
    if grad is None:  # the output does not depend on the input (a cell whose input reaches nothing)
        return math.nan
    return jacov_from_jacobian(grad.reshape(x.shape[0], -1).double().cpu().numpy())


def agreement_kernel(codes: torch.Tensor) -> torch.Tensor:
    """K = C C^T + (1 - C)(1 - C)^T for binary codes C (images x units), in float64: K_ij is the number of
    units on which images i and j agree (units minus their Hamming distance)."""
    c = codes.double()
    return c @ c.T + (1 - c) @ (1 - c).T


def _log_det(k: torch.Tensor) -> float:
    """log|K|; -inf when K is singular (two images with the same code)."""
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) > 0 else -math.inf


def naswot_from_codes(codes: torch.Tensor) -> float:
    """log|K| of the agreement kernel of binary codes (images x units)."""
    return _log_det(agreement_kernel(codes))


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """NASWOT (Mellor et al. 2021): log|K| of the images' binary codes, one bit per rectifier unit (is its
    input positive?) over every `nn.ReLU`/`nn.ReLU6` module of the network, in train mode. Read before the
    module runs, so in-place rectifiers do not hide their input; ValueError when the network has none."""
    model.train()
    n = x.shape[0]
    k = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        k.add_(agreement_kernel(inputs[0].detach().reshape(n, -1) > 0))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, RECTIFIERS)]
    if not handles:
        raise ValueError("naswot needs rectifier (nn.ReLU/nn.ReLU6) modules; this network has none")
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return _log_det(k)
