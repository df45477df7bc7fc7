"""The SearchSpace interface and the architecture encoding every component shares.

A space is a finite set of named decisions, each with an ordered list of choices. An
architecture (`Arch`) picks one choice per decision. Strategies see only decisions and
choices; how an architecture becomes a network is the space's business.
"""

from __future__ import annotations

import copy
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, TypeVar

from nasframe.common.errors import InvalidArchitecture, NotSupported
from nasframe.common.options import NoOptions
from nasframe.core.arch_names import NameIndex

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from nasframe.data import DataSpec

Choice = str | int | float | bool


class Arch(Mapping[str, Choice]):
    """An immutable, hashable mapping decision name -> choice, in the space's decision order.

    It prints as `name=choice` pairs, compares by content, and round-trips through JSON/YAML as a
    plain mapping (`arch.to_dict()` / `Arch(d)`).
    """

    __slots__ = ("_items", "_hash", "_key")

    def __init__(self, items: Mapping[str, Choice] | Sequence[tuple[str, Choice]] = ()):
        pairs: tuple[tuple[str, Choice], ...] = (
            tuple(items.items()) if isinstance(items, Mapping) else tuple((str(p[0]), p[1]) for p in items)
        )
        self._items = pairs
        self._hash = hash(pairs)
        self._key: str | None = None

    def __getitem__(self, key: str) -> Choice:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Arch):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self._items[:6])
        more = f", ... ({len(self._items)} decisions)" if len(self._items) > 6 else ""
        return f"Arch({shown}{more})"

    def values_tuple(self) -> tuple[Choice, ...]:
        return tuple(v for _, v in self._items)

    def replace(self, **changes: Choice) -> Arch:
        return Arch([(k, changes.get(k, v)) for k, v in self._items])

    def to_dict(self) -> dict[str, Choice]:
        return dict(self._items)

    def key(self) -> str:
        """A canonical string: equal architectures give equal keys (used for de-duplication)."""
        if self._key is None:
            self._key = json.dumps(self._items, separators=(",", ":"))
        return self._key


@dataclass(frozen=True)
class Decision:
    """One named decision and its allowed choices, in a fixed order."""

    name: str
    choices: tuple[Choice, ...]

    def index(self, choice: Choice) -> int:
        return self.choices.index(choice)


OptionsT = TypeVar("OptionsT")


