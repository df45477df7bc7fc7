"""Multi-objective search: the pymoo helpers against hand-worked numbers and brute force, the archive and its
pick rule, NSGA-II selection in evolution, and the fronts that evolution and random search return on the
NB201 table (params as the second objective) against brute-force non-dominated sets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options
from nasframe.core.costs import ArchCosts
from nasframe.core.evaluator import Cost, Result
from nasframe.core.pareto import ParetoArchive, check_objectives, crowded_order, hypervolume, non_dominated
from nasframe.core.registry import evaluators, spaces, strategies
from nasframe.core.space import Arch
from nasframe.data import DataOptions, DataSource
from nasframe.search.config import merge_config
from nasframe.search.runner import Runner
from nasframe.testing import InMemoryRun


def brute_force_front(rows: np.ndarray) -> set[int]:
    """Indices of the rows (minimised) that no other row dominates: every pair compared."""
    out = set()
    for i, a in enumerate(rows):
        if not any(np.all(b <= a) and np.any(b < a) for j, b in enumerate(rows) if j != i):
            out.add(i)
    return out


def test_non_dominated_is_the_brute_force_set():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 60):
        rows = np.round(rng.random((n, 2)) * 5) / 5  # coarse values: ties and duplicates happen
        assert set(non_dominated(rows).tolist()) == brute_force_front(rows)


def test_crowded_order_worked_by_hand():
    rows = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    # front 0: rows 1, 2, 3; row 0 is dominated (rank 1). In front 0 the extremes (rows 1, 2) have infinite
    # crowding distance, row 3 has ((1 - 0) / 1 + (1 - 0) / 1) / 2 = 1; then row 0.
    assert crowded_order(rows).tolist() == [1, 2, 3, 0]


def test_hypervolume_worked_by_hand():
    # (-acc, ms): 90 % at 10 ms and 80 % at 5 ms, reference (0, 20): 90 x 10 + 80 x 15 - 80 x 10 = 1300
    assert hypervolume(np.array([[-90.0, 10.0], [-80.0, 5.0]]), [0.0, 20.0]) == pytest.approx(1300.0)
    assert hypervolume(np.array([[-90.0, 25.0]]), [0.0, 20.0]) == 0.0  # beyond the reference: nothing


@pytest.mark.parametrize(
    "names, message",
    [
        (["latency_ms", "val_acc"], "the first objective must be val_acc"),
        (["val_acc", "flops"], "'flops' is not an objective; after val_acc use params, macs, latency_ms"),
        (["val_acc", "params", "params"], "an objective is named twice"),
    ],
)
def test_objective_lists_are_checked(names, message):
    with pytest.raises(ConfigError, match=message):
        check_objectives(names)


def test_the_archive_keeps_the_front_and_picks_the_most_accurate_then_the_cheapest():
    archive = ParetoArchive(["val_acc", "latency_ms"])
    a, b, c, d, e = (Arch([("x", i)]) for i in range(5))
    assert archive.offer(a, (80.0, 10.0))
    assert archive.offer(b, (90.0, 20.0))
    assert not archive.offer(c, (85.0, 25.0))  # dominated by b
    assert archive.offer(d, (90.0, 15.0))  # dominates b
    assert not archive.offer(a, (99.0, 1.0))  # a second result of a counts not: one entry per architecture
    assert not archive.offer(e, (math.nan, 1.0))  # a failed evaluation is never on the front
    assert [m.arch for m in archive.front()] == [d, a]
    assert archive.pick().arch == d and archive.told == 6
    restored = ParetoArchive(["val_acc", "latency_ms"])
    restored.load_state_dict(json.loads(json.dumps(archive.state_dict())))
    assert restored.front() == archive.front()
    with pytest.raises(ConfigError, match="resume it with those objectives"):
        ParetoArchive(["val_acc", "params"]).load_state_dict(archive.state_dict())


# ---- NB201 with params as the second objective ---------------------------------------------------------
def nb201_costs():
    space = spaces.get("nb201")()
    return space, ArchCosts(space, DataSource(DataOptions(), seed=0).spec)  # the run's data (digits) by default


def run_on_nb201(tmp_path, strategy: str, budget: int, **options) -> tuple[dict, list[dict]]:
    cfg = merge_config(
        {
            "strategy": {"name": strategy, "objectives": ["val_acc", "params"], **options},
            "space": "nb201",
            "evaluator": "tabular",
        },
        run={"max_evaluations": budget, "out": str(tmp_path / strategy), "progress": False, "tensorboard": False},
    )
    Runner.create(cfg, quiet=True).run()
    history = [json.loads(line) for line in (tmp_path / strategy / "history.jsonl").read_text().splitlines()]
    return json.loads((tmp_path / strategy / "best.json").read_text()), history


def front_of_history(history: list[dict], params_of) -> dict[str, tuple[float, float]]:
    """Brute force over the evaluated architectures (first result of each): key -> (val_acc, params)."""
    first: dict[str, tuple[float, float]] = {}
    for rec in history:
        key = json.dumps(rec["arch"], sort_keys=True)
        if rec["status"] == "ok" and key not in first:
            first[key] = (rec["metrics"]["val_acc"], float(params_of(rec["arch"])))
    keys = list(first)
    rows = np.array([[-first[k][0], first[k][1]] for k in keys])
    return {keys[i]: first[keys[i]] for i in brute_force_front(rows)}


def test_multi_objective_evolution_returns_the_brute_force_front_of_what_it_evaluated(tmp_path):
    space, costs = nb201_costs()
    best, history = run_on_nb201(tmp_path, "evolution", 300)
    expected = front_of_history(history, lambda a: costs.params(space.validate(a)))
    got = {json.dumps(m["arch"], sort_keys=True): (m["val_acc"], m["params"]) for m in best["pareto"]}
    assert got.keys() == expected.keys() and len(got) >= 3
    assert all(got[k] == pytest.approx(expected[k]) for k in got)
    assert best["objectives"] == ["val_acc", "params"]
    top = max(expected.values(), key=lambda v: (v[0], -v[1]))
    final = best["final"]
    assert final["arch"] == best["pareto"][0]["arch"] and final["source"] == "strategy"
    assert (final["metrics"]["val_acc"], final["params"]) == pytest.approx(top)
    for member in best["pareto"]:  # the counts the front reports are the networks' own
        from nasframe.core.costs import count_network

        assert member["params"] == count_network(space, space.validate(member["arch"]), costs.spec, False)[0]
        assert history[member["index"]]["arch"] == member["arch"]


@pytest.mark.slow
def test_random_search_over_the_whole_table_returns_the_true_front(tmp_path):
    """With dedup and a budget of the whole space, random search's front is the front of all 15,625 cells."""
    space, costs = nb201_costs()
    best, history = run_on_nb201(tmp_path, "random", 15625, max_tries=1_000_000)  # draws until the last cells
    assert len(history) == 15625
    every = {json.dumps(rec["arch"], sort_keys=True): rec["metrics"]["val_acc"] for rec in history}
    assert len(every) == 15625
    keys = list(every)
    rows = np.array([[-every[k], costs.params(space.validate(json.loads(k)))] for k in keys])
    front = {keys[i] for i in non_dominated_by_sweep(rows)}
    assert {json.dumps(m["arch"], sort_keys=True) for m in best["pareto"]} == front


