"""Any Optuna sampler as a nasframe strategy, through Optuna's ask/tell interface.

Each decision of the space is one categorical parameter of the same name with the same choices, so
a trial's parameters are exactly an architecture. The sampler (TPE by default; CMA-ES, GP, QMC,
NSGA-II or random) proposes, the runner evaluates, and the outcome is told back: the search accuracy
as the value to maximise, a failed evaluation as a FAIL trial (samplers ignore those) and an
architecture the run's constraints rejected as a PRUNED trial without intermediate values (TPE
ranks those below every complete trial).

Duplicates: Optuna's samplers may propose an architecture again. With `dedup: true` the strategy
answers such a trial from its own history at once (it tells Optuna the recorded outcome and asks
again), so a repeat costs no evaluation; with `dedup: false` the repeat is evaluated and counted, as
a plain Optuna loop would do.

Resume: Optuna's study and sampler hold Python objects (random states, caches), not plain data. The
checkpoint holds the trial log instead (each trial's architecture and outcome, the trials answered
from history included) and the sampler's seed; loading it replays the log through a new study with a
sampler of the same seed, asking and telling in the same order, which rebuilds the sampler's state
exactly (the replay checks that every trial proposes the logged architecture). Optuna is an optional
extra: `pip install -e ".[optuna]"`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from nasframe.common.errors import ConfigError, RunDirError, SpaceExhausted
from nasframe.common.options import option
from nasframe.core.evaluator import Result
from nasframe.core.registry import register_strategy
from nasframe.core.space import Arch, SearchSpace
from nasframe.core.strategy import Strategy, arch_from_pairs, arch_to_pairs

#: the `sampler` option -> Optuna's class name in optuna.samplers
SAMPLERS = {
    "tpe": "TPESampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
    "nsga2": "NSGAIISampler",
    "random": "RandomSampler",
}
#: samplers that cannot model categorical parameters: Optuna draws every decision with its independent
#: sampler (uniform random) instead, so on a space of decisions they are random search
INDEPENDENT_ON_CATEGORICAL = ("cmaes", "qmc")
#: words in a constructor parameter's annotation that mean it takes a Python object, not plain data
OBJECT_TYPES = ("Callable", "Sampler", "Mutation", "Crossover", "FrozenTrial", "Study")
MISSING = "strategy 'optuna' needs the optional package optuna: pip install -e \".[optuna]\""


@dataclass(frozen=True)
class OptunaOptions:
    sampler: Literal["tpe", "cmaes", "gp", "qmc", "nsga2", "random"] = option(
        "tpe", "which Optuna sampler proposes (cmaes and qmc draw categorical decisions at random)"
    )
    sampler_options: dict[str, Any] = option(
        default_factory=dict,
        help="keyword arguments of the sampler's constructor, e.g. n_startup_trials (its seed comes from run.seed)",
    )
    dedup: bool = option(
        True,
        "answer an architecture proposed again from the history, without evaluating it (false: evaluate and "
        "count it, as a plain Optuna loop does)",
    )
    max_repeats: int = option(
        1000, "with dedup: repeated proposals in a row answered from history before the search gives up", min=1
    )


def import_optuna() -> Any:
    """The optuna module, or a one-line ConfigError naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(MISSING) from None
    return optuna


def check_plain_options(cls: type, given: dict[str, Any]) -> None:
    """Refuse sampler options that Optuna expects as Python objects (functions, samplers, operators): a
    config holds plain values only."""
    import inspect

    params = inspect.signature(cls).parameters
    for key in given:
        annotation = str(params[key].annotation) if key in params else ""
        if any(word in annotation for word in OBJECT_TYPES):
            raise ConfigError(
                f"strategy.sampler_options.{key}: {cls.__name__} takes a Python object there ({annotation}); "
                "only plain values can be set from a config"
            )


