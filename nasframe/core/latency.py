"""Latency as a cost of architectures: measured whole networks, latency tables built and checked, and the
run's `LatencyCosts` (predicted from a table, or measured per architecture).

`measure_arch` times one stand-alone network (`nasframe.common.latency` does the timing). `build_table`
times every block of a `BlockSpace` once; `calibrate` fits the table's linear correction on whole networks
of random architectures; `check_accuracy` compares predictions with whole-network measurements on other
random architectures (Spearman's rho and the mean absolute percentage error). Networks are built with
seeded weights inside `torch.random.fork_rng`, so measuring never moves a run's random streams.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from nasframe.common.errors import ConfigError
from nasframe.common.latency import LatencySettings, Measurement, environment, load_average, measure_module
from nasframe.core.blocks import BlockSpace
from nasframe.core.latency_table import LatencyTable, TablePredictor
from nasframe.core.space import Arch, Choice, SearchSpace
from nasframe.data import DataSpec

#: where a latency came from, as history.jsonl and best.json record it
TABLE, MEASURED = "table", "measured"
Progress = Callable[[int, int, str], None]


def measure_arch(space: SearchSpace, arch: Arch, spec: DataSpec, settings: LatencySettings) -> Measurement:
    """The measured latency of `arch`'s stand-alone network at `spec`'s input size."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = space.build(arch, spec)
    return measure_module(model, spec.input_shape, settings)


def build_table(
    space: SearchSpace,
    spec: DataSpec,
    settings: LatencySettings,
    space_options: Mapping[str, Any],
    progress: Progress | None = None,
) -> LatencyTable:
    """Time every block the space can run (`BlockSpace.all_blocks`) once; no correction yet."""
    if not isinstance(space, BlockSpace):
        raise ConfigError(
            f"space {space.name!r} does not list its blocks (BlockSpace), so no latency table can be built; "
            f"measure whole networks with nasframe latency"
        )
    blocks = space.all_blocks(spec)
    start_load = load_average()
    entries: dict[str, dict[str, Any]] = {}
    for i, block in enumerate(blocks):
        if progress is not None:
            progress(i, len(blocks), block.key)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = block.build()
        entries[block.key] = measure_module(module, block.input_shape, settings).to_dict()
    if progress is not None:
        progress(len(blocks), len(blocks), "")
    return LatencyTable(
        space=space.name,
        space_options=dict(space_options),
        data={"name": spec.name, "input_shape": list(spec.input_shape), "num_classes": spec.num_classes},
        settings=settings.to_dict(),
        environment=environment(settings),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        entries=entries,
        machine_load={"start": start_load, "end": load_average()},
    )


def random_archs(space: SearchSpace, count: int, seed: int) -> list[Arch]:
    """`count` distinct random architectures (fewer when the space is smaller)."""
    rng = np.random.default_rng(seed)
    out: dict[Arch, None] = {}
    for _ in range(count * 20):
        if len(out) >= count:
            break
        out.setdefault(space.sample(rng), None)
    return list(out)


def _measured_pairs(
    table: LatencyTable, space: SearchSpace, spec: DataSpec, archs: list[Arch], progress: Progress | None
) -> list[tuple[float, float]]:
    """(raw table sum, measured whole network) for each architecture."""
    settings = LatencySettings(**table.settings)
    predictor = TablePredictor(table, space, spec)
    pairs = []
    for i, arch in enumerate(archs):
        if progress is not None:
            progress(i, len(archs), "whole networks")
        pairs.append((predictor.raw_ms(arch), measure_arch(space, arch, spec, settings).median_ms))
    if progress is not None:
        progress(len(archs), len(archs), "whole networks")
    return pairs


def calibrate(
    table: LatencyTable, space: SearchSpace, spec: DataSpec, count: int, seed: int, progress: Progress | None = None
) -> dict[str, Any]:
    """Fit `measured = slope * sum + intercept` (least squares) on `count` random whole networks and store it."""
    if count < 2:
        raise ConfigError("latency-table: --calibrate needs at least 2 architectures to fit a line")
    load = load_average()
    pairs = _measured_pairs(table, space, spec, random_archs(space, count, seed), progress)
    raw, measured = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    slope, intercept = (1.0, float(np.mean(measured - raw))) if np.ptp(raw) == 0 else np.polyfit(raw, measured, 1)
    table.correction = {
        "slope": float(slope),
        "intercept": float(intercept),
        "archs": len(pairs),
        "seed": seed,
        "load": {"start": load, "end": load_average()},
        "pairs": [[round(a, 5), round(b, 5)] for a, b in pairs],
    }
    return table.correction


