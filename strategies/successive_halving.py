"""Successive halving: many candidates at a small training budget, the best few at larger ones.

Jamieson & Talwalkar, "Non-stochastic Best Arm Identification and Hyperparameter Optimization" (AISTATS
2016), in the rung form Hyperband uses (Li et al., JMLR 2018). The rungs are training budgets in epochs,
r, r*eta, r*eta^2, ... up to R (or an explicit list). A round draws n distinct random architectures,
evaluates them at the first rung, keeps the best 1/eta of them (at least one) for the next rung, and
so on up to the last; then the next round starts with n fresh architectures, until the run's budget
ends (give it in epochs: `run.max_epochs`).

It is a strategy, not a runner feature: each evaluation is an `Evaluate(arch, Budget(epochs=k))` request,
so the runner, its checkpoints, parallel slots and budget stay as they are, and the cost of every
evaluation (`Result.cost.epochs`) is what the evaluator spent at that budget. Evaluators train every
evaluation from scratch (their schedule depends on its length), so a promoted architecture is trained
again at the larger budget and pays for it: a round costs the sum over rungs of (architectures x epochs).

The answer is the best architecture of the highest rung any architecture reached (first maximum),
never a low-budget score compared with a high-budget one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nasframe.common.errors import ConfigError, SpaceExhausted
from nasframe.common.options import option
from nasframe.core.evaluator import Budget, Result
from nasframe.core.registry import register_strategy
from nasframe.core.requests import Evaluate
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import Strategy, arch_from_pairs, arch_to_pairs


@dataclass(frozen=True)
class HalvingOptions:
    min_epochs: float = option(1.0, "training epochs of the first rung (r)", min=0)
    max_epochs: float = option(9.0, "training epochs of the last rung (R); rungs are r * eta^i up to R", min=0)
    eta: float = option(3.0, "each rung keeps the best 1/eta of the previous one, at eta times its epochs", min=1.01)
    rungs: list[float] | None = option(
        None, "explicit rung epochs, increasing (replaces min_epochs and max_epochs), e.g. [12, 200]"
    )
    n: int | None = option(None, "architectures in a round's first rung (null: eta^(rungs - 1), rounded up)", min=1)
    max_tries: int = option(1000, "draws allowed to find an unseen random architecture before giving up", min=1)


def rung_epochs(options: HalvingOptions) -> list[float]:
    """The rungs' training epochs, smallest first."""
    if options.rungs is not None:
        rungs = [float(r) for r in options.rungs]
        if not rungs or any(r <= 0 for r in rungs) or any(b <= a for a, b in zip(rungs, rungs[1:])):
            raise ConfigError(f"strategy.rungs: need increasing positive epochs, got {options.rungs}")
        return rungs
    r, big, eta = options.min_epochs, options.max_epochs, options.eta
    if not 0 < r <= big:
        raise ConfigError(f"strategy.min_epochs ({r:g}) must be positive and at most max_epochs ({big:g})")
    steps = int(math.floor(math.log(big / r, eta) + 1e-9))
    return [big * eta ** (i - steps) for i in range(steps + 1)]


def keep(count: int, eta: float) -> int:
    """How many of `count` architectures go on to the next rung: the best floor(count / eta), at least one."""
    return max(1, int(math.floor(count / eta + 1e-9)))


