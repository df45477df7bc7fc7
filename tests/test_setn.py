"""SETN (reference algorithms-2.md section 8): the evaluator's top-K (checks SE2, SE3), uniform paths
for the weights (SE5), the cosine schedule (SE6), weights and alphas trained by their own optimizers
only (SE4), exactly K candidates scored and the answer their argmax (SE7), end-to-end runs on the
nb201 and darts supernets, and exact resume after kill -9."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

import nasframe.strategies.alphas as alphas_module
from nasframe.common.options import build_options
from nasframe.core.capabilities import AlphaOptimizer
from nasframe.core.evaluator import Cost, Result
from nasframe.core.paths import UniformPaths
from nasframe.core.registry import evaluators, spaces
from nasframe.core.requests import ScoreShared, TrainMixed
from nasframe.core.space import Arch
from nasframe.data import DataOptions, DataSource
from nasframe.strategies.alphas import ArchitectureWeights
from nasframe.strategies.setn import Setn
from nasframe.testing import InMemoryRun, ScriptedSharedWeights
from nasframe.training.steps import cosine_lr


def nb201():
    return spaces.get("nb201")()


def weights_with_rows(row: list[float]) -> tuple[ArchitectureWeights, object]:
    space = nb201()
    w = ArchitectureWeights(space.decisions, 0.0, np.random.default_rng(0), "setn")
    w.alphas = {n: torch.tensor(row) for n in w.alphas}
    return w, space


def test_uniform_alphas_rank_every_cell_equal_and_keep_enumeration_order():
    """SE2: 15,625 cells, each log P = 6 ln(1/5); the stable sort keeps the enumeration order."""
    w, space = weights_with_rows([0.0] * 5)
    top = w.top_k(20_000)
    assert len(top) == 15_625 == space.size()
    assert all(lp == pytest.approx(6 * math.log(1 / 5), abs=1e-5) for _, lp in top)
    assert space.to_string(top[0][0]) == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert space.to_string(top[1][0]) == "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"


def test_top_k_with_a_preferred_op_matches_the_reference_ranks():
    """SE3: rows [0, 1, 2, 0, 0]: all nor_conv_1x1 first at 6 (2 - ln(3 + e + e^2)); ranks 2..7 switch one
    edge to skip_connect (one nat less); the first of them is the reference's (float32 sums round
    so, not enumeration order)."""
    w, space = weights_with_rows([0.0, 1.0, 2.0, 0.0, 0.0])
    top = w.top_k(7)
    best = 6 * (2 - math.log(3 + math.e + math.e**2))
    assert best == pytest.approx(-3.43903, abs=1e-5)
    assert top[0][1] == pytest.approx(best, abs=1e-5)
    assert [a for a in top[0][0].values()] == ["nor_conv_1x1"] * 6
    for arch, lp in top[1:]:
        assert lp == pytest.approx(best - 1, abs=1e-5)
        assert Counter(arch.values()) == {"nor_conv_1x1": 5, "skip_connect": 1}
    assert len({a.key() for a, _ in top[1:]}) == 6
    assert space.to_string(top[1][0]).startswith("|nor_conv_1x1~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|")


def test_best_first_search_equals_the_full_sort(monkeypatch):
    """The large-space path (no enumeration) gives the same top 100 as sorting all 15,625 cells."""
    space = nb201()
    w = ArchitectureWeights(space.decisions, 0.7, np.random.default_rng(3), "setn")
    sorted_all = w.top_k(100)
    monkeypatch.setattr(alphas_module, "ENUMERATE_LIMIT", 0)
    best_first = w.top_k(100)
    assert [a.key() for a, _ in best_first] == [a.key() for a, _ in sorted_all]
    assert [lp for _, lp in best_first] == [lp for _, lp in sorted_all]
    # log P agrees with the per-architecture sum, and the list is in descending order
    assert all(lp == w.log_prob(a) for a, lp in sorted_all[:10])
    assert all(x[1] >= y[1] for x, y in zip(sorted_all, sorted_all[1:]))


def test_top_k_works_on_the_darts_space_without_enumerating_it():
    space = spaces.get("darts")()
    w = ArchitectureWeights(space.decisions, 1e-3, np.random.default_rng(0), "setn")
    top = w.top_k(100)
    assert len(top) == 100 and len({a.key() for a, _ in top}) == 100
    assert top[0][0] == w.most_likely()
    assert all(x[1] >= y[1] for x, y in zip(top, top[1:]))


def test_weight_paths_are_uniform_per_edge_with_all_none_cells():
    """SE5: 1e5 draws of the sampler SETN's weight steps use: every op 0.2 +- 0.005 on every edge."""
    space = nb201()
    sample = UniformPaths.over(space).bind(space, None)
    rng = np.random.default_rng(0)
    draws = [sample(rng) for _ in range(100_000)]
    for decision in space.decisions:
        freq = Counter(a[decision.name] for a in draws)
        assert all(abs(freq[op] / len(draws) - 0.2) < 0.005 for op in decision.choices)
    all_none = sum(all(v == "none" for v in a.values()) for a in draws)
    assert 0 < all_none < 20  # (1/5)^6 x 1e5 = 6.4 expected


