"""Latency tables: every block of a space timed once on its real input shape, and the predictor they give.

A table file (JSON, `nasframe latency-table` writes it) holds one measured entry per block key
(`nasframe.core.blocks`) plus everything the numbers are valid for: the space and its options, the input
shape and classes, the runtime, device, threads and batch, the versions and the machine, the date and
the machine's load while it was measured. A network's latency is predicted as the sum of its blocks'
entries (the stem and head are blocks too: the fixed part is measured like the rest), optionally mapped
through a linear correction `slope * sum + intercept` fitted on whole networks measured on the same
machine (`correction`), which absorbs what the sum misses: the framework's per-call overhead counted once
per block instead of once per network, caches warmed by the previous block, the untimed glue between
blocks. How well it predicts is measured on other random architectures (`accuracy`).

Spaces whose blocks each depend on one decision get per-choice contributions (like `ArchCosts`), so a
prediction costs one lookup per decision; the others sum their blocks per architecture (cached).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.core.blocks import BlockSpace
from nasframe.core.space import Arch, Choice, SearchSpace
from nasframe.data import DataSpec

FORMAT = "nasframe-latency-table"
VERSION = 1
#: random architectures on which per-choice contributions are checked against the sum of blocks
ADDITIVE_CHECKS = 5
_REL = 1e-9


@dataclass
class LatencyTable:
    """The contents of a latency table file (see the module docstring)."""

    space: str
    space_options: dict[str, Any]
    data: dict[str, Any]  # name, input_shape, num_classes
    settings: dict[str, Any]  # `LatencySettings.to_dict()`
    environment: dict[str, Any]  # versions and machine
    created: str
    entries: dict[str, dict[str, Any]]  # block key -> measurement (median_ms, iqr_ms, ...)
    machine_load: dict[str, Any] = field(default_factory=dict)  # 1-minute load average at start and end
    correction: dict[str, Any] | None = None  # slope, intercept, archs, seed, pairs
    accuracy: dict[str, Any] | None = None  # archs, seed, spearman, mape (raw and corrected), pairs
    format: str = FORMAT
    version: int = VERSION

    # ---- files ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        from nasframe.common.checkpoint import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read and check a table file; every problem is one ConfigError line naming the file."""
        from nasframe.common.loading import parse_json, read_text

        where = f"latency table {path}"
        return cls.from_dict(parse_json(read_text(path, "latency table", ConfigError), where, ConfigError), where)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> LatencyTable:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ConfigError(f'{where}: not a nasframe latency table (no "format": "{FORMAT}")')
        if d.get("version") != VERSION:
            raise ConfigError(f"{where}: table version {d.get('version')!r}; this nasframe reads version {VERSION}")
        kinds: dict[str, tuple[type, ...]] = {
            "space": (str,),
            "space_options": (dict,),
            "data": (dict,),
            "settings": (dict,),
            "environment": (dict,),
            "created": (str,),
            "entries": (dict,),
        }
        for key, types in kinds.items():
            if not isinstance(d.get(key), types):
                raise ConfigError(f"{where}: field {key!r} is missing or not a {types[0].__name__}")
        for key, entry in d["entries"].items():
            value = entry.get("median_ms") if isinstance(entry, dict) else None
            if not _positive(value):
                raise ConfigError(f"{where}: entry {key[:80]!r} has no positive median_ms")
        shape = d["data"].get("input_shape")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ConfigError(f"{where}: field 'data' has no input_shape (a list of positive integers)")
        correction = d.get("correction")
        if correction is not None and not (
            isinstance(correction, dict) and _finite(correction.get("slope")) and _finite(correction.get("intercept"))
        ):
            raise ConfigError(f"{where}: field 'correction' needs a finite slope and intercept")
        for key in ("runtime", "device", "threads", "batch"):
            if key not in d["settings"]:
                raise ConfigError(f"{where}: field 'settings' lacks {key!r}")
        try:
            return cls(**{k: v for k, v in d.items()})
        except TypeError as exc:
            raise ConfigError(f"{where}: malformed ({exc})") from None

    # ---- what it is valid for ------------------------------------------------------------------------
    def check_matches(self, where: str, space_name: str, space_options: Mapping[str, Any], spec: DataSpec) -> None:
        """Refuse, in one line, a table made for another space, other space options or another input."""
        if self.space != space_name:
            raise ConfigError(f"{where} was built for space {self.space!r}, not {space_name!r}")
        wanted = json.loads(json.dumps(dict(space_options), default=list))
        for key in sorted(set(wanted) | set(self.space_options)):
            if wanted.get(key) != self.space_options.get(key):
                raise ConfigError(
                    f"{where} was built with space.{key}={self.space_options.get(key)!r}; "
                    f"this space has {wanted.get(key)!r}"
                )
        shape, classes = list(spec.input_shape), spec.num_classes
        if self.data.get("input_shape") != shape or self.data.get("num_classes") != classes:
            raise ConfigError(
                f"{where} was measured at input {_shape(self.data.get('input_shape'))} with "
                f"{self.data.get('num_classes')} classes ({self.data.get('name')}); this asks for "
                f"{_shape(shape)} with {classes} ({spec.name}): set latency.data (--data) to match"
            )

    def check_settings(self, where: str, wanted: Mapping[str, Any]) -> None:
        """Refuse a table measured with another runtime, device, thread count or batch than `wanted` asks for
        (a key absent from `wanted`, or None, takes the table's)."""
        for key in ("runtime", "device", "threads", "batch", "clock"):
            value = wanted.get(key)
            if value is not None and value != self.settings.get(key, "wall" if key == "clock" else None):
                raise ConfigError(
                    f"{where} was measured with {key} {self.settings.get(key)!r}; {key} {value!r} was asked for"
                )

    def describe(self) -> str:
        s, env = self.settings, self.environment
        return (
            f"{self.space} at {_shape(self.data.get('input_shape'))}, {s['runtime']} on {s['device']} "
            f"({env.get('gpu') or env.get('cpu', '?')}), {s['threads']} thread(s), batch {s['batch']}, "
            f"{s.get('clock', 'wall')} clock, "
            f"{len(self.entries)} blocks, {self.created}"
        )


