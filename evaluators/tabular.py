"""Answer evaluations from a tabular benchmark (NAS-Bench-201) instead of training.

Two fidelities: a strategy searches with the 12-epoch validation accuracy (`val_acc`) and pays
12 simulated epochs per evaluation; what it returns is judged by the 200-epoch test accuracy
(`final_metrics`), which never enters the search metrics. With `fidelity: 200` the search sees the
200-epoch numbers instead; the 200-epoch table has only test accuracy, so that setting is an
oracle (val_acc = test_acc) for upper-bound studies.

A request's `Budget(epochs=k)` (multi-fidelity strategies such as successive halving) is answered from
the table's column at exactly k epochs, where the table holds the search metric at k: the shipped nb201
table holds it at 12 epochs (validation accuracy) and, in the oracle setting only, at 200 (test
accuracy). Any other budget is refused with a one-line error rather than simulated.

Evaluation is a dict lookup (Arch values -> row) into precomputed Python floats: microseconds,
so the runner, not the evaluator, bounds throughput.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from nasframe.common.errors import ConfigError, InvalidArchitecture, NotSupported
from nasframe.common.options import option
from nasframe.core.capabilities import TableLabels, TabularBenchmark
from nasframe.core.evaluator import Budget, Cost, Evaluator, Result
from nasframe.core.registry import register_evaluator
from nasframe.core.space import Arch, SearchSpace, TabularSpace


@dataclass(frozen=True)
class TabularOptions:
    dataset: Literal["cifar10", "cifar100", "imagenet16-120"] = option(
        "cifar10", "which of the benchmark's data sets to read"
    )
    fidelity: Literal[12, 200] = option(
        12, "epochs of the table the search sees: 12 (val acc) or 200 (test acc; oracle)"
    )
    epochs_per_eval: float | None = option(
        None, "simulated training epochs charged per evaluation (default: the fidelity), for run.max_epochs", min=0
    )


@register_evaluator("tabular")
class TabularEvaluator(Evaluator[TabularOptions], TabularBenchmark):
    """Looks accuracies up in the benchmark tables shipped with the space (nb201): no training."""

    Options = TabularOptions
    #: nothing here draws random numbers, so the runner skips seeding torch per evaluation
    uses_torch_rng = False
    holds_state = False

    def __init__(self, space: SearchSpace, options: TabularOptions | None = None, **kwargs: Any):
        super().__init__(space, options, **kwargs)
        if not isinstance(space, TabularSpace):
            raise NotSupported(
                f"evaluator 'tabular' needs a space with a benchmark table (nb201); space {space.name!r} has none"
            )
        table = space.benchmark_table()
        o = self.options
        self._names = tuple(d.name for d in space.define_decisions())
        self._row_of: dict[Arch, int] = table.row_of
        split = "val" if o.fidelity == 12 else "test"
        self._search = table.column(o.dataset, split, o.fidelity)
        self._final = table.column(o.dataset, "test", 200)
        # Python floats: indexing a list is cheaper than numpy scalar access plus float()
        self._search_list: list[float] = self._search.tolist()
        self._final_list: list[float] = self._final.tolist()
        self._epochs = float(o.epochs_per_eval if o.epochs_per_eval is not None else o.fidelity)
        #: epochs -> search column, for budgets (the oracle setting also answers 12 from the validation column)
        self._by_epochs: dict[float, list[float]] = {float(o.fidelity): self._search_list}
        if o.fidelity == 200:
            self._by_epochs[12.0] = table.column(o.dataset, "val", 12).tolist()

    def row(self, arch: Arch) -> int:
        """Benchmark row (index) of `arch`."""
        row = self._row_of.get(arch) if isinstance(arch, Arch) else None  # identity hit for sampled cells
        if row is not None:
            return row
        try:
            return self._row_of[Arch([(n, arch[n]) for n in self._names])]
        except KeyError:
            raise InvalidArchitecture(f"{arch!r} is not a cell of the benchmark table") from None

    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        i = self.row(arch)
        if budget is None or (budget.epochs is None and budget.steps is None):
            return Result(metrics={"val_acc": self._search_list[i]}, cost=Cost(0.0, self._epochs))
        epochs = budget.epochs
        column = self._by_epochs.get(float(epochs)) if epochs is not None else None
        if column is None or epochs is None or budget.steps is not None:
            held = " and ".join(f"{e:g}" for e in sorted(self._by_epochs))
            asked = f"{epochs:g} epochs" if budget.steps is None and epochs is not None else f"{budget.steps} steps"
            raise NotSupported(
                f"evaluator tabular: the table holds the search accuracy at {held} epochs only "
                f"(fidelity {self.options.fidelity}); it cannot answer a budget of {asked}"
            )
        return Result(metrics={"val_acc": column[i]}, cost=Cost(0.0, float(epochs)))

    def final_metrics(self, arch: Arch) -> dict[str, float]:
        """200-epoch test accuracy of the chosen data set: the held-out judge of a final architecture."""
        return {"test_acc": self._final_list[self.row(arch)]}

    def search_split(self) -> str:
        words = self.table_labels()
        return f"{self.space.name} table, {words.dataset}: {words.search}"

    def held_out_split(self) -> str:
        words = self.table_labels()
        return f"{self.space.name} table, {words.dataset}: {words.held_out}"

    def all_accuracies(self, metric: Literal["val_acc", "test_acc"] = "val_acc") -> np.ndarray:
        """The metric over every cell of the table (row order): `val_acc` is what the search sees,
        `test_acc` the 200-epoch held-out judge. For analytic baselines such as expected best-of-n."""
        if metric == "val_acc":
            return self._search.copy()
        if metric == "test_acc":
            return self._final.copy()
        raise ConfigError(f"unknown metric {metric!r}; choose val_acc or test_acc")

    def table_labels(self) -> TableLabels:
        search = "12-epoch validation accuracy" if self.options.fidelity == 12 else "200-epoch test accuracy (oracle)"
        return TableLabels(self.options.dataset, search, "200-epoch test accuracy")