class SearchSpace(ABC, Generic[OptionsT]):
    """A finite set of decisions, and how an architecture becomes a network (generic over its
    options dataclass: `SearchSpace[MyOptions]`).

    Subclasses implement `define_decisions` and `build`; the base class provides uniform
    sampling, validation, restriction (for shrinking strategies) and sizes. A restricted space
    shares everything with its parent, including how supernets are built, so weights trained
    on the full space stay valid on the restricted one.
    """

    Options: ClassVar[type] = NoOptions
    #: data set whose input size published numbers are quoted at (`nasframe inspect` default)
    reference_data: ClassVar[str] = "digits"
    #: whether `build_supernet` is implemented (single paths: `set_path`, `path_parameter_names`); without it
    #: the `supernet` evaluator, and every one-shot strategy with it, refuses the space when a run is built
    supports_supernet: ClassVar[bool] = False
    #: what the network `build_supernet` returns offers beyond single paths, checked when a run is built so
    #: that a strategy needing it is refused before anything runs: "angle_terms" (`Supernet.angle_terms`,
    #: ABS' angle metric) and "forward_mixed" (`Supernet.forward_mixed`, DARTS and SETN). A class attribute;
    #: a space may narrow it per instance (a model space whose mutables cannot all be mixed)
    supernet_extras: frozenset[str] = frozenset()
    #: whether the stand-alone network's parameter and MAC counts are a sum of per-decision
    #: contributions (each choice adds a fixed amount whatever the others chose); lets
    #: `nasframe.core.costs.ArchCosts` answer from a table (checked when it is built)
    additive_costs: ClassVar[bool] = False
    #: training aids the stand-alone network offers (`nasframe train` refuses a recipe that needs one it lacks):
    #: "drop_path" (option `drop_path_prob`; the network's `drop_path_prob` attribute is read by every
    #: train-mode forward and may change between epochs) and "auxiliary" (options `auxiliary` and
    #: `auxiliary_weight`; the network returns `(logits, aux_logits)` in train mode)
    training_extras: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: OptionsT | None = None):
        self.options: OptionsT = options if options is not None else self.Options()
        self._restriction: dict[str, tuple[Choice, ...]] | None = None
        self._decisions_cache: list[Decision] | None = None

    # ---- what strategies see ---------------------------------------------------------------
    @abstractmethod
    def define_decisions(self) -> list[Decision]:
        """All decisions of the unrestricted space, in a fixed order."""

    @property
    def decisions(self) -> list[Decision]:
        """Decisions with their currently allowed choices (after any `restrict`)."""
        if self._decisions_cache is None:
            full = self.define_decisions()
            if self._restriction:
                full = [Decision(d.name, self._restriction.get(d.name, d.choices)) for d in full]
            self._decisions_cache = full
        return self._decisions_cache

    def decision(self, name: str) -> Decision:
        for d in self.decisions:
            if d.name == name:
                return d
        raise KeyError(name)

    def decision_groups(self) -> list[list[str]]:
        """Decision names grouped for mutation: a mutating strategy (evolution) picks a group uniformly,
        then a decision within it uniformly.

        The groups partition the decisions (every name in exactly one group). The default, each
        decision its own group in decision order, makes every decision equally likely to mutate.
        Override it where the space has a natural unit above the decision: a cell space whose edges
        are grouped by target node mutates every node equally often, whatever its in-degree, which
        is how NAS-Bench-201's regularized-evolution baseline mutates (see the nb201 space).
        """
        return [[d.name] for d in self.decisions]

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random architecture (one independent draw per decision)."""
        return Arch([(d.name, d.choices[int(rng.integers(len(d.choices)))]) for d in self.decisions])

    def validate(self, arch: Mapping[str, Any]) -> Arch:
        """Return `arch` as an `Arch` in decision order, or raise InvalidArchitecture in one line."""
        if not isinstance(arch, Mapping):
            raise InvalidArchitecture(f"an architecture is a mapping decision -> choice, got {type(arch).__name__}")
        names = [d.name for d in self.decisions]
        unknown = [k for k in arch if k not in names]
        if unknown:
            raise InvalidArchitecture(
                f"unknown decision {unknown[0]!r} for space {self.name!r}; decisions: {_abbrev(names)}"
            )
        missing = [n for n in names if n not in arch]
        if missing:
            raise InvalidArchitecture(f"architecture misses decision {missing[0]!r} ({len(missing)} missing)")
        for d in self.decisions:
            if arch[d.name] not in d.choices:
                raise InvalidArchitecture(
                    f"{d.name}={arch[d.name]!r} is not allowed; choose one of {', '.join(map(str, d.choices))}"
                )
        out = Arch([(n, arch[n]) for n in names])
        self.check(out)
        return out

    def check(self, arch: Arch) -> None:
        """Space-specific constraints beyond per-decision choices; raise InvalidArchitecture."""

    def check_buildable(self, arch: Mapping[str, Any]) -> Mapping[str, Any]:
        """`arch` if every decision of the unrestricted space holds one of its choices, for `build`:
        a restriction (`restrict`) only limits what a search proposes, not what can be built."""
        for d in self.define_decisions():
            if d.name not in arch:
                raise InvalidArchitecture(f"architecture misses decision {d.name!r} of space {self.name!r}")
            if arch[d.name] not in d.choices:
                raise InvalidArchitecture(
                    f"{d.name}={arch[d.name]!r} is not allowed; choose one of {', '.join(map(str, d.choices))}"
                )
        return arch

    def size(self) -> int:
        return math.prod(len(d.choices) for d in self.decisions)

    def log10_size(self) -> float:
        return float(sum(math.log10(len(d.choices)) for d in self.decisions))

    def restriction(self) -> dict[str, tuple[Choice, ...]]:
        """The decisions `restrict` narrowed, with their allowed choices (empty when unrestricted)."""
        return dict(self._restriction or {})

    def restrict(self, allowed: Mapping[str, Sequence[Choice]]) -> SearchSpace:
        """A smaller space whose decisions allow only `allowed[name]` (others unchanged).

        Each allowed list must be a non-empty subset of the current choices; order follows the
        current order.
        """
        current = {d.name: d.choices for d in self.decisions}
        new = dict(self._restriction or {})
        for name, keep in allowed.items():
            if name not in current:
                raise InvalidArchitecture(f"cannot restrict unknown decision {name!r}")
            keep_set = set(keep)
            bad = [c for c in keep_set if c not in current[name]]
            if bad:
                raise InvalidArchitecture(f"cannot restrict {name} to {bad[0]!r}: not among {current[name]}")
            kept = tuple(c for c in current[name] if c in keep_set)
            if not kept:
                raise InvalidArchitecture(f"restricting {name} would leave no choice")
            new[name] = kept
        clone = copy.copy(self)
        clone._restriction = new
        clone._decisions_cache = None
        return clone

    # ---- names and text --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return getattr(type(self), "registered_name", type(self).__name__)

    def named_architectures(self) -> dict[str, Arch]:
        """Published architectures by name (for `inspect` and training). Override to add."""
        return {}

    @classmethod
    def published_names(cls) -> dict[str, tuple[str, ...]]:
        """Every published architecture the space can name under some options, keyed as
        `named_architectures` keys it, with other spellings that name it where they differ by more than
        case and separators (a paper's `ProxylessNAS-GPU` for `proxyless_gpu`). `nasframe list` and
        `inspect` show them; which are defined under given options is `named_architectures`' answer."""
        return {}

    def architecture_names(self) -> dict[str, tuple[str, ...]]:
        """`published_names` and whatever else `named_architectures` holds under these options."""
        names = dict(self.published_names())
        for name in self.named_architectures():
            names.setdefault(name, ())
        return names

    @classmethod
    def published_name(cls, text: str) -> str | None:
        """The published name `text` spells (case and separators ignored, other spellings accepted), or None;
        for looking up `options_for_arch` before the space is built."""
        return NameIndex(cls.published_names()).resolve(text)

    def arch_by_name(self, text: str) -> Arch | None:
        """The architecture `text` names, in any spelling `published_name` accepts; None when it names none.
        A name defined only under other options is refused with `name_unavailable`."""
        name = NameIndex(self.architecture_names()).resolve(text)
        if name is None:
            return None
        named = self.named_architectures()
        if name not in named:
            raise InvalidArchitecture(self.name_unavailable(name))
        return named[name]

    def name_unavailable(self, name: str) -> str:
        """Why the published architecture `name` is not defined under these options, and how to get it."""
        sets = " ".join(f"--set space.{k}={_option_text(v)}" for k, v in (self.options_for_arch(name) or {}).items())
        return f"architecture {name!r} is not defined under these options of space {self.name!r}" + (
            f"; add {sets}" if sets else ""
        )

    def name_suggestion(self, text: str) -> str:
        """ "; did you mean 'NAME'?" when `text` looks like a misspelt architecture name, else "" (for errors)."""
        near = NameIndex(self.architecture_names()).nearest(text)
        return f"; did you mean {near!r}?" if near is not None else ""

    @classmethod
    def options_for_arch(cls, name: str) -> dict[str, Any] | None:
        """Space options a named architecture needs (e.g. its own layout), or None.

        `nasframe inspect --arch NAME` applies them beneath the user's `--set` values.
        """
        return None

    def parse_arch(self, text: str) -> Arch:
        """Turn a name (any spelling `arch_by_name` accepts), a JSON/YAML mapping, or a space-specific text
        form into an Arch."""
        found = self.arch_by_name(text)
        if found is not None:
            return found
        from nasframe.common.loading import parse_value

        _, value = parse_value(text, "architecture text", InvalidArchitecture)
        if isinstance(value, Mapping):
            return self.validate(value)
        names = ", ".join(self.architecture_names())
        forms = f"a named architecture ({names}) or a JSON mapping" if names else "a JSON mapping"
        raise InvalidArchitecture(f"cannot read architecture {text[:60]!r}: give {forms}{self.name_suggestion(text)}")

    def export(self, arch: Arch, weights: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """Extra, space-specific description of a final architecture for best.json.

        `weights` are a strategy's per-decision preferences (e.g. MDENAS probabilities), used by
        spaces whose final form is derived from them (the DARTS genotype rule).
        """
        return {}

    def plot(self, arch: Arch, path: str) -> None:
        """Draw the architecture to an image file (`nasframe inspect --plot`)."""
        raise NotSupported(f"space {self.name!r} cannot draw architectures")

    # ---- networks ----------------------------------------------------------------------------
    @abstractmethod
    def build(self, arch: Arch, data: DataSpec) -> nn.Module:
        """A stand-alone network for `arch`, sized for the data set's input and classes."""

    def build_supernet(self, data: DataSpec) -> Supernet:
        """A weight-sharing network holding every choice (see `Supernet`)."""
        raise NotSupported(f"space {self.name!r} has no weight-sharing supernet")

    def supernet_extra_hint(self, extra: str) -> str:
        """What to do about a `supernet_extras` entry the space lacks (the end of the refusal's message)."""
        return f"implement Supernet.{extra} and add {extra!r} to the space's supernet_extras"


class TabularSpace(ABC):
    """Space capability: a benchmark table holds every architecture's measured accuracy.

    The table must offer `row_of` (a mapping Arch -> row) and `column(dataset, split, epochs)`
    (a numpy array over rows); the `tabular` evaluator answers from it.
    """

    @abstractmethod
    def benchmark_table(self) -> Any:
        """The space's benchmark table."""


class EnsembleLogits(NamedTuple):
    """What an ensemble network returns in train mode: the mean of its members' logits first (what every
    reader of `out[0]` takes as the logits) and each member's logits. The training loss is the sum of the
    members' cross-entropies (NEAS); in eval mode such a network returns the mean alone."""

    logits: torch.Tensor
    members: tuple[torch.Tensor, ...]


#: part of a tensor, as basic indexing: one slice per leading dimension (the dimensions after them whole),
#: e.g. `(slice(0, 8), slice(0, 4), slice(1, 4), slice(1, 4))` for the first 8 output and 4 input channels
#: and the centre 3x3 of a 5x5 convolution weight. Indexing with it gives a view.
Index = tuple[slice, ...]


class ParamSlice(NamedTuple):
    """An angle term naming part of a parameter: `name` as in `named_parameters`, `part` the `Index`."""

    name: str
    part: Index


class Supernet(ABC):
    """Mixin contract for weight-sharing networks (used together with `nn.Module`).

    `set_path(arch)` precomputes what the next forwards run, so `forward(x)` does no Python
    graph walk per call; only the chosen op of each decision executes.

    A path may use whole parameters (separate weights per choice) or parts of them (weight sharing by
    slicing: a narrow width uses the first channels of the widest, a small kernel the centre of the
    largest). `path_parameter_slices` says which part; the `supernet` evaluator's optimizer step then
    leaves every other part untouched (weights and momentum, so weight decay too), its BatchNorm
    recalibration re-estimates only the statistics the path uses (`path_buffer_slices`), and angle terms
    may name parts (`ParamSlice`). Supernets with separate weights per choice implement none of it.
    """

    @abstractmethod
    def set_path(self, arch: Arch) -> None:
        """Select the single path that subsequent forward calls run."""

    @abstractmethod
    def path_parameter_names(self, arch: Arch) -> list[str]:
        """Names (as in `named_parameters`) of the parameters the path uses."""

    def path_parameter_slices(self, arch: Arch) -> dict[str, Index | None]:
        """The part of each parameter the path uses: name -> `Index`, or None for the whole tensor, for
        exactly the names of `path_parameter_names`, in its order. Default: every one whole."""
        return dict.fromkeys(self.path_parameter_names(arch))

    def path_buffer_slices(self, arch: Arch) -> dict[str, Index]:
        """Buffers (BatchNorm running statistics) the path uses only part of: name (as in `named_buffers`)
        -> the part. BatchNorm recalibration of the path re-estimates that part and leaves the rest as it
        was. Default: none (a BatchNorm the path reaches is used whole)."""
        return {}

    def angle_terms(self, arch: Arch) -> Sequence[str | ParamSlice | torch.Tensor]:
        """Ordered parts of the path's weight vector for the angle metric (ABS).

        A string names a parameter and a `ParamSlice` part of one (their values come from the weights
        being compared); a tensor is a constant surrogate that appears identically in both vectors.
        A space whose supernet defines it declares "angle_terms" in `SearchSpace.supernet_extras`.
        """
        raise NotSupported(f"{type(self).__name__} does not define the angle metric")

    def forward_mixed(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted forward over all choices (`weights[decision]` aligned with its choices), for
        differentiable strategies. A space whose supernet defines it declares "forward_mixed" in
        `SearchSpace.supernet_extras`."""
        raise NotSupported(f"{type(self).__name__} has no weighted mixed forward")


def _option_text(value: Any) -> str:
    """An option value as `--set` takes it (YAML): strings bare, the rest as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _abbrev(items: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")
