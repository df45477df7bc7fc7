"""NSE's importance learning on a multi-branch supernet (`BranchImportance`; reference algorithms-2.md
section 11.2-11.3).

Each (cell, op) has an importance logit alpha; the op's probability is p = 0.999 sigmoid(alpha) + 5e-4.
A round of supernet training (`train_importance`) repeats, step by step:

1. prune (clean_space): an active op whose alpha fell below the drop threshold leaves the cell's active
   set, unless it is protected (on the last Pareto front) or the cell is non-residual with exactly two ops;
2. a weight step on a random multi-branch path: each active op on with probability `balance_rate`
   (a non-residual cell that drew nothing draws again);
3. on steps i with i % arch_every == 0 (i counted within the epoch, as the released loop's batch index),
   an Adam step on alpha from a search-val batch: per cell two different gate strings S and U are drawn
   (all strings enumerated and two drawn without replacement when the cell has at most `enumerate_up_to`
   active ops, else Bernoulli draws with rejection), weighted q_S = P_S / (P_S + P_U), q_U = 1 - q_S, and
   the loss is CE of the two-sample forward plus cost_alpha (E[cost] - target)^cost_beta with
   E[cost] = frame + sum over cells of q_S cost(S) + q_U cost(U).

The draws use torch's global CPU generator, which the runner seeds for every piece of a request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, cast

import torch

from nasframe.common.errors import NasframeError, NotSupported
from nasframe.core.capabilities import AlphaOptimizer, BranchImportance, ImportanceSettings
from nasframe.core.evaluator import Cost, WorkReport
from nasframe.core.multibranch import MultiBranchSpace, MultiBranchSupernet
from nasframe.evaluators.supernet.shared import SharedSupernet
from nasframe.training.measure import oom_reason, to_cpu
from nasframe.training.step_options import deterministic_mode, device_generator, resolve_deterministic
from nasframe.training.steps import Diverged, StepRunner, TrainStats, cosine_lr

P_SCALE, P_FLOOR = 0.999, 5e-4


def importance(alpha: torch.Tensor) -> torch.Tensor:
    """An op's probability of being on: 0.999 sigmoid(alpha) + 5e-4 (exactly 0.5 at alpha 0)."""
    return torch.sigmoid(alpha) * P_SCALE + P_FLOOR


def clean_space(
    active: Sequence[Sequence[int]],
    alpha: torch.Tensor,
    protected: Sequence[Sequence[int]],
    residual: Sequence[bool],
    threshold: float,
) -> list[list[int]]:
    """The active ops that survive pruning. A non-residual cell is never left without an op: when every
    op of one with three or more would go at once, its highest-alpha op stays (the released code does
    not guard this case; inferred)."""
    a = alpha.detach().cpu()
    out = []
    for c, ops in enumerate(active):
        ops = list(ops)
        if not residual[c] and len(ops) == 2:
            out.append(ops)
            continue
        keep = [j for j in ops if float(a[c, j]) >= threshold or j in protected[c]]
        if not keep and not residual[c] and ops:
            keep = [max(ops, key=lambda j: float(a[c, j]))]
        out.append(keep)
    return out


def gate_strings(n: int, residual: bool) -> list[tuple[int, ...]]:
    """Every on/off string over n ops in the released order (binary counting, first op most significant),
    without the all-off string for a non-residual cell."""
    strings = [tuple((i >> (n - 1 - b)) & 1 for b in range(n)) for i in range(2**n)]
    return strings if residual else strings[1:]


def string_probability(p: torch.Tensor, gates: Sequence[int]) -> torch.Tensor:
    """prod over ops of p (on) or 1 - p (off): differentiable in p."""
    g = torch.tensor(gates, dtype=p.dtype, device=p.device)
    return torch.prod(g * p + (1 - g) * (1 - p))


