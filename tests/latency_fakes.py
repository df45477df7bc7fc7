"""Latency tables for tests, without timing anything: every block of a space gets a made-up entry, so a
prediction is a sum worked out from the entries (no noise, no seconds spent measuring)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from nasframe.common.latency import LatencySettings
from nasframe.common.options import build_options, options_to_dict
from nasframe.core.latency_table import LatencyTable
from nasframe.core.registry import spaces
from nasframe.data import DataSpec

#: a tiny MobileNet on digits: 21 slots of 7 choices (6 ops and zero), about 1 ms to build
TINY_MOBILENET = {"small_input": True, "width_mult": 0.25}


def make_space(name: str, **options: Any):
    cls = spaces.get(name)
    return cls(build_options(cls.Options, options, "space"))


def entry_ms(key: str) -> float:
    """A made-up latency for a block key, 0.1-2.0 ms, the same in every test."""
    return 0.1 + (zlib.crc32(key.encode()) % 1900) / 1000.0


def fake_table(space, spec: DataSpec, correction: dict[str, Any] | None = None, **settings: Any) -> LatencyTable:
    entries = {b.key: {"median_ms": entry_ms(b.key), "iqr_ms": 0.0} for b in space.all_blocks(spec)}
    return LatencyTable(
        space=space.name,
        space_options=options_to_dict(space.options),
        data={"name": spec.name, "input_shape": list(spec.input_shape), "num_classes": spec.num_classes},
        settings=LatencySettings(**settings).to_dict(),
        environment={"cpu": "test", "torch": "test"},
        created="2025-01-01T00:00:00",
        entries=entries,
        correction=correction,
    )


def write_fake_table(path: Path, space, spec: DataSpec, **kwargs: Any) -> Path:
    fake_table(space, spec, **kwargs).save(path)
    return path


DIGITS = DataSpec("digits", 1, 8, 8, 10)
