"""Parameter and MAC counts of architectures, as the run's constraints and samplers need them.

Counts are those of the stand-alone network (`space.build`) at the run's input size, taken on the
meta device (shapes only: no memory, no arithmetic) when the network allows it. Every distinct
architecture is counted once (cached). Spaces whose counts add up over decisions (each decision's
choice adds a fixed amount, whatever the others chose) may declare `additive_costs = True`: the
first lookup then builds a table of per-choice contributions, checks it against direct counts of
a few random architectures, and answers every later lookup in microseconds — what a sampler that
draws hundreds of paths per training step (SPOS' FLOPs bins) needs. The table costs one count per
choice, so it is built only when asked for (`prepare_table`) or once as many architectures were
counted one by one as the table would take. For such spaces the cache and the table are kept per
process (keyed by the space's class and options and the input size), so the many short runs of a
`nasframe compare` on one process share one table instead of each counting its answer anew.

Latency (`latency_ms`) is a cost too when the run has a source for it (`nasframe.core.latency.LatencyCosts`:
a latency table, or measurements); `value(arch, name)` answers any of the three by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from nasframe.common.errors import ConfigError, NotSupported
from nasframe.core.space import Arch, Choice, SearchSpace
from nasframe.data import DataSpec

if TYPE_CHECKING:
    from nasframe.core.latency import LatencyCosts

#: random architectures a new additive table is checked against
ADDITIVE_CHECKS = 3

Table = tuple[int, int, dict[tuple[str, Choice], tuple[int, int]]]


class _Counted:
    """Counts of one (space class and options, input size): the per-architecture cache and the table."""

    def __init__(self, use_table: bool):
        self.cache: dict[Arch, tuple[int, int]] = {}
        self.table: Table | None = None
        self.use_table = use_table


#: additive spaces' counts, shared by every ArchCosts of this process with the same key
_SHARED: dict[tuple[type, str, DataSpec], _Counted] = {}


class ArchCosts:
    """Cached (params, MACs) of the stand-alone networks of one space at one input size, and their latency
    when the run has a source for it."""

    def __init__(self, space: SearchSpace, spec: DataSpec, latency: LatencyCosts | None = None):
        self.space = space
        self.spec = spec
        self.latency = latency
        if space.additive_costs:
            key = (type(space), repr(space.options), spec)
            self._counted = _SHARED.setdefault(key, _Counted(True))
        else:
            self._counted = _Counted(False)

    @property
    def _cache(self) -> dict[Arch, tuple[int, int]]:
        return self._counted.cache

    @property
    def _table(self) -> Table | None:
        return self._counted.table

    @property
    def _use_table(self) -> bool:
        return self._counted.use_table

    def params(self, arch: Arch) -> int:
        return self.counts(arch)[0]

    def macs(self, arch: Arch) -> int:
        return self.counts(arch)[1]

    def latency_ms(self, arch: Arch) -> float:
        """`arch`'s latency in milliseconds, from the run's latency source (a ConfigError when it has none)."""
        if self.latency is None:
            raise ConfigError(
                "this run has no latency source; set latency.table or let a limit or objective ask for it"
            )
        return self.latency.latency_ms(arch)

    def value(self, arch: Arch, name: str) -> float:
        """One cost by name: params, macs or latency_ms."""
        if name == "latency_ms":
            return self.latency_ms(arch)
        if name == "params":
            return float(self.params(arch))
        if name == "macs":
            return float(self.macs(arch))
        raise ConfigError(f"unknown cost {name!r}; costs are params, macs and latency_ms")

    def counts(self, arch: Arch) -> tuple[int, int]:
        """(parameters, MACs) of `arch`'s stand-alone network."""
        if self._table is not None:
            return _lookup(self._table, arch)
        found = self._cache.get(arch)
        if found is None:
            if self._use_table and len(self._cache) >= self._table_size():
                return _lookup(self._build_table(), arch)
            found = self._cache[arch] = self.count_directly(arch)
        return found

    def prepare_table(self) -> bool:
        """Build the additive table now if the space declares one; True when lookups are now fast."""
        if self._table is None and self._use_table:
            self._build_table()
        return self._table is not None

    def _table_size(self) -> int:
        return sum(len(d.choices) for d in self.space.define_decisions())

    def count_directly(self, arch: Arch) -> tuple[int, int]:
        """Build the network (on the meta device when possible) and count it."""
        params, macs = count_network(self.space, arch, self.spec)
        assert macs is not None
        return params, macs

    def smallest(self) -> tuple[int, int] | None:
        """Lower bounds (params, MACs) over the whole space, when the space's counts are additive."""
        if not self.prepare_table():
            return None
        assert self._table is not None
        base_p, base_m, contrib = self._table
        p, m = base_p, base_m
        for d in self.space.decisions:
            p += min(contrib[(d.name, c)][0] for c in d.choices)
            m += min(contrib[(d.name, c)][1] for c in d.choices)
        return p, m

    def _build_table(self) -> Table:
        """Per-choice contributions relative to a reference architecture (every decision at its
        first choice of the full space), then a check on random architectures."""
        full = self.space.define_decisions()
        reference = Arch([(d.name, d.choices[0]) for d in full])
        ref_p, ref_m = self.count_directly(reference)
        contrib: dict[tuple[str, Choice], tuple[int, int]] = {}
        for d in full:
            contrib[(d.name, d.choices[0])] = (0, 0)
            for c in d.choices[1:]:
                p, m = self.count_directly(reference.replace(**{d.name: c}))
                contrib[(d.name, c)] = (p - ref_p, m - ref_m)
        table = (ref_p, ref_m, contrib)
        import numpy as np  # here: the constraints' options (and `nasframe --help`) load without numpy

        rng = np.random.default_rng(0)
        for _ in range(ADDITIVE_CHECKS):
            arch = Arch([(d.name, d.choices[int(rng.integers(len(d.choices)))]) for d in full])
            if _lookup(table, arch) != self.count_directly(arch):
                self._counted.use_table = False  # the space's declaration is wrong: count every architecture
                raise NotSupported(
                    f"space {self.space.name!r} declares additive_costs but its counts do not "
                    f"add up over decisions (checked on {arch!r}); remove the declaration"
                )
        self._counted.table = table
        return table


