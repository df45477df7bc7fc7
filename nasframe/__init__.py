"""nasframe: neural architecture search with pluggable spaces, evaluators and strategies."""

from typing import Any

from nasframe.api import build_network, load_model, load_result, resume, run, train
from nasframe.errors import (
    CapabilityError,
    ConfigError,
    InvalidArchitecture,
    NasframeError,
    NotSupported,
    PluginLoadError,
    RegistryError,
    SpaceExhausted,
)
from nasframe.evaluator import (
    AngleMetric,
    BNRecalibration,
    Budget,
    Capability,
    Cost,
    Evaluator,
    Result,
    SharedWeights,
    TabularBenchmark,
    WorkReport,
)
from nasframe.options import option
from nasframe.registry import (
    create_evaluator,
    create_space,
    create_strategy,
    list_evaluators,
    list_spaces,
    list_strategies,
    load_plugin,
    register_dataset,
    register_evaluator,
    register_space,
    register_strategy,
)
from nasframe.space import Arch, Decision, SearchSpace, Supernet
from nasframe.strategy import Strategy, ask_unseen


def model_space(name: str, factory: Any = None, **kwargs: Any) -> Any:
    """Register a PyTorch module class (or factory) written with `nasframe.nn` mutables as the search space
    `name` (see `nasframe.nn.model_space`; imported on first use, so `import nasframe` stays light)."""
    from nasframe.nn.space import model_space as register

    return register(name, factory, **kwargs)


__version__ = "0.1.0"

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
    "build_network",
    "load_model",
    "load_result",
    "resume",
    "run",
    "train",
]
