"""NEAS' search (inferred; reference algorithms-2.md 10.4): the diversity-guided operator score worked
by hand, the drop rule, the phases, `random` over ensembles unchanged, runs on digits and exact resume
after kill -9 in the shrinking and in the training phase."""

from __future__ import annotations

import json

import pytest

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options
from nasframe.core.requests import ScoreShared, TrainShared
from nasframe.spaces.neas import NeasSpace
from nasframe.strategies.neas import Neas, ScoredEnsemble, diversity_scores, lowest_per_layer
from nasframe.testing import InMemoryRun, ScriptedSharedWeights, ToySpace

TINY_SPACE = {
    "stage_layers": [2, 1],
    "widths": [8, 16],
    "strides": [1, 2],
    "stem_width": 8,
    "last_width": 16,
    "head_width": 16,
    "small_input": True,
    "ops": ["k3e4", "k5e4", "k3e6"],
}
TINY_STRATEGY = {
    "warmup_epochs": 1,
    "epochs_between_steps": 0.5,
    "samples_per_step": 3,
    "final_epochs": 0.5,
    "score_bn_batches": 2,
    "evolution": {"population": 4, "parents": 2, "mutations": 1, "crossovers": 1, "generations": 1},
}


def tiny_space(**extra: object) -> NeasSpace:
    return NeasSpace(build_options(NeasSpace.Options, {**TINY_SPACE, **extra}, "space"))


def ensemble(acc: float, members: tuple[float, ...], *operators: tuple[str, str]) -> ScoredEnsemble:
    return ScoredEnsemble(acc, members, frozenset(operators))


#: three scored ensembles over layers L0 (a, b) and L1 (a, b, skip), K = 2
SAMPLES = [
    ensemble(60, (50, 40), ("L0", "a"), ("L1", "a"), ("L1", "b")),  # diversity 60 - 45 = 15
    ensemble(50, (50, 50), ("L0", "b"), ("L1", "a"), ("L1", "skip")),  # diversity 0
    ensemble(40, (40, 40), ("L0", "a"), ("L1", "skip")),  # diversity 0
]
CHOICES = {"L0": ("a", "b"), "L1": ("a", "b", "skip")}


def test_operator_scores_worked_by_hand():
    """Score = mean over the ensembles running the operator of acc + w x (acc - mean member acc):
    w = 1 gives values 75, 50, 40; w = 0 the plain accuracies 60, 50, 40."""
    assert diversity_scores(SAMPLES, 1.0) == {
        ("L0", "a"): (75 + 40) / 2,
        ("L1", "a"): (75 + 50) / 2,
        ("L1", "b"): 75.0,
        ("L0", "b"): 50.0,
        ("L1", "skip"): (50 + 40) / 2,
    }
    plain = diversity_scores(SAMPLES, 0.0)
    assert plain[("L0", "a")] == 50.0 == plain[("L0", "b")] and plain[("L1", "b")] == 60.0


def test_each_layer_drops_its_lowest_and_keeps_min_ops_and_unscored_choices():
    scores = diversity_scores(SAMPLES, 1.0)
    assert lowest_per_layer(scores, CHOICES, min_ops=1, per_step=1) == {"L0": ["b"], "L1": ["skip"]}
    assert lowest_per_layer(scores, CHOICES, min_ops=1, per_step=5) == {"L0": ["b"], "L1": ["skip", "a"]}
    assert lowest_per_layer(scores, CHOICES, min_ops=2, per_step=5) == {"L1": ["skip"]}
    # ties drop the earlier choice; an unscored choice is never dropped
    tied = diversity_scores(SAMPLES, 0.0)
    assert lowest_per_layer(tied, CHOICES, min_ops=1, per_step=1)["L0"] == ["a"]
    assert lowest_per_layer({("L1", "a"): 1.0}, CHOICES, min_ops=1, per_step=2) == {}


