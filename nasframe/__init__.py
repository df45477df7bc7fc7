"""nasframe: neural architecture search with pluggable spaces, evaluators and strategies."""

from nasframe import _moved
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
from nasframe.common.version import __version__ as __version__
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

_moved.install()  # the 0.1 import paths, for one release (nasframe/_moved.py)

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
    "build_latency_table",
    "build_network",
    "load_model",
    "measure_latency",
    "load_result",
    "resume",
    "run",
    "train",
]