def balanced_path(ops: Sequence[int], residual: bool, rate: float) -> list[int]:
    """The weight step's path of one cell: each active op on with probability `rate`; a non-residual cell
    draws again until one is on."""
    if not ops:
        return []
    while True:
        on = (torch.rand(len(ops)) < rate).tolist()
        if residual or any(on):
            return [j for j, keep in zip(ops, on) if keep]


def two_samples(
    ops: Sequence[int], p: torch.Tensor, residual: bool, enumerate_up_to: int
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Two different gate strings over the cell's active ops `ops` (p: their probabilities), or None for a
    deterministic cell (no op, or a single op where no branch is not allowed)."""
    n = len(ops)
    if n == 0 or (n == 1 and not residual):
        return None
    pd = p.detach().double().cpu()
    if n <= enumerate_up_to:
        strings = gate_strings(n, residual)
        weights = torch.stack([string_probability(pd, s) for s in strings])
        first, second = torch.multinomial(weights, 2, replacement=False).tolist()
        return strings[first], strings[second]

    def draw() -> tuple[int, ...]:
        while True:
            gates = tuple(int(g) for g in torch.bernoulli(pd).tolist())
            if residual or any(gates):
                return gates

    s = draw()
    while True:
        u = draw()
        if u != s:
            return s, u


def estimator_weights(p_s: torch.Tensor, p_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two samples' joint probabilities normalised over the pair: (P_S, P_U) / (P_S + P_U)."""
    total = p_s + p_u
    return p_s / total, p_u / total


def expected_cost(q_s: torch.Tensor, q_u: torch.Tensor, cost_s: float, cost_u: float) -> torch.Tensor:
    """A cell's expected cost under the pair: q_S cost(S) + q_U cost(U) (differentiable in q)."""
    return q_s.double() * cost_s + q_u.double() * cost_u


def cost_penalty(cost_millions: torch.Tensor, settings: ImportanceSettings) -> torch.Tensor:
    """cost_alpha (cost - target)^beta: at beta 2, being under the target costs as much as being over."""
    return settings.cost_alpha * (cost_millions - settings.cost_target) ** int(settings.cost_beta)


def lr_at(step: int, total: int, warmup: int, settings: ImportanceSettings, lr: float, lr_min: float) -> float:
    """The released schedule: linear from warmup_lr to lr over `warmup` steps, then cosine to lr_min at `total`."""
    if warmup > 0 and step < warmup:
        return settings.warmup_lr + (lr - settings.warmup_lr) * step / warmup
    return cosine_lr(step - warmup, max(1, total - warmup), lr, lr_min)


class SupernetBranchImportance(SharedSupernet, BranchImportance):
    """The supernet's `BranchImportance`: NSE's rounds of importance learning (`train_importance`)."""

    def train_importance(
        self, steps: int, state: dict[str, Any], settings: ImportanceSettings, optimizer: AlphaOptimizer
    ) -> WorkReport:
        """`steps` steps of one NSE round on this supernet (see the module docstring)."""
        with deterministic_mode(resolve_deterministic(self.options, self.device)):
            self._build()
            start = time.perf_counter()
            space, net = self._multi_branch()
            piece = _ImportanceSteps(self, space, net, state, settings, optimizer)
            assert self.optimizer is not None  # built with the supernet
            runner = StepRunner(
                cast(torch.nn.Module, net), self.optimizer, piece.transform, self._settings(), self.device
            )
            try:
                stats = runner.run(
                    piece.train,
                    steps,
                    piece.lr_of,
                    params_for=piece.params_for,
                    generator=piece.generator,
                    after_step=piece.after_step,
                )
            except Diverged as exc:
                raise NasframeError(
                    f"NSE supernet training diverged: {exc}; lower evaluator.lr (in a new run)"
                ) from None
            except torch.OutOfMemoryError as exc:
                raise NasframeError(
                    f"NSE supernet training ran {oom_reason(exc)}; lower evaluator.batch_size"
                ) from None
            self.step += steps
            return piece.report(steps, stats, start)

    def _multi_branch(self) -> tuple[MultiBranchSpace, MultiBranchSupernet]:
        """The space and the supernet as multi-branch ones (importance learning needs both)."""
        if self.options.few_shot != "none":
            raise NotSupported("importance learning runs on a one-shot supernet; set evaluator.few_shot=none")
        space = self.space
        if not isinstance(space, MultiBranchSpace):
            raise NotSupported(f"importance learning needs a multi-branch space; {self.space.name!r} is not one")
        net = self.supernet
        if not isinstance(net, MultiBranchSupernet):
            raise NotSupported(f"the supernet of space {self.space.name!r} has no two-sample forward")
        return space, net


class _ImportanceSteps:
    """One `train_importance` call: the round's logits, their Adam and the active ops, and the callbacks
    of its steps (prune and draw the path before each weight step; the importance step after it)."""

    def __init__(
        self,
        ev: SupernetBranchImportance,
        space: MultiBranchSpace,
        net: MultiBranchSupernet,
        state: dict[str, Any],
        settings: ImportanceSettings,
        optimizer: AlphaOptimizer,
    ):
        self.ev, self.net, self.settings = ev, net, settings
        self.residual = [c.residual for c in space.branch_cells()]
        if state.get("fresh"):
            net.reset_parameters()
            ev._new_optimizer()  # a new SGD: no momentum carries over (reference 11.3 h)
        self.costs = costs = net.branch_costs()
        macs = settings.cost_metric == "macs"
        self.table = torch.tensor(costs.macs if macs else costs.params, dtype=torch.float64)
        self.base = costs.base_macs if macs else costs.base_params
        self.unit = 1e6  # the penalty's target is in millions of MACs or parameters ...
        if settings.cost_table is not None:  # ... or in ms of latency, from the run's latency table
            self.base, self.table = settings.cost_table[0], torch.tensor(settings.cost_table[1], dtype=torch.float64)
            self.unit = 1.0
        self.alpha = state["alphas"].detach().to(ev.device, torch.float32).clone().requires_grad_(True)
        # a host copy, refreshed after each importance step: pruning and the draws read it, so weight steps
        # cost no device-to-host copy
        self.alpha_host = self.alpha.detach().cpu()
        self.adam = torch.optim.Adam(
            [self.alpha], lr=optimizer.lr, betas=optimizer.betas, weight_decay=optimizer.weight_decay
        )
        if state.get("adam"):
            self.adam.load_state_dict(state["adam"])
        self.active = [list(a) for a in state["active"]]
        self.protected = [list(a) for a in state["protected"]]
        self.first = int(state["iteration"])
        self.spe = ev.steps_per_epoch()
        self.total = max(1, round(settings.epochs * self.spe))
        self.warmup = round(settings.warmup_epochs * self.spe)
        batches, self.transform = ev._data()
        self.generator = device_generator(ev.device)
        self.train = batches.train(ev.options.batch_size, self.generator)
        self.val = batches.stream("val", ev.options.batch_size, self.generator)
        self.arch_losses: list[torch.Tensor] = []
        self.penalties: list[torch.Tensor] = []
        self.expected: list[torch.Tensor] = []

    def lr_of(self, i: int) -> float:
        o = self.ev.options
        return lr_at(self.first + i, self.total, self.warmup, self.settings, o.lr, o.lr_min)

    def params_for(self, i: int) -> Sequence[torch.Tensor]:
        """Prune, then draw the weight step's multi-branch path and return its parameters."""
        settings, residual = self.settings, self.residual
        self.active = clean_space(self.active, self.alpha_host, self.protected, residual, settings.drop_threshold)
        path = [balanced_path(ops, residual[c], settings.balance_rate) for c, ops in enumerate(self.active)]
        self.net.set_branches(path)
        return [self.ev._params[n] for n in self.net.branch_parameter_names(path)]

    def after_step(self, i: int, out: Any, y: torch.Tensor) -> None:
        """On steps i with i % arch_every == 0 (i within the epoch), an Adam step on the logits."""
        if ((self.first + i) % self.spe) % self.settings.arch_every != 0:
            return
        p_all = importance(self.alpha)
        p_host = importance(self.alpha_host.double())
        selected, unselected, weights, cost = self._draw_pairs(p_all, p_host)
        xv, yv = next(self.val)
        # arch-val batches without augmentation: the released code reads them with its test transform
        logits = self.net.forward_two_sample(self.transform.eval(xv), selected, unselected, weights)
        ce = torch.nn.functional.cross_entropy(logits.float(), yv)
        millions = (cost + self.base) / self.unit
        penalty = cost_penalty(millions, self.settings)
        loss = ce + penalty.float()
        (grad,) = torch.autograd.grad(loss, [self.alpha], allow_unused=True)
        self.alpha.grad = grad if grad is not None else torch.zeros_like(self.alpha)
        self.adam.step()
        self.alpha_host = self.alpha.detach().cpu()
        self.adam.zero_grad(set_to_none=True)
        self.arch_losses.append(ce.detach())
        self.penalties.append(penalty.detach())
        self.expected.append(millions.detach())

    def _draw_pairs(
        self, p_all: torch.Tensor, p_host: torch.Tensor
    ) -> tuple[list[list[int]], list[list[int]], list[tuple[torch.Tensor, torch.Tensor] | None], torch.Tensor]:
        """Per cell the two gate strings (S, U) as op lists, their estimator weights (None for a
        deterministic cell), and the expected cost over the cells."""
        selected: list[list[int]] = []
        unselected: list[list[int]] = []
        weights: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        cost = torch.zeros((), dtype=torch.float64, device=self.ev.device)
        table = self.table
        for c, ops in enumerate(self.active):
            drawn = two_samples(ops, p_host[c, ops], self.residual[c], self.settings.enumerate_up_to)
            if drawn is None:
                selected.append(list(ops))
                unselected.append(list(ops))
                weights.append(None)
                cost = cost + float(table[c, ops].sum()) if ops else cost
                continue
            s_ops = [j for j, g in zip(ops, drawn[0]) if g]
            u_ops = [j for j, g in zip(ops, drawn[1]) if g]
            q_s, q_u = estimator_weights(
                string_probability(p_all[c, ops], drawn[0]), string_probability(p_all[c, ops], drawn[1])
            )
            selected.append(s_ops)
            unselected.append(u_ops)
            weights.append((q_s, q_u))
            cost = cost + expected_cost(q_s, q_u, float(table[c, s_ops].sum()), float(table[c, u_ops].sum()))
        return selected, unselected, weights, cost

    def report(self, steps: int, stats: TrainStats, start: float) -> WorkReport:
        """The piece's report: the round's state for the strategy, and its losses."""
        report_state = {
            "active": self.active,
            "protected": self.protected,
            "alphas": self.alpha.detach().cpu().clone(),
            "adam": to_cpu(self.adam.state_dict()),
            "iteration": self.first + steps,
            "fresh": False,
            "costs": self.costs.to_state(),
        }
        metrics = {
            "train_loss": stats.mean_loss,
            "steps": float(steps),
            "lr": self.lr_of(steps - 1),
            "active_ops": float(sum(len(a) for a in self.active)),
        }
        if self.arch_losses:
            metrics["arch_val_loss"] = float(torch.stack(self.arch_losses).mean())
            metrics["cost_penalty"] = float(torch.stack(self.penalties).mean())
            metrics["expected_cost_millions"] = float(torch.stack(self.expected).mean())
        if not all(math.isfinite(v) for v in metrics.values()):
            raise NasframeError(
                "NSE importance learning produced a non-finite loss; lower strategy.cost_alpha or the lr"
            )
        return WorkReport(Cost(time.perf_counter() - start, steps / self.spe), metrics, state=report_state)
