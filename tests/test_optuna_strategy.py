"""The optuna strategy: decisions as categorical parameters, duplicates answered from history or evaluated,
failures and infeasible results as FAIL / PRUNED trials, every sampler, exact resume by replay (also after
kill -9), and a one-line error when the extra is missing."""

from __future__ import annotations

import sys

import pytest

from nasframe.common.errors import ConfigError, RunDirError, SpaceExhausted
from nasframe.common.options import build_options
from nasframe.core.evaluator import Cost, Result
from nasframe.core.registry import strategies
from nasframe.testing import ToySpace

optuna = pytest.importorskip("optuna")


def make(space, seed=0, **options):
    cls = strategies.get("optuna")
    return cls(space, build_options(cls.Options, options, "strategy"), seed=seed)


def score(arch) -> float:
    return 10.0 * sum(int(str(v)[2:]) for v in arch.values())


def ok(value: float) -> Result:
    return Result(metrics={"val_acc": value}, cost=Cost(0.0, 1.0))


def drive(s, n):
    out = []
    for _ in range(n):
        (a,) = s.ask()
        s.tell(a, ok(score(a)))
        out.append(a)
    return out


def test_each_decision_is_one_categorical_parameter_with_the_same_choices():
    space = ToySpace(decisions=3, choices=4)
    s = make(space, seed=1)
    drive(s, 5)
    trial = s.study.trials[0]
    assert set(trial.distributions) == {"d0", "d1", "d2"}
    assert all(d.choices == ("op0", "op1", "op2", "op3") for d in trial.distributions.values())
    for entry, t in zip(s.log, s.study.trials):
        assert entry.arch.to_dict() == t.params  # one to one, in the space's decision order
        assert t.value == score(entry.arch)


def test_dedup_answers_repeats_from_history_and_stops_when_nothing_new_comes():
    space = ToySpace(decisions=2, choices=2)  # 4 architectures
    s = make(space, seed=0, max_repeats=200)
    evaluated = []
    with pytest.raises(SpaceExhausted, match="proposed only architectures evaluated before"):
        for _ in range(10):
            evaluated += drive(s, 1)
    assert len(evaluated) == 4 and len({a.key() for a in evaluated}) == 4  # each evaluated once
    repeats = [t for t in s.log if t.repeat]
    assert len(repeats) > 0 and len(s.study.trials) == len(s.log) > 4
    assert all(t.value == score(t.arch) for t in repeats)  # told their recorded value


def test_without_dedup_a_repeat_is_evaluated_again():
    space = ToySpace(decisions=2, choices=2)
    s = make(space, seed=0, dedup=False)
    evaluated = drive(s, 12)
    assert len({a.key() for a in evaluated}) <= 4 < len(evaluated)
    assert not any(t.repeat for t in s.log) and len(s.study.trials) == 12


def test_failed_is_told_as_fail_and_infeasible_as_pruned():
    space = ToySpace(decisions=3, choices=3)
    s = make(space, seed=2)
    (a,) = s.ask()
    s.tell(a, Result.failed("diverged"))
    (b,) = s.ask()
    s.tell(b, Result.infeasible("over the parameter limit"))
    (c,) = s.ask()
    s.tell(c, Result(metrics={"val_acc": float("nan")}))  # no usable value: a failure too
    states = [t.state for t in s.study.trials]
    TrialState = optuna.trial.TrialState
    assert states == [TrialState.FAIL, TrialState.PRUNED, TrialState.FAIL]
    assert s.final() is None


@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "gp", "qmc", "nsga2", "random"])
def test_every_sampler_proposes_valid_architectures_and_repeats_itself_with_the_seed(sampler):
    space = ToySpace(decisions=3, choices=3)
    first = drive(make(space, seed=5, sampler=sampler), 8)
    assert all(space.validate(a) == a for a in first)
    assert drive(make(space, seed=5, sampler=sampler), 8) == first


