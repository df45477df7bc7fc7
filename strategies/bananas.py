"""BANANAS: Bayesian optimisation with an ensemble of neural predictors and the path encoding.

White, Neiswanger, Savani, "BANANAS: Bayesian Optimization with Neural Architectures for Neural
Architecture Search" (AAAI 2021), as its released code (naszilla) runs it on NAS-Bench-201:

1. evaluate `initial` = 10 distinct random architectures;
2. then, every iteration: train an ensemble of `members` = 5 small networks on every architecture
   evaluated so far (features: the path encoding; target: the search accuracy), make `candidates` = 100
   unseen architectures by mutating the best evaluated ones (each decision changes with probability
   1 / (decisions - 2), 1/4 on nb201; the best architecture first, then the next best while fewer than
   100 distinct new candidates came out, at most `parents` = 5), score each candidate with independent
   Thompson sampling (one draw from a normal with the ensemble's mean and standard deviation for that
   candidate) and evaluate the `batch` = 10 best-scored candidates.

Failed evaluations train nothing (there is no accuracy to fit); they and architectures the run's
constraints rejected are never proposed again. What differs from the paper's settings by default, and
why, is on the strategy's documentation page (the predictor's training is the cost of this strategy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from nasframe.common.errors import ConfigError, SpaceExhausted
from nasframe.common.options import option
from nasframe.core.evaluator import Result
from nasframe.core.registry import register_strategy
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import Strategy, arch_from_pairs, arch_to_pairs
from nasframe.strategies.bananas_encoding import ArchEncoder, Encoding
from nasframe.strategies.bananas_predictor import EnsembleMLP, PredictorSettings

Acquisition = Literal["its", "ucb", "mean", "ts"]


@dataclass(frozen=True)
class BananasOptions:
    initial: int = option(10, "random architectures evaluated before the predictor is used (paper: 10)", min=1)
    batch: int = option(10, "candidates evaluated per iteration, the best by the acquisition (paper: k = 10)", min=1)
    candidates: int = option(100, "unseen architectures scored per iteration (paper: 100)", min=1)
    parents: int = option(
        5, "most evaluated architectures (best first) mutated to make the candidates (code: 5)", min=1
    )
    mutation_prob: float | None = option(
        None, "probability that a candidate changes each decision (null: 1 / (decisions - 2), the code's)", min=0, max=1
    )
    acquisition: Acquisition = option(
        "its",
        "its: independent Thompson sampling (paper); ucb: mean + 0.5 std; mean: the ensemble's mean; "
        "ts: one member's prediction",
    )
    encoding: Encoding = option(
        "auto", "path: BANANAS' path encoding (needs a cell space: nb201); onehot: one feature per choice; auto"
    )
    path_length: int | None = option(
        2, "longest paths encoded (null: all; 2 is the code's truncation on nb201: the 30 paths of 1-2 steps)", min=1
    )
    members: int = option(5, "networks in the predictor ensemble (paper: 5)", min=1)
    layers: int = option(3, "hidden layers of each network (paper: 10; 3 by default for speed, see the docs)", min=1)
    width: int = option(20, "units per hidden layer (paper: 20)", min=1)
    lr: float = option(0.01, "Adam learning rate (paper: 0.01)", min=0)
    epochs: int = option(20, "training epochs per iteration (code: 150; 20 by default for speed, see the docs)", min=1)
    batch_size: int | None = option(
        None, "mini-batch size of the predictor's training (code: 32; null: the whole history as one batch)", min=1
    )
    continue_epochs: int | None = option(
        None,
        "after the first iteration, keep the ensemble and train it this many more epochs on the grown history "
        "instead of training new networks for `epochs` (null: new networks every iteration, as the paper)",
        min=1,
    )
    max_tries: int = option(1000, "draws allowed to find an unseen random architecture before giving up", min=1)


@register_strategy("bananas")
class Bananas(Strategy[BananasOptions]):
    """Random starts, then batches of candidates chosen by a neural-ensemble predictor with Thompson sampling;
    returns the best architecture evaluated."""

    Options = BananasOptions

    def __init__(self, space: SearchSpace, options: BananasOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        o = self.options
        self.encoder = ArchEncoder(space, o.encoding, o.path_length)
        self.settings = PredictorSettings(
            members=o.members, layers=o.layers, width=o.width, lr=o.lr, epochs=o.epochs, batch_size=o.batch_size
        )
        self._mutable = [d for d in space.decisions if len(d.choices) > 1]
        self._sizes = [len(d.choices) for d in self._mutable]
        if not self._mutable:
            raise ConfigError(f"bananas: no decision of space {space.name!r} has more than one allowed choice")
        d = len(space.decisions)
        self.mutation_prob = o.mutation_prob if o.mutation_prob is not None else min(1.0, 1.0 / max(1, d - 2))
        self.history: list[tuple[Arch, float | None]] = []  # told results in order (None: failed or infeasible)
        self.proposed: set[str] = set()
        self.iterations = 0
        self.train_error: float | None = None
        self.best: tuple[Arch, float] | None = None
        self.model: EnsembleMLP | None = None  # kept between iterations only with continue_epochs
        self._rows: dict[str, np.ndarray] = {}  # encodings of evaluated architectures (a cache, not state)

    # ---- ask / tell ---------------------------------------------------------------------------------
    def ask(self) -> list[Arch]:
        """The random starts (all at once), then one batch chosen by the predictor per call."""
        if len(self.proposed) < self.options.initial:
            return [self._unseen_random() for _ in range(self.options.initial - len(self.proposed))]
        data = [(a, v) for a, v in self.history if v is not None]
        if not data:  # every start failed: nothing to learn from yet
            return [self._unseen_random() for _ in range(self.options.batch)]
        self.iterations += 1
        candidates = self.candidates([a for a, _ in sorted(data, key=lambda p: -p[1])])
        while len(candidates) < self.options.batch:
            candidates.append(self._unseen_random(mark=False))
        predictions = self.fit_and_predict(data, candidates)
        order = self.acquisition_order(predictions)
        chosen = [candidates[i] for i in order[: self.options.batch]]
        self.proposed.update(a.key() for a in chosen)
        return chosen

    def _unseen_random(self, mark: bool = True) -> Arch:
        for _ in range(self.options.max_tries):
            arch = self.space.sample(self.rng)
            if arch.key() not in self.proposed:
                if mark:
                    self.proposed.add(arch.key())
                return arch
        raise SpaceExhausted(
            f"bananas: {self.options.max_tries} random draws in a row were all evaluated before "
            f"({len(self.proposed)} evaluated; the space holds {self.space.size()})"
        )

    def mutations(self, parent: Arch, count: int) -> list[Arch]:
        """`count` mutations of `parent`: each changes every mutable decision with probability `mutation_prob`
        to another choice, uniform over the other choices (a mutation may change nothing). The draws for all
        `count` come from two calls to the RNG."""
        flips = self.rng.random((count, len(self._mutable))) < self.mutation_prob
        shifts = self.rng.integers(1, self._sizes, size=(count, len(self._mutable)))  # 1 .. choices - 1
        current = [d.choices.index(parent[d.name]) for d in self._mutable]
        out = []
        for flip_row, shift_row in zip(flips.tolist(), shifts.tolist()):
            changes = {
                d.name: d.choices[(i + shift) % len(d.choices)]
                for d, i, flip, shift in zip(self._mutable, current, flip_row, shift_row)
                if flip
            }
            out.append(parent.replace(**changes) if changes else parent)
        return out

    def candidates(self, ranked: list[Arch]) -> list[Arch]:
        """Distinct unseen mutations: `candidates` mutation draws of the best architecture, then as many of the
        next best, until at least `candidates` came out or `parents` architectures were mutated (the code's
        rule: it checks the count between parents, so the last parent may add more)."""
        o = self.options
        out: list[Arch] = []
        keys: set[str] = set()
        for parent in ranked[: o.parents]:
            if len(out) >= o.candidates:
                break
            for child in self.mutations(parent, o.candidates):
                key = child.key()
                if key not in self.proposed and key not in keys:
                    keys.add(key)
                    out.append(child)
        return out

    def fit_and_predict(self, data: list[tuple[Arch, float]], candidates: list[Arch]) -> np.ndarray:
        """Train a fresh ensemble on (architecture, accuracy) pairs; each member's prediction for every
        candidate, (members, candidates)."""
        x = self._encoded([a for a, _ in data])
        y = np.array([v for _, v in data])
        model, epochs = self.model, self.options.continue_epochs
        if model is None or epochs is None:
            model, epochs = EnsembleMLP(self.encoder.size, self.settings, self.rng), self.options.epochs
        self.train_error = model.fit(x, y, self.rng, epochs)
        if self.options.continue_epochs is not None:
            self.model = model
        return model.predict(self.encoder.encode(candidates))

    def _encoded(self, archs: list[Arch]) -> np.ndarray:
        """The encodings of evaluated architectures, each computed once (the history is encoded every iteration)."""
        todo = [a for a in archs if a.key() not in self._rows]
        for arch, row in zip(todo, self.encoder.encode(todo)):
            self._rows[arch.key()] = row
        return np.stack([self._rows[a.key()] for a in archs])

    def acquisition_order(self, predictions: np.ndarray) -> np.ndarray:
        """Candidate positions, best first, by the acquisition function (higher accuracy is better)."""
        mean = predictions.mean(axis=0)
        std = predictions.std(axis=0)
        kind = self.options.acquisition
        if kind == "its":
            score = self.rng.normal(mean, std)
        elif kind == "ucb":
            score = mean + 0.5 * std
        elif kind == "mean":
            score = mean
        else:  # ts: the prediction of one member drawn at random
            score = predictions[int(self.rng.integers(len(predictions)))]
        return np.argsort(-score, kind="stable")

    def tell(self, arch: Arch, result: Result) -> None:
        acc = result.accuracy
        value = float(acc) if acc is not None and math.isfinite(acc) else None
        self.proposed.add(arch.key())
        self.history.append((arch, value))
        if value is not None and (self.best is None or value > self.best[1]):
            self.best = (arch, value)

    # ---- results ------------------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return "predictor" if self.iterations else "random starts"

    def final(self) -> Arch | None:
        """The best architecture evaluated (first maximum)."""
        return self.best[0] if self.best is not None else None

    def metrics(self) -> dict[str, Any]:
        return {} if self.train_error is None else {"predictor_train_mae": self.train_error}

    # ---- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "decisions": [[d.name, len(d.choices)] for d in self.space.decisions],
            "history": [[arch_to_pairs(a), v] for a, v in self.history],
            "proposed": sorted(self.proposed),
            "iterations": self.iterations,
            "train_error": self.train_error,
            "model": None if self.model is None else self.model.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if [list(x) for x in state["decisions"]] != [[d.name, len(d.choices)] for d in self.space.decisions]:
            raise ConfigError(
                "bananas: checkpoint was saved for a space with other decisions; resume it with the space options "
                "it was started with"
            )
        super().load_state_dict(state)
        self.history = []
        self.best = None
        for pairs, value in state["history"]:
            arch = arch_from_pairs(pairs)
            assert arch is not None
            v = None if value is None else float(value)
            self.history.append((arch, v))
            if v is not None and (self.best is None or v > self.best[1]):
                self.best = (arch, v)
        self.proposed = set(state["proposed"])
        self.iterations = int(state["iterations"])
        self.train_error = None if state["train_error"] is None else float(state["train_error"])
        self.model = None
        if state.get("model") is not None:
            self.model = EnsembleMLP(self.encoder.size, self.settings, np.random.default_rng(0))
            self.model.load_state_dict(state["model"])
