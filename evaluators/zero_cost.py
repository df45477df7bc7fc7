"""zero_cost: score each candidate at initialisation with a zero-cost proxy instead of training it.

One forward/backward pass of the freshly initialised network (Abdelfattah et al., "Zero-Cost Proxies
for Lightweight NAS", ICLR 2021), so a search over a real space takes seconds on a CPU. The proxy
formulas live in proxies.py; this file picks one, builds the network, feeds it and reports.

The score goes into `val_acc` (what every strategy ranks by) and under the proxy's own name: it is
NOT an accuracy and not a percentage, only an order, higher = better (for `params` and `macs` too:
the bigger network is predicted to be the better one, the baseline the proxies must beat).
Initialisation draws from torch's global generator, which the runner seeds before each evaluation,
so a run is reproducible; the data proxies all see the same batch, drawn once from the search-train
split with a generator seeded from the run's seed, normalised, without augmentation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nasframe.common.errors import ConfigError
from nasframe.common.options import option
from nasframe.core.costs import count_network
from nasframe.core.evaluator import Budget, Cost, Evaluator, Result
from nasframe.core.registry import register_evaluator
from nasframe.core.space import Arch, SearchSpace
from nasframe.data import DataSource, DataSpec

if TYPE_CHECKING:  # the proxies import torch: loaded when scoring, so `nasframe list` runs without it
    import torch

#: every proxy, in the order the docs list them
PROXIES = ("synflow", "grad_norm", "snip", "grasp", "fisher", "jacov", "naswot", "params", "macs")
#: proxies that need no images (synflow feeds an all-ones input; the counts need only shapes)
DATA_FREE = frozenset({"synflow", "params", "macs"})


@dataclass(frozen=True)
class ZeroCostOptions:
    proxy: str = option("synflow", "the proxy that scores each untrained network (higher = better)", choices=PROXIES)
    batch_size: int = option(64, "images in the one batch the data proxies see (the reference's 64)", min=2)
    model_stats: bool = option(True, "also count parameters and MACs of each candidate (shapes only)")


def batch_of(data: DataSource, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One normalised search-train batch (no augmentation), the same for every call with the same seed."""
    import torch

    from nasframe.data.augment import BatchTransform
    from nasframe.data.batches import Batches

    batches = Batches(data.search())
    generator = torch.Generator(device=batches.device).manual_seed(seed) if not batches.streaming else None
    x, y = next(batches.train(batch_size, generator))
    search = data.search()
    return BatchTransform(search.mean, search.std).eval(x), y


def score(proxy: str, model: torch.nn.Module, spec: DataSpec, batch: tuple[torch.Tensor, torch.Tensor] | None) -> float:
    """`proxy` of a freshly built `model` (changed in the process); `batch` is needed by all but synflow."""
    from nasframe.evaluators import proxies

    if proxy == "synflow":
        return proxies.synflow(model, spec.input_shape)
    if proxy in ("params", "macs"):
        raise ConfigError(f"proxy {proxy!r} is a count, not a score of a network: use count_network")
    if batch is None:
        raise ConfigError(f"proxy {proxy!r} needs a batch of data")
    x, y = batch
    if proxy == "grad_norm":
        return proxies.grad_norm(model, x, y)
    if proxy == "snip":
        return proxies.snip(model, x, y)
    if proxy == "grasp":
        return proxies.grasp(model, x, y)
    if proxy == "fisher":
        return proxies.fisher(model, x, y)
    if proxy == "jacov":
        return proxies.jacov(model, x)
    if proxy == "naswot":
        return proxies.naswot(model, x)
    raise ConfigError(f"unknown proxy {proxy!r}; choose one of {', '.join(PROXIES)}")


@register_evaluator("zero_cost")
class ZeroCost(Evaluator[ZeroCostOptions]):
    """Scores each candidate at initialisation with one zero-cost proxy (no training; higher = better)."""

    Options = ZeroCostOptions
    holds_state = False  # every candidate is built afresh
    val_acc_is_percent = False  # val_acc holds the proxy score

    def __init__(
        self,
        space: SearchSpace,
        options: ZeroCostOptions | None = None,
        *,
        data: DataSource | None = None,
        device: torch.device | str = "cpu",
    ):
        super().__init__(space, options, data=data, device=device)
        if self.options.proxy not in PROXIES:  # options from Python bypass the config check
            raise ConfigError(f"proxy: {self.options.proxy!r} is not allowed; choose one of {', '.join(PROXIES)}")
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def search_split(self) -> str:
        source = "no images" if self.options.proxy in DATA_FREE else "one batch of search-train"
        return f"{self.options.proxy} score at initialisation ({source}); an order, not an accuracy"

    def _spec(self) -> DataSpec:
        if self.data is None:
            raise ConfigError("zero_cost needs a data set (evaluators get one from the run's data: section)")
        return self.data.spec

    def _data_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batch is None:
            assert self.data is not None
            self._batch = batch_of(self.data, self.options.batch_size, self.data.seed)
        return self._batch

    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        import torch

        from nasframe.training.measure import free_memory, oom_reason

        start = time.perf_counter()
        o = self.options
        spec = self._spec()
        params: int | None = None
        macs: int | None = None
        if o.model_stats or o.proxy in ("params", "macs"):
            params, macs = count_network(self.space, arch, spec)
        if o.proxy in ("params", "macs"):
            value = float(params if o.proxy == "params" else macs)  # type: ignore[arg-type]
        else:
            batch = None if o.proxy in DATA_FREE else self._data_batch()
            try:
                model = self.space.build(arch, spec).to(self.device)
                value = score(o.proxy, model, spec, batch)
            except torch.OutOfMemoryError as exc:
                free_memory(self.device)
                return Result.failed(oom_reason(exc), Cost(time.perf_counter() - start, 0.0))
            except ValueError as exc:  # a network the proxy cannot read (naswot without rectifiers)
                return Result.failed(f"{o.proxy}: {exc}", Cost(time.perf_counter() - start, 0.0))
        cost = Cost(time.perf_counter() - start, 0.0)
        if not math.isfinite(value):
            return Result.failed(_non_finite_reason(o.proxy, value), cost)
        metrics = {"val_acc": value, o.proxy: value}
        return Result("ok", metrics, params=params, macs=macs, cost=cost)


def _non_finite_reason(proxy: str, value: float) -> str:
    if proxy == "synflow" and value == math.inf:
        return "synflow overflowed float64 (the network is too deep for the product of absolute weights)"
    if proxy == "naswot" and value == -math.inf:
        return "naswot: the kernel matrix is singular (two images share a binary code)"
    if proxy == "jacov":
        return "jacov is undefined: an image's input gradient is constant (the network ignores its input)"
    return f"{proxy} is not finite ({value})"
