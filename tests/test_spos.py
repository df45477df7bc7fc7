"""SPOS: phase 1 as a TrainShared request, the released evolution (S2), BN recalibration (S3),
constraints, and exact resume after kill -9 in either phase (reference section 3, checks S1-S3)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options
from nasframe.common.plugins import load_plugin
from nasframe.core.capabilities import BNRecalibration
from nasframe.core.evaluator import Cost, Result
from nasframe.core.paths import BinnedPaths, UniformPaths
from nasframe.core.registry import evaluators, spaces
from nasframe.core.requests import ScoreShared, TrainShared
from nasframe.data import DataOptions, DataSource
from nasframe.strategies.spos import REFERENCE_BINS, Spos
from nasframe.testing import InMemoryRun

FAKES = str(Path(__file__).resolve().parent / "plugins" / "abs_fakes.py")
TOY = str(Path(__file__).resolve().parent / "plugins" / "supernet_toy.py")


@pytest.fixture(scope="module")
def fakes():
    load_plugin(FAKES)
    import nasframe_plugin_abs_fakes as mod

    return mod


def make_space(name: str, **options):
    cls = spaces.get(name)
    return cls(build_options(cls.Options, options, "space"))


def make_spos(space, seed=0, **options) -> Spos:
    small = {
        "supernet_epochs": 1,
        "population": 8,
        "parents": 3,
        "mutations": 3,
        "crossovers": 2,
        "generations": 3,
        "bn_batches": 2,
    }
    return Spos(space, build_options(Spos.Options, {**small, **options}, "strategy"), seed=seed)


def scripted(arch, index) -> Result:
    """A deterministic accuracy: the sum of the choices' indices (op2 beats op0)."""
    return Result(metrics={"val_acc": float(sum(int(str(c)[2:]) for c in arch.values()))}, cost=Cost(0.0, 0.0))


class Recorder:
    """A judge that records the strategy's phase at the moment each architecture is scored."""

    def __init__(self, strategy):
        self.strategy, self.log = strategy, []

    def __call__(self, arch, index):
        self.log.append((self.strategy.generation, self.strategy.origin, arch))
        return scripted(arch, index)


# ---- phase 1 ------------------------------------------------------------------------------------
def test_phase_one_is_one_training_request_over_the_strategys_space(fakes):
    space = make_space("abs_toy", decisions=4, choices=3).restrict({"d0": ["op0", "op2"]})
    s = make_spos(space, supernet_epochs=7)
    first = s.ask()
    assert len(first) == 1 and isinstance(first[0], TrainShared) and first[0].epochs == 7
    assert first[0].paths == UniformPaths((("d0", ("op0", "op2")),))  # ABS hands SPOS a restricted space
    assert s.phase == "spos: supernet training"
    binned = make_spos(space, path_sampling="flops_bins").sampler()
    assert isinstance(binned, BinnedPaths) and binned.edges == REFERENCE_BINS and binned.max_draws == 500
    assert len(binned.edges) == 8 and binned.edges[0] == 290e6 and binned.edges[-1] == 360e6  # 7 bins of 10M


def test_scoring_requests_carry_the_reference_recalibration(fakes):
    space = make_space("abs_toy", decisions=4, choices=3)
    s = make_spos(space, supernet_epochs=0, bn_batches=200, bn_batch_size=128, bn_momentum=0.1)
    batch = s.ask()
    assert len(batch) == 8 and all(isinstance(r, ScoreShared) for r in batch)
    assert batch[0].recalibration == BNRecalibration(200, 0.1, 128)
    assert len({r.arch for r in batch}) == 8  # distinct


