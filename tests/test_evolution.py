"""Regularized evolution: the checks RE1-RE3 and RE5 of NAS-Bench-201's R-EA, failures, infeasible
results, de-duplication, exact resume, and a search on nb201/tabular through the CLI."""

from __future__ import annotations

import json
import random
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from nasframe.common.errors import ConfigError, SpaceExhausted
from nasframe.common.options import build_options
from nasframe.core.evaluator import Cost, Result
from nasframe.core.registry import evaluators, spaces
from nasframe.core.space import Arch
from nasframe.spaces.nb201 import EDGE_NAMES, OPS, NB201Space
from nasframe.strategies.evolution import EvolutionOptions, Member, RegularizedEvolution


def make(space, seed: int = 0, **options) -> RegularizedEvolution:
    return RegularizedEvolution(space, build_options(EvolutionOptions, options, "strategy"), seed=seed)


@pytest.fixture(scope="module")
def nb201() -> NB201Space:
    return spaces.get("nb201")()


@pytest.fixture(scope="module")
def tabular(nb201):
    return evaluators.get("tabular")(nb201)


def ok(acc: float) -> Result:
    return Result(metrics={"val_acc": acc}, cost=Cost(0.0, 1.0))


def changed(parent: Arch, child: Arch) -> list[int]:
    """Positions of the decisions where `child` differs from `parent`."""
    return [k for k, (a, b) in enumerate(zip(parent.values_tuple(), child.values_tuple())) if a != b]


# ---- decision groups ----------------------------------------------------------------------------
def test_decision_groups_default_is_one_per_decision_and_nb201_groups_by_target_node(nb201, core_toy):
    toy = spaces.get("core_toy")()
    assert toy.decision_groups() == [["d0"], ["d1"], ["d2"], ["d3"]]
    assert nb201.decision_groups() == [["1<-0"], ["2<-0", "2<-1"], ["3<-0", "3<-1", "3<-2"]]


# ---- RE1: mutation ------------------------------------------------------------------------------
def test_re1_node_first_mutation_frequencies_on_nb201(nb201):
    """1e5 mutations of random parents: edge frequencies 1/3, 1/6, 1/6, 1/9, 1/9, 1/9 (+-0.005), exactly
    one edge changes, never to the parent's op, and the 4 other ops are equally likely."""
    s = make(nb201, seed=1)
    parent_rng = np.random.default_rng(7)
    parents = [nb201.sample(parent_rng) for _ in range(1000)]
    n = 100_000
    counts = np.zeros((6, 5, 5))  # edge, parent's op, child's op
    n_changed = np.zeros(n, dtype=int)
    for i in range(n):
        parent = parents[i % len(parents)]
        child = s.mutate(parent)
        diff = changed(parent, child)
        n_changed[i] = len(diff)
        if len(diff) == 1:
            e = diff[0]
            counts[e, OPS.index(parent[EDGE_NAMES[e]]), OPS.index(child[EDGE_NAMES[e]])] += 1
    assert (n_changed == 1).all()
    assert np.trace(counts, axis1=1, axis2=2).sum() == 0  # never the parent's op
    freq = counts.sum(axis=(1, 2)) / n
    assert np.abs(freq - [1 / 3, 1 / 6, 1 / 6, 1 / 9, 1 / 9, 1 / 9]).max() < 0.005, freq
    # each (edge, parent op) row: the 4 alternatives equally likely
    chi2, dof = 0.0, 0
    for e in range(6):
        for cur in range(5):
            row = np.delete(counts[e, cur], cur)
            assert np.abs(row / row.sum() - 0.25).max() < 0.05, (e, cur, row)
            chi2 += stats.chisquare(row).statistic
            dof += 3
    assert stats.chi2.sf(chi2, dof) > 1e-3, (chi2, dof)


def test_uniform_mutation_mode_makes_every_edge_equally_likely(nb201):
    s = make(nb201, seed=2, mutation="uniform")
    parent = nb201.sample(np.random.default_rng(0))
    n = 20_000
    edges = np.bincount([changed(parent, s.mutate(parent))[0] for _ in range(n)], minlength=6)
    assert np.abs(edges / n - 1 / 6).max() < 0.015, edges


