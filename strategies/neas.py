"""NEAS: a K-path supernet shrunk by a diversity-guided operator score, then evolution over ensembles.

Chen et al., "One-shot Neural Ensemble Architecture Search by Diversity-Guided Search Space
Shrinking" (CVPR 2021). Its search code was never released (reference algorithms-2.md 10.0, 10.4):
what is from the paper is the two-stage outline, "K-path supernet training with diversity-guided
shrinking" then "K-path evolution searching" on the shrunk supernet, with the split layer as a
search dimension. Everything below that outline is INFERRED here and marked so:

- [INFERRED] Supernet training: each step trains one uniformly drawn ensemble (K member paths and a
  split) of the current space through the space's K-path supernet, with the released retrain loss
  (members' cross-entropies summed, the trunk's gradient divided by K).
- [INFERRED] A shrinking step scores `samples_per_step` uniform ensembles of the current space with
  the shared weights: the ensemble's accuracy A, and each member's accuracy a_k alone (the space's
  `solo` ensemble). Diversity D = A - mean_k a_k. An operator (layer, op) scores the mean of
  A + diversity_weight x D over the sampled ensembles in which some member runs it ("potential and
  diversity"; the paper's formula was not retrieved). Each layer with more than `min_ops` scored
  choices drops its `drop_per_step` lowest; the members' decisions of a layer are restricted together.
- [INFERRED] When every layer keeps at most `min_ops` choices (or after `max_steps` steps) and
  `final_epochs` of training on the shrunk space, SPOS' released evolution (`strategies/spos.py`,
  options `evolution`) searches the shrunk space, scoring ensembles with the shared weights; its
  best-scored ensemble is the answer. Resource limits are the run's `constraints:`.

Every piece is a request the runner executes and checkpoints (training, scores), so a run resumes
exactly after a kill in any phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options, option
from nasframe.core.capabilities import BNRecalibration, SharedWeights
from nasframe.core.ensemble import EnsembleSpace
from nasframe.core.evaluator import Result, WorkReport
from nasframe.core.paths import UniformPaths
from nasframe.core.registry import register_strategy, strategies
from nasframe.core.requests import Request, ScoreShared, TrainShared
from nasframe.core.space import Arch, Choice, SearchSpace
from nasframe.core.strategy import Strategy, arch_from_pairs, arch_to_pairs


@dataclass(frozen=True)
class NeasOptions:
    warmup_epochs: float = option(20.0, "K-path supernet training before the first shrinking step [inferred]", min=0)
    epochs_between_steps: float = option(5.0, "K-path training before each later step [inferred]", min=0)
    samples_per_step: int = option(
        50, "uniform ensembles scored per step (each costs 1 + K scores: the ensemble and its members)", min=1
    )
    diversity_weight: float = option(
        1.0, "weight of the diversity term (ensemble minus mean member accuracy) in an operator's score", min=0
    )
    drop_per_step: int = option(1, "operators each layer drops per step", min=1)
    min_ops: int = option(2, "choices every layer keeps (shrinking ends when no layer has more)", min=1)
    max_steps: int | None = option(None, "stop shrinking after this many steps (null: no limit)", min=0)
    final_epochs: float = option(5.0, "K-path training on the shrunk space before the evolution", min=0)
    score_bn_batches: int = option(
        10, "BatchNorm batches (cumulative average) before each score with the shared weights (0: off)", min=0
    )
    evolution: dict[str, Any] = option(
        default_factory=dict,
        help="options of the evolution on the shrunk space (SPOS' keys: population, generations, ...; its "
        "supernet_epochs is final_epochs' job and stays 0)",
    )

    def __post_init__(self) -> None:
        if "supernet_epochs" in self.evolution:
            raise ConfigError(
                "strategy.evolution.supernet_epochs: the supernet training before the evolution is "
                "strategy.final_epochs; remove the key"
            )


@dataclass(frozen=True)
class ScoredEnsemble:
    """One sampled ensemble: its accuracy with the shared weights, each member's alone, and the
    (layer, op) pairs some member runs."""

    acc: float
    members: tuple[float, ...]
    operators: frozenset[tuple[str, Choice]]

    @property
    def diversity(self) -> float:
        """How much the ensemble gains over its average member [INFERRED stand-in for the paper's metric]."""
        return self.acc - float(np.mean(self.members))


def diversity_scores(samples: list[ScoredEnsemble], weight: float) -> dict[tuple[str, Choice], float]:
    """Each operator's score: the mean of acc + weight x diversity over the sampled ensembles that run
    it ("potential and diversity" [INFERRED]); operators in no sample get no score."""
    sums: dict[tuple[str, Choice], list[float]] = {}
    for e in samples:
        value = e.acc + weight * e.diversity
        for operator in e.operators:
            sums.setdefault(operator, []).append(value)
    return {operator: float(np.mean(values)) for operator, values in sums.items()}


def lowest_per_layer(
    scores: dict[tuple[str, Choice], float],
    choices: dict[str, tuple[Choice, ...]],
    min_ops: int,
    per_step: int,
) -> dict[str, list[Choice]]:
    """Per layer, the `per_step` lowest-scored choices, keeping at least `min_ops` choices and every
    unscored one (and never dropping the last scored one); on a tie the earlier choice goes first."""
    dropped = {}
    for layer, options in choices.items():
        scored = [c for c in options if (layer, c) in scores]
        room = min(per_step, len(options) - min_ops, len(scored) - 1)
        if room <= 0:
            continue
        ranked = sorted(scored, key=lambda c: (scores[(layer, c)], options.index(c)))
        dropped[layer] = ranked[:room]
    return dropped


#: what NEAS does next, in order
_WARMUP, _SCORE, _TRAIN, _FINAL, _START, _SEARCH, _WAIT = (
    "warmup",
    "score",
    "train",
    "final",
    "start_search",
    "search",
    "wait",
)


@register_strategy("neas")
class Neas(Strategy[NeasOptions]):
    """NEAS: diversity-guided shrinking of a K-path supernet, then evolution over ensembles [search inferred]."""

    Options = NeasOptions
    requires = (SharedWeights,)

    def __init__(self, space: SearchSpace, options: NeasOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        if not isinstance(space, EnsembleSpace):
            raise ConfigError(
                f"strategy 'neas' searches ensembles: space {space.name!r} is not an ensemble space; use --space neas"
            )
        self.ensembles: EnsembleSpace = space
        self._evolution_options = self._spos_options()
        self.current: SearchSpace = space
        self._todo = _WARMUP
        self._next = _SCORE  # what follows the training request awaited
        self.step = 0
        self.supernet_epochs = 0.0
        self.batch: list[Arch] = []  # this step's sampled ensembles, canonical
        self.asked = 0  # scores asked in this step
        self.scores: dict[str, float | None] = {}  # arch key -> accuracy (None: failed or infeasible)
        self.steps: list[dict[str, Any]] = []
        self._search: Strategy | None = None
        self._search_seed: int | None = None

    def _spos_options(self) -> Any:
        """SPOS' options for the evolution, SPOS taken by its registered name (a strategy never imports another)."""
        values = {**self.options.evolution, "supernet_epochs": 0}
        values.setdefault("bn_batches", self.options.score_bn_batches)
        values.setdefault("bn_momentum", None)
        values.setdefault("bn_batch_size", None)
        return build_options(_spos().Options, values, "strategy.evolution")

    # ---- plan and phase ------------------------------------------------------------------------------
    def plan(self) -> str:
        o = self.options
        k = self.ensembles.members
        return (
            f"{o.warmup_epochs:g} K-path warm-up epochs, then {self.planned_steps()} shrinking steps of "
            f"{o.epochs_between_steps:g} epochs + {o.samples_per_step} ensembles x {1 + k} scores (until every layer "
            f"keeps {o.min_ops} ops), then {o.final_epochs:g} epochs and SPOS' evolution over ensembles: about "
            f"{self.planned_evaluations():,} scores. For a quick CPU run: --set strategy.warmup_epochs=1 --set "
            f"strategy.epochs_between_steps=0.5 --set strategy.samples_per_step=4 --set strategy.final_epochs=0.5"
        )

    def planned_steps(self) -> int:
        """Shrinking steps when every operator gets scored: until the widest layer is down to `min_ops`."""
        o = self.options
        widest = max(len(self.space.decision(names[0]).choices) for names in self.ensembles.layer_decisions().values())
        steps = max(0, math.ceil((widest - o.min_ops) / o.drop_per_step))
        return steps if o.max_steps is None else min(steps, o.max_steps)

    def planned_evaluations(self) -> int:
        """The shrinking steps' scores plus the evolution's (more steps if some operator goes unscored)."""
        o = self.options
        evolution = _spos()(self.space, self._evolution_options).planned_evaluations()
        assert evolution is not None  # SPOS always knows its plan
        return self.planned_steps() * o.samples_per_step * (1 + self.ensembles.members) + evolution

    def planned_training_epochs(self) -> float:
        o = self.options
        return o.warmup_epochs + o.epochs_between_steps * max(0, self.planned_steps() - 1) + o.final_epochs

    @property
    def phase(self) -> str:
        if self._search is not None:
            return f"neas evolution: {self._search.phase}"
        return f"neas shrinking step {self.step + 1}"

    @property
    def done(self) -> bool:
        return self._search is not None and self._search.done

    # ---- ask / tell ------------------------------------------------------------------------------------
    def ask(self) -> list[Arch | Request]:
        o = self.options
        while True:
            todo = self._todo
            if todo == _WARMUP:
                self._todo = _SCORE
                if o.warmup_epochs > 0:
                    return self._training(o.warmup_epochs, "neas: K-path warm-up", then=_SCORE)
            elif todo == _TRAIN:
                self._todo = _SCORE
                if o.epochs_between_steps > 0:
                    label = f"neas: training before step {self.step + 1}"
                    return self._training(o.epochs_between_steps, label, then=_SCORE)
            elif todo == _SCORE:
                if self.finished():
                    self._todo = _FINAL
                    continue
                self._todo = _WAIT
                return self._score_requests()
            elif todo == _FINAL:
                self._todo = _START
                if o.final_epochs > 0:
                    return self._training(o.final_epochs, "neas: training the shrunk space", then=_START)
            elif todo == _START:
                self._search_seed = int(self.rng.integers(2**31 - 1))
                self._search = _spos()(self.current, self._evolution_options, seed=self._search_seed)
                self._todo = _SEARCH
            elif todo == _SEARCH:
                return list(self._require_search().ask())
            else:
                raise RuntimeError(f"neas: asked while waiting for an outcome ({todo})")

    def _training(self, epochs: float, label: str, then: str) -> list[Arch | Request]:
        """K-path training with uniform ensembles of the current space; `then` is what follows it."""
        self._todo, self._next = _WAIT, then
        return [TrainShared(float(epochs), UniformPaths.over(self.current), phase=label)]

    def _recalibration(self) -> BNRecalibration | None:
        return BNRecalibration.cumulative(self.options.score_bn_batches)

    def _score_requests(self) -> list[Arch | Request]:
        """The step's ensembles, each followed by its members alone (the space's `solo` ensembles)."""
        space, recal = self.ensembles, self._recalibration()
        self.batch = [space.canonical(self.current.sample(self.rng)) for _ in range(self.options.samples_per_step)]
        self.scores = {}
        requests: list[Arch | Request] = []
        label = f"neas: scoring step {self.step + 1}"
        for ensemble in self.batch:
            requests.append(ScoreShared(ensemble, recal, phase=label))
            requests += [ScoreShared(space.solo(ensemble, k), recal, phase=label) for k in range(space.members)]
        self.asked = len(requests)
        return requests

    def tell(self, arch: Arch, result: Result) -> None:
        if self._search is not None:
            self._search.tell(arch, result)
            return
        acc = result.accuracy
        self.scores[arch.key()] = acc if acc is not None and math.isfinite(acc) else None
        self.asked -= 1
        if self.asked == 0:  # the step's last score: shrink
            self._shrink()
            self._todo = _FINAL if self.finished() else _TRAIN

    def tell_work(self, request: Request, report: WorkReport) -> None:
        if self._search is not None:
            self._search.tell_work(request, report)
            return
        if isinstance(request, TrainShared):
            self.supernet_epochs += request.epochs
            self._todo = self._next

    # ---- shrinking ---------------------------------------------------------------------------------
    def finished(self) -> bool:
        """Whether shrinking is over: no layer has more than `min_ops` choices, `max_steps` steps ran, or
        the last step dropped nothing."""
        o = self.options
        if o.max_steps is not None and self.step >= o.max_steps:
            return True
        if self.steps and not self.steps[-1]["dropped"]:
            return True  # the last step could drop nothing (every sample failed or was infeasible): stop here
        decisions = {d.name: d for d in self.current.decisions}
        return all(len(decisions[names[0]].choices) <= o.min_ops for names in self.ensembles.layer_decisions().values())

    def _shrink(self) -> None:
        """Score every (layer, op) from the step's ensembles and drop each layer's lowest."""
        o = self.options
        space = self.ensembles
        samples: list[ScoredEnsemble] = []
        for ensemble in self.batch:
            acc = self.scores.get(ensemble.key())
            members = [self.scores.get(space.solo(ensemble, k).key()) for k in range(space.members)]
            if acc is None or any(m is None for m in members):
                continue  # a failed or infeasible score: the ensemble tells nothing
            operators = frozenset(pair for path in space.member_layers(ensemble) for pair in path)
            samples.append(ScoredEnsemble(acc, tuple(float(m) for m in members if m is not None), operators))
        scores = diversity_scores(samples, o.diversity_weight)
        decisions = {d.name: d for d in self.current.decisions}
        layers = space.layer_decisions()
        choices = {layer: decisions[names[0]].choices for layer, names in layers.items()}
        dropped = lowest_per_layer(scores, choices, o.min_ops, o.drop_per_step)
        restriction = {
            n: [c for c in choices[layer] if c not in gone] for layer, gone in dropped.items() for n in layers[layer]
        }
        if restriction:
            self.current = self.current.restrict(restriction)
        self.step += 1
        table = {  # in the space's order (a set's order changes from process to process)
            layer: [[c, scores[(layer, c)]] for c in options if (layer, c) in scores]
            for layer, options in choices.items()
        }
        self.steps.append(
            {
                "step": self.step,
                "dropped": {layer: list(gone) for layer, gone in dropped.items()},
                "scored_ensembles": len(samples),
                "mean_ensemble_acc": float(np.mean([e.acc for e in samples])) if samples else None,
                "mean_member_acc": float(np.mean([np.mean(e.members) for e in samples])) if samples else None,
                "log10_size": self.current.log10_size(),
                "scores": table,
            }
        )
        self.batch, self.scores = [], {}

    def _require_search(self) -> Strategy:
        if self._search is None:
            raise RuntimeError("neas: the evolution exists only once shrinking has ended")
        return self._search

    # ---- results -----------------------------------------------------------------------------------
    def final(self) -> Arch | None:
        """The evolution's best-scored ensemble (None before the evolution: the runner's best evaluated)."""
        return self._search.final() if self._search is not None else None

    def final_evaluation(self, arch: Arch) -> Arch | Request:
        return ScoreShared(arch, self._recalibration(), phase="neas: final score")

    def restriction(self) -> dict[str, list[Choice]]:
        """The remaining choices of every layer."""
        decisions = {d.name: d for d in self.current.decisions}
        return {layer: list(decisions[names[0]].choices) for layer, names in self.ensembles.layer_decisions().items()}

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "neas_steps": self.step,
            "neas_log10_size": self.current.log10_size(),
            "neas_supernet_epochs": self.supernet_epochs,
        }
        if self._search is not None:
            out.update(self._search.metrics())
        elif self.steps and self.asked == 0 and self._todo != _WAIT:
            last = self.steps[-1]
            out.update({f"neas_{k}": v for k, v in last.items() if k != "step"})
        return out

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "neas": {
                "todo": self._todo,
                "next": self._next,
                "step": self.step,
                "supernet_epochs": self.supernet_epochs,
                "restriction": [[d.name, list(d.choices)] for d in self.current.decisions],
                "batch": [arch_to_pairs(a) for a in self.batch],
                "asked": self.asked,
                "scores": sorted(self.scores.items()),
                "steps": self.steps,
                "search_seed": self._search_seed,
            },
            "search": self._search.state_dict() if self._search is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s = state["neas"]
        if [n for n, _ in s["restriction"]] != [d.name for d in self.space.decisions]:
            raise ConfigError("neas: checkpoint was saved for a space with other decisions; resume with its options")
        super().load_state_dict(state)
        self._todo, self._next, self.step = str(s["todo"]), str(s["next"]), int(s["step"])
        self.supernet_epochs = float(s["supernet_epochs"])
        self.current = self.space.restrict({n: list(c) for n, c in s["restriction"]})
        self.batch = [a for a in (arch_from_pairs(p) for p in s["batch"]) if a is not None]
        self.asked = int(s["asked"])
        self.scores = {str(k): (None if v is None else float(v)) for k, v in s["scores"]}
        self.steps = list(s["steps"])
        self._search_seed = s["search_seed"]
        self._search = None
        if state.get("search") is not None:
            self._search = _spos()(self.current, self._evolution_options, seed=int(self._search_seed))
            self._search.load_state_dict(state["search"])


def _spos() -> type[Strategy]:
    """SPOS' strategy class, found by its registered name."""
    return strategies.get("spos")