# ---- S2: the evolution ----------------------------------------------------------------------------
def test_s2_generations_are_mutants_crossovers_and_refill_each_scored_once(fakes):
    space = make_space("abs_toy", decisions=6, choices=4)
    s = make_spos(space, population=10, parents=4, mutations=4, crossovers=3, generations=4, mutation_prob=0.3)
    ev = fakes.FakeWeightSharing(space)
    rec = Recorder(s)
    run = InMemoryRun(s, ev, judge=rec)
    while run.round() is not None:
        pass
    assert s.done and len(run.work) == 1  # one supernet training request
    kinds = Counter((g, k) for g, k, _ in rec.log)
    assert kinds[(0, "random")] == 10
    for g in range(1, 5):
        assert kinds[(g, "mutation")] == 4 and kinds[(g, "crossover")] == 3 and kinds[(g, "refill")] == 3
    assert len(rec.log) == 10 + 4 * 10 == s.planned_evaluations()  # at most population x (1 + generations)
    keys = [a.key() for _, _, a in rec.log]
    assert len(set(keys)) == len(keys)  # every architecture scored at most once
    # the final answer is the lowest-error architecture scored
    best = max(rec.log, key=lambda r: scripted(r[2], 0).accuracy)[2]
    assert s.final() == best and scripted(s.final(), 0).accuracy == max(scripted(a, 0).accuracy for *_, a in rec.log)


def test_top_list_merges_across_generations_and_parents_come_from_it(fakes):
    space = make_space("abs_toy", decisions=6, choices=4)
    s = make_spos(space, population=10, parents=3, mutations=5, crossovers=0, generations=3, mutation_prob=0.2)
    ev = fakes.FakeWeightSharing(space)
    tops, parents_seen = [], []

    def judge(arch, index):
        if s.origin == "mutation":
            # a mutant of p = 0.2 differs from its parent in about 1.2 of 6 genes: it is close to some parent
            parents_seen.append(min(sum(arch[n] != p[n] for n in arch) for p, _ in s.top))
        return scripted(arch, index)

    run = InMemoryRun(s, ev, judge=judge)
    while run.round() is not None:
        tops.append([e for _, e in s.top])
    errors_by_gen = [sorted(e) for e in tops]
    assert all(e == sorted(e) for e in errors_by_gen) and all(len(e) <= 3 for e in errors_by_gen)
    # merged across generations: the best error never gets worse
    firsts = [e[0] for e in errors_by_gen if e]
    assert firsts == sorted(firsts, reverse=True)
    assert parents_seen and np.mean(parents_seen) < 2.5  # uniform random architectures differ in ~4.5 of 6


def test_mutation_redraws_each_gene_with_probability_m_and_crossover_mixes_uniformly(fakes):
    space = make_space("abs_toy", decisions=5, choices=4)
    s = make_spos(space, mutation_prob=0.1)
    parent = space.validate({f"d{i}": "op0" for i in range(5)})
    other = space.validate({f"d{i}": "op3" for i in range(5)})
    s.top, s.origin = [(parent, 1.0)], "mutation"
    changed = np.array([[c != "op0" for c in s._candidate().values()] for _ in range(20_000)])
    # redrawn with p = 0.1, uniformly over 4 choices (the same may come back): changed with p = 0.075
    assert np.allclose(changed.mean(axis=0), 0.075, atol=0.006)
    s.top, s.origin = [(parent, 1.0), (other, 2.0)], "crossover"
    kids = [s._candidate() for _ in range(20_000)]
    from_other = np.array([[c == "op3" for c in k.values()] for k in kids])
    # parents drawn independently: half the pairs are (p, o) or (o, p), then each gene is a coin flip
    assert np.allclose(from_other.mean(axis=0), 0.5, atol=0.015)


def test_mutation_gives_up_after_tries_factor_draws(fakes):
    """With mutation_prob 0 every mutant is its (already scored) parent: 10 x mutations draws, no mutant."""
    space = make_space("abs_toy", decisions=6, choices=4)
    s = make_spos(
        space, population=10, parents=3, mutations=4, crossovers=3, generations=1, mutation_prob=0.0, tries_factor=10
    )
    rec = Recorder(s)
    run = InMemoryRun(s, fakes.FakeWeightSharing(space), judge=rec)
    draws = []
    original = s._candidate

    def counting():
        draws.append(s.origin)
        return original()

    s._candidate = counting
    while run.round() is not None:
        pass
    kinds = Counter(k for g, k, _ in rec.log if g == 1)
    assert kinds["mutation"] == 0 and kinds["crossover"] == 3 and kinds["refill"] == 7
    assert Counter(draws)["mutation"] == 40


