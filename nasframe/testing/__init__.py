"""Testing helpers and the conformance kit for plugin authors.

- `InMemoryRun` executes what a strategy asks for against an evaluator the way the runner does
  (the same seeding of every evaluation and piece of work, the same tells) but in memory, so a
  unit test can drive a one-shot strategy step by step.
- `ToySpace` and `ScriptedSharedWeights`: a tiny space and a network-free evaluator that answers
  every request of the one-shot protocol, for strategy tests.
- `StrategyConformance`, `SpaceConformance`, `EvaluatorConformance`: test classes to inherit in a
  pytest module (as Optuna ships its sampler tests); nasframe runs them over every built-in.
"""

from nasframe.testing.conformance import EvaluatorConformance, SpaceConformance, StrategyConformance
from nasframe.testing.in_memory import InMemoryRun
from nasframe.testing.toys import ScriptedSharedWeights, ToySpace, scripted_accuracy, scripted_importance_round

__all__ = [
    "EvaluatorConformance",
    "InMemoryRun",
    "ScriptedSharedWeights",
    "SpaceConformance",
    "StrategyConformance",
    "ToySpace",
    "scripted_accuracy",
    "scripted_importance_round",
]
