"""successive_halving and hyperband: rungs and brackets worked out by hand (Hyperband's own table),
promotion of the best, budgets charged in epochs, the answer from the highest rung, the tabular
evaluator's honest fidelities, and resume after kill -9 to the identical end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nasframe.common.errors import NotSupported
from nasframe.common.options import build_options
from nasframe.core.evaluator import Budget, Cost, Evaluator, Result
from nasframe.core.registry import evaluators, spaces, strategies
from nasframe.core.requests import Evaluate
from nasframe.core.space import Arch
from nasframe.testing import ToySpace


def make(name, space, seed=0, **options):
    cls = strategies.get(name)
    return cls(space, build_options(cls.Options, options, "strategy"), seed=seed)


def score(arch: Arch, epochs: float) -> float:
    """Accuracy that grows with the epochs; its ranking of architectures is the same at every budget."""
    return sum(int(str(v)[2:]) for v in arch.values()) + epochs


class BudgetedToy(Evaluator):
    """Answers `score` at the request's epochs and charges exactly those epochs."""

    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        assert budget is not None and budget.epochs is not None
        return Result(metrics={"val_acc": score(arch, budget.epochs)}, cost=Cost(0.0, budget.epochs))


def run_rounds(strategy, evaluations: int) -> list[tuple[Arch, float, Result]]:
    ev = BudgetedToy(strategy.space)
    done: list[tuple[Arch, float, Result]] = []
    while len(done) < evaluations:
        for request in strategy.ask():
            assert isinstance(request, Evaluate) and request.budget is not None
            result = ev.evaluate(request.arch, request.budget)
            strategy.tell(request.arch, result)
            done.append((request.arch, request.budget.epochs, result))
    return done[:evaluations]


def test_rungs_from_min_max_and_eta():
    space = ToySpace()
    assert make("successive_halving", space).rungs == [1.0, 3.0, 9.0]
    assert make("successive_halving", space, min_epochs=2, max_epochs=200, eta=3).rungs == pytest.approx(
        [200 / 81, 200 / 27, 200 / 9, 200 / 3, 200]
    )
    assert make("successive_halving", space, rungs=[12, 200]).rungs == [12.0, 200.0]
    with pytest.raises(Exception, match="increasing positive epochs"):
        make("successive_halving", space, rungs=[200, 12])


def test_hyperband_brackets_match_the_papers_table_for_r81_eta3():
    hb = make("hyperband", ToySpace(), min_epochs=1, max_epochs=81, eta=3)
    # Li et al. (2018), Table 1: s = 4..0 start n = 81, 34, 15, 8, 5 configurations at r = 1, 3, 9, 27, 81
    assert hb.brackets == [(0, 81), (1, 34), (2, 15), (3, 8), (4, 5)]
    assert make("successive_halving", ToySpace(), max_epochs=81).brackets == [(0, 81)]


def test_a_round_keeps_the_best_third_and_charges_every_rung_in_epochs():
    space = ToySpace(decisions=4, choices=4)
    s = make("successive_halving", space, seed=1)
    done = run_rounds(s, 9 + 3 + 1)
    epochs = [e for _, e, _ in done]
    assert epochs == [1.0] * 9 + [3.0] * 3 + [9.0]
    first = [a for a, _, _ in done[:9]]
    best3 = sorted(first, key=lambda a: -score(a, 1))[:3]
    assert [a for a, _, _ in done[9:12]] == best3  # promoted in rank order
    assert done[12][0] == best3[0]
    assert sum(r.cost.epochs for _, _, r in done) == 9 * 1 + 3 * 3 + 1 * 9
    assert len({a.key() for a in first}) == 9
    nxt = s.ask()  # a new round: 9 unseen architectures at the first rung
    assert len(nxt) == 9 and all(r.budget.epochs == 1.0 for r in nxt)
    assert not {r.arch.key() for r in nxt} & {a.key() for a in first}


def test_the_answer_comes_from_the_highest_rung_not_the_highest_number():
    space = ToySpace(decisions=3, choices=3)
    s = make("successive_halving", space, seed=0, rungs=[1, 2], eta=3, n=3)
    (a, b, c) = [r.arch for r in s.ask()]
    s.tell(a, Result(metrics={"val_acc": 99.0}))  # a great low-budget number...
    s.tell(b, Result(metrics={"val_acc": 50.0}))
    s.tell(c, Result.failed("scripted"))
    (top,) = s.ask()
    assert top.arch == a and top.budget.epochs == 2.0
    s.tell(a, Result(metrics={"val_acc": 70.0}))  # ...that the full budget does not confirm
    assert s.final() == a and s.top[1] == (a, 70.0)
    s2 = make("successive_halving", space, seed=0, rungs=[1, 2], eta=3, n=3)
    for r in s2.ask():
        s2.tell(r.arch, Result.failed("scripted"))
    assert s2.final() is None and len(s2.ask()) == 3  # nothing to promote: the next round starts


