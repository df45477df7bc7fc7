"""Bilevel search on the supernet (`Differentiable`: DARTS, SETN): architecture weights trained on
search-val by the gradient of a mixed forward, while the shared weights train on search-train.

DARTS (Liu et al., ICLR 2019; reference 4.5) trains architecture weights alpha on search-val while
the shared weights w train on search-train. The mixed forward weights every choice of a decision by
softmax(alpha). The gradient of the validation loss with respect to alpha is taken either at the
current weights (first order) or at the weights one SGD step ahead, w' = w - xi (momentum buffer +
grad_w L_train + weight decay w), which DARTS approximates with a central finite difference:

    grad_alpha L_val(w', alpha) - xi [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / (2 eps)
    w+- = w +- eps grad_w' L_val(w', alpha),   eps = 0.01 / ||grad_w' L_val(w', alpha)||

The gradient functions (`first_order`, `second_order`) know no strategy and no space: the model is
any module whose forward runs the mixed network with the `weights` it holds (`MixedForward`), and
`to_weights` turns alphas into them. `SupernetDifferentiable.train_mixed` alternates them with the
weight steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn
from torch.func import functional_call

from nasframe.common.errors import NotSupported
from nasframe.core.capabilities import AlphaOptimizer, Differentiable
from nasframe.core.evaluator import Cost, WorkReport
from nasframe.core.space import Arch
from nasframe.evaluators.supernet.fewshot import FewShotSupernet
from nasframe.evaluators.supernet.shared import SharedSupernet
from nasframe.training.measure import to_cpu
from nasframe.training.step_options import (
    StepSettings,
    autocast,
    deterministic_mode,
    device_generator,
    resolve_deterministic,
)
from nasframe.training.steps import StepRunner, classification_loss

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
    unrolled = _unrolled(named, g_train, xi, momentum, weight_decay, momentum_buffers, decay_1d)
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


def _unrolled(
    named: Sequence[tuple[str, torch.Tensor]],
    g_train: Sequence[torch.Tensor | None],
    xi: float,
    momentum: float,
    weight_decay: float,
    momentum_buffers: Mapping[str, torch.Tensor],
    decay_1d: bool,
) -> list[torch.Tensor]:
    """w' = w - xi (momentum * buffer + grad + decay * w): one plain-momentum SGD step, as leaves."""
    unrolled = []
    for (name, p), g in zip(named, g_train):
        buf = momentum_buffers.get(name)
        decay = weight_decay if decay_1d or p.dim() > 1 else 0.0
        step = (torch.zeros_like(p) if g is None else g) + decay * p.detach()
        if buf is not None:
            step = step + momentum * buf
        unrolled.append((p.detach() - xi * step).requires_grad_(True))
    return unrolled


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