def test_infeasible_candidates_cost_a_try_and_are_never_proposed_again(fakes):
    space = make_space("abs_toy", decisions=4, choices=3)
    s = make_spos(space, supernet_epochs=0, population=6, parents=2, mutations=2, crossovers=2, generations=2)
    proposals = []

    def judge(arch, index):
        proposals.append(arch.key())
        if arch["d0"] == "op2":
            return Result.infeasible("MACs over the cap")
        return scripted(arch, index)

    run = InMemoryRun(s, fakes.FakeWeightSharing(space), judge=judge)
    while run.round() is not None:
        pass
    assert len(proposals) == len(set(proposals))  # a rejected architecture is not asked for twice
    assert s.infeasible and all(s.scored[k] < math.inf for k in s.scored)
    assert all('"d0","op2"' not in k for k in s.scored)


def test_options_are_checked():
    space = make_space("nb201")
    with pytest.raises(ConfigError, match=r"strategy.parents \(11\) cannot exceed strategy.population \(10\)"):
        make_spos(space, population=10, parents=11)
    with pytest.raises(ConfigError, match=r"mutations \+ strategy.crossovers \(12\) cannot exceed"):
        make_spos(space, population=10, mutations=6, crossovers=6)


def test_state_round_trip_mid_evolution_continues_identically(fakes, tmp_path):
    space = make_space("abs_toy", decisions=5, choices=4)

    def fresh():
        return make_spos(space, seed=3, generations=4)

    straight = fresh()
    run = InMemoryRun(straight, fakes.FakeWeightSharing(space), judge=scripted)
    for _ in range(4):
        run.round()
    torch.save(straight.state_dict(), tmp_path / "s.pt")
    rest = [run.round() for _ in range(6)]
    resumed = fresh()
    resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    again = InMemoryRun(resumed, fakes.FakeWeightSharing(space), judge=scripted)
    assert [again.round() for _ in range(6)] == rest
    assert resumed.final() == straight.final() and resumed.top == straight.top


# ---- S3: BatchNorm recalibration before scoring --------------------------------------------------
def test_s3_scoring_resets_bn_and_reestimates_from_train_batches_in_train_mode(digits):
    """Score a path twice with different stale statistics: recalibration makes both identical, and
    equal to an exponential average (momentum 0.1) from reset statistics over the same batches."""
    load_plugin(TOY)
    space = spaces.get("supernet_toy")()
    ev_cls = evaluators.get("supernet")
    ev = ev_cls(space, build_options(ev_cls.Options, {"batch_size": 16, "steps": 3}, "evaluator"), data=digits)
    arch = space.validate({"layer0": "conv3x3", "layer1": "conv5x5", "layer2": "identity"})
    torch.manual_seed(0)
    ev.evaluate(arch)  # trains the path: its BN statistics are now stale
    recal = BNRecalibration(batches=5, momentum=0.1, batch_size=16)
    bn = ev.supernet.layers[0]["conv3x3"][1]
    off_path = ev.supernet.layers[0]["conv5x5"][1]
    off_before = off_path.running_mean.clone()
    torch.manual_seed(1)
    first = ev.score_path(arch, recal)
    mean_first = bn.running_mean.clone()
    bn.running_mean.add_(3.0)  # poison the statistics: recalibration must not depend on them
    torch.manual_seed(1)
    second = ev.score_path(arch, recal)
    assert first.ok and first.metrics == second.metrics and torch.equal(bn.running_mean, mean_first)
    assert torch.equal(off_path.running_mean, off_before)  # BatchNorms off the path keep their statistics
    assert first.cost.epochs == 0.0  # nothing was trained
    # the same statistics by hand: reset, then 5 train-mode batches with momentum 0.1
    batches, transform = ev._data()
    torch.manual_seed(1)
    it = batches.train(16, None)
    expected = torch.zeros_like(bn.running_mean)
    probe = {}
    handle = bn.register_forward_hook(lambda m, i, o: probe.__setitem__("x", i[0]))
    ev.supernet.train()
    with torch.no_grad():
        for _ in range(5):
            x, _ = next(it)
            ev.supernet(transform.train(x, None))
            expected = 0.9 * expected + 0.1 * probe["x"].mean((0, 2, 3))
    handle.remove()
    assert torch.allclose(mean_first, expected, atol=1e-6)