def test_mutation_skips_decisions_that_cannot_change_on_a_restricted_space(nb201):
    """Node 1's only edge fixed: nodes 2 and 3 share the mutations (1/4 and 1/6 per edge); an edge with
    two allowed ops always flips to the other one."""
    small = nb201.restrict({"1<-0": ["none"], "3<-2": ["none", "skip_connect"]})
    s = make(small, seed=3)
    parent = small.sample(np.random.default_rng(1))
    n = 20_000
    children = [s.mutate(parent) for _ in range(n)]
    edges = np.bincount([changed(parent, c)[0] for c in children], minlength=6)
    assert edges[0] == 0
    assert np.abs(edges / n - [0, 1 / 4, 1 / 4, 1 / 6, 1 / 6, 1 / 6]).max() < 0.015, edges
    other = "skip_connect" if parent["3<-2"] == "none" else "none"
    assert {c["3<-2"] for c in children if c["3<-2"] != parent["3<-2"]} == {other}
    assert all(small.validate(c) == c for c in children[:200])


def test_a_space_where_nothing_can_mutate_is_a_clear_error(nb201):
    fixed = nb201.restrict({name: ["nor_conv_3x3"] for name in EDGE_NAMES})
    with pytest.raises(ConfigError, match="nothing can mutate"):
        make(fixed)


def test_decision_groups_must_partition_the_decisions():
    class Partial(NB201Space):
        def decision_groups(self) -> list[list[str]]:
            return [["1<-0"], ["2<-0", "2<-1"]]

    class Unknown(NB201Space):
        def decision_groups(self) -> list[list[str]]:
            return [["1<-0", "9<-9"]]

    with pytest.raises(ConfigError, match="every decision exactly once"):
        make(Partial())
    with pytest.raises(ConfigError, match="unknown decision '9<-9'"):
        make(Unknown())
    make(Partial(), mutation="uniform")  # uniform mode does not read the groups


# ---- RE2: aging, and failed members --------------------------------------------------------------
def test_re2_population_is_always_the_last_p_evaluated_and_the_best_dies_when_oldest(nb201):
    s = make(nb201, seed=4)
    told: list[Arch] = []
    for i in range(60):
        (arch,) = s.ask()
        if len(told) >= 10:  # after the fill every proposal is a one-edge mutation of a member
            assert any(len(changed(m, arch)) == 1 for m in told[-10:])
        # the first model is the best ever seen; every 7th evaluation fails
        result = ok(100.0) if i == 0 else Result.failed("scripted") if i % 7 == 3 else ok(50.0 + (i * 37 % 11))
        s.tell(arch, result)
        told.append(arch)
        assert [m.arch for m in s.population] == told[-10:]
        assert [m.born for m in s.population] == list(range(max(0, i - 9), i + 1))
        assert (s.population[0].fitness == 100.0) == (i <= 9)  # the best is removed once it is the oldest
    assert s.evaluated == 60 and s.failed == len([i for i in range(60) if i % 7 == 3])
    assert all(m.fitness is None for m, i in zip(s.population, range(50, 60)) if i % 7 == 3)
    # RE5: the final architecture is the history's best, long gone from the population
    assert s.final() == told[0] and s.best_accuracy == 100.0
    assert told[0] not in [m.arch for m in s.population]
    assert s.metrics()["population_best"] < 100.0


