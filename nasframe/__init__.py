"""nasframe: neural architecture search with pluggable spaces, evaluators and strategies."""

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
    register_dataset,
    register_evaluator,
    register_space,
    register_strategy,
)
from nasframe.space import Arch, Decision, SearchSpace, Supernet
from nasframe.strategy import Strategy, ask_unseen

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