@contextlib.contextmanager
def quiet(optuna: Any, experimental: bool = False) -> Iterator[None]:
    """Silence Optuna's per-trial log lines for the duration of a call (the runner logs every evaluation
    itself), and with `experimental` its experimental-feature warnings (emitted when a sampler is built);
    Optuna's verbosity is restored afterwards. Cheap: it runs around every ask and tell."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        if experimental:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                yield
        else:
            yield
    finally:
        optuna.logging.set_verbosity(before)


@dataclass
class Trial:
    """One trial of the log: the architecture, its outcome ("ok", "failed", "infeasible"; None while it
    is out for evaluation), its value when ok, and whether it was answered from history (dedup)."""

    arch: Arch
    status: str | None = None
    value: float | None = None
    repeat: bool = False


@register_strategy("optuna")
class OptunaSampler(Strategy[OptunaOptions]):
    """An Optuna sampler driven through ask/tell; returns the best architecture evaluated."""

    Options = OptunaOptions

    def __init__(self, space: SearchSpace, options: OptunaOptions | None = None, *, seed: int | None = None):
        super().__init__(space, options, seed=seed)
        self.optuna = import_optuna()
        if "seed" in self.options.sampler_options:
            raise ConfigError("strategy.sampler_options.seed: not allowed; the sampler's seed comes from run.seed")
        self.sampler_seed = int(self.rng.integers(2**31 - 1))
        self.log: list[Trial] = []
        self.outcomes: dict[str, Trial] = {}  # architecture key -> its first evaluated trial
        self.best: tuple[Arch, float] | None = None
        self._start()

    def _start(self) -> None:
        """A new study and sampler (seeded with `sampler_seed`), and the decisions as distributions."""
        optuna = self.optuna
        cls = getattr(optuna.samplers, SAMPLERS[self.options.sampler])
        check_plain_options(cls, self.options.sampler_options)
        with quiet(optuna, experimental=True):
            try:
                sampler = cls(seed=self.sampler_seed, **self.options.sampler_options)
            except (TypeError, ValueError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConfigError(f"strategy.sampler_options: {cls.__name__} refused them: {first}") from None
            self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.distributions = {
            d.name: optuna.distributions.CategoricalDistribution(d.choices) for d in self.space.decisions
        }
        self._trial: Any = None  # the Optuna trial out for evaluation
        self._names = [d.name for d in self.space.decisions]

    # ---- ask / tell ---------------------------------------------------------------------------------
    def ask(self) -> list[Arch]:
        """The sampler's next architecture; with dedup, repeats are told their recorded outcome first."""
        with quiet(self.optuna):
            for _ in range(self.options.max_repeats + 1):
                trial = self.study.ask(self.distributions)
                arch = Arch([(n, trial.params[n]) for n in self._names])
                seen = self.outcomes.get(arch.key()) if self.options.dedup else None
                if seen is None:
                    self._trial = trial
                    self.log.append(Trial(arch))
                    return [arch]
                self._tell_optuna(trial, seen.status, seen.value)
                self.log.append(Trial(arch, seen.status, seen.value, repeat=True))
        raise SpaceExhausted(
            f"optuna: the {self.options.sampler} sampler proposed only architectures evaluated before "
            f"{self.options.max_repeats} times in a row ({len(self.outcomes)} evaluated)"
        )

    def _tell_optuna(self, trial: Any, status: str | None, value: float | None) -> None:
        TrialState = self.optuna.trial.TrialState
        if status == "ok":
            self.study.tell(trial, value)
        elif status == "infeasible":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    def tell(self, arch: Arch, result: Result) -> None:
        """Tell Optuna the outcome of the trial out for evaluation."""
        if self._trial is None or not self.log or self.log[-1].arch != arch:
            raise ConfigError(f"optuna: told {arch!r}, which is not the architecture it proposed last")
        acc = result.accuracy
        status = result.status
        if status == "ok" and (acc is None or not math.isfinite(acc)):
            status = "failed"  # no usable value: Optuna refuses NaN, so it is told as a failure
        value = float(acc) if status == "ok" and acc is not None else None
        entry = self.log[-1]
        entry.status, entry.value = status, value
        with quiet(self.optuna):
            self._tell_optuna(self._trial, status, value)
        self._trial = None
        self.outcomes.setdefault(arch.key(), entry)
        if value is not None and (self.best is None or value > self.best[1]):
            self.best = (arch, value)

    # ---- results ------------------------------------------------------------------------------------
    def final(self) -> Arch | None:
        """The best architecture evaluated (first maximum), as the runner would pick."""
        return self.best[0] if self.best is not None else None

    def plan(self) -> str | None:
        if self.options.sampler in INDEPENDENT_ON_CATEGORICAL:
            return (
                f"note: Optuna's {self.options.sampler} sampler models no categorical parameter; every decision "
                "is drawn at random (random search through Optuna)"
            )
        return None

    def metrics(self) -> dict[str, Any]:
        return {"trials": float(len(self.log)), "repeats": float(sum(t.repeat for t in self.log))}

    # ---- checkpoints: the trial log, replayed on load -----------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "optuna_version": self.optuna.__version__,
            "sampler_seed": self.sampler_seed,
            "names": list(self._names),
            "log": [[arch_to_pairs(t.arch), t.status, t.value, t.repeat] for t in self.log],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["names"]) != self._names:
            raise ConfigError(
                "optuna: checkpoint was saved for a space with other decisions; resume it with the space options "
                "it was started with"
            )
        super().load_state_dict(state)
        self.sampler_seed = int(state["sampler_seed"])
        self.log, self.outcomes, self.best = [], {}, None
        self._start()
        version = self.optuna.__version__
        with quiet(self.optuna):
            for number, (pairs, status, value, repeat) in enumerate(state["log"]):
                logged = arch_from_pairs(pairs)
                trial = self.study.ask(self.distributions)
                arch = Arch([(n, trial.params[n]) for n in self._names])
                if arch != logged:
                    raise RunDirError(
                        f"optuna: replaying the checkpoint, trial {number} proposed another architecture than the "
                        f"one logged (checkpoint written with Optuna {state['optuna_version']}, this is {version}); "
                        "resume with the Optuna version that started the run"
                    )
                entry = Trial(arch, status, None if value is None else float(value), bool(repeat))
                self.log.append(entry)
                if status is None:
                    self._trial = trial  # out for evaluation when the checkpoint was written
                    continue
                self._tell_optuna(trial, status, entry.value)
                if not entry.repeat:
                    self.outcomes.setdefault(arch.key(), entry)
                    if entry.value is not None and (self.best is None or entry.value > self.best[1]):
                        self.best = (arch, entry.value)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles carry the plain state; unpickling replays it (Optuna's study is rebuilt, not copied)."""
        return {"space": self.space, "options": self.options, "state": self.state_dict()}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        self.__init__(saved["space"], saved["options"])  # type: ignore[misc]
        self.load_state_dict(saved["state"])
