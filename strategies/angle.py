"""ABS' angle metric and operator scoring, as pure functions (Hu et al., ECCV 2020; reference 2.1-2.3).

A child model's angle is the angle between its weight vector taken from the base weights and
the same vector taken from the current supernet weights: how far training has turned it. ABS
scores an operator (decision, choice) by the mean angle of distinct sampled children that
contain it and drops the lowest-scored operators. Nothing here knows a supernet or a strategy:
vectors come in as tensors, children as `Arch`es, randomness from the caller's generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nasframe.core.space import Arch, Choice, Decision

Operator = tuple[str, Choice]  # (decision name, choice)


@dataclass
class ChildSample:
    """Children drawn for one scoring round.

    `operators[i]` is the i-th scored operator; `children[k]` a distinct child model and
    `counted[k]` the indices of the operators whose score it enters (every scored operator it
    contains, until that operator has `samples_per_operator` children).
    """

    operators: list[Operator]
    children: list[Arch] = field(default_factory=list)
    counted: list[list[int]] = field(default_factory=list)


def sample_children(
    decisions: Sequence[Decision],
    scored: Sequence[str],
    samples_per_operator: int,
    rng: np.random.Generator,
    max_draws_per_child: int = 100,
) -> ChildSample:
    """Draw distinct children so every operator of the `scored` decisions is in up to N of them.

    For each operator in turn (decision order, then choice order), its decision is fixed to it and
    every other decision draws uniformly from its choices, until the operator has N distinct
    children or as many as exist; a child drawn before is skipped. A new child counts for every
    scored operator it contains that has fewer than N children (reference 2.2). Like the reference,
    at most `max_draws_per_child` draws are spent per child still wanted, so a nearly exhausted
    subspace cannot loop for long.
    """
    names = [d.name for d in decisions]
    position = {n: i for i, n in enumerate(names)}
    unknown = [n for n in scored if n not in position]
    if unknown:
        raise ValueError(f"sample_children: unknown decision {unknown[0]!r}")
    scored_set = set(scored)
    operators: list[Operator] = [(d.name, c) for d in decisions if d.name in scored_set for c in d.choices]
    index = {(position[n], c): i for i, (n, c) in enumerate(operators)}
    scored_pos = [position[n] for n in names if n in scored_set]
    sizes = np.array([len(d.choices) for d in decisions], dtype=np.int64)
    log_size = float(np.log(sizes).sum())
    count = np.zeros(len(operators), dtype=np.int64)
    out = ChildSample(operators)
    seen: set[tuple[Choice, ...]] = set()
    for i, (name, choice) in enumerate(operators):
        p = position[name]
        # children containing this operator: the product of every other decision's choices
        log_available = log_size - math.log(sizes[p])
        wanted = math.log(samples_per_operator)
        target = samples_per_operator if log_available > wanted else round(math.exp(log_available))
        draws = max_draws_per_child * max(target - int(count[i]), 0)
        while count[i] < target and draws > 0:
            draws -= 1
            picks = rng.integers(0, sizes)
            values = [d.choices[int(k)] for d, k in zip(decisions, picks)]
            values[p] = choice
            key = tuple(values)
            if key in seen:
                continue
            seen.add(key)
            members = [j for j in (index[(q, values[q])] for q in scored_pos) if count[j] < samples_per_operator]
            count[members] += 1
            out.children.append(Arch(list(zip(names, values))))
            out.counted.append(members)
    return out


def recount(
    decisions: Sequence[Decision], scored: Sequence[str], children: Sequence[Arch], samples_per_operator: int
) -> ChildSample:
    """The ChildSample that `sample_children` returned for these children, rebuilt from the children
    alone (the counting depends only on their order), so a strategy need not keep it between asking
    for the children's angles and receiving them."""
    scored_set = set(scored)
    operators: list[Operator] = [(d.name, c) for d in decisions if d.name in scored_set for c in d.choices]
    index = {op: i for i, op in enumerate(operators)}
    scored_names = [d.name for d in decisions if d.name in scored_set]
    count = np.zeros(len(operators), dtype=np.int64)
    out = ChildSample(operators)
    for child in children:
        members = [j for j in (index[(n, child[n])] for n in scored_names) if count[j] < samples_per_operator]
        count[members] += 1
        out.children.append(child)
        out.counted.append(members)
    return out


def operator_scores(sample: ChildSample, angles: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per operator: the mean angle of the children counted for it, and how many there were.

    An operator with no child (impossible unless draws ran out) scores NaN and is never dropped.
    """
    values = np.asarray(angles, dtype=np.float64)
    if values.shape != (len(sample.children),):
        raise ValueError(
            f"operator_scores: {values.shape[0] if values.ndim else 0} angles for {len(sample.children)} children"
        )
    total = np.zeros(len(sample.operators))
    count = np.zeros(len(sample.operators), dtype=np.int64)
    for value, members in zip(values, sample.counted):
        total[members] += value
        count[members] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return means, count


def _ranked(operators: Sequence[Operator], scores: np.ndarray) -> list[int]:
    """Operator indices from the lowest score up; ties keep the given order; NaN never ranks."""
    return sorted((i for i in range(len(operators)) if not np.isnan(scores[i])), key=lambda i: (scores[i], i))


def drop_per_decision(
    operators: Sequence[Operator], scores: np.ndarray, decisions: Sequence[Decision], min_choices: int
) -> list[Operator]:
    """The lowest-scored operator of every decision that still has more than `min_choices` choices
    (DARTS / FairNAS schedule), in decision order."""
    size = {d.name: len(d.choices) for d in decisions}
    lowest: dict[str, Operator] = {}
    for i in _ranked(operators, scores):
        name = operators[i][0]
        if size[name] > min_choices and name not in lowest:
            lowest[name] = operators[i]
    return [lowest[d.name] for d in decisions if d.name in lowest]


def drop_global(
    operators: Sequence[Operator], scores: np.ndarray, decisions: Sequence[Decision], k: int
) -> list[Operator]:
    """The `k` lowest-scored operators overall, skipping any operator whose decision would be left
    empty, i.e. one ranked last in its decision (SPOS / ProxylessNAS schedule), lowest first."""
    left = {d.name: len(d.choices) for d in decisions}
    dropped: list[Operator] = []
    for i in _ranked(operators, scores):
        if len(dropped) >= k:
            break
        name = operators[i][0]
        if left[name] > 1:
            left[name] -= 1
            dropped.append(operators[i])
    return dropped