def test_hyperband_cycles_its_brackets():
    s = make("hyperband", ToySpace(decisions=5, choices=4), seed=2)  # rungs 1, 3, 9: brackets (0,9),(1,5),(2,3)
    done = run_rounds(s, (9 + 3 + 1) + (5 + 1) + 3 + 9)
    epochs = [e for _, e, _ in done]
    assert epochs == [1.0] * 9 + [3.0] * 3 + [9.0] + [3.0] * 5 + [9.0] + [9.0] * 3 + [1.0] * 9


def test_tabular_answers_only_the_epochs_its_table_holds():
    space = spaces.get("nb201")()
    cls = evaluators.get("tabular")
    arch = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    table = space.benchmark_table()
    row = space.index_of(arch)
    ev = cls(space, build_options(cls.Options, {}, "evaluator"))
    got = ev.evaluate(arch, Budget(epochs=12))
    assert got.metrics["val_acc"] == table.column("cifar10", "val", 12)[row] and got.cost.epochs == 12
    with pytest.raises(NotSupported, match="holds the search accuracy at 12 epochs only") as err:
        ev.evaluate(arch, Budget(epochs=4))
    assert "\n" not in str(err.value)
    with pytest.raises(NotSupported, match="cannot answer a budget of 200 epochs"):
        ev.evaluate(arch, Budget(epochs=200))  # 200 epochs: only test accuracy, the held-out judge
    oracle = cls(space, build_options(cls.Options, {"fidelity": 200}, "evaluator"))
    assert oracle.evaluate(arch, Budget(epochs=200)).metrics["val_acc"] == table.column("cifar10", "test", 200)[row]
    assert oracle.evaluate(arch, Budget(epochs=12)).metrics["val_acc"] == table.column("cifar10", "val", 12)[row]
    assert ev.evaluate(arch).cost.epochs == 12  # no budget: the evaluator's own fidelity, as before


def test_short_train_trains_for_the_requested_epochs(digits):
    cls = evaluators.get("short_train")
    space = spaces.get("nb201")(build_options(spaces.get("nb201").Options, {"C": 4, "N": 1}, "space"))
    ev = cls(space, build_options(cls.Options, {"epochs": 1.0, "batch_size": 64}, "evaluator"), data=digits)
    arch = space.sample(np.random.default_rng(0))
    assert ev.evaluate(arch, Budget(epochs=0.25)).cost.epochs == pytest.approx(0.25, abs=0.05)
    assert ev.evaluate(arch).cost.epochs == pytest.approx(1.0)


def test_a_run_with_an_epoch_budget_charges_the_rungs(tmp_path, cli):
    out = tmp_path / "sh"
    code, _, err = cli("run", "--strategy", "successive_halving", "--space", "nb201", "--evaluator", "tabular",
                       "--set", "evaluator.fidelity=200", "--set", "strategy.rungs=[12, 200]",
                       "--set", "strategy.eta=4", "--set", "run.max_epochs=1000", "--budget", "1000", "--quiet",
                       "--out", out)  # fmt: skip
    assert code == 0, err
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    spent = [r["cost"]["epochs"] for r in history]
    assert spent[:5] == [12.0, 12.0, 12.0, 12.0, 200.0]  # a round: 4 at 12 epochs, the best one at 200
    assert sum(spent) >= 1000 and sum(spent[:-1]) < 1000  # stops once the epoch budget is spent
    best = json.loads((out / "best.json").read_text())
    assert best["final"]["source"] == "strategy"
    top = [r for r in history if r["cost"]["epochs"] == 200.0]
    assert best["final"]["arch"] == max(top, key=lambda r: r["metrics"]["val_acc"])["arch"]


@pytest.mark.slow
def test_kill_9_between_rungs_resumes_to_the_identical_result(tmp_path, core_toy):
    from conftest import kill_then_resume, run_outcome, run_to_the_end

    argv = ["--plugin", core_toy, "--strategy", "hyperband", "--space", "core_toy", "--evaluator", "core_toy_eval",
            "--budget", "16", "--seed", "6", "--quiet", "--set", "run.checkpoint_every=2",
            "--set", "run.tensorboard=false"]  # fmt: skip
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume([*argv, "--set", "evaluator.sleep=0.15"], tmp_path / "killed", after_lines=10)
    assert run_outcome(tmp_path / "killed") == run_outcome(tmp_path / "full")
