"""Where evaluations run (`run.executor`, `run.parallel`, `run.tell_order`, `run.evaluation_timeout_s`).

The Ray tests share one local Ray instance on the CPU (usage stats off, its temp folder inside the
test's tmp). A seeded search must give the same history under both executors; the executor may only
change timings.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ROOT, kill_then_resume, read_jsonl, run_outcome, run_to_the_end, toy_argv

FAULTY = str(ROOT / "tests" / "plugins" / "faulty_toy.py")


def faulty_argv(core_toy: str, strategy: str, budget: int, *sets: str) -> list[str]:
    argv = toy_argv(core_toy, "--plugin", FAULTY, "--budget", budget, "--set", "run.tensorboard=false")
    argv[argv.index("--strategy") + 1] = strategy
    argv[argv.index("--evaluator") + 1] = "faulty_toy_eval"
    for item in sets:
        argv += ["--set", item]
    return argv


def outcome_of(cli, argv: list[str], out: Path) -> tuple[list[dict], list[dict], dict]:
    """What the run computed; without the run identity its records carry, which differs between settings
    (run.parallel, run.tell_order) even where the numbers do not."""
    code, _, err = cli(*argv, "--out", str(out))
    assert code == 0, err
    history, work, best = run_outcome(out)
    return [{k: v for k, v in r.items() if k != "run"} for r in history], work, best


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    """The local instance `run.executor: ray` starts (usage stats off, workers at our priority), with
    four logical CPUs so four one-CPU workers share CI's two cores."""
    from nasframe.search.ray_pool import init_ray, ray_module

    ray = ray_module()
    assert init_ray(None, 4, temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


def test_ray_workers_run_at_the_drivers_priority(ray_instance):
    """Ray's default worker niceness (15) starves evaluations on a shared machine."""

    @ray_instance.remote(num_cpus=1)
    def niceness() -> int:
        return os.nice(0)

    assert ray_instance.get(niceness.remote()) == os.nice(0)


# ---- the local executor: parallel slots, timeouts -------------------------------------------------------
@pytest.mark.slow
def test_one_slot_is_the_sequential_loop(cli, core_toy, tmp_path):
    """parallel=1 (the default) with either tell order is exactly the run nasframe always made."""
    base = faulty_argv(core_toy, "evolution", 14, "strategy.population=4", "strategy.sample_size=2")
    plain = outcome_of(cli, base, tmp_path / "a")
    completion = outcome_of(cli, base + ["--set", "run.tell_order=completion"], tmp_path / "b")
    assert plain == completion


def test_asking_ahead_changes_evolution_as_documented(cli, core_toy, tmp_path):
    """With 3 slots evolution proposes before earlier results are in (the asynchronous version), so its
    history differs from the one-slot run; random search ignores results, so its history does not."""
    evo = ["strategy.population=4", "strategy.sample_size=2"]
    one = outcome_of(cli, faulty_argv(core_toy, "evolution", 14, *evo), tmp_path / "e1")
    three = outcome_of(cli, faulty_argv(core_toy, "evolution", 14, *evo, "run.parallel=3"), tmp_path / "e3")
    assert [r["arch"] for r in one[0]][:4] == [r["arch"] for r in three[0]][:4]  # the random population
    assert [r["arch"] for r in one[0]] != [r["arch"] for r in three[0]]
    r1 = outcome_of(cli, faulty_argv(core_toy, "random", 10), tmp_path / "r1")
    r3 = outcome_of(cli, faulty_argv(core_toy, "random", 10, "run.parallel=3"), tmp_path / "r3")
    assert r1 == r3


def test_evolution_counts_outstanding_proposals_toward_the_population(core_toy):
    """P=4: three proposals out and none told -> the 4th is still random; after one result (population 1,
    3 outstanding) the next is a child of that member: one decision changed."""
    from nasframe.core.evaluator import Cost, Result
    from nasframe.core.registry import spaces, strategies

    space = spaces.get("core_toy")(spaces.get("core_toy").Options(decisions=6, choices=5))
    cls = strategies.get("evolution")
    evo = cls(space, cls.Options(population=4, sample_size=2), seed=3)
    first = [evo.ask()[0] for _ in range(4)]
    assert evo.outstanding == 4 and len(evo.population) == 0
    evo.tell(first[0], Result(metrics={"val_acc": 1.0}, cost=Cost(0.0, 0.0)))
    assert evo.outstanding == 3
    child = evo.ask()[0]
    changed = [k for k in child.keys() if child[k] != first[0][k]]
    assert len(changed) == 1
    state = evo.state_dict()
    again = cls(space, cls.Options(population=4, sample_size=2), seed=0)
    again.load_state_dict(state)
    assert again.outstanding == 4


def test_a_hanging_candidate_is_stopped_and_the_search_goes_on(cli, core_toy, tmp_path):
    argv = faulty_argv(core_toy, "random", 8, "evaluator.hang_on=c1", "run.evaluation_timeout_s=0.5")
    history, _, best = outcome_of(cli, argv, tmp_path / "run")
    stopped = [r for r in history if r["status"] == "failed"]
    assert len(history) == 8 and stopped, "no architecture with d0=c1 was drawn: pick another seed"
    assert all(r["arch"]["d0"] == "c1" for r in stopped)
    assert all("evaluation stopped after" in r["reason"] and "evaluation_timeout_s=0.5" in r["reason"] for r in stopped)
    assert all(r["status"] == "ok" for r in history if r["arch"]["d0"] != "c1")
    assert best["best"] is not None


def test_time_limit_leaves_no_alarm_behind():
    import signal
    import time

    from nasframe.search.pool import EvaluationTimeout, time_limit

    handler, timer = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    with pytest.raises(EvaluationTimeout):
        with time_limit(0.05):
            time.sleep(2)
    with time_limit(1.0):
        pass
    assert signal.getsignal(signal.SIGALRM) == handler  # pytest-timeout's, when it runs with the signal method
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert (left == 0.0) if timer[0] == 0.0 else (0 < left <= timer[0])


@pytest.mark.slow
def test_kill_with_evaluations_in_flight_resumes_to_the_same_end(core_toy, tmp_path):
    """Pending evaluations (those in flight included) are in the checkpoint: resume submits them again."""
    argv = faulty_argv(
        core_toy, "evolution", 16, "strategy.population=4", "evaluator.sleep=0.15", "run.parallel=3",
        "run.checkpoint_every=1",
    )  # fmt: skip
    run_to_the_end(argv[1:], tmp_path / "whole")
    kill_then_resume(argv[1:], tmp_path / "killed", after_lines=6)
    assert run_outcome(tmp_path / "killed") == run_outcome(tmp_path / "whole")


# ---- Ray ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_ray_gives_the_local_history(cli, core_toy, tmp_path, ray_instance, strategy):
    sets = ["strategy.population=4", "strategy.sample_size=2"] if strategy == "evolution" else []
    argv = faulty_argv(core_toy, strategy, 14, *sets, "run.parallel=3")
    local = outcome_of(cli, argv, tmp_path / "local")
    remote = outcome_of(cli, argv + ["--set", "run.executor=ray"], tmp_path / "ray")
    assert remote == local
    code, out, err = cli("show", str(tmp_path / "ray"))  # an ordinary run folder
    assert code == 0 and "best evaluated" in out, err


@pytest.mark.slow
def test_ray_trains_short_train_candidates_like_this_process(cli, digits, tmp_path, ray_instance):
    argv = ["run", "--strategy", "random", "--space", "darts", "--evaluator", "short_train", "--budget", "3",
            "--quiet", "--set", "space.C=4", "--set", "space.layers=2", "--set", "evaluator.epochs=1",
            "--set", "run.parallel=2", "--set", "run.tensorboard=false"]  # fmt: skip
    local = outcome_of(cli, argv, tmp_path / "local")
    remote = outcome_of(cli, argv + ["--set", "run.executor=ray"], tmp_path / "ray")
    assert remote == local
    assert all(r["status"] == "ok" for r in local[0])


@pytest.mark.slow
def test_ray_completion_order_tells_the_same_evaluations(cli, core_toy, tmp_path, ray_instance):
    """Random search proposes independently of results, and a ticket keeps the index it was submitted
    with, so telling in completion order gives the same (architecture, result) pairs in some order."""
    argv = faulty_argv(core_toy, "random", 8, "run.parallel=2", "evaluator.sleep=0.05")
    ordered = outcome_of(cli, argv + ["--set", "run.executor=ray"], tmp_path / "a")[0]
    completed = outcome_of(
        cli, argv + ["--set", "run.executor=ray", "--set", "run.tell_order=completion"], tmp_path / "b"
    )[0]

    def pairs(history: list[dict]) -> Counter:
        return Counter(json.dumps([r["arch"], r["metrics"]], sort_keys=True) for r in history)

    assert pairs(ordered) == pairs(completed)
    assert [r["index"] for r in completed] == list(range(8))  # history lines stay numbered in order


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_once(cli, core_toy, tmp_path, ray_instance):
    marks = tmp_path / "marks"
    marks.mkdir()
    argv = faulty_argv(core_toy, "random", 10, "run.parallel=2")
    clean = outcome_of(cli, argv, tmp_path / "clean")
    assert any(r["arch"]["d0"] == "c1" for r in clean[0]), "no architecture with d0=c1: pick another budget"
    dying = argv + ["--set", "run.executor=ray", "--set", "evaluator.die_on=c1", "--set", f"evaluator.marks={marks}"]
    retried = outcome_of(cli, dying, tmp_path / "retried")
    assert retried[0] == [dict(r) for r in clean[0]]  # every killed evaluation ran again, same seed, same result
    assert len(list(marks.iterdir())) == sum(r["arch"]["d0"] == "c1" for r in clean[0])


@pytest.mark.slow
def test_a_worker_lost_twice_is_a_failed_evaluation(cli, core_toy, tmp_path, ray_instance):
    marks = tmp_path / "marks"
    marks.mkdir()
    argv = faulty_argv(core_toy, "random", 5, "run.parallel=2", "run.executor=ray", "evaluator.die_on=c1",
                       "evaluator.die_times=2", f"evaluator.marks={marks}")  # fmt: skip
    history, _, best = outcome_of(cli, argv, tmp_path / "run")
    lost = [r for r in history if r["arch"]["d0"] == "c1"]
    assert len(history) == 5 and lost
    assert all(r["status"] == "failed" and "Ray worker lost twice" in r["reason"] for r in lost)
    assert all(r["status"] == "ok" for r in history if r["arch"]["d0"] != "c1")


@pytest.mark.slow
def test_ray_stops_a_hanging_candidate(cli, core_toy, tmp_path, ray_instance):
    argv = faulty_argv(core_toy, "random", 8, "run.parallel=2", "run.executor=ray", "evaluator.hang_on=c1",
                       "run.evaluation_timeout_s=1.5")  # fmt: skip
    history, _, _ = outcome_of(cli, argv, tmp_path / "run")
    stopped = [r for r in history if r["status"] == "failed"]
    assert len(history) == 8 and stopped
    assert all(r["arch"]["d0"] == "c1" and "evaluation stopped after" in r["reason"] for r in stopped)


def test_an_evaluator_error_in_a_worker_is_one_line(cli, core_toy, tmp_path, ray_instance):
    argv = faulty_argv(core_toy, "random", 10, "run.executor=ray", "evaluator.raise_on=c1")
    code, _, err = cli(*argv, "--out", str(tmp_path / "run"))
    assert code == 2
    assert err.strip().splitlines()[-1] == "nasframe: error: faulty_toy_eval: scripted error on c1"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("fault", "line"),
    [
        ("bug_on", "evaluate() raised ValueError: scripted bug on c1"),
        ("exit_on", "evaluate() called sys.exit('scripted exit on c1')"),
    ],
)
def test_a_plugin_fault_in_a_worker_is_the_same_one_line(cli, core_toy, tmp_path, ray_instance, fault, line):
    """An evaluator's bug or sys.exit inside a Ray worker reads as in this process: one line naming the
    evaluator and its method, exit 2; not a Ray traceback, and not a worker lost and retried."""
    argv = faulty_argv(core_toy, "random", 10, "run.executor=ray", f"evaluator.{fault}=c1")
    code, _, err = cli(*argv, "--out", str(tmp_path / "run"))
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("nasframe: error: evaluator 'faulty_toy_eval': " + line), last
    assert "Traceback" not in err


