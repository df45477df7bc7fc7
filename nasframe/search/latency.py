"""The `latency:` section of a run: where architectures' latencies come from when the run uses them.

A run uses latency when `constraints.max_latency_ms` is set, when its strategy asks for it (an objective
`latency_ms`, SPOS' bins on latency, NSE's `cost_metric: latency_ms`), or when `latency.table` is given
(then every evaluated architecture's latency is recorded too). With a table, latencies are predicted
from it (source "table"); without one, every distinct architecture's stand-alone network is measured
once on this machine (source "measured"), which costs seconds per architecture. A run that uses none of
this builds nothing here and writes what it wrote before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options, option, options_to_dict
from nasframe.core.space import SearchSpace
from nasframe.data import DataOptions, DataSource, DataSpec

if TYPE_CHECKING:  # they import torch and numpy: loaded when a run uses latency, so the config loads without
    from nasframe.common.latency import LatencySettings
    from nasframe.core.latency import LatencyCosts
    from nasframe.core.latency_table import LatencyTable

#: what a latency measured without a table uses where the section leaves it open
DEFAULTS: dict[str, Any] = {"runtime": "torch", "device": "cpu", "threads": 1, "batch": 1, "clock": "wall"}


@dataclass(frozen=True)
class LatencyOptions:
    """The `latency:` section (see the module docstring)."""

    table: str | None = option(
        None, "latency table file (nasframe latency-table): latencies are predicted from it; null: measured"
    )
    data: str | None = option(
        None,
        "data set whose input size and classes latency is taken at (null: the run's data), e.g. imagenet "
        "for a search on a small proxy data set that deploys at 224 px",
    )
    runtime: Literal["auto", "torch", "onnxruntime"] = option("auto", "auto: the table's, else torch")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where the network runs; auto: the table's, else cpu")
    threads: int | None = option(None, "threads of the runtime (null: the table's, else 1)", min=1)
    batch: int | None = option(None, "images per timed forward (null: the table's, else 1)", min=1)
    clock: Literal["auto", "wall", "cpu"] = option(
        "auto",
        "wall: elapsed time; cpu: the thread's CPU time (shared machines, 1 thread); auto: the table's, else wall",
    )

    def wanted(self) -> dict[str, Any]:
        """The settings this section fixes (None: left to the table or the defaults)."""
        return {
            "runtime": None if self.runtime == "auto" else self.runtime,
            "device": None if self.device == "auto" else self.device,
            "threads": self.threads,
            "batch": self.batch,
            "clock": None if self.clock == "auto" else self.clock,
        }

    def settings(self, table: LatencyTable | None) -> LatencySettings:
        """How latencies are measured: the table's settings, else this section's over the defaults."""
        from nasframe.common.latency import LatencySettings

        if table is not None:
            return LatencySettings(**table.settings)
        fixed = {k: v for k, v in self.wanted().items() if v is not None}
        return LatencySettings(**{**DEFAULTS, **fixed})


def latency_spec(options: LatencyOptions, run_spec: DataSpec) -> DataSpec:
    """The input size and classes latency is taken at: `latency.data`'s, else the run's."""
    if options.data is None:
        return run_spec
    return DataSource(build_options(DataOptions, {"name": options.data}, "latency"), seed=0).spec


def latency_costs(
    options: LatencyOptions, space: SearchSpace, space_name: str, run_spec: DataSpec, needed: bool
) -> LatencyCosts | None:
    """The run's latency source, or None when nothing uses latency and no table was given."""
    if options.table is None and not needed:
        return None
    from nasframe.common.latency import check_available
    from nasframe.core.latency import LatencyCosts
    from nasframe.core.latency_table import LatencyTable

    spec = latency_spec(options, run_spec)
    table = None
    if options.table is not None:
        where = f"latency table {options.table}"
        table = LatencyTable.load(options.table)
        table.check_matches(where, space_name, options_to_dict(space.options), spec)
        table.check_settings(where, options.wanted())
    settings = options.settings(table)
    if table is None:
        check_available(settings)
    return LatencyCosts(space, spec, settings, table, options.table)


def needs_latency(costs_used: frozenset[str], max_latency_ms: float | None) -> bool:
    return "latency_ms" in costs_used or max_latency_ms is not None


def check_table_path(options: LatencyOptions) -> LatencyOptions:
    """The section with its table path made absolute (so `resume` finds it from any folder)."""
    import os
    from dataclasses import replace

    if options.table is None:
        return options
    if not options.table.strip():
        raise ConfigError("latency.table: an empty path; give a table file or null")
    return replace(options, table=os.path.abspath(options.table))