@register_strategy("successive_halving")
class SuccessiveHalving(Strategy[HalvingOptions]):
    """Rounds of successive halving from random architectures; evaluations at growing epoch budgets."""

    Options = HalvingOptions

    def __init__(self, space: SearchSpace, options: HalvingOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self.rungs = rung_epochs(self.options)
        self.brackets = self.bracket_plan()
        self.bracket = 0  # position in the cycle of brackets
        self.rounds = 0  # brackets started so far
        self.rung = 0  # current rung (index into self.rungs)
        self.members: list[Arch] = []  # architectures of the current rung, in evaluation order
        self.scores: dict[str, float] = {}  # current rung: key -> accuracy (-inf: failed or infeasible)
        self.seen: set[str] = set()  # every architecture drawn
        self.top: dict[int, tuple[Arch, float]] = {}  # best (architecture, accuracy) per rung reached

    def bracket_plan(self) -> list[tuple[int, int]]:
        """(first rung, architectures in it) of each bracket, cycled: successive halving has one, from rung 0."""
        first = self.options.n if self.options.n is not None else math.ceil(self.options.eta ** (len(self.rungs) - 1))
        return [(0, first)]

    # ---- ask / tell ---------------------------------------------------------------------------------
    def ask(self) -> list[Evaluate]:
        """The current rung's unevaluated architectures at its epochs; a rung fully told is promoted first."""
        for _ in range(len(self.rungs) + 2):
            todo = [a for a in self.members if a.key() not in self.scores]
            if todo:
                budget = Budget(epochs=self.rungs[self.rung])
                return [Evaluate(a, budget, phase=self.phase) for a in todo]
            self._advance()
        raise AssertionError("successive halving found nothing to evaluate")  # _advance always fills members

    def _advance(self) -> None:
        """Promote the best of a finished rung, or start the next bracket when there is nothing to promote."""
        ok = [a for a in self.members if self.scores.get(a.key(), -math.inf) > -math.inf]
        if self.members and ok and self.rung + 1 < len(self.rungs):
            ranked = sorted(ok, key=lambda a: -self.scores[a.key()])  # stable: ties keep evaluation order
            self.members = ranked[: keep(len(self.members), self.options.eta)]
            self.rung += 1
        else:
            if self.members:
                self.bracket = (self.bracket + 1) % len(self.brackets)
            start, n = self.brackets[self.bracket]
            self.rung = start
            self.members = [self._unseen_random() for _ in range(n)]
            self.rounds += 1
        self.scores = {}

    def _unseen_random(self) -> Arch:
        for _ in range(self.options.max_tries):
            arch = self.space.sample(self.rng)
            if arch.key() not in self.seen:
                self.seen.add(arch.key())
                return arch
        raise SpaceExhausted(
            f"{self.name}: {self.options.max_tries} random draws in a row were all drawn before "
            f"({len(self.seen)} drawn)"
        )

    def tell(self, arch: Arch, result: Result) -> None:
        acc = result.accuracy
        value = float(acc) if acc is not None and math.isfinite(acc) else -math.inf
        self.scores[arch.key()] = value
        best = self.top.get(self.rung)
        if value > -math.inf and (best is None or value > best[1]):
            self.top[self.rung] = (arch, value)

    # ---- results ------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return getattr(type(self), "registered_name", type(self).__name__)

    @property
    def phase(self) -> str:
        return f"rung {self.rung + 1}/{len(self.rungs)} ({self.rungs[self.rung]:g} epochs)"

    def final(self) -> Arch | None:
        """The best architecture of the highest rung reached (first maximum within that rung)."""
        return self.top[max(self.top)][0] if self.top else None

    def plan(self) -> str | None:
        rungs = ", ".join(f"{r:g}" for r in self.rungs)
        start, n = self.brackets[0]
        counts, spent, count = [], 0.0, n
        for i in range(start, len(self.rungs)):
            counts.append(str(count))
            spent += count * self.rungs[i]
            count = keep(count, self.options.eta)
        return (
            f"rungs of {rungs} epochs (eta {self.options.eta:g}); its widest round evaluates "
            f"{' -> '.join(counts)} architectures for {spent:g} epochs; give the budget in epochs (run.max_epochs)"
        )

    def metrics(self) -> dict[str, Any]:
        return {"rung_epochs": self.rungs[self.rung], "rounds": float(self.rounds)}

    # ---- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "rungs": list(self.rungs),
            "bracket": self.bracket,
            "rounds": self.rounds,
            "rung": self.rung,
            "members": [arch_to_pairs(a) for a in self.members],
            "scores": [[k, v] for k, v in self.scores.items()],
            "seen": sorted(self.seen),
            "top": [[r, arch_to_pairs(a), v] for r, (a, v) in sorted(self.top.items())],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if [float(r) for r in state["rungs"]] != self.rungs:
            raise ConfigError(
                f"{self.name}: checkpoint was saved with rungs {state['rungs']}, these options give {self.rungs}; "
                "resume with the options it was started with"
            )
        super().load_state_dict(state)
        self.bracket, self.rounds, self.rung = int(state["bracket"]), int(state["rounds"]), int(state["rung"])
        self.members = [a for a in (arch_from_pairs(p) for p in state["members"]) if a is not None]
        self.scores = {str(k): float(v) for k, v in state["scores"]}
        self.seen = set(state["seen"])
        self.top = {}
        for r, pairs, v in state["top"]:
            arch = arch_from_pairs(pairs)
            assert arch is not None
            self.top[int(r)] = (arch, float(v))
