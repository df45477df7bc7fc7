"""local_search: the one-decision neighbourhood, best and first improvement, restarts, no repeats, and
resume after kill -9 to the identical end."""

from __future__ import annotations

import numpy as np
import pytest

from nasframe.common.errors import SpaceExhausted
from nasframe.common.options import build_options
from nasframe.core.evaluator import Cost, Result
from nasframe.core.registry import spaces, strategies
from nasframe.core.space import Arch
from nasframe.testing import ToySpace


def make(space, seed=0, **options):
    cls = strategies.get("local_search")
    return cls(space, build_options(cls.Options, options, "strategy"), seed=seed)


def score(arch: Arch) -> float:
    """Toy accuracy: 10 x the sum of the choice indices (op0 < op1 < op2), so climbing means raising choices."""
    return 10.0 * sum(int(str(v)[2:]) for v in arch.values())


def ok(value: float) -> Result:
    return Result(metrics={"val_acc": value}, cost=Cost(0.0, 1.0))


def test_nb201_neighbourhood_is_the_24_cells_one_edge_away_in_seeded_random_order():
    space = spaces.get("nb201")()
    s = make(space, seed=1)
    arch = space.sample(np.random.default_rng(0))
    near = s.neighbourhood(arch)
    assert len(near) == 24 and len(set(near)) == 24  # 6 edges x 4 other ops, as in the paper
    assert all(sum(a[k] != arch[k] for k in arch) == 1 for a in near)
    assert near != make(space, seed=2).neighbourhood(arch)  # the order is drawn from the strategy's RNG
    assert sorted(a.key() for a in near) == sorted(a.key() for a in make(space, seed=2).neighbourhood(arch))


def test_neighbourhood_keeps_to_a_restricted_space():
    space = spaces.get("nb201")().restrict({"1<-0": ["none", "skip_connect"], "2<-0": ["none"]})
    arch = space.sample(np.random.default_rng(3))
    near = make(space).neighbourhood(arch)
    assert len(near) == 1 + 0 + 4 * 4  # 1<-0 has one other choice, 2<-0 none, the 4 free edges 4 each
    assert all(space.validate(a) == a for a in near)


def test_best_move_evaluates_the_whole_neighbourhood_then_moves_to_its_best():
    space = ToySpace(decisions=2, choices=3)  # 9 architectures; neighbours differ in one decision
    s = make(space, seed=0, initial=1)
    (start,) = s.ask()
    s.tell(start, ok(score(start)))
    near = s.ask()
    assert sorted(a.key() for a in near) == sorted(a.key() for a in s.neighbourhood(start))
    assert len(near) == 4
    for a in near:
        s.tell(a, ok(score(a)))
    best = max(near, key=score)
    if score(best) > score(start):
        following = s.ask()
        assert s.center == best  # moved to the best neighbour, whatever the order they came in
        assert all(sum(a[k] != best[k] for k in best) == 1 for a in following)


def test_climbs_to_the_optimum_then_restarts_and_never_repeats_until_the_space_is_used_up():
    space = ToySpace(decisions=3, choices=3)  # 27 architectures
    s = make(space, seed=0, initial=2)
    seen: list[tuple[Arch, bool]] = []  # (architecture, proposed while climbing)
    with pytest.raises(SpaceExhausted):
        for _ in range(100):
            proposed = s.ask()
            climbing = s.center is not None  # starts are proposed with no centre, neighbours around one
            for a in proposed:
                seen.append((a, climbing))
                s.tell(a, ok(score(a)))
    archs = [a for a, _ in seen]
    assert len(archs) == 27 and len({a.key() for a in archs}) == 27  # every architecture once, then exhausted
    optimum = Arch([("d0", "op2"), ("d1", "op2"), ("d2", "op2")])
    assert s.final() == optimum
    # on an additive landscape the first climb ends at the global optimum: it is found before the restart
    first_climb = next(i for i, (_, climbing) in enumerate(seen) if climbing)
    restart = next((i for i, (_, climbing) in enumerate(seen) if i > first_climb and not climbing), len(seen))
    assert archs.index(optimum) < restart < len(seen)


def test_first_move_leaves_as_soon_as_a_neighbour_improves():
    space = ToySpace(decisions=3, choices=3)
    s = make(space, seed=0, initial=1, move="first")
    (start,) = s.ask()
    s.tell(start, ok(score(start)))
    while True:
        (a,) = s.ask()  # one neighbour at a time
        assert sum(a[k] != start[k] for k in start) == 1
        s.tell(a, ok(score(a)))
        if score(a) > score(start):
            break
    assert s.center == a
    (nxt,) = s.ask()
    assert sum(nxt[k] != a[k] for k in a) == 1  # the next proposal is a neighbour of the new centre


def test_failed_starts_rank_last_and_are_not_proposed_again():
    space = ToySpace(decisions=2, choices=3)
    s = make(space, seed=2, initial=3)
    starts = s.ask()
    assert len(starts) == 3
    s.tell(starts[0], Result.failed("scripted"))
    s.tell(starts[1], Result.infeasible("over a limit"))
    s.tell(starts[2], ok(score(starts[2])))
    near = s.ask()
    assert s.center == starts[2]
    assert not {a.key() for a in near} & {a.key() for a in starts[:2]}


@pytest.mark.slow
def test_kill_9_while_climbing_resumes_to_the_identical_result(tmp_path, core_toy):
    from conftest import kill_then_resume, run_outcome, run_to_the_end

    argv = ["--plugin", core_toy, "--strategy", "local_search", "--space", "core_toy", "--evaluator", "core_toy_eval",
            "--set", "strategy.initial=3", "--budget", "16", "--seed", "3", "--quiet",
            "--set", "run.checkpoint_every=2", "--set", "run.tensorboard=false"]  # fmt: skip
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume([*argv, "--set", "evaluator.sleep=0.15"], tmp_path / "killed", after_lines=7)
    assert run_outcome(tmp_path / "killed") == run_outcome(tmp_path / "full")
