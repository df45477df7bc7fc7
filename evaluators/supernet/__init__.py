"""supernet: one weight-sharing network for the whole search.

`evaluate(arch)` selects the single path of `arch` (`Supernet.set_path`), trains it for the
budget on search-train with the shared SGD optimizer, and scores it on search-val (MDENAS'
per-epoch step). Parameters off the path get no update at all, as in SPOS: the optimizer's
group is narrowed to the path's parameters for every step, so their weights, momentum buffers
and weight decay stay untouched.

Beyond `evaluate` it declares every one-shot capability (`nasframe.core.capabilities`): the runner
asks it to train the shared weights with paths a strategy's sampler draws (`train_paths`), to score
a path with the weights as they are after BatchNorm recalibration (`score_path`, SPOS), to save
base weights and measure path angles (ABS), to train architecture weights by bilevel steps (DARTS,
SETN), to distil a teacher path into each step's student (Cream) and to learn branch importance
(NSE). One module per capability, each a mixin of the capability's interface over
`shared.SharedSupernet`:

- `options`: `SupernetOptions`;
- `shared`: `SharedSupernet` (`SharedWeights`): construction, the shared SGD and its schedule,
  training with divergence snapshots, `evaluate`, `train_paths`, `score_path`, the checkpoint;
- `angles`: `SupernetAngles` (`AngleMetric`);
- `differentiable`: `SupernetDifferentiable` (`Differentiable`) and the bilevel gradients
  (`first_order`, `second_order`);
- `distillation`: `SupernetDistillation` (`Distillation`);
- `branch_importance`: `SupernetBranchImportance` (`BranchImportance`) and NSE's estimator;
- `fewshot`: few-shot supernets (`FewShotSupernet`, gradient matching) and `FewShotSplitting`;
- `composed`: `ComposedSupernetEvaluator`, the composition of all of them;
- `evaluator`: the registered `SupernetEvaluator`: the options, the capabilities and the checks of a
  space, declared without torch (for `nasframe list` and the run's checks); constructing one returns
  a `ComposedSupernetEvaluator`.
"""

from __future__ import annotations

from nasframe.evaluators.supernet.evaluator import SupernetEvaluator, supernet_spaces
from nasframe.evaluators.supernet.options import SupernetOptions

__all__ = ["SupernetEvaluator", "SupernetOptions", "supernet_spaces"]