@pytest.mark.parametrize(
    ("T", "expected"), [(250, {0: 0.025, 125: 0.013, 249: 0.001001}), (100, {0: 0.025, 50: 0.013, 99: 0.001006})]
)
def test_cosine_schedule_at_each_epoch_start_equals_the_reference(T, expected):
    """SE6: the supernet evaluator's per-step cosine, at the first step of epoch e, is SETN's per-epoch
    lr(e) = 0.001 + 0.024 (1 + cos(pi e / T)) / 2."""
    steps_per_epoch = 7
    for epoch, lr in expected.items():
        assert cosine_lr(epoch * steps_per_epoch, T * steps_per_epoch, 0.025, 0.001) == pytest.approx(lr, abs=5e-7)


def tiny_supernet(space_name: str = "nb201"):
    space_options = {"nb201": {"C": 4, "N": 1}, "darts": {"supernet_C": 4, "supernet_layers": 2}}[space_name]
    space_cls = spaces.get(space_name)
    space = space_cls(build_options(space_cls.Options, space_options, "space"))
    ev_cls = evaluators.get("supernet")
    options = build_options(ev_cls.Options, {"batch_size": 16, "nesterov": True, "weight_decay": 5e-4}, "evaluator")
    data = DataSource(DataOptions(name="digits", limit=96), seed=0)
    return space, ev_cls(space, options, data=data, device="cpu")


@pytest.mark.parametrize("frozen", ["weights", "alphas"])
def test_single_path_weight_steps_and_alpha_steps_touch_only_their_own(frozen):
    """SE4: with the weights' lr 0 only the alphas move; with Adam's lr 0 only the weights, and only
    the ops of the paths drawn."""
    space, ev = tiny_supernet()
    if frozen == "weights":
        ev.options = build_options(type(ev.options), {"batch_size": 16, "lr": 0.0, "lr_min": 0.0}, "evaluator")
    torch.manual_seed(0)
    ev._build()
    before = {k: v.detach().clone() for k, v in ev.supernet.named_parameters()}
    w = ArchitectureWeights(space.decisions, 1e-3, np.random.default_rng(0), "setn")
    rng = np.random.default_rng(1)
    drawn: list[Arch] = []

    def next_path() -> Arch:
        drawn.append(space.sample(rng))
        return drawn[-1]

    opt = AlphaOptimizer(lr=0.0 if frozen == "alphas" else 0.01)
    report = ev.train_mixed(2, w.request_state(), 1, opt, next_path)
    after = dict(ev.supernet.named_parameters())
    moved = {k for k, v in before.items() if not torch.equal(v, after[k])}
    alphas_moved = any(not torch.equal(report.state["alphas"][n], w.alphas[n]) for n in w.alphas)
    if frozen == "weights":
        assert not moved and alphas_moved
    else:
        assert moved and not alphas_moved
        on_paths = set().union(*(ev.supernet.path_parameter_names(a) for a in drawn))
        assert moved <= on_paths


def test_second_order_refuses_nesterov_in_one_line():
    from nasframe.common.errors import NotSupported

    space, ev = tiny_supernet()
    w = ArchitectureWeights(space.decisions, 1e-3, np.random.default_rng(0), "setn")
    with pytest.raises(NotSupported, match="nesterov"):
        ev.train_mixed(1, w.request_state(), 2, AlphaOptimizer(), None)


def scripted_score(arch: Arch) -> float:
    """A score that prefers conv ops, so the argmax among candidates is known."""
    return float(
        sum(v == "nor_conv_3x3" for v in arch.values()) + 0.5 * sum(v == "nor_conv_1x1" for v in arch.values())
    )