def accuracy_of(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """Spearman's rho and the mean absolute percentage error of predictions (first) against measurements."""
    from scipy.stats import spearmanr

    predicted, measured = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    rho = float(spearmanr(predicted, measured).statistic) if len(pairs) > 1 else math.nan
    mape = float(np.mean(np.abs(predicted - measured) / measured) * 100)
    return {"spearman": rho, "mape": mape}


def check_accuracy(
    table: LatencyTable, space: SearchSpace, spec: DataSpec, count: int, seed: int, progress: Progress | None = None
) -> dict[str, Any]:
    """Measure `count` random whole networks (seed `seed`, none of the calibration's when the seeds differ)
    and compare: rho and MAPE of the raw sum and of the corrected prediction; stored in the table."""
    load = load_average()
    archs = random_archs(space, count, seed)
    fitted = {a.key() for a in random_archs(space, int((table.correction or {}).get("archs", 0)), _seed_of(table))}
    held_out = [a for a in archs if a.key() not in fitted]
    pairs = _measured_pairs(table, space, spec, held_out, progress)
    predictor = TablePredictor(table, space, spec)
    raw = accuracy_of(pairs)
    corrected = accuracy_of([(predictor.correct(r), m) for r, m in pairs])
    table.accuracy = {
        "archs": len(pairs),
        "seed": seed,
        "left_out": len(archs) - len(held_out),  # drawn again by this seed but used to fit the correction
        "spearman": corrected["spearman"],
        "mape": corrected["mape"],
        "spearman_raw": raw["spearman"],
        "mape_raw": raw["mape"],
        "load": {"start": load, "end": load_average()},
        "pairs": [[round(a, 5), round(b, 5)] for a, b in pairs],
    }
    return table.accuracy


def _seed_of(table: LatencyTable) -> int:
    return int((table.correction or {}).get("seed", 0))


class LatencyCosts:
    """latency_ms of a run's architectures: predicted from a table (`source` "table") or measured per
    distinct architecture and cached (`source` "measured")."""

    def __init__(
        self,
        space: SearchSpace,
        spec: DataSpec,
        settings: LatencySettings,
        table: LatencyTable | None = None,
        table_path: str | None = None,
    ):
        self.space, self.spec, self.settings = space, spec, settings
        self.table, self.table_path = table, table_path
        self.predictor = TablePredictor(table, space, spec, f"latency table {table_path}") if table else None
        self._measured: dict[Arch, float] = {}

    @property
    def source(self) -> str:
        return TABLE if self.predictor is not None else MEASURED

    def latency_ms(self, arch: Arch) -> float:
        if self.predictor is not None:
            return self.predictor.predict_ms(arch)
        found = self._measured.get(arch)
        if found is None:
            found = self._measured[arch] = measure_arch(self.space, arch, self.spec, self.settings).median_ms
        return found

    def prepare_table(self) -> bool:
        """True when lookups are cheap enough for hundreds per training step (a table that adds up per decision)."""
        return self.predictor is not None and self.predictor.prepare()

    def contributions(self) -> tuple[float, dict[tuple[str, Choice], float]] | None:
        return self.predictor.contributions() if self.predictor is not None else None

    def smallest(self) -> float | None:
        return self.predictor.smallest() if self.predictor is not None else None

    def describe(self) -> dict[str, Any]:
        """What best.json records about where the latencies came from."""
        out: dict[str, Any] = {
            "source": self.source,
            "data": self.spec.name,
            "input_shape": list(self.spec.input_shape),
        }
        if self.table is not None:
            out.update(
                table=self.table_path,
                created=self.table.created,
                correction=self.table.correction is not None,
                **{k: self.table.settings[k] for k in ("runtime", "device", "threads", "batch")},
                clock=self.table.settings.get("clock", "wall"),
                machine=self.table.environment.get("gpu") or self.table.environment.get("cpu"),
            )
        else:
            s = self.settings
            out.update(runtime=s.runtime, device=s.device, threads=s.threads, batch=s.batch, clock=s.clock)
            out["machine"] = environment(s).get("gpu") or environment(s).get("cpu")
        return out