def test_categorical_only_samplers_say_so_in_the_plan():
    space = ToySpace()
    assert "random" in make(space, sampler="cmaes").plan()
    assert make(space, sampler="tpe").plan() is None


def test_sampler_options_pass_through_and_bad_ones_fail_in_one_line():
    space = ToySpace(decisions=4, choices=4)
    s = make(space, seed=0, sampler_options={"n_startup_trials": 3})
    assert s.study.sampler._n_startup_trials == 3
    with pytest.raises(ConfigError, match="sampler_options: TPESampler refused them") as err:
        make(space, sampler_options={"no_such_option": 1})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="sampler_options.gamma: TPESampler takes a Python object"):
        make(space, sampler_options={"gamma": 3})
    with pytest.raises(ConfigError, match="seed comes from run.seed"):
        make(space, sampler_options={"seed": 3})


def test_replay_rebuilds_the_sampler_exactly_and_refuses_a_log_it_cannot_reproduce():
    space = ToySpace(decisions=4, choices=3)
    a = make(space, seed=9, sampler_options={"n_startup_trials": 4})
    drive(a, 10)
    (pending,) = a.ask()  # a trial out for evaluation when the checkpoint is taken
    state = a.state_dict()
    b = make(space, seed=9, sampler_options={"n_startup_trials": 4})
    b.load_state_dict(state)
    a.tell(pending, ok(score(pending)))
    b.tell(pending, ok(score(pending)))
    assert drive(a, 10) == drive(b, 10)
    tampered = dict(state)
    tampered["log"] = [list(x) for x in state["log"]]
    tampered["log"][6][0] = [[k, "op0" if v != "op0" else "op1"] for k, v in tampered["log"][6][0]]
    with pytest.raises(RunDirError, match="trial 6 proposed another architecture"):
        make(space, seed=9, sampler_options={"n_startup_trials": 4}).load_state_dict(tampered)


def test_a_missing_optuna_is_one_line_naming_the_extra(monkeypatch, cli):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    with pytest.raises(ConfigError) as err:
        make(ToySpace())
    assert str(err.value) == "strategy 'optuna' needs the optional package optuna: pip install -e \".[optuna]\""
    code, out, errtext = cli("run", "--strategy", "optuna", "--space", "nb201", "--evaluator", "tabular", "--quiet")
    assert code == 2
    assert errtext.strip().splitlines() == ["nasframe: error: " + str(err.value)]


@pytest.mark.slow
def test_kill_9_mid_search_resumes_to_the_identical_result(tmp_path, core_toy):
    from conftest import kill_then_resume, run_outcome, run_to_the_end

    argv = ["--plugin", core_toy, "--strategy", "optuna", "--space", "core_toy", "--evaluator", "core_toy_eval",
            "--set", "strategy.sampler_options.n_startup_trials=4", "--budget", "16", "--seed", "4", "--quiet",
            "--set", "run.checkpoint_every=2", "--set", "run.tensorboard=false"]  # fmt: skip
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume([*argv, "--set", "evaluator.sleep=0.15"], tmp_path / "killed", after_lines=7)
    assert run_outcome(tmp_path / "killed") == run_outcome(tmp_path / "full")


def test_set_reaches_one_key_of_a_mapping_option_and_keeps_the_others():
    from nasframe.search.config import merge_config

    base = {"strategy": {"name": "optuna", "sampler_options": {"n_startup_trials": 5, "gamma": None}}}
    cfg = merge_config(base, sets=["strategy.sampler_options.n_startup_trials=20", "strategy.sampler_options.seed=1"])
    assert cfg["strategy"]["sampler_options"] == {"n_startup_trials": 20, "gamma": None, "seed": 1}
    assert base["strategy"]["sampler_options"]["n_startup_trials"] == 5  # the caller's mapping is not changed
    with pytest.raises(ConfigError, match="'sampler' holds 'tpe', not a mapping"):
        merge_config({"strategy": {"sampler": "tpe"}}, sets=["strategy.sampler.x=1"])
