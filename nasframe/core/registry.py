"""The registries of strategies, spaces and evaluators, and the functions the public API offers on them.

Each is a `nasframe.common.plugins.Registry` over the entry-point group third-party packages use
(`nasframe.strategies`, `nasframe.spaces`, `nasframe.evaluators`); data sets have theirs in
`nasframe.data.registry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasframe.common.plugins import Registry
from nasframe.data.registry import datasets, register_dataset

if TYPE_CHECKING:
    from nasframe.core.evaluator import Evaluator
    from nasframe.core.space import SearchSpace
    from nasframe.core.strategy import Strategy

strategies: Registry[Strategy[Any]] = Registry("strategy", "nasframe.strategies")
spaces: Registry[SearchSpace[Any]] = Registry("space", "nasframe.spaces")
evaluators: Registry[Evaluator[Any]] = Registry("evaluator", "nasframe.evaluators")

register_strategy = strategies.register
register_space = spaces.register
register_evaluator = evaluators.register


def list_strategies(pattern: str = "*") -> list[str]:
    return strategies.names(pattern)


def list_spaces(pattern: str = "*") -> list[str]:
    return spaces.names(pattern)


def list_evaluators(pattern: str = "*") -> list[str]:
    return evaluators.names(pattern)


def create_strategy(name: str, *args: Any, **kwargs: Any) -> Strategy[Any]:
    return strategies.create(name, *args, **kwargs)


def create_space(name: str, *args: Any, **kwargs: Any) -> SearchSpace[Any]:
    return spaces.create(name, *args, **kwargs)


def create_evaluator(name: str, *args: Any, **kwargs: Any) -> Evaluator[Any]:
    return evaluators.create(name, *args, **kwargs)


__all__ = [
    "create_evaluator",
    "create_space",
    "create_strategy",
    "datasets",
    "evaluators",
    "list_evaluators",
    "list_spaces",
    "list_strategies",
    "register_dataset",
    "register_evaluator",
    "register_space",
    "register_strategy",
    "spaces",
    "strategies",
]