# ---- RE3: tournament -----------------------------------------------------------------------------
def test_re3_tournament_with_replacement_picks_the_population_best_with_probability_0271(nb201):
    s = make(nb201, seed=5)
    fits = [61.0, 55.0, 70.0, 52.0, 90.0, 64.0, 58.0, 67.0, 50.0, 73.0]  # best at position 4
    s.population = deque(Member(nb201.arch_at(i), f, i) for i, f in enumerate(fits))
    n = 200_000
    contains_best, parents = 0, np.zeros(10, dtype=int)
    for _ in range(n):
        sample = s.tournament()
        parent = s.pick_parent(sample)
        contains_best += 4 in sample
        parents[parent] += 1
    assert abs(contains_best / n - (1 - 0.9**3)) < 0.005
    assert parents[4] == contains_best  # the parent is the best exactly when the best is drawn
    # a member of rank r (1 = worst) is the parent with probability (r/P)^S - ((r-1)/P)^S
    rank = np.argsort(np.argsort(fits)) + 1
    expected = (rank / 10) ** 3 - ((rank - 1) / 10) ** 3
    assert np.abs(parents / n - expected).max() < 0.005, (parents / n, expected)


def test_tournament_ties_go_to_the_first_in_the_sample_and_failures_rank_last(nb201):
    s = make(nb201)
    s.population = deque(Member(nb201.arch_at(i), f, i) for i, f in enumerate([50.0, 70.0, 70.0, None, None]))
    assert s.pick_parent([2, 0, 1]) == 2
    assert s.pick_parent([1, 2]) == 1
    assert s.pick_parent([3, 4, 0]) == 0  # any success beats a failure
    assert s.pick_parent([4, 3]) == 4  # all failed: the first drawn
    s.population = deque([Member(nb201.arch_at(0), 80.0, 0)])
    assert s.tournament() == [0, 0, 0]  # with replacement: P = 1 still gives a sample of S = 3


# ---- infeasible results ----------------------------------------------------------------------------
def test_infeasible_results_enter_neither_population_nor_history(nb201):
    s = make(nb201, seed=6)
    # the Result type does not list "infeasible" yet; at run time the strategy checks the status string
    infeasible = Result(status="infeasible", metrics={"val_acc": 99.9})  # type: ignore[arg-type]
    (arch,) = s.ask()
    s.tell(arch, infeasible)
    assert len(s.population) == 0 and s.evaluated == 0 and s.failed == 0 and s.final() is None
    for i in range(10):
        (arch,) = s.ask()
        s.tell(arch, ok(60.0 + i))
    before = list(s.population)
    for _ in range(5):
        (child,) = s.ask()
        s.tell(child, infeasible)
    assert list(s.population) == before and s.evaluated == 10 and s.infeasible == 6
    assert s.best_accuracy == 69.0 and s.final() == before[-1].arch
    (child,) = s.ask()  # asked again: a new child of the unchanged population
    assert any(len(changed(m.arch, child)) == 1 for m in before)


# ---- de-duplication ---------------------------------------------------------------------------------
def drive(s: RegularizedEvolution, evaluator, steps: int, start: int = 0) -> list[Arch]:
    """ask/tell with the table; every 9th result failed and every 13th infeasible, to exercise both."""
    seen = []
    for i in range(start, start + steps):
        (arch,) = s.ask()
        if i % 13 == 5:
            result = Result(status="infeasible")  # type: ignore[arg-type]
        elif i % 9 == 4:
            result = Result.failed("scripted", Cost(0.0, 12.0))
        else:
            result = evaluator.evaluate(arch)
        s.tell(arch, result)
        seen.append(arch)
    return seen


def test_duplicates_are_evaluated_by_default_and_never_with_dedup(nb201, tabular):
    plain = drive(make(nb201, seed=7), tabular, 300)
    assert len({a.key() for a in plain}) < 300  # the reference re-evaluates repeats
    unique = drive(make(nb201, seed=7, dedup=True), tabular, 300)
    assert len({a.key() for a in unique}) == 300


def test_dedup_raises_space_exhausted_once_every_architecture_was_proposed(core_toy):
    toy = spaces.get("core_toy")(build_options(spaces.get("core_toy").Options, {"decisions": 2, "choices": 2}, "space"))
    s = make(toy, dedup=True, population=2, max_tries=200)
    for _ in range(4):
        (arch,) = s.ask()
        s.tell(arch, ok(1.0))
    with pytest.raises(SpaceExhausted, match="dedup"):
        s.ask()