def count_network(space: SearchSpace, arch: Arch, spec: DataSpec, with_macs: bool = True) -> tuple[int, int | None]:
    """Parameters and (unless `with_macs` is False) MACs of `arch`'s stand-alone network, built on the
    meta device (shapes only: fast, no memory) when its ops allow it, else on the CPU."""
    import torch  # here, not at the top: the constraints' options load without torch

    from nasframe.common.model_stats import count_macs, count_parameters

    try:
        with torch.device("meta"):
            model = space.build(arch, spec)
    except (RuntimeError, NotImplementedError, TypeError):  # an op without a meta kernel
        model = space.build(arch, spec)
    try:
        return count_parameters(model), count_macs(model, spec.input_shape) if with_macs else None
    except (RuntimeError, NotImplementedError, TypeError):
        model = space.build(arch, spec)
        return count_parameters(model), count_macs(model, spec.input_shape) if with_macs else None


def _lookup(table: Table, arch: Arch) -> tuple[int, int]:
    base_p, base_m, contrib = table
    p, m = base_p, base_m
    for item in arch.items():
        dp, dm = contrib[item]
        p += dp
        m += dm
    return p, m


def format_count(value: float) -> str:
    """1234567 -> '1,234,567 (1.23M)'."""
    if not math.isfinite(value):
        return str(value)
    text = f"{int(value):,}"
    return text + (f" ({value / 1e6:.2f}M)" if abs(value) >= 1e6 else "")


def describe_limits(limits: Sequence[tuple[str, float | None]]) -> str:
    return ", ".join(f"{name}={format_count(v)}" for name, v in limits if v is not None)