def non_dominated_by_sweep(rows: np.ndarray) -> list[int]:
    """Two objectives, brute force in O(n log n): sort by the first (then the second); a row is on the front
    when its second value is below every earlier row's, or equal to the last kept row's on equal first."""
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    kept: list[int] = []
    best = math.inf
    for i in order:
        if rows[i, 1] < best:
            kept.append(int(i))
            best = rows[i, 1]
        elif kept and rows[i, 1] == best and rows[i, 0] == rows[kept[-1], 0]:
            kept.append(int(i))  # an exact duplicate of a front point is not dominated either
    return kept


def test_evolution_picks_parents_by_rank_then_crowding():
    space, costs = nb201_costs()
    cls = strategies.get("evolution")
    evo = cls(space, build_options(cls.Options, {"objectives": ["val_acc", "params"]}, "strategy"), seed=0)
    evo.bind_costs(costs)
    archs = [space.sample(np.random.default_rng(i)) for i in range(4)]
    accs = [70.0, 60.0, 80.0, 50.0]
    for arch, acc in zip(archs, accs):
        evo.tell(arch, Result(metrics={"val_acc": acc}, cost=Cost()))
    rows = np.array([[-acc, costs.params(arch)] for arch, acc in zip(archs, accs)])
    place = {int(k): r for r, k in enumerate(crowded_order(rows))}
    for sample in ([0, 1], [1, 3], [3, 2, 0], [2, 2]):
        assert evo.pick_parent(sample) == min(sample, key=lambda i: place[i])


def test_multi_objective_evolution_resumes_to_the_same_proposals():
    space, costs = nb201_costs()
    cls, ev_cls = strategies.get("evolution"), evaluators.get("tabular")
    opts = build_options(cls.Options, {"objectives": ["val_acc", "params"], "population": 5}, "strategy")
    evaluator = ev_cls(space)

    def proposals(stop_at: int | None) -> list[Arch]:
        evo = cls(space, opts, seed=3)
        run = InMemoryRun(evo, evaluator, costs=costs)
        archs = run.evaluate_rounds(stop_at or 30)
        if stop_at is not None:
            state = json.loads(json.dumps(evo.state_dict(), default=list))
            state["rng"] = evo.state_dict()["rng"]
            again = cls(space, opts, seed=99)
            again.load_state_dict(state)
            archs += InMemoryRun(again, evaluator, costs=costs).evaluate_rounds(30 - stop_at)
            assert again.final() == whole_final[0]
        return archs

    evo = cls(space, opts, seed=3)
    whole = InMemoryRun(evo, evaluator, costs=costs).evaluate_rounds(30)
    whole_final = [evo.final()]
    assert proposals(12) == whole
