"""Resource constraints every strategy obeys: the `constraints:` section of a run.

The runner checks each proposed architecture before it is evaluated, through the stand-alone
network's counts at the run's input size (`nasframe.core.costs.ArchCosts`: cached, on the meta
device) and, for `max_latency_ms`, its latency (predicted from the run's latency table, or measured:
see `nasframe.search.latency`). An architecture over a limit costs no evaluation: it is told to the strategy with status
"infeasible" and the strategy is asked again. A strategy that keeps proposing infeasible
architectures stops the run with an error after `max_rejections` in a row, and a space whose
smallest architecture already breaks a limit is refused before anything runs (when the space's
counts are additive, so the smallest is known).
"""

from __future__ import annotations

from dataclasses import dataclass

from nasframe.common.errors import ConfigError
from nasframe.common.options import option
from nasframe.core.costs import ArchCosts, format_count
from nasframe.core.evaluator import Result
from nasframe.core.space import Arch


@dataclass(frozen=True)
class ConstraintOptions:
    """The `constraints:` section (all limits off by default)."""

    max_params: int | None = option(
        None, "largest parameter count of an evaluated architecture (stand-alone network; null: no limit)", min=1
    )
    max_macs: int | None = option(
        None,
        "largest multiply-accumulate count for one image at the data set's input "
        "size (SPOS: 330e6 at 224x224; null: no limit)",
        min=1,
    )
    max_latency_ms: float | None = option(
        None,
        "largest latency in milliseconds (latency.table predicts it, else it is measured on this machine; "
        "null: no limit)",
        min=0.000001,
    )
    max_rejections: int = option(
        1000, "architectures in a row the limits may reject before the run stops with an error", min=1
    )

    @property
    def active(self) -> bool:
        return self.max_params is not None or self.max_macs is not None or self.max_latency_ms is not None


class ConstraintError(ConfigError):
    """The strategy cannot find an architecture within the limits."""


class Constraints:
    """Checks architectures against the limits; keeps the smallest rejected counts for messages."""

    def __init__(self, options: ConstraintOptions, costs: ArchCosts):
        self.options = options
        self.costs = costs
        self.smallest_rejected: tuple[int, int] | None = None
        self.smallest_latency: float | None = None

    def check_space(self) -> None:
        """Refuse limits that no architecture of the space can meet (when that is known cheaply)."""
        o = self.options
        low = self.costs.smallest() if self._counts_limited else None
        if low is not None:
            for name, unit, value, limit in (
                ("max_params", "parameters", low[0], o.max_params),
                ("max_macs", "MACs", low[1], o.max_macs),
            ):
                if limit is not None and value > limit:
                    raise ConstraintError(
                        f"constraints.{name}={format_count(limit)}: no architecture of space "
                        f"{self.costs.space.name!r} fits; the smallest has {format_count(value)} "
                        f"{unit} at the data set's input size"
                    )
        self._check_latency_space()

    @property
    def _counts_limited(self) -> bool:
        """Whether a limit needs the parameter and MAC counts (a latency limit alone does not count them)."""
        return self.options.max_params is not None or self.options.max_macs is not None

    def _check_latency_space(self) -> None:
        limit, latency = self.options.max_latency_ms, self.costs.latency
        low = latency.smallest() if limit is not None and latency is not None else None
        if low is not None and limit is not None and low > limit:
            raise ConstraintError(
                f"constraints.max_latency_ms={limit:g}: no architecture of space {self.costs.space.name!r} fits; "
                f"the latency table predicts at least {low:.3g} ms for every one"
            )

    def check(self, arch: Arch) -> Result | None:
        """None when `arch` is within the limits, else the "infeasible" result to tell the strategy."""
        o = self.options
        if not o.active:
            return None
        params = macs = None
        over = []
        if self._counts_limited:
            params, macs = self.costs.counts(arch)
            over = [
                f"{name} {format_count(value)} > {name_of} {format_count(limit)}"
                for name, name_of, value, limit in (
                    ("params", "max_params", params, o.max_params),
                    ("MACs", "max_macs", macs, o.max_macs),
                )
                if limit is not None and value > limit
            ]
        if o.max_latency_ms is not None:
            latency = self.costs.latency_ms(arch)
            if latency > o.max_latency_ms:
                over.append(f"latency {latency:.4g} ms > max_latency_ms {o.max_latency_ms:g} ms")
                if self.smallest_latency is None or latency < self.smallest_latency:
                    self.smallest_latency = latency
        if not over:
            return None
        if params is not None and macs is not None:
            if self.smallest_rejected is None or (params, macs) < self.smallest_rejected:
                self.smallest_rejected = (params, macs)
        return Result.infeasible("; ".join(over), params=params, macs=macs)

    def give_up_message(self, strategy: str, streak: int) -> str:
        o = self.options
        limits = ", ".join(
            f"constraints.{k}={format_count(v)}"
            for k, v in (("max_params", o.max_params), ("max_macs", o.max_macs))
            if v is not None
        )
        if o.max_latency_ms is not None:
            limits += (", " if limits else "") + f"constraints.max_latency_ms={o.max_latency_ms:g}"
        low = ""
        if self.smallest_rejected is not None:
            p, m = self.smallest_rejected
            low = f"; the smallest rejected had {format_count(p)} params and {format_count(m)} MACs"
        if self.smallest_latency is not None:
            low += f"; the fastest rejected took {self.smallest_latency:.4g} ms"
        return (
            f"strategy {strategy!r} proposed {streak} architectures in a row over the limits ({limits}){low}; "
            f"loosen the limits or raise constraints.max_rejections"
        )