def test_the_phases_shrink_every_layer_then_evolve_on_the_shrunk_space():
    space = tiny_space()
    o = build_options(Neas.Options, {**TINY_STRATEGY, "min_ops": 2}, "strategy")
    strategy = Neas(space, o, seed=0)
    run = InMemoryRun(strategy, ScriptedSharedWeights(space))
    kinds: list[str] = []
    scored: list[ScoreShared] = []
    while not strategy.done:
        items = strategy.ask()
        if not items:
            break
        kinds.append(type(items[0]).__name__ + f" x{len(items)}")
        for item in items:
            if isinstance(item, ScoreShared):
                scored.append(item)
                run._evaluate(item)
            else:
                run._work(item)
    k = space.members
    # warm-up, 3 ensembles x (1 + K) scores, one more step (the skip layer has 4 choices), final training, SPOS
    assert kinds[:5] == ["TrainShared x1", f"ScoreShared x{3 * (1 + k)}", "TrainShared x1",
                         f"ScoreShared x{3 * (1 + k)}", "TrainShared x1"]  # fmt: skip
    assert all(kind.startswith("ScoreShared") for kind in kinds[5:])
    assert [r.epochs for r, _ in run.work] == [1.0, 0.5, 0.5]
    first = scored[: 1 + k]
    assert [space.canonical(first[0].arch)] + [space.solo(first[0].arch, m) for m in range(k)] == [
        r.arch for r in first
    ]
    assert strategy.step == 2 and all(len(c) <= 2 for c in strategy.restriction().values())
    for layer, names in space.layer_decisions().items():  # the members' decisions of a layer shrank together
        assert {strategy.current.decision(n).choices for n in names} == {tuple(strategy.restriction()[layer])}
    evolution = [r.arch for r in scored[2 * 3 * (1 + k) :]]
    assert evolution and all(strategy.current.validate(a) == a for a in evolution)
    assert strategy.final() is not None and strategy.current.validate(strategy.final()) == strategy.final()
    assert isinstance(strategy.final_evaluation(strategy.final()), ScoreShared)
    assert all(isinstance(r, TrainShared) for r, _ in run.work)
    assert strategy.planned_steps() == 2 and len(scored) == strategy.planned_evaluations() == 2 * 3 * (1 + k) + 4 * 2
    assert strategy.planned_training_epochs() == 1 + 0.5 + 0.5


def test_options_and_spaces_are_checked():
    with pytest.raises(ConfigError, match="final_epochs"):
        build_options(Neas.Options, {"evolution": {"supernet_epochs": 3}}, "strategy")
    with pytest.raises(ConfigError, match="not an ensemble space"):
        Neas(ToySpace(), seed=0)
    with pytest.raises(ConfigError, match="strategy.evolution"):
        Neas(tiny_space(), build_options(Neas.Options, {"evolution": {"population": 0}}, "strategy"), seed=0)


def test_the_cli_refuses_neas_on_another_space(cli, tmp_path):
    code, _, err = cli("run", "--strategy", "neas", "--space", "nb201", "--evaluator", "supernet", "--out", tmp_path)
    assert code == 2 and err.count("\n") == 1 and "not an ensemble space" in err


def tiny_argv(*extra: str) -> list[str]:
    sets = [f"space.{k}={json.dumps(v).replace(' ', '')}" for k, v in TINY_SPACE.items()]
    sets += ["data.limit=240", "evaluator.batch_size=32", "run.tensorboard=false"]
    return [arg for s in sets for arg in ("--set", s)] + ["--quiet", *extra]


def test_random_searches_ensembles_unchanged(cli, tmp_path):
    """The ensemble encoding is ordinary decisions: `random` with `short_train` trains and scores ensembles."""
    out = tmp_path / "random"
    argv = ["run", "--strategy", "random", "--space", "neas", "--evaluator", "short_train", "--budget", "3"]
    code, _, err = cli(*argv, *tiny_argv("--set", "evaluator.epochs=0.2", "--out", str(out)))
    assert code == 0, err
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    space = tiny_space()
    assert len(history) == 3 and all(r["status"] == "ok" for r in history)
    assert all(space.validate(r["arch"]) for r in history)
    best = json.loads((out / "best.json").read_text())
    assert best["final"]["export"]["neas_tuple"] == space.to_tuple(space.validate(best["final"]["arch"]))


