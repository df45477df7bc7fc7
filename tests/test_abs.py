"""ABS: the angle metric, operator scoring, drop schedules, base-strategy hand-over and resume.

Unit tests run against `tests/plugins/abs_fakes.py`: a fake weight-sharing evaluator whose
per-operator vectors the test controls, on toy decisions and on the real DARTS and MobileNet
decision sets (reference 7, A1-A5).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nasframe.common.errors import CapabilityError, ConfigError, RegistryError
from nasframe.common.options import build_options
from nasframe.common.plugins import load_plugin
from nasframe.core.angles import angle
from nasframe.core.capabilities import TabularBenchmark
from nasframe.core.evaluator import Result
from nasframe.core.registry import register_strategy, spaces
from nasframe.core.space import Arch, Decision
from nasframe.strategies.abs_shrinking import AbsShrinking, resolve_schedule
from nasframe.strategies.angle import (
    ChildSample,
    drop_global,
    drop_per_decision,
    operator_scores,
    sample_children,
)
from nasframe.strategies.random_search import RandomSearch
from nasframe.testing import InMemoryRun

FAKES = str(Path(__file__).resolve().parent / "plugins" / "abs_fakes.py")


@pytest.fixture(scope="module")
def fakes():
    load_plugin(FAKES)
    import nasframe_plugin_abs_fakes as mod

    return mod


def make_space(name: str, **options):
    cls = spaces.get(name)
    return cls(build_options(cls.Options, options, "space"))


def make_abs(space, seed=0, **options) -> AbsShrinking:
    defaults = {"samples_per_operator": 8, "warmup_epochs": 2, "epochs_between_steps": 1}
    return AbsShrinking(space, build_options(AbsShrinking.Options, {**defaults, **options}, "strategy"), seed=seed)


def drive(strategy, evaluator, asks: int) -> list[Arch]:
    """Execute requests and evaluations like the runner does, until `asks` rounds evaluated something
    (one shrinking step each while shrinking); returns every evaluated proposal in order."""
    return InMemoryRun(strategy, evaluator, chunk_epochs=1e6).evaluate_rounds(asks)  # one call per training request


def shrink_fully(strategy, evaluator, limit: int = 50) -> None:
    for _ in range(limit):
        if not strategy.shrinking:
            return
        drive(strategy, evaluator, 1)
    raise AssertionError("shrinking did not end")


# ---- A1: the angle --------------------------------------------------------------------------------
def test_angle_of_a_vector_with_itself_is_exactly_zero():
    v = torch.randn(100_000) * 3
    assert angle(v, v).item() == 0.0
    assert angle(v.float(), v.clone().float()).item() == 0.0
    assert angle(torch.zeros(5), torch.zeros(5)).item() == 0.0  # nothing to compare: no NaN


def test_angle_known_values():
    assert angle([1.0, 0.0], [1.0, 1.0]).item() == pytest.approx(math.pi / 4, abs=1e-12)  # 0.785398
    assert angle([1.0, 0.0], [0.0, 2.0]).item() == pytest.approx(math.pi / 2, abs=1e-12)
    assert angle([1.0, 2.0], [-2.0, -4.0]).item() == pytest.approx(math.pi, abs=1e-12)  # cosine -1: no NaN
    assert angle([1.0, 2.0], [3.0, 6.0]).item() == pytest.approx(0.0, abs=2e-8)  # scale does not matter
    assert angle([0.0, 0.0], [1.0, 0.0]).item() == pytest.approx(math.pi / 2)  # cosine similarity's 0


def test_angle_equals_arccos_of_clamped_cosine():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        a, b = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
        b = a + torch.rand((), generator=g, dtype=torch.float64) * b  # a spread of angles
        cos = float(torch.dot(a, b) / (a.norm() * b.norm()))
        assert angle(a, b).item() == pytest.approx(math.acos(max(-1.0, min(1.0, cos))), abs=1e-9)


def test_angle_is_exactly_zero_for_identical_vectors_of_any_scale():
    g = torch.Generator().manual_seed(1)
    for scale in (1e-6, 1.0, 1e6):
        v = torch.randn(10_000, generator=g) * scale
        assert angle(v, v.clone()).item() == 0.0
    assert 0.0 < angle([1.0, 0.0], [1.0, 1e-6]).item() == pytest.approx(1e-6, rel=1e-3)  # small angles resolve


def test_angle_rejects_vectors_of_different_length():
    with pytest.raises(ValueError, match="differ in length"):
        angle([1.0, 2.0], [1.0, 2.0, 3.0])


# ---- A5: children and scores -------------------------------------------------------------------------
TOY = [Decision("a", ("x", "y", "z")), Decision("b", ("x", "y")), Decision("c", ("u", "v", "w", "t"))]


def test_children_are_distinct_contain_their_operator_and_are_capped():
    n = 5
    sample = sample_children(TOY, ["a", "b", "c"], n, np.random.default_rng(0))
    keys = [c.key() for c in sample.children]
    assert len(keys) == len(set(keys))  # every child is sampled once
    for j, (name, choice) in enumerate(sample.operators):
        containing = [k for k, child in enumerate(sample.children) if child[name] == choice]
        counted = [k for k, members in enumerate(sample.counted) if j in members]
        # an operator's children are the first N distinct children that contain it, and only those
        assert counted == containing[:n]
        assert all(sample.children[k][name] == choice for k in counted)
        assert len(counted) == n  # 24 children exist in all, at least 8 per operator: N is reachable


def test_children_stop_at_the_size_of_a_small_subspace():
    decisions = [Decision("a", ("x", "y")), Decision("b", ("x", "y"))]
    sample = sample_children(decisions, ["a", "b"], 1000, np.random.default_rng(0))
    assert sorted(c.key() for c in sample.children) == sorted(
        Arch([("a", p), ("b", q)]).key() for p in "xy" for q in "xy"
    )
    means, counts = operator_scores(sample, np.ones(4))
    assert counts.tolist() == [2, 2, 2, 2] and means.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_only_scored_decisions_have_operators():
    sample = sample_children(TOY, ["c"], 3, np.random.default_rng(1))
    assert [op for op, _ in sample.operators] == ["c"] * 4
    assert all(len(m) <= 1 for m in sample.counted)


def test_operator_score_is_the_mean_angle_of_its_counted_children():
    sample = ChildSample(
        operators=[("a", "x"), ("a", "y"), ("b", "x")],
        children=[Arch([("a", "x"), ("b", "x")]), Arch([("a", "y"), ("b", "x")]), Arch([("a", "x"), ("b", "y")])],
        counted=[[0, 2], [1, 2], [0]],
    )
    means, counts = operator_scores(sample, [0.3, 0.6, 0.1])
    assert counts.tolist() == [2, 1, 2]
    assert means == pytest.approx([0.2, 0.6, 0.45])


def test_per_decision_drops_each_decisions_lowest():
    ops = [("a", "x"), ("a", "y"), ("a", "z"), ("b", "x"), ("b", "y"), ("c", "u"), ("c", "v"), ("c", "w"), ("c", "t")]
    scores = np.array([0.5, 0.1, 0.3, 0.2, 0.9, 0.4, 0.4, 0.7, 0.8])
    assert drop_per_decision(ops, scores, TOY, min_choices=2) == [("a", "y"), ("c", "u")]  # b is at 2; tie -> first
    assert drop_per_decision(ops, scores, TOY, min_choices=1) == [("a", "y"), ("b", "x"), ("c", "u")]


def test_global_drop_takes_k_lowest_but_keeps_one_per_decision():
    decisions = [Decision("a", ("x", "y")), Decision("b", ("x", "y", "z")), Decision("c", ("x", "y"))]
    ops = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("b", "z"), ("c", "x"), ("c", "y")]
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.5, 0.4])
    # a's two ops rank 1st and 2nd: a/y is skipped (a must keep one), the next lowest are taken instead
    assert drop_global(ops, scores, decisions, 3) == [("a", "x"), ("b", "x"), ("c", "y")]
    dropped = drop_global(ops, scores, decisions, 10)  # more than possible: every decision keeps one
    assert dropped == [("a", "x"), ("b", "x"), ("c", "y"), ("b", "z")]
    kept = {n: [c for m, c in ops if m == n and (m, c) not in dropped] for n in "abc"}
    assert kept == {"a": ["y"], "b": ["y"], "c": ["x"]}  # the best of each


def test_nan_scores_are_never_dropped():
    decisions = [Decision("a", ("x", "y", "z"))]
    ops, scores = [("a", "x"), ("a", "y"), ("a", "z")], np.array([np.nan, 0.3, 0.4])
    assert drop_global(ops, scores, decisions, 2) == [("a", "y"), ("a", "z")]  # x (no child) stays
    assert drop_per_decision(ops, scores, decisions, 1) == [("a", "y")]


# ---- schedules on the real spaces --------------------------------------------------------------------------
def test_auto_schedule_follows_the_choices():
    assert resolve_schedule("auto", make_space("darts").decisions) == "per_decision"
    assert resolve_schedule("auto", make_space("mobilenet").decisions) == "global"  # zero on 15 of 21 layers
    fairnas = make_space("mobilenet", layout="fairnas", allow_zero=False)
    assert resolve_schedule("auto", fairnas.decisions) == "per_decision"
    assert resolve_schedule("global", fairnas.decisions) == "global"


def test_darts_space_shrinks_in_6_steps_to_2_ops_per_edge(fakes):
    """A4 on our DARTS space (28 edge decisions: normal and reduce cells are separate)."""
    space = make_space("darts")
    ev = fakes.FakeWeightSharing(space)
    abs_ = make_abs(space, samples_per_operator=4, reset_base=False)
    assert abs_.schedule == "per_decision"
    shrink_fully(abs_, ev)
    assert abs_.step == 6 and [r["dropped_count"] for r in abs_.steps] == [28] * 6
    assert all(len(d.choices) == 2 for d in abs_.current.decisions)
    assert abs_.current.size() == 2**28 and abs_.steps[-1]["log10_size"] == pytest.approx(28 * math.log10(2))
    assert [e for _, e in ev.trained] == [2, 1, 1, 1, 1, 1]  # warm-up, then between steps
    assert ev.resets == 1  # base saved once at the start, never replaced
    for arch in drive(abs_, ev, 3):  # the base strategy now proposes inside the shrunk space
        assert abs_.current.validate(arch) == arch


def test_fairnas_space_shrinks_in_4_steps(fakes):
    """A4: 6^19 shrinks per layer to 2^19 = 524,288 <= 1e6 (3^19 is not)."""
    space = make_space("mobilenet", layout="fairnas", allow_zero=False)
    ev = fakes.FakeWeightSharing(space)
    abs_ = make_abs(space, samples_per_operator=3)
    shrink_fully(abs_, ev)
    assert abs_.step == 4 and abs_.current.size() == 524_288
    assert ev.resets == 2  # 3 steps x 19 = 57 > 50: the base is replaced once, after step 3
    assert [r["base_reset"] for r in abs_.steps] == [False, False, True, False]


def test_spos_space_global_steps_drop_7_and_keep_one_per_layer(fakes):
    """A3: 6^6 * 7^15 initially; each step drops exactly K = 7, every layer keeps at least one."""
    space = make_space("mobilenet")
    assert space.size() == 221_502_229_807_900_608 == 6**6 * 7**15
    ev = fakes.FakeWeightSharing(space)
    abs_ = make_abs(space, samples_per_operator=2)
    assert abs_.schedule == "global"
    sizes = [space.size()]
    drive(abs_, ev, 1)
    assert abs_.steps[0]["dropped_count"] == 7
    assert sum(len(d.choices) for d in abs_.current.decisions) == 6 * 6 + 7 * 15 - 7
    sizes.append(abs_.current.size())
    while abs_.shrinking:
        before = abs_.step
        drive(abs_, ev, 1)
        if abs_.step > before:
            sizes.append(abs_.current.size())
    counts = [r["dropped_count"] for r in abs_.steps]
    assert all(c == 7 for c in counts)
    assert all(len(d.choices) >= 1 for d in abs_.current.decisions)
    assert sizes[-1] <= 1_000_000 < sizes[-2]  # checked before each step: stop at the first size under 1e6
    assert abs_.steps[7]["base_reset"] and sum(r["base_reset"] for r in abs_.steps) == 1  # 8 x 7 = 56 > 50


def test_frozen_operator_is_dropped_first(fakes):
    """An operator whose weights never move keeps angle 0 on its own part: the lowest score."""
    space = make_space("abs_toy", decisions=4, choices=3)
    for schedule, spread in (("global", False), ("per_decision", True)):
        options = {"frozen": ["d2=op2"], "dim": 64, "spread": spread}
        ev = fakes.FakeWeightSharing(space, build_options(fakes.FakeWSOptions, options, "evaluator"))
        # 27 children contain each operator: score every operator on all of them
        abs_ = make_abs(space, schedule=schedule, drop_per_step=1, samples_per_operator=27, target_size=1)
        drive(abs_, ev, 1)
        dropped = abs_.steps[0]["dropped"]
        if schedule == "global":
            assert dropped == {"d2": ["op2"]}  # all other operators move alike: the frozen one is lowest of all
        else:
            assert dropped["d2"] == ["op2"] and len(dropped) == 4  # op2 would otherwise move fastest in d2
        scores = dict(abs_.steps[0]["scores"]["d2"])
        assert scores["op2"] < min(scores["op0"], scores["op1"])


def test_base_weights_saved_after_base_epochs_and_replaced_once(fakes):
    space = make_space("abs_toy", decisions=3, choices=4)
    ev = fakes.FakeWeightSharing(space)
    abs_ = make_abs(space, base_after_epochs=3, reset_base_after=2, schedule="global", drop_per_step=2, target_size=1)
    drive(abs_, ev, 1)
    assert ev.trained[0][1] == 3 and ev.resets == 1  # trained, then saved as the base, then warm-up
    drive(abs_, ev, 1)  # 4 dropped > 2
    assert ev.resets == 2 and abs_.base_reset
    drive(abs_, ev, 2)
    assert ev.resets == 2


def test_max_steps_and_final_epochs(fakes):
    space = make_space("abs_toy", decisions=3, choices=4)
    ev = fakes.FakeWeightSharing(space)
    abs_ = make_abs(space, max_steps=2, final_epochs=7, target_size=1)
    drive(abs_, ev, 3)
    assert abs_.step == 2 and not abs_.shrinking and ev.trained[-1][1] == 7
    assert ev.trained[-1][0] == pytest.approx(abs_.current.log10_size())  # trained on the shrunk space


# ---- the base strategy -----------------------------------------------------------------------------------
def test_base_strategy_searches_the_shrunk_space(fakes):
    space = make_space("abs_toy", decisions=3, choices=4)
    ev = fakes.FakeWeightSharing(space)
    abs_ = make_abs(
        space, base="mdenas", base_options={"epochs": 5}, schedule="per_decision", min_choices=2, target_size=1
    )
    shrink_fully(abs_, ev)
    assert abs_.step == 2 and abs_.base_strategy.space is abs_.current
    proposals = drive(abs_, ev, 10)  # the ask that ended shrinking already proposed one
    assert len(proposals) == 4 and abs_.done  # mdenas' own budget of 5 epochs
    assert all(abs_.current.validate(a) == a for a in proposals)
    assert abs_.base_strategy.epoch == 5  # the base was told every result
    final = abs_.final()
    assert final == abs_.base_strategy.final() and abs_.current.validate(final) == final
    weights = abs_.final_weights()  # aligned with the unshrunk space: 0 for dropped choices
    base_w = abs_.base_strategy.final_weights()
    for d in space.decisions:
        kept = abs_.current.decision(d.name).choices
        assert len(weights[d.name]) == 4 and sum(weights[d.name]) == pytest.approx(1.0)
        assert [weights[d.name][d.index(c)] for c in kept] == base_w[d.name]
        assert all(weights[d.name][i] == 0.0 for i, c in enumerate(d.choices) if c not in kept)


def test_without_base_weights_final_weights_hold_the_angle_scores(fakes):
    space = make_space("abs_toy", decisions=2, choices=3)
    ev = fakes.FakeWeightSharing(space)
    abs_ = make_abs(space, schedule="per_decision", target_size=1)
    shrink_fully(abs_, ev)
    assert isinstance(abs_.base_strategy, RandomSearch)
    weights = abs_.final_weights()
    last = abs_.steps[-1]["scores"]
    for d in space.decisions:
        kept = abs_.current.decision(d.name).choices
        scores = dict(last[d.name])
        total = sum(scores[c] for c in kept)
        assert weights[d.name] == pytest.approx([scores[c] / total if c in kept else 0.0 for c in d.choices])


def test_metrics_report_each_step_then_the_base(fakes):
    space = make_space("abs_toy", decisions=3, choices=3)
    ev = fakes.FakeWeightSharing(space)
    abs_ = make_abs(space, base="mdenas", schedule="global", drop_per_step=2, max_steps=1, target_size=1)
    drive(abs_, ev, 1)
    m = abs_.metrics()
    assert m["abs_steps"] == 1 and m["abs_dropped_count"] == 2
    assert sum(len(v) for v in m["abs_dropped"].values()) == 2
    assert m["abs_remaining_counts"] == [len(d.choices) for d in abs_.current.decisions]
    assert sum(m["abs_remaining_counts"]) == 7
    assert m["abs_log10_size"] == pytest.approx(abs_.current.log10_size())
    assert set(m["abs_scores"]) == {"d0", "d1", "d2"} and m["abs_supernet_epochs"] == 2
    drive(abs_, ev, 1)
    m = abs_.metrics()
    assert "abs_dropped" not in m and "probabilities" in m and m["abs_steps"] == 1


# ---- checkpoints ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("base, cut", [("random", 1), ("random", 2), ("mdenas", 4)])
def test_resume_from_state_dict_is_identical(fakes, tmp_path, base, cut):
    space = make_space("abs_toy", decisions=4, choices=3, zero_on=[1, 3])

    def fresh():
        ev = fakes.FakeWeightSharing(space)
        s = make_abs(space, seed=7, base=base, target_size=20, drop_per_step=2, reset_base_after=3)
        return s, ev

    straight, ev = fresh()
    drive(straight, ev, cut)
    torch.save({"s": straight.state_dict(), "e": ev.state_dict(), "rng": torch.get_rng_state()}, tmp_path / "c.pt")
    rest = drive(straight, ev, 6)
    state = torch.load(tmp_path / "c.pt", weights_only=True)  # plain data and tensors only
    resumed, ev2 = fresh()
    ev2.load_state_dict(state["e"])
    resumed.load_state_dict(state["s"])
    torch.set_rng_state(state["rng"])
    assert drive(resumed, ev2, 6) == rest
    assert resumed.restriction() == straight.restriction() and resumed.steps == straight.steps
    assert resumed.final() == straight.final() and resumed.final_weights() == straight.final_weights()


def test_same_seed_same_shrinking(fakes):
    space = make_space("abs_toy", decisions=4, choices=3)
    runs = []
    for seed in (1, 1, 2):
        ev = fakes.FakeWeightSharing(space)
        s = make_abs(space, seed=seed, target_size=10)
        runs.append(drive(s, ev, 4))
    assert runs[0] == runs[1] and runs[0] != runs[2]


# ---- wiring and errors -------------------------------------------------------------------------------
def test_unknown_or_circular_base_is_a_config_error():
    space = make_space("abs_toy")
    with pytest.raises(RegistryError, match="unknown strategy 'mdenass'; did you mean 'mdenas'"):
        make_abs(space, base="mdenass")
    with pytest.raises(ConfigError, match="strategy.base: 'abs' is ABS itself"):
        make_abs(space, base="abs")
    with pytest.raises(
        ConfigError,
        match=r"unknown option strategy\.base_options\.dedupp; did you mean "
        r"strategy\.base_options\.dedup\?",
    ):
        make_abs(space, base_options={"dedupp": True})


@register_strategy("abs_test_tabular_only")
class _NeedsTable(RandomSearch):
    """A strategy needing a capability the fake evaluator lacks."""

    requires = (TabularBenchmark,)


def test_required_capabilities_include_the_base_strategys(fakes, core_toy):
    from nasframe.core.capabilities import AngleMetric
    from nasframe.search.components import check_capabilities

    options = build_options(AbsShrinking.Options, {"base": "abs_test_tabular_only"}, "strategy")
    assert AbsShrinking.required_capabilities(options) == (AngleMetric, TabularBenchmark)
    with pytest.raises(CapabilityError, match="needs an evaluator with angle metric; 'core_toy_eval' has none"):
        check_capabilities("abs", "core_toy_eval", AbsShrinking.required_capabilities(AbsShrinking.Options()))
    with pytest.raises(CapabilityError, match="needs an evaluator with tabular benchmark; 'abs_fake_ws' has none"):
        check_capabilities("abs", "abs_fake_ws", AbsShrinking.required_capabilities(options))


def test_failed_results_during_shrinking_are_harmless(fakes):
    space = make_space("abs_toy", decisions=3, choices=3)
    ev = fakes.FakeWeightSharing(space)
    abs_ = make_abs(space, target_size=1)
    InMemoryRun(abs_, ev, judge=lambda arch, i: Result.failed("scripted")).evaluate_rounds(3)
    assert abs_.step == 1 and not abs_.shrinking
    assert abs_.final() is None  # nothing succeeded; the runner falls back to its history