def test_scores_exactly_k_candidates_and_answers_their_first_argmax():
    """SE7: after the epochs, exactly K candidates (the K most probable, in order) are scored with the
    shared weights; the answer is the first best score and always among them."""
    space = nb201()
    strategy = Setn(space, build_options(Setn.Options, {"epochs": 2, "candidates": 9}, "strategy"), seed=0)
    run = InMemoryRun(
        strategy,
        ScriptedSharedWeights(space),
        judge=lambda arch, i: Result(metrics={"val_acc": scripted_score(arch)}, cost=Cost(0.0, 0.0)),
    )
    asked: list = []
    while not strategy.done:
        items = strategy.ask()
        asked.extend(items)
        for item in items:
            if isinstance(item, ScoreShared):
                run._evaluate(item)
            else:
                run._work(item)
    kinds = [type(x).__name__ for x in asked]
    assert kinds == ["TrainMixed", "ScoreShared"] * 2 + ["ScoreShared"] * 9
    assert all(isinstance(x.paths, UniformPaths) and x.order == 1 for x in asked if isinstance(x, TrainMixed))
    candidates = [x.arch for x in asked[4:]]
    expected = strategy.weights.top_k(9)
    assert [a.key() for a in candidates] == [a.key() for a, _ in expected]
    scores = [scripted_score(a) for a in candidates]
    assert strategy.final() == candidates[int(np.argmax(scores))]
    assert strategy.ask() == []


def test_a_rejected_or_failed_candidate_is_skipped():
    space = nb201()
    strategy = Setn(space, build_options(Setn.Options, {"epochs": 1, "candidates": 3}, "strategy"), seed=0)
    strategy.epoch = strategy.scored = 1  # training done
    first = strategy.ask()[0].arch
    strategy.tell(first, Result.infeasible("too big"))
    second = strategy.ask()[0].arch
    strategy.tell(second, Result(metrics={"val_acc": 10.0}))
    third = strategy.ask()[0].arch
    strategy.tell(third, Result.failed("diverged"))
    assert strategy.done and strategy.final() == second


SPACE_SETS = {
    "nb201": ["--set", "space.C=4", "--set", "space.N=1"],
    "darts": ["--set", "space.supernet_C=4", "--set", "space.supernet_layers=2"],
}
TINY = ["--set", "evaluator.batch_size=32", "--set", "data.limit=240", "--set", "run.tensorboard=false"]


@pytest.mark.slow
@pytest.mark.parametrize("space", sorted(SPACE_SETS))
def test_setn_runs_end_to_end(cli, tmp_path, space):
    out = tmp_path / space
    argv = ["run", "--strategy", "setn", "--space", space, "--evaluator", "supernet", "--quiet", "--out", out]
    code, _, err = cli(*argv, "--set", "strategy.epochs=2", "--set", "strategy.candidates=4", *TINY, *SPACE_SETS[space])
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    work = [json.loads(x) for x in (out / "work.jsonl").read_text().splitlines()]
    assert [w["kind"] for w in work] == ["train_mixed"] * 2 and len(lines) == 2 + 4
    best = json.loads((out / "best.json").read_text())
    assert best["stopped_because"] == "strategy_done" and best["final"]["source"] == "strategy"
    scores = [ln["metrics"]["val_acc"] for ln in lines[2:]]
    assert best["final"]["arch"] == lines[2 + int(np.argmax(scores))]["arch"]
    assert best["final"]["final_evaluation"] is None  # the answer was already scored
    if space == "nb201":
        assert "cifar10_test_200" in best["final"]["export"]["benchmark"]


@pytest.mark.slow
def test_kill_9_during_training_or_selection_resumes_to_the_identical_result(tmp_path):
    from conftest import kill_then_resume, run_outcome, run_to_the_end

    argv = [
        "--strategy", "setn", "--space", "nb201", "--evaluator", "supernet", "--quiet", "--seed", "4",
        "--set", "strategy.epochs=3", "--set", "strategy.candidates=12", "--set", "run.work_chunk_epochs=0.25",
        *TINY, *SPACE_SETS["nb201"],
    ]  # fmt: skip
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume(argv, tmp_path / "in-training", after_lines=5, log="work.jsonl", before_lines=3)
    kill_then_resume(argv, tmp_path / "in-selection", after_lines=5, log="history.jsonl")
    full = run_outcome(tmp_path / "full")
    assert run_outcome(tmp_path / "in-training") == full
    assert run_outcome(tmp_path / "in-selection") == full
