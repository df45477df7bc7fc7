"""NSE's search-space bookkeeping as pure functions (reference algorithms-2.md 11.2-11.3): how many rounds,
how the active subset is refilled, the Pareto filter, and the candidate sampler. The strategy (nse.py)
strings them together; the tests check each against the reference's worked examples."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Branches = list[list[int]]


def total_rounds(ops: int, k: int) -> int:
    """Rounds until every op of an N-op pool was introduced K - 1 at a time: (N - 1) // (K - 1)."""
    return (ops - 1) // (k - 1)


def update_space(prev_best: Sequence[int], pending: Sequence[int], k: int) -> tuple[list[int], list[int]]:
    """The next active subset of one cell: the ops the Pareto front used, then ops popped from the queue
    until there are K (none when the front already uses K or more). Returns (subset, queue left)."""
    subset = list(prev_best)
    queue = list(pending)
    while len(subset) < k and queue:
        subset.append(queue.pop(0))
    return subset, queue


def pareto_efficient(costs: np.ndarray) -> np.ndarray:
    """The released is_pareto_efficient_simple over rows of costs to minimise: walking the rows in order,
    each still-efficient row removes every other row that is not strictly lower in some coordinate.
    A dominated row goes; of exact duplicates the first stays."""
    costs = np.asarray(costs, dtype=np.float64)
    efficient = np.ones(costs.shape[0], dtype=bool)
    for i, c in enumerate(costs):
        if efficient[i]:
            efficient[efficient] = np.any(costs[efficient] < c, axis=1)
            efficient[i] = True
    return efficient


def draw_branches(
    rng: np.random.Generator, active: Sequence[Sequence[int]], p: Sequence[np.ndarray], residual: Sequence[bool]
) -> Branches:
    """One multi-branch architecture: each active op on with its probability p[cell][op]; a non-residual
    cell draws again until one is on."""
    out: Branches = []
    for c, ops in enumerate(active):
        if not ops:
            out.append([])
            continue
        probs = np.asarray([p[c][j] for j in ops])
        while True:
            on = rng.random(len(ops)) < probs
            if residual[c] or on.any():
                break
        out.append([j for j, keep in zip(ops, on) if keep])
    return out


def sample_candidates(
    rng: np.random.Generator,
    draw: Callable[[np.random.Generator], Branches],
    cost_of: Callable[[Branches], float],
    number: int,
    mean: float,
    drift: float,
    extra_number: int,
    extra_drift: float,
    max_draws: int,
) -> tuple[list[Branches], list[Branches], int]:
    """The released batch_sampler: draw until `number` distinct architectures have their cost in the open
    window (mean - drift, mean + drift), then until `extra_number` more distinct ones fall in the band
    (mean - drift - extra_drift, mean - drift] below it; a draw outside the current target is discarded.
    `max_draws` bounds both loops together (the released loops have no bound). Returns the in-window
    ones, the extra ones and the draws made."""
    accepted: list[Branches] = []
    seen: set[str] = set()
    draws = 0

    def fill(count: int, inside: Callable[[float], bool]) -> list[Branches]:
        nonlocal draws
        found: list[Branches] = []
        while len(found) < count and draws < max_draws:
            draws += 1
            branches = draw(rng)
            key = repr(branches)
            if key not in seen and inside(cost_of(branches)):
                seen.add(key)
                found.append(branches)
        return found

    accepted = fill(number, lambda c: mean - drift < c < mean + drift)
    extra = fill(extra_number, lambda c: mean - drift - extra_drift < c <= mean - drift)
    return accepted, extra, draws


def front_union(front: Sequence[Branches], cells: int) -> Branches:
    """prev_best: per cell, the ops any front architecture uses, in order of first use."""
    out: Branches = [[] for _ in range(cells)]
    for branches in front:
        for c, on in enumerate(branches):
            for j in on:
                if j not in out[c]:
                    out[c].append(j)
    return out
