"""nasframe: neural architecture search with pluggable spaces, evaluators and strategies.

The public names below are loaded on first use (PEP 562), so that `import nasframe` and the
command line's `--help`, `list` and `show` do not pay for importing torch: `from nasframe import
Strategy` and `nasframe.run(...)` work as with eager imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasframe import _moved
from nasframe.common.lazy import lazy_exports
from nasframe.common.version import __version__ as __version__

if TYPE_CHECKING:
    from nasframe.app.api import (
        build_latency_table,
        build_network,
        load_model,
        load_result,
        measure_latency,
        resume,
        run,
        train,
    )
    from nasframe.common.errors import (
        CapabilityError,
        ConfigError,
        InvalidArchitecture,
        NasframeError,
        NotSupported,
        PluginLoadError,
        RegistryError,
        SpaceExhausted,
    )
    from nasframe.common.options import option
    from nasframe.common.plugins import load_plugin
    from nasframe.core.capabilities import AngleMetric, BNRecalibration, Capability, SharedWeights, TabularBenchmark
    from nasframe.core.evaluator import Budget, Cost, Evaluator, Result, WorkReport
    from nasframe.core.registry import (
        create_evaluator,
        create_space,
        create_strategy,
        list_evaluators,
        list_spaces,
        list_strategies,
        register_evaluator,
        register_space,
        register_strategy,
    )
    from nasframe.core.space import Arch, Decision, SearchSpace, Supernet
    from nasframe.core.strategy import Strategy, ask_unseen
    from nasframe.data.registry import register_dataset

#: public name -> the module that defines it (keep in step with the TYPE_CHECKING imports above)
_HOMES: dict[str, str] = {
    **dict.fromkeys(
        [
            "build_latency_table",
            "build_network",
            "load_model",
            "load_result",
            "measure_latency",
            "resume",
            "run",
            "train",
        ],
        "nasframe.app.api",
    ),
    **dict.fromkeys(
        [
            "CapabilityError",
            "ConfigError",
            "InvalidArchitecture",
            "NasframeError",
            "NotSupported",
            "PluginLoadError",
            "RegistryError",
            "SpaceExhausted",
        ],
        "nasframe.common.errors",
    ),
    "option": "nasframe.common.options",
    "load_plugin": "nasframe.common.plugins",
    **dict.fromkeys(
        ["AngleMetric", "BNRecalibration", "Capability", "SharedWeights", "TabularBenchmark"],
        "nasframe.core.capabilities",
    ),
    **dict.fromkeys(["Budget", "Cost", "Evaluator", "Result", "WorkReport"], "nasframe.core.evaluator"),
    **dict.fromkeys(
        [
            "create_evaluator",
            "create_space",
            "create_strategy",
            "list_evaluators",
            "list_spaces",
            "list_strategies",
            "register_evaluator",
            "register_space",
            "register_strategy",
        ],
        "nasframe.core.registry",
    ),
    **dict.fromkeys(["Arch", "Decision", "SearchSpace", "Supernet"], "nasframe.core.space"),
    **dict.fromkeys(["Strategy", "ask_unseen"], "nasframe.core.strategy"),
    "register_dataset": "nasframe.data.registry",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())


_moved.install()  # the 0.1 import paths, for one release (nasframe/_moved.py)


def model_space(name: str, factory: Any = None, **kwargs: Any) -> Any:
    """Register a PyTorch module class (or factory) written with `nasframe.nn` mutables as the search space
    `name` (see `nasframe.nn.model_space`; imported on first use, so `import nasframe` stays light)."""
    from nasframe.nn.space import model_space as register

    return register(name, factory, **kwargs)


__all__ = [
    "AngleMetric",
    "Arch",
    "BNRecalibration",
    "Budget",
    "Capability",
    "CapabilityError",
    "ConfigError",
    "Cost",
    "Decision",
    "Evaluator",
    "InvalidArchitecture",
    "NasframeError",
    "NotSupported",
    "PluginLoadError",
    "RegistryError",
    "Result",
    "SearchSpace",
    "SharedWeights",
    "SpaceExhausted",
    "Strategy",
    "Supernet",
    "TabularBenchmark",
    "WorkReport",
    "ask_unseen",
    "create_evaluator",
    "create_space",
    "create_strategy",
    "list_evaluators",
    "list_spaces",
    "list_strategies",
    "load_plugin",
    "model_space",
    "option",
    "register_dataset",
    "register_evaluator",
    "register_space",
    "register_strategy",
    "build_latency_table",
    "build_network",
    "load_model",
    "measure_latency",
    "load_result",
    "resume",
    "run",
    "train",
]