EVOLUTION = "{population: 4, parents: 2, mutations: 1, crossovers: 1, generations: 1}"
STRATEGY_SETS = [
    arg for k, v in {**TINY_STRATEGY, "evolution": EVOLUTION}.items() for arg in ("--set", f"strategy.{k}={v}")
]


@pytest.mark.slow
def test_neas_runs_end_to_end_on_digits(cli, tmp_path):
    out = tmp_path / "neas"
    argv = ["run", "--strategy", "neas", "--space", "neas", "--evaluator", "supernet", "--budget", "200"]
    code, _, err = cli(*argv, *STRATEGY_SETS, *tiny_argv("--out", str(out)))
    assert code == 0, err
    work = [json.loads(x) for x in (out / "work.jsonl").read_text().splitlines()]
    assert [w["phase"] for w in work] == [
        "neas: K-path warm-up",
        "neas: training before step 2",
        "neas: training the shrunk space",
    ]
    assert all(w["metrics"]["train_loss"] > 0 for w in work)
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    steps = [r["strategy"] for r in history if "neas_dropped" in (r["strategy"] or {})]
    assert len(steps) == 2 and all(s["neas_scored_ensembles"] == 3 for s in steps)
    best = json.loads((out / "best.json").read_text())
    assert best["final"]["source"] == "strategy"


@pytest.mark.slow
@pytest.mark.parametrize("log, after, before", [("history.jsonl", 3, 6), ("work.jsonl", 3, 1)])
def test_kill_9_resumes_to_the_identical_result(tmp_path, log, after, before):
    """Killed while scoring step 1's ensembles (history), or in the K-path warm-up's pieces (work)."""
    from conftest import kill_then_resume, run_outcome, run_to_the_end

    short = [
        "--set",
        "strategy.max_steps=1",
        "--set",
        "strategy.samples_per_step=2",
        "--set",
        "strategy.evolution={population: 3, parents: 1, mutations: 1, crossovers: 1, generations: 1}",
    ]
    pieces = ["--set", "run.work_chunk_epochs=0.25", "--set", "run.checkpoint_every=1"]
    argv = ["--strategy", "neas", "--space", "neas", "--evaluator", "supernet", "--seed", "3", "--budget", "200",
            *STRATEGY_SETS, *short, *tiny_argv(*pieces)]  # fmt: skip
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume(argv, tmp_path / "killed", after_lines=after, log=log, before_lines=before)
    assert run_outcome(tmp_path / "killed") == run_outcome(tmp_path / "full")


def test_the_example_config_resolves_and_its_budget_covers_the_plan():
    from pathlib import Path

    from nasframe.search.config import load_yaml, merge_config, resolve

    path = Path(__file__).resolve().parent.parent / "configs" / "neas-digits.yaml"
    cfg = resolve(merge_config(load_yaml(path)))
    assert cfg.names == {"strategy": "neas", "space": "neas", "evaluator": "supernet"}
    strategy = cfg.strategy_class(cfg.space_class(cfg.options["space"]), cfg.options["strategy"], seed=0)
    assert strategy.planned_steps() == 2
    assert strategy.planned_evaluations() <= cfg.options["run"].max_evaluations


def test_shrinking_ends_when_every_score_of_a_step_failed():
    from nasframe.core.evaluator import Result

    space = tiny_space()
    strategy = Neas(space, build_options(Neas.Options, TINY_STRATEGY, "strategy"), seed=0)
    run = InMemoryRun(strategy, ScriptedSharedWeights(space), judge=lambda arch, i: Result.failed("scripted"))
    for _ in range(3):
        run.round()
    assert strategy.step == 1 and strategy.steps[0]["dropped"] == {} and strategy.steps[0]["scored_ensembles"] == 0
    assert strategy.finished() and strategy.current.size() == space.size()