# ---- resume ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dedup", [False, True])
def test_resume_after_a_state_round_trip_continues_identically(nb201, tabular, tmp_path, dedup):
    straight = make(nb201, seed=8, dedup=dedup)
    drive(straight, tabular, 37)
    path = tmp_path / "state.pt"
    torch.save(straight.state_dict(), path)
    resumed = make(nb201, seed=8, dedup=dedup)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    assert list(resumed.population) == list(straight.population)
    assert drive(resumed, tabular, 80, start=37) == drive(straight, tabular, 80, start=37)
    assert list(resumed.population) == list(straight.population)
    assert (resumed.final(), resumed.evaluated, resumed.failed, resumed.infeasible) == (
        straight.final(),
        straight.evaluated,
        straight.failed,
        straight.infeasible,
    )


def test_a_checkpoint_of_another_space_is_refused(nb201, core_toy):
    state = make(nb201).state_dict()
    with pytest.raises(ConfigError, match="other decisions"):
        make(spaces.get("core_toy")()).load_state_dict(state)


def test_global_random_generators_are_left_alone(nb201, tabular):
    np_state, py_state, torch_state = np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state()
    drive(make(nb201, seed=9), tabular, 50)
    assert (np.random.get_state()[1] == np_state).all() and random.getstate() == py_state
    assert torch.equal(torch.get_rng_state(), torch_state)


# ---- end to end: the CLI on nb201/tabular ---------------------------------------------------------------
def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_cli_search_on_nb201_tabular_returns_the_history_best_and_resumes_identically(cli, tmp_path):
    base = ["--strategy", "evolution", "--space", "nb201", "--evaluator", "tabular", "--quiet", "--seed", "3"]
    code, out, err = cli("run", *base, "--budget", "120", "--out", tmp_path / "full")
    assert code == 0, err
    lines = history(tmp_path / "full")
    assert len(lines) == 120 and all(h["status"] == "ok" for h in lines)
    archs = [Arch(h["arch"]) for h in lines]
    for i in range(10, 120):  # every child is a one-edge mutation of one of the previous 10 (the population)
        assert any(len(changed(p, archs[i])) == 1 for p in archs[i - 10 : i]), i
    # RE5: the final architecture is the first maximum of the search accuracy over the history
    accs = [h["metrics"]["val_acc"] for h in lines]
    best = json.loads((tmp_path / "full" / "best.json").read_text())
    assert best["final"]["arch"] == lines[int(np.argmax(accs))]["arch"]
    assert best["final"]["metrics"]["val_acc"] == max(accs) == lines[-1]["best_val_acc"]
    assert 80.0 < best["final"]["held_out"]["test_acc"] <= 94.38  # a 200-epoch CIFAR-10 test accuracy
    assert lines[-1]["strategy"]["population_best"] <= max(accs)
    # stop at 50, resume to 120: the same history and result
    assert cli("run", *base, "--budget", "50", "--out", tmp_path / "part")[0] == 0
    code, out, err = cli("resume", tmp_path / "part", "--budget", "120", "--quiet")
    assert code == 0, err
    strip = [{k: v for k, v in h.items() if k not in ("time", "cost")} for h in history(tmp_path / "part")]
    assert strip == [{k: v for k, v in h.items() if k not in ("time", "cost")} for h in lines]
    assert json.loads((tmp_path / "part" / "best.json").read_text())["final"] == best["final"]


def test_cli_bad_options_are_one_line_errors(cli, tmp_path):
    code, out, err = cli(
        "run",
        "--strategy",
        "evolution",
        "--space",
        "nb201",
        "--evaluator",
        "tabular",
        "--set",
        "strategy.population=0",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert code == 2 and err.count("\n") == 1 and "strategy.population" in err
    code, out, err = cli(
        "run",
        "--strategy",
        "evolution",
        "--space",
        "nb201",
        "--evaluator",
        "tabular",
        "--set",
        "strategy.mutation=random",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert code == 2 and err.count("\n") == 1 and "grouped" in err