def test_more_slots_than_the_cluster_has_is_one_line(cli, core_toy, tmp_path, ray_instance):
    cpus = int(ray_instance.cluster_resources()["CPU"])
    argv = faulty_argv(core_toy, "random", 4, "run.executor=ray", "run.parallel=3", f"run.task_cpus={cpus}")
    code, _, err = cli(*argv, "--out", str(tmp_path / "run"))
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"nasframe: error: run.parallel=3 x run.task_cpus={cpus} needs {3 * cpus} CPUs but the Ray cluster has "
        f"{cpus}; lower run.parallel or run.task_cpus"
    )


@pytest.mark.slow
def test_compare_on_ray_summarises_like_local(cli, tmp_path, ray_instance):
    common = ["compare", "--strategies", "random,evolution", "--space", "nb201", "--evaluator", "tabular", "--seeds",
              "2", "--budget", "15", "--no-plot", "--no-tensorboard"]  # fmt: skip
    code, _, err = cli(*common, "--out", str(tmp_path / "local"))
    assert code == 0, err
    code, out, err = cli(*common, "--out", str(tmp_path / "ray"), "--executor", "ray", "--parallel", "2")
    assert code == 0, err
    timing = ("wall_seconds_mean", "wall_seconds_std", "wall_seconds", "cost_seconds", "run_dir")

    def rows(folder: str, name: str) -> list[dict]:
        import csv

        with open(tmp_path / folder / name) as f:
            return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(f)]

    for name in ("summary.csv", "runs.csv"):
        assert rows("ray", name) == rows("local", name)
    for run_dir in sorted((tmp_path / "ray").glob("*/seed-*")):
        local_dir = tmp_path / "local" / run_dir.relative_to(tmp_path / "ray")
        assert read_jsonl(run_dir / "history.jsonl") and run_outcome(run_dir) == run_outcome(local_dir)
    assert "4 runs (4 new" in out
