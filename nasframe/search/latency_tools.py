"""What `nasframe latency` and `nasframe latency-table` do, shared by the command line and the Python API.

`measure_latency` times one architecture's stand-alone network (or predicts it from a table), repeated
`repeat` times when asked, and reports the median and IQR of each measurement with the settings, the
stopping rule, the versions and the machine's load. `make_table` builds a latency table, fits its
correction on `calibrate` random whole networks and measures its accuracy on `check` other ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nasframe.common.latency import LatencySettings, check_available, environment
from nasframe.common.options import build_options, options_to_dict
from nasframe.core.latency import build_table, calibrate, check_accuracy, measure_arch
from nasframe.core.latency_table import LatencyTable, TablePredictor
from nasframe.core.space import Arch, SearchSpace
from nasframe.data import DataOptions, DataSource, DataSpec

Progress = Callable[[int, int, str], None]


def space_for(name: str, options: Mapping[str, Any] | None = None, arch_name: str | None = None) -> SearchSpace:
    """The space `name` with `options`, over the options a named architecture needs (as `inspect` does)."""
    from nasframe.core.registry import spaces

    cls = spaces.get(name)
    values: dict[str, Any] = dict(cls.options_for_arch(arch_name) or {}) if arch_name else {}
    values.update(options or {})
    return cls(build_options(cls.Options, values, "space"))


def spec_for(space: SearchSpace, data: str | None) -> DataSpec:
    """The input size and classes of data set `data` (default: the space's reference data set)."""
    name = data or type(space).reference_data
    return DataSource(build_options(DataOptions, {"name": name}, "data"), seed=0).spec


def measure_latency(
    space: SearchSpace,
    space_name: str,
    arch: Arch,
    spec: DataSpec,
    settings: LatencySettings,
    table: str | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    """A report of `arch`'s latency: measured (`repeat` times), or predicted from the table file `table`."""
    out: dict[str, Any] = {
        "space": space_name,
        "arch": arch.to_dict(),
        "data": spec.name,
        "input_shape": list(spec.input_shape),
        "num_classes": spec.num_classes,
    }
    if table is not None:
        loaded = LatencyTable.load(table)
        where = f"latency table {table}"
        loaded.check_matches(where, space_name, options_to_dict(space.options), spec)
        predictor = TablePredictor(loaded, space, spec, where)
        raw = predictor.raw_ms(arch)
        out.update(
            source="table",
            table=str(table),
            table_made=loaded.describe(),
            latency_ms=predictor.correct(raw),
            sum_of_blocks_ms=raw,
            corrected=loaded.correction is not None,
            accuracy={k: v for k, v in (loaded.accuracy or {}).items() if k != "pairs"} or None,
            settings=loaded.settings,
        )
        return out
    check_available(settings)
    runs = [measure_arch(space, arch, spec, settings).to_dict() for _ in range(repeat)]
    out.update(
        source="measured",
        latency_ms=runs[0]["median_ms"] if repeat == 1 else _median([r["median_ms"] for r in runs]),
        measurements=runs,
        settings=settings.to_dict(),
        rule=settings.describe_rule(),
        environment=environment(settings),
    )
    return out


def _median(values: list[float]) -> float:
    import numpy as np

    return float(np.median(values))


def make_table(
    space: SearchSpace,
    spec: DataSpec,
    settings: LatencySettings,
    out: str | Path,
    *,
    existing: str | Path | None = None,
    calibrate_archs: int = 30,
    check_archs: int = 100,
    seed: int = 0,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> LatencyTable:
    """Build (or, with `existing`, reuse) a table, fit its correction, measure its accuracy; saved to `out`
    after each stage, so an interrupted build keeps what was measured."""
    space_options = options_to_dict(space.options)
    if existing is not None:
        table = LatencyTable.load(existing)
        table.check_matches(f"latency table {existing}", space.name, space_options, spec)
        say(f"using the blocks of {existing}: {table.describe()}")
    else:
        check_available(settings)
        say(f"timing every block of space {space.name!r} at {spec.input_shape} ({settings.describe_rule()})")
        table = build_table(space, spec, settings, space_options, progress)
        table.save(out)
    if calibrate_archs:
        say(f"fitting the correction on {calibrate_archs} random whole networks (seed {seed})")
        calibrate(table, space, spec, calibrate_archs, seed, progress)
        table.save(out)
    if check_archs:
        say(f"checking the prediction on {check_archs} other random whole networks (seed {seed + 1})")
        check_accuracy(table, space, spec, check_archs, seed + 1, progress)
        table.save(out)
    if existing is not None and calibrate_archs == 0 and check_archs == 0:
        table.save(out)
    return table


def table_summary(table: LatencyTable) -> list[str]:
    """The lines `nasframe latency-table` prints about a table."""
    lines = [f"table: {table.describe()}"]
    load = table.machine_load
    lines.append(f"machine load (1-min average) while timing blocks: {load.get('start')} -> {load.get('end')}")
    c = table.correction
    if c is not None:
        lines.append(
            f"correction: measured = {c['slope']:.4g} x sum of blocks + {c['intercept']:.4g} ms "
            f"(least squares on {c['archs']} random whole networks, seed {c['seed']})"
        )
    a = table.accuracy
    if a is not None:
        lines.append(
            f"accuracy on {a['archs']} held-out random architectures (seed {a['seed']}): Spearman rho "
            f"{a['spearman']:.3f}, MAPE {a['mape']:.1f}% (sum of blocks alone: rho {a['spearman_raw']:.3f}, "
            f"MAPE {a['mape_raw']:.1f}%); load {a['load']['start']} -> {a['load']['end']}"
        )
    return lines
