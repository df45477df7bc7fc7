"""SPOS: train a supernet with single uniform paths, then evolve architectures scored on it.

Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling" (ECCV 2020),
reference section 3. Phase 1 asks the runner to train the shared weights with one uniformly drawn
path per step (`TrainShared` with `UniformPaths`; optionally the released code's FLOPs bins,
`BinnedPaths`). Phase 2 is the released evolutionary search: an initial population of random
architectures, then `generations` rounds of `mutations` mutants of the top `parents` (every gene
redrawn with probability `mutation_prob`), `crossovers` uniform crossovers of two of them, and
random architectures to refill the population; every architecture is scored at most once
(`ScoreShared`: the shared weights as they are, after BatchNorm recalibration), mutation and
crossover stop after `tries_factor` x their count draws, and the top list is merged across
generations. The answer is the lowest-error architecture ever scored.

Several objectives (`objectives: [val_acc, latency_ms]`, inferred, not in the paper): the top list keeps
the `parents` first members of NSGA-II's crowded order (pymoo's non-domination ranks and crowding
distances) instead of the lowest errors, and the answer is the Pareto front of every scored architecture,
with its most accurate member as `final`. The FLOPs bins may bin latency instead of MACs
(`bins_metric: latency_ms`, with a latency table: hundreds of lookups per training step).

Resource limits (SPOS' 330M FLOPs cap) are the run's `constraints:` section: the runner rejects an
architecture over a limit before it is scored and tells it back as infeasible, which costs a try
here exactly as the reference's legality check does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from nasframe.common.errors import ConfigError, SpaceExhausted
from nasframe.common.options import option
from nasframe.core.capabilities import BNRecalibration, SharedWeights
from nasframe.core.costs import ArchCosts
from nasframe.core.evaluator import Result, WorkReport
from nasframe.core.pareto import OBJECTIVES_HELP, MultiObjective, check_objectives, crowded_order, to_minimise
from nasframe.core.paths import BinnedPaths, PathSampler, UniformPaths, restriction_of
from nasframe.core.registry import register_strategy
from nasframe.core.requests import Request, ScoreShared, TrainShared
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import Strategy, arch_from_pairs, arch_to_pairs

#: the reference's FLOPs bins for path sampling: 10M-wide from 290M to 360M MACs at 224x224
REFERENCE_BINS = tuple(float(x) * 1e6 for x in range(290, 361, 10))
#: draws in a row that may all hit already-scored architectures before the space counts as exhausted
MAX_SEEN_DRAWS = 10_000

Origin = Literal["random", "mutation", "crossover", "refill"]


@dataclass(frozen=True)
class SposOptions:
    supernet_epochs: float = option(
        120.0,
        "phase 1: supernet training epochs with uniform single paths (reference: "
        "150,000 iterations x 1,024 images ~ 125 epochs of ImageNet)",
        min=0,
    )
    path_sampling: Literal["uniform", "flops_bins"] = option(
        "uniform",
        "uniform: one uniform choice per decision (the paper); flops_bins: a uniform MAC bin first, then "
        "uniform paths until one falls in it (the released code)",
    )
    flops_bins: list[float] = option(
        default_factory=lambda: list(REFERENCE_BINS),
        help="flops_bins sampling: bin edges in MACs (reference: 290M..360M by 10M)",
    )
    bin_draws: int = option(500, "flops_bins sampling: draws per bin before an unconstrained path is used", min=1)
    bins_metric: Literal["macs", "params", "latency_ms"] = option(
        "macs", "flops_bins sampling: the cost the bins divide (latency_ms needs latency.table; edges in ms)"
    )
    population: int = option(50, "architectures scored per generation (reference 50)", min=1)
    parents: int = option(10, "top architectures that mutate and cross over (reference 10)", min=1)
    mutations: int = option(25, "mutants per generation (reference 25)", min=0)
    crossovers: int = option(25, "crossovers per generation (reference 25)", min=0)
    mutation_prob: float = option(0.1, "probability that a mutant redraws each gene (reference 0.1)", min=0, max=1)
    generations: int = option(
        20,
        "rounds of mutation, crossover and refill after the initial population "
        "(reference 20: at most 50 + 20 x 50 = 1,050 scored architectures)",
        min=0,
    )
    tries_factor: int = option(
        10, "mutation and crossover give up after this many draws per wanted child (reference 10)", min=1
    )
    bn_batches: int = option(
        200, "BatchNorm recalibration before scoring: train batches (reference 200; 0: off)", min=0
    )
    bn_batch_size: int | None = option(128, "recalibration batch size (reference 128; null: the evaluator's)", min=1)
    bn_momentum: float | None = option(
        0.1,
        "recalibration momentum: 0.1 is the reference's exponential average; "
        "null is the cumulative average (exact with few batches)",
        min=0,
        max=1,
    )
    objectives: list[str] = option(default_factory=lambda: ["val_acc"], help=OBJECTIVES_HELP)

    def __post_init__(self) -> None:
        check_objectives(self.objectives)
        if self.parents > self.population:
            raise ConfigError(
                f"strategy.parents ({self.parents}) cannot exceed strategy.population ({self.population})"
            )
        if self.mutations + self.crossovers > self.population:
            raise ConfigError(
                f"strategy.mutations + strategy.crossovers ({self.mutations + self.crossovers}) cannot "
                f"exceed strategy.population ({self.population})"
            )


@register_strategy("spos")
class Spos(Strategy[SposOptions], MultiObjective):
    """SPOS: uniform single-path supernet training, then evolution scored with the shared weights."""

    Options = SposOptions
    requires = (SharedWeights,)

    def __init__(self, space: SearchSpace, options: SposOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self.trained = self.options.supernet_epochs <= 0
        self.generation = 0  # 0: the initial population
        self.origin: Origin = "random"
        self.accepted = 0  # architectures scored for the current origin
        self.tries_left = 0  # draws left for the current mutation or crossover
        self.members: list[tuple[Arch, float]] = []  # this generation's scored architectures, (arch, error)
        self.top: list[tuple[Arch, float]] = []  # the top `parents`, merged across generations
        self.scored: dict[str, float] = {}  # key -> error (inf for a failed evaluation)
        self.infeasible: set[str] = set()
        self.best: tuple[Arch, float] | None = None  # lowest error so far (first minimum)
        self.finished_search = False
        self.use_objectives(self.options.objectives)

    def costs_used(self) -> frozenset[str]:
        binned = self.options.path_sampling == "flops_bins"
        return super().costs_used() | ({self.options.bins_metric} if binned else set())

    def bind_costs(self, costs: ArchCosts) -> None:
        """Bind the run's costs; bins on latency need a table (refused here, before anything runs)."""
        super().bind_costs(costs)
        o = self.options
        if o.path_sampling == "flops_bins" and o.bins_metric == "latency_ms":
            if costs.latency is None or costs.latency.source != "table":
                raise ConfigError(
                    "strategy.bins_metric=latency_ms needs a latency table (latency.table): hundreds of paths per "
                    "training step are looked up, not measured"
                )

    # ---- what it asks for ------------------------------------------------------------------------
    def plan(self) -> str:
        o = self.options
        text = (
            f"{o.supernet_epochs:g} supernet epochs, then up to {self.planned_evaluations():,} architectures "
            f"scored after {o.bn_batches} BatchNorm batches each"
        )
        if o.supernet_epochs > 10 or self.planned_evaluations() > 200:
            text += (
                ". For a quick CPU run: --set strategy.supernet_epochs=2 --set strategy.population=8 "
                "--set strategy.parents=3 --set strategy.mutations=3 --set strategy.crossovers=3 "
                "--set strategy.generations=2 --set strategy.bn_batches=4 --budget 24"
            )
        return text

    def planned_training_epochs(self) -> float:
        return self.options.supernet_epochs

    def planned_evaluations(self) -> int:
        o = self.options
        return o.population * (1 + o.generations)

    @property
    def phase(self) -> str:
        if not self.trained:
            return "spos: supernet training"
        return f"spos: generation {self.generation}/{self.options.generations} ({self.origin})"

    @property
    def done(self) -> bool:
        return self.finished_search

    def sampler(self) -> PathSampler:
        """Phase 1's path sampler over this strategy's space (a restriction of it, under ABS)."""
        o = self.options
        if o.path_sampling == "flops_bins":
            edges = tuple(float(e) for e in o.flops_bins)
            return BinnedPaths(edges, o.bins_metric, o.bin_draws, restriction_of(self.space))
        return UniformPaths.over(self.space)

    def ask(self) -> list[Arch | Request]:
        if not self.trained:
            return [TrainShared(self.options.supernet_epochs, self.sampler(), phase="spos: supernet training")]
        while not self.finished_search:
            batch = self._draw_batch()
            if batch:
                recal = self._recalibration()
                return [ScoreShared(a, recal, phase=self.phase) for a in batch]
            self._next_origin()
        return []

    def _needed(self) -> int:
        """Architectures the current origin (random, mutation, ...) still wants scored."""
        o = self.options
        if self.origin == "mutation":
            return o.mutations - self.accepted
        if self.origin == "crossover":
            return o.crossovers - self.accepted
        return o.population - len(self.members)  # the initial population, or the refill

    def _draw_batch(self) -> list[Arch]:
        """New candidates of the current origin, as many as are still wanted (each draw is a try)."""
        needed = self._needed()
        if needed <= 0:
            return []
        limited = self.origin in ("mutation", "crossover")
        if limited and not self.top:
            return []  # nothing to mutate or cross (every parent failed): go on to the refill
        batch: list[Arch] = []
        keys: set[str] = set()
        misses = 0
        while len(batch) < needed:
            if limited:
                if self.tries_left <= 0:
                    break
                self.tries_left -= 1
            arch = self._candidate()
            key = arch.key()
            if key in self.scored or key in self.infeasible or key in keys:
                misses += 1
                if not limited and misses >= MAX_SEEN_DRAWS:
                    if batch:
                        break
                    raise SpaceExhausted(
                        f"spos: {MAX_SEEN_DRAWS} random draws in a row were all scored or "
                        f"infeasible; the space looks exhausted"
                    )
                continue
            misses = 0
            keys.add(key)
            batch.append(arch)
        return batch

    def _candidate(self) -> Arch:
        decisions = self.space.decisions
        if self.origin == "mutation":
            parent = self.top[int(self.rng.integers(len(self.top)))][0]
            p = self.options.mutation_prob
            return Arch(
                [
                    (
                        d.name,
                        d.choices[int(self.rng.integers(len(d.choices)))] if self.rng.random() < p else parent[d.name],
                    )
                    for d in decisions
                ]
            )
        if self.origin == "crossover":
            a = self.top[int(self.rng.integers(len(self.top)))][0]
            b = self.top[int(self.rng.integers(len(self.top)))][0]
            return Arch([(d.name, (a if self.rng.random() < 0.5 else b)[d.name]) for d in decisions])
        return self.space.sample(self.rng)

    def _next_origin(self) -> None:
        """The current origin cannot add more: go to the next one, or close the generation."""
        o = self.options
        order: list[Origin] = ["mutation", "crossover", "refill"]
        if self.origin in ("random", "refill"):
            self._close_generation()
            if self.generation >= o.generations:
                self.finished_search = True
                return
            self.generation += 1
            self.members = []
            self.origin = "mutation"
        else:
            self.origin = order[order.index(self.origin) + 1]
        self.accepted = 0
        self.tries_left = o.tries_factor * (o.mutations if self.origin == "mutation" else o.crossovers)

    def _close_generation(self) -> None:
        """Merge this generation into the top list (stable: earlier members win ties)."""
        merged = [m for m in self.top + self.members if math.isfinite(m[1])]  # a failed score never breeds
        if self.archive is not None:  # several objectives: NSGA-II's crowded order instead of the error
            objectives = self.archive.objectives
            rows = np.array([to_minimise(self.objective_values(a, 100.0 - e), objectives) for a, e in merged])
            self.top = [merged[int(i)] for i in crowded_order(rows)[: self.options.parents]]
            return
        merged.sort(key=lambda m: m[1])
        self.top = merged[: self.options.parents]

    # ---- what it learns --------------------------------------------------------------------------
    def tell(self, arch: Arch, result: Result) -> None:
        key = arch.key()
        if result.status == "infeasible":
            self.infeasible.add(key)
            return
        acc = result.accuracy
        error = 100.0 - acc if acc is not None and math.isfinite(acc) else math.inf
        self.scored[key] = error
        self.members.append((arch, error))
        if self.archive is not None and math.isfinite(error):
            self.record_front(arch, acc)
        self.accepted += 1
        if math.isfinite(error) and (self.best is None or error < self.best[1]):
            self.best = (arch, error)

    def tell_work(self, request: Request, report: WorkReport) -> None:
        if isinstance(request, TrainShared):
            self.trained = True

    def final_evaluation(self, arch: Arch) -> ScoreShared:
        """The final architecture is scored like every candidate: shared weights, recalibrated BatchNorm."""
        return ScoreShared(arch, self._recalibration(), phase="spos: final score")

    def _recalibration(self) -> BNRecalibration | None:
        o = self.options
        return BNRecalibration(o.bn_batches, o.bn_momentum, o.bn_batch_size) if o.bn_batches else None

    def final(self) -> Arch | None:
        """The lowest-error architecture scored (reference: src/Evaluation picks the best evaluated); with several
        objectives the front's pick."""
        if self.archive is not None:
            return self.front_pick()
        return self.best[0] if self.best is not None else None

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"spos_generation": self.generation, "spos_scored": len(self.scored)}
        if self.top:
            out["spos_top_error"] = self.top[0][1]
        return out

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def pairs(items: list[tuple[Arch, float]]) -> list[list[Any]]:
            return [[arch_to_pairs(a), e] for a, e in items]

        return {
            **super().state_dict(),
            "spos": {
                "trained": self.trained,
                "generation": self.generation,
                "origin": self.origin,
                "accepted": self.accepted,
                "tries_left": self.tries_left,
                "members": pairs(self.members),
                "top": pairs(self.top),
                "scored": sorted(self.scored.items()),
                "infeasible": sorted(self.infeasible),
                "best": None if self.best is None else [arch_to_pairs(self.best[0]), self.best[1]],
                "finished": self.finished_search,
                **({"front": self.archive.state_dict()} if self.archive is not None else {}),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        s = state["spos"]

        def items(rows: list[list[Any]]) -> list[tuple[Arch, float]]:
            return [(arch_from_pairs(p), float(e)) for p, e in rows]  # type: ignore[misc]

        self.trained, self.generation, self.origin = bool(s["trained"]), int(s["generation"]), s["origin"]
        self.accepted, self.tries_left = int(s["accepted"]), int(s["tries_left"])
        self.members, self.top = items(s["members"]), items(s["top"])
        self.scored = {k: float(e) for k, e in s["scored"]}
        self.infeasible = set(s["infeasible"])
        self.best = None if s["best"] is None else (arch_from_pairs(s["best"][0]), float(s["best"][1]))  # type: ignore
        self.finished_search = bool(s["finished"])
        if self.archive is not None:
            self.archive.load_state_dict(s["front"])