def _positive(value: Any) -> bool:
    return _finite(value) and float(value) > 0


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shape(shape: Any) -> str:
    return "x".join(map(str, shape)) if isinstance(shape, list) else repr(shape)


class TablePredictor:
    """Predicted latencies (ms) of a space's architectures from a table (checked to match beforehand)."""

    def __init__(self, table: LatencyTable, space: SearchSpace, spec: DataSpec, where: str = "latency table"):
        if not isinstance(space, BlockSpace):
            raise ConfigError(f"space {space.name!r} does not list its blocks (BlockSpace), so it has no latency table")
        self.table, self.space, self.spec, self.where = table, space, spec, where
        self._blocks: BlockSpace = space
        self.entries = {k: float(v["median_ms"]) for k, v in table.entries.items()}
        c = table.correction or {}
        self.slope, self.intercept = float(c.get("slope", 1.0)), float(c.get("intercept", 0.0))
        self._cache: dict[Arch, float] = {}
        self._contrib: tuple[float, dict[tuple[str, Choice], float]] | None = None
        self._additive: bool | None = None

    def raw_ms(self, arch: Arch) -> float:
        """The sum of the entries of `arch`'s blocks (no correction)."""
        total = 0.0
        for block in self._blocks.blocks(arch, self.spec):
            entry = self.entries.get(block.key)
            if entry is None:
                raise ConfigError(
                    f"{self.where} has no entry for block {block.key!r}; rebuild it for this space "
                    f"(nasframe latency-table)"
                )
            total += entry
        return total

    def correct(self, raw: float) -> float:
        return self.slope * raw + self.intercept

    def predict_ms(self, arch: Arch) -> float:
        """The table's prediction for `arch` (corrected when the table holds a correction)."""
        contrib = self._contrib if self._additive else None
        if contrib is not None:
            base, table = contrib
            return base + sum(table[item] for item in arch.items())
        found = self._cache.get(arch)
        if found is None:
            found = self._cache[arch] = self.correct(self.raw_ms(arch))
        return found

    def prepare(self) -> bool:
        """Build per-choice contributions when the blocks add up per decision; True when lookups are fast."""
        if self._additive is None:
            self._contrib = self._contributions()
            self._additive = self._contrib is not None
        return bool(self._additive)

    def contributions(self) -> tuple[float, dict[tuple[str, Choice], float]] | None:
        """(base, (decision, choice) -> ms) with prediction = base + sum over decisions, or None when the
        space's blocks do not add up per decision. Corrected values (a linear correction keeps the sum)."""
        return self._contrib if self.prepare() else None

    def _contributions(self) -> tuple[float, dict[tuple[str, Choice], float]] | None:
        full = self.space.define_decisions()
        for pick in (0, -1):  # every decision at its first (or, when that is not valid, its last) choice
            reference = Arch([(d.name, d.choices[pick]) for d in full])
            try:
                ref = self.raw_ms(reference)
                contrib = {
                    (d.name, c): self.raw_ms(reference.replace(**{d.name: c})) - ref
                    for d in full
                    for c in d.choices
                    if c != reference[d.name]
                }
            except InvalidArchitecture:
                continue
            contrib.update({(d.name, reference[d.name]): 0.0 for d in full})
            base = ref
            if not self._adds_up(base, contrib, full):
                return None
            scaled = {k: self.slope * v for k, v in contrib.items()}
            return self.correct(base), scaled
        return None

    def _adds_up(self, base: float, contrib: dict[tuple[str, Choice], float], full: list[Any]) -> bool:
        rng = np.random.default_rng(0)
        for _ in range(ADDITIVE_CHECKS):
            arch = self.space.sample(rng)
            direct = self.raw_ms(arch)
            summed = base + sum(contrib[(d.name, arch[d.name])] for d in full)
            if abs(direct - summed) > _REL * max(1.0, abs(direct)):
                return False
        return True

    def smallest(self) -> float | None:
        """The lowest prediction over the space (None when the blocks do not add up per decision)."""
        contrib = self.contributions()
        if contrib is None:
            return None
        base, table = contrib
        return base + sum(min(table[(d.name, c)] for c in d.choices) for d in self.space.decisions)