def test_training_paths_leaves_unsampled_ops_without_any_update(digits):
    load_plugin(TOY)
    space = spaces.get("supernet_toy")()
    ev_cls = evaluators.get("supernet")
    ev = ev_cls(space, build_options(ev_cls.Options, {"batch_size": 16, "weight_decay": 0.1}, "evaluator"), data=digits)
    only = space.restrict({"layer1": ["conv3x3"]})
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    ev._build()
    before = {k: v.clone() for k, v in ev.supernet.state_dict().items() if k.startswith("layers.1.conv5x5")}
    report = ev.train_paths(round(0.5 * ev.steps_per_epoch()), lambda: only.sample(rng))
    assert report.cost.epochs == pytest.approx(0.5, abs=0.05) and math.isfinite(report.metrics["train_loss"])
    after = ev.supernet.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # no weight decay, no momentum
    assert not any(p in ev.optimizer.state for n, p in ev.supernet.named_parameters() if "layers.1.conv5x5" in n)


# ---- through the runner ---------------------------------------------------------------------------
TINY_SPOS = [
    "--set",
    "strategy.supernet_epochs=1",
    "--set",
    "strategy.population=4",
    "--set",
    "strategy.parents=2",
    "--set",
    "strategy.mutations=1",
    "--set",
    "strategy.crossovers=1",
    "--set",
    "strategy.generations=1",
    "--set",
    "strategy.bn_batches=2",
    "--set",
    "strategy.bn_batch_size=32",
    "--set",
    "evaluator.batch_size=32",
    "--set",
    "data.limit=240",
    "--set",
    "run.tensorboard=false",
]
SPACES = {
    "darts": [
        "--set",
        "space.supernet_C=4",
        "--set",
        "space.supernet_layers=2",
        "--set",
        "space.C=4",
        "--set",
        "space.layers=2",
    ],
    "mobilenet": [
        "--set",
        "space.small_input=true",
        "--set",
        "space.width_mult=0.25",
        "--set",
        "space.layout=fairnas",
        "--set",
        "space.allow_zero=false",
    ],
    "shufflenet": [
        "--set",
        "space.small_input=true",
        "--set",
        "space.widths=[8,16,24,32]",
        "--set",
        "space.stem_width=4",
        "--set",
        "space.last_width=32",
        "--set",
        "space.stage_repeats=[1,1,2,1]",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("space", sorted(SPACES))
def test_spos_runs_end_to_end_on_every_supernet_space(cli, tmp_path, space):
    out = tmp_path / space
    code, _, err = cli(
        "run",
        "--strategy",
        "spos",
        "--space",
        space,
        "--evaluator",
        "supernet",
        "--data",
        "digits",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out,
        "--budget",
        "8",
        *TINY_SPOS,
        *SPACES[space],
    )
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    work = [json.loads(x) for x in (out / "work.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and all(ln["cost"]["epochs"] == 0.0 for ln in lines)  # scoring trains nothing
    assert [w["kind"] for w in work] == ["train_shared"] and work[0]["epochs"] == 1.0
    best = json.loads((out / "best.json").read_text())
    assert best["stopped_because"] in ("strategy_done", "max_evaluations")
    top = max((ln for ln in lines if ln["status"] == "ok"), key=lambda ln: ln["metrics"]["val_acc"])
    assert best["final"]["arch"] == top["arch"] and best["final"]["source"] == "strategy"
    assert best["work"]["epochs"] == 1.0 and best["cost"]["epochs"] == 1.0


def test_abs_with_spos_as_its_base(cli, tmp_path):
    code, _, err = cli(
        "run",
        "--plugin",
        FAKES,
        "--strategy",
        "abs",
        "--space",
        "abs_toy",
        "--evaluator",
        "abs_fake_ws",
        "--quiet",
        "--out",
        tmp_path / "r",
        "--budget",
        "12",
        "--set",
        "space.decisions=4",
        "--set",
        "space.choices=4",
        "--set",
        "strategy.base=spos",
        "--set",
        "strategy.target_size=20",
        "--set",
        "strategy.samples_per_operator=4",
        "--set",
        "strategy.warmup_epochs=1",
        "--set",
        "strategy.epochs_between_steps=1",
        "--set",
        "strategy.schedule=per_decision",
        "--set",
        "strategy.base_options={supernet_epochs: 2, population: 4, parents: 2, mutations: 1, "
        "crossovers: 1, generations: 2, bn_batches: 0}",
        "--set",
        "run.tensorboard=false",
    )
    assert code == 0, err
    out = tmp_path / "r"
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    work = [json.loads(x) for x in (out / "work.jsonl").read_text().splitlines()]
    steps = [ln for ln in lines if "abs_dropped" in ln["strategy"]]
    remaining = steps[-1]["strategy"]["abs_remaining"]
    spos_lines = lines[len(steps) :]
    assert spos_lines and all(ln["phase"].startswith("abs base: spos") for ln in spos_lines)
    assert all(ln["arch"][k] in remaining[k] for ln in spos_lines for k in remaining)  # inside the shrunk space
    assert any(w["phase"] == "spos: supernet training" and w["epochs"] == 1.0 for w in work)  # SPOS' phase 1
    best = json.loads((out / "best.json").read_text())
    assert all(best["final"]["arch"][k] in v for k, v in remaining.items())


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["supernet training", "evolution"])
def test_kill_9_in_either_phase_resumes_to_the_identical_result(tmp_path, phase):
    import subprocess
    import sys

    from conftest import kill_then_resume

    argv = [
        "--strategy",
        "spos",
        "--space",
        "darts",
        "--evaluator",
        "supernet",
        "--data",
        "digits",
        "--device",
        "cpu",
        "--quiet",
        "--seed",
        "5",
        "--budget",
        "10",
        *SPACES["darts"],
        *TINY_SPOS,
        "--set",
        "strategy.supernet_epochs=4",
        "--set",
        "strategy.generations=2",
        "--set",
        "run.checkpoint_every=1",
        "--set",
        "run.work_chunk_epochs=0.5",
    ]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "nasframe.app.cli", "run", *argv, "--out", str(tmp_path / "full")],
        check=True,
        capture_output=True,
        env=env,
    )
    if phase == "supernet training":
        kill_then_resume(argv, tmp_path / "killed", after_lines=2, log="work.jsonl", before_lines=1)
    else:
        kill_then_resume(argv, tmp_path / "killed", after_lines=3)

    def read(run: Path) -> tuple:
        hist = [
            {k: v for k, v in json.loads(x).items() if k not in ("time", "cost")}
            for x in (run / "history.jsonl").read_text().splitlines()
        ]
        work = [
            {k: v for k, v in json.loads(x).items() if k not in ("time", "cost")}
            for x in (run / "work.jsonl").read_text().splitlines()
        ]
        best = json.loads((run / "best.json").read_text())
        return hist, work, best["final"]["arch"], best["best_evaluated"], best["evaluations"]

    assert read(tmp_path / "full") == read(tmp_path / "killed")


def test_no_scored_architecture_breaks_a_tight_mac_cap(fakes, tmp_path, cli):
    """S2's FLOPs cap is the run's constraint: nothing over it is ever scored, and rejections happen."""
    from nasframe.core.costs import ArchCosts

    shuffle = SPACES["shufflenet"]
    space = make_space(
        "shufflenet", small_input=True, widths=[8, 16, 24, 32], stem_width=4, last_width=32, stage_repeats=[1, 1, 2, 1]
    )
    costs = ArchCosts(space, DataSource(DataOptions(name="digits"), seed=0).spec)
    rng = np.random.default_rng(0)
    cap = int(np.median([costs.macs(space.sample(rng)) for _ in range(40)]))  # about half the space is over
    out = tmp_path / "capped"
    code, _, err = cli(
        "run",
        "--plugin",
        FAKES,
        "--strategy",
        "spos",
        "--space",
        "shufflenet",
        "--evaluator",
        "abs_fake_ws",
        "--quiet",
        "--out",
        out,
        "--budget",
        "30",
        *shuffle,
        "--set",
        "strategy.supernet_epochs=1",
        "--set",
        "strategy.population=10",
        "--set",
        "strategy.parents=3",
        "--set",
        "strategy.mutations=4",
        "--set",
        "strategy.crossovers=3",
        "--set",
        "strategy.generations=2",
        "--set",
        f"constraints.max_macs={cap}",
        "--set",
        "run.tensorboard=false",
    )
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert len(lines) == 30
    assert all(costs.macs(space.validate(ln["arch"])) <= cap for ln in lines)
    best = json.loads((out / "best.json").read_text())
    assert best["infeasible"] > 5 and best["final"]["macs"] <= cap


def test_failed_scores_never_become_parents(fakes):
    """A generation whose every score failed has no parents: mutation and crossover are skipped and
    the refill completes it (failed members never enter the top list)."""
    space = make_space("abs_toy", decisions=5, choices=4)
    s = make_spos(space, supernet_epochs=0, population=6, parents=2, mutations=2, crossovers=2, generations=1)
    rec = Recorder(s)

    def judge(arch, index):
        rec(arch, index)
        return Result.failed("scripted divergence")

    run = InMemoryRun(s, fakes.FakeWeightSharing(space), judge=judge)
    while run.round() is not None:
        pass
    assert s.top == [] and s.final() is None
    assert Counter(k for g, k, _ in rec.log if g == 1) == {"refill": 6}


def test_the_final_evaluation_is_a_score_like_the_candidates(cli, tmp_path):
    out = tmp_path / "r"
    code, _, err = cli(
        "run",
        "--plugin",
        FAKES,
        "--strategy",
        "spos",
        "--space",
        "abs_toy",
        "--evaluator",
        "abs_fake_ws",
        "--quiet",
        "--out",
        out,
        "--budget",
        "6",
        "--set",
        "strategy.supernet_epochs=1",
        "--set",
        "strategy.population=4",
        "--set",
        "strategy.parents=2",
        "--set",
        "strategy.mutations=1",
        "--set",
        "strategy.crossovers=1",
        "--set",
        "strategy.generations=1",
        "--set",
        "run.final_evaluation=always",
        "--set",
        "run.tensorboard=false",
    )
    assert code == 0, err
    final = json.loads((out / "best.json").read_text())["final"]
    assert final["final_evaluation"]["request"] == "score_shared" and final["final_evaluation"]["status"] == "ok"


def test_a_space_without_a_supernet_is_refused_before_anything_runs(cli, tmp_path, core_toy):
    code, _, err = cli(
        "run", "--plugin", core_toy, "--strategy", "spos", "--space", "core_toy", "--evaluator", "supernet",
        "--quiet", "--out", tmp_path / "r",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "space 'core_toy' has no weight-sharing supernet; spaces with one: " in err
    assert "darts, mobilenet, nb201, neas, nse, shufflenet" in err  # after any supernet test plugin loaded earlier
    assert not (tmp_path / "r").exists()
