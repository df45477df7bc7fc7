"""Which pool a run's evaluations go to: `run.executor` (local or Ray), unless they must stay here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nasframe.common.errors import ConfigError
from nasframe.search.executor import Executor
from nasframe.search.pool import EvaluationPool, LocalPool


def open_pool(
    run_options: Any, executor: Executor, config_dict: dict[str, Any], threads: int, say: Callable[[str], None]
) -> EvaluationPool:
    """The pool `run.executor` asks for, or the local one when evaluations must stay in this process."""
    if run_options.executor == "local":
        return LocalPool(executor, run_options.evaluation_timeout_s)
    from nasframe.common import distributed

    if distributed.world_size() > 1:
        raise ConfigError(
            "run.executor=ray under torchrun: each process would start its own workers; use one or the other "
            "(torchrun for supernet training, Ray for independent evaluations)"
        )
    if executor.evaluator.holds_state:
        say(
            f"note: run.executor={run_options.executor}: evaluator {type(executor.evaluator).__name__} keeps its "
            "weights in this process, so its evaluations run here"
        )
        return LocalPool(executor, run_options.evaluation_timeout_s)
    from nasframe.search.ray_pool import RayPool

    return RayPool(run_options, config_dict, threads)