class SupernetDifferentiable(SharedSupernet, Differentiable):
    """The supernet's `Differentiable`: `train_mixed`, the strategy's alphas set up on the device."""

    def train_mixed(
        self,
        steps: int,
        state: dict[str, Any],
        order: int,
        optimizer: AlphaOptimizer,
        next_path: Callable[[], Arch] | None,
    ) -> WorkReport:
        """Bilevel steps: an Adam step on the strategy's alphas from a search-val batch (first or second
        order), then an SGD step on the shared weights from a search-train batch, through the mixed
        forward (DARTS) or on the single path `next_path` draws (SETN)."""
        start = time.perf_counter()
        o = self.options
        if order == 2 and o.nesterov and o.momentum > 0:
            raise NotSupported(
                "second-order DARTS unrolls a plain-momentum SGD step; set evaluator.nesterov=false (or use order 1)"
            )
        self._notes = []
        with deterministic_mode(resolve_deterministic(o, self.device)):
            self._build()
            spe = self._steps_per_epoch()
            bilevel = _BilevelSteps(self, state, order, optimizer, next_path)
            stats = self._train(
                steps,
                bilevel.before_step,
                lambda: list(self._params.values()),
                make_runner=bilevel.make_runner,
                batches=bilevel.train,
            )
        report_state = {
            "choices": state["choices"],
            "alphas": {n: a.detach().cpu().clone() for n, a in bilevel.alphas.items()},
            "adam": to_cpu(bilevel.adam.state_dict()),
        }
        metrics = {
            "train_loss": stats.mean_loss,
            "arch_val_loss": float(sum(bilevel.losses) / max(1, len(bilevel.losses))),
            "steps": float(steps),
            **self._shot_metrics(),
        }
        return WorkReport(
            Cost(time.perf_counter() - start, steps / spe), metrics, state=report_state, notes=list(self._notes)
        )

    def _alpha_setup(
        self, state: dict[str, Any], optimizer: AlphaOptimizer
    ) -> tuple[dict[str, torch.Tensor], torch.optim.Adam, Any]:
        """Leaf alphas on the device, their Adam (state restored), and alphas -> mixed-forward weights:
        softmax over the strategy's choices, placed at those choices' positions in each decision of the
        supernet's space (zero for choices outside the strategy's space, e.g. dropped by ABS)."""
        decisions = {d.name: d.choices for d in self.space.decisions}
        choices = {n: tuple(c) for n, c in state["choices"].items()}
        unknown = [n for n in choices if n not in decisions]
        if unknown or set(choices) != set(decisions):
            raise NotSupported(
                f"architecture weights must cover exactly the space's decisions; got "
                f"{sorted(set(choices) ^ set(decisions))[:3]}"
            )
        positions = {
            n: torch.tensor([decisions[n].index(c) for c in cs], device=self.device) for n, cs in choices.items()
        }
        sizes = {n: len(decisions[n]) for n in decisions}
        alphas = {
            n: state["alphas"][n].detach().to(self.device, torch.float32).clone().requires_grad_(True)
            for n in decisions
        }
        adam = torch.optim.Adam(
            list(alphas.values()), lr=optimizer.lr, betas=optimizer.betas, weight_decay=optimizer.weight_decay
        )
        if state.get("adam"):
            adam.load_state_dict(state["adam"])

        def to_weights(a: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            out = {}
            for n, logits in a.items():
                full = torch.zeros(sizes[n], device=logits.device, dtype=logits.dtype)
                out[n] = full.index_put((positions[n],), torch.softmax(logits, dim=-1))
            return out

        return alphas, adam, to_weights

    def _momentum_buffers(self) -> dict[str, torch.Tensor]:
        """SGD momentum buffers by parameter name as MixedForward names them ("net." + name)."""
        state = cast(torch.optim.SGD, self.optimizer).state
        return {
            f"net.{n}": state[p]["momentum_buffer"]
            for n, p in self._params.items()
            if "momentum_buffer" in state.get(p, {})
        }


class _BilevelSteps:
    """One `train_mixed` call: the alphas and their Adam, the batches, and the callbacks of its steps
    (an architecture step before each weight step, and the runner of the weight steps)."""

    def __init__(
        self,
        ev: SupernetDifferentiable,
        state: dict[str, Any],
        order: int,
        optimizer: AlphaOptimizer,
        next_path: Callable[[], Arch] | None,
    ):
        o = ev.options
        self.ev, self.order, self.next_path = ev, order, next_path
        batches, self.transform = ev._data()
        self.alphas, self.adam, self.to_weights = ev._alpha_setup(state, optimizer)
        self.mixed = MixedForward(ev.supernet)
        self.generator = device_generator(ev.device)
        self.train = Peekable(batches.train(o.batch_size, self.generator))
        self.val = batches.stream("val", o.batch_size, self.generator)
        self.first = ev.step
        self.losses: list[float] = []
        self.lr_at = ev._lr_at(self.first)

    def before_step(self, i: int) -> Sequence[torch.Tensor]:
        """The architecture step, then the parameters of the weight step that follows it: every one
        through the mixed forward (DARTS), or those of the path `next_path` draws (SETN)."""
        self._arch_step(i)
        if self.next_path is None:
            self.mixed.weights = {k: v.detach() for k, v in self.to_weights(self.alphas).items()}
            return list(self.ev._params.values())
        arch = self.next_path()
        self.ev.supernet.set_path(arch)
        return self.ev.path_params(arch)

    def _arch_step(self, i: int) -> None:
        """An Adam step on the alphas from the next search-val batch."""
        net = self.ev.supernet
        if isinstance(net, FewShotSupernet):  # sub-supernets take the mixed steps in turn
            net.mixed_shot = (self.first + i) % len(net.masks)
        xv, yv = next(self.val)
        batch_val = (self.transform.train(xv, self.generator), yv)
        self.adam.zero_grad()
        if self.order == 2:
            xt, yt = self.train.peek()
            batch_train = (self.transform.train(xt, self.generator), yt)
            o = self.ev.options
            grads, loss = second_order(
                self.mixed,
                self.alphas,
                self.to_weights,
                batch_train,
                batch_val,
                self.lr_at(i),
                o.momentum,
                o.weight_decay,
                self.ev._momentum_buffers(),
                decay_1d=o.decay_1d,
            )
        else:
            grads, loss = first_order(self.mixed, self.alphas, self.to_weights, batch_val)
        for name, g in grads.items():
            self.alphas[name].grad = g
        self.adam.step()
        self.losses.append(loss)

    def make_runner(self) -> StepRunner:
        """The weight steps' runner: through the mixed forward (DARTS) or the supernet's path (SETN)."""
        ev = self.ev
        return StepRunner(
            self.mixed if self.next_path is None else ev.supernet,
            cast(torch.optim.SGD, ev.optimizer),
            self.transform,
            ev._settings(),
            ev.device,
            data_parallel=True,
        )
