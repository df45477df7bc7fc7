"""Assembling a run: space, data, evaluator, strategy, costs (latency included when used) and constraints
from a resolved config.

Capabilities are checked here, when the run is built, so a strategy whose requests the evaluator
cannot execute fails before any folder is written or any work is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nasframe.common.errors import CapabilityError, NasframeError
from nasframe.core.capabilities import Capability, SharedWeights, capability_names
from nasframe.core.costs import ArchCosts
from nasframe.core.evaluator import Evaluator
from nasframe.core.registry import evaluators
from nasframe.core.space import SearchSpace
from nasframe.core.strategy import CostAware, Strategy
from nasframe.data import DataSource
from nasframe.search.config import ResolvedConfig
from nasframe.search.constraints import Constraints
from nasframe.search.latency import latency_costs, needs_latency


@dataclass
class Components:
    """The parts of one run, built once per process (the Ray workers build their own)."""

    space: SearchSpace
    evaluator: Evaluator
    strategy: Strategy
    data: DataSource
    costs: ArchCosts
    constraints: Constraints | None


def check_capabilities(
    strategy_name: str, evaluator_name: str, needed: tuple[type[Capability], ...], ev_cls: type | None = None
) -> None:
    """Refuse a strategy whose requests the evaluator cannot execute, naming evaluators that can."""
    ev_cls = ev_cls or evaluators.get(evaluator_name)
    missing = [c for c in needed if not issubclass(ev_cls, c)]
    if not missing:
        return
    offering = []
    for name in evaluators.names():
        try:
            if all(issubclass(evaluators.get(name), c) for c in missing):
                offering.append(name)
        except NasframeError:  # a broken third-party evaluator must not hide the message we are building
            continue
    raise CapabilityError(
        f"strategy {strategy_name!r} needs an evaluator with {', '.join(capability_names(missing))}; "
        f"{evaluator_name!r} has none. Evaluators that offer it: {', '.join(offering) or '(none)'}"
    )


def build_components(config: ResolvedConfig, device: torch.device) -> Components:
    """Construct space, data handle, evaluator and strategy, checking capabilities at build time."""
    seed = config.options["run"].seed
    st_cls, ev_cls, sp_cls = config.strategy_class, config.evaluator_class, config.space_class
    needed = tuple(st_cls.required_capabilities(config.options["strategy"]))
    check_capabilities(config.names["strategy"], config.names["evaluator"], needed, ev_cls)
    space = sp_cls(config.options["space"])
    ev_cls.check_space(space, needed)  # what the strategy needs from the space's supernet, before anything runs
    data = DataSource(config.options["data"], seed=seed, device=device)
    evaluator = ev_cls(space, config.options["evaluator"], data=data, device=device)
    strategy = st_cls(space, config.options["strategy"], seed=seed)
    if isinstance(evaluator, SharedWeights):
        evaluator.plan_training(strategy.planned_training_epochs())
    limits = config.options["constraints"]
    used = strategy.costs_used() if isinstance(strategy, CostAware) else frozenset()
    latency = latency_costs(
        config.options["latency"], space, config.names["space"], data.spec, needs_latency(used, limits.max_latency_ms)
    )
    costs = ArchCosts(space, data.spec, latency)
    if isinstance(strategy, CostAware):
        strategy.bind_costs(costs)
    constraints = Constraints(limits, costs) if limits.active else None
    if constraints is not None:
        constraints.check_space()
    return Components(space, evaluator, strategy, data, costs, constraints)
