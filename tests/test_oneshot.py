"""The one-shot protocol: requests as plain data, the runner executing work in pieces, exact resume
inside a piece of work, declared capabilities, path samplers, counts, and the constraints."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nasframe import Strategy, register_strategy
from nasframe.common.errors import CapabilityError, NotSupported
from nasframe.common.options import build_options
from nasframe.common.plugins import load_plugin
from nasframe.core.capabilities import (
    AngleMetric,
    BNRecalibration,
    BranchImportance,
    Differentiable,
    Distillation,
    SharedWeights,
)
from nasframe.core.costs import ArchCosts
from nasframe.core.evaluator import Budget, Evaluator
from nasframe.core.paths import BinnedPaths, CategoricalPaths, UniformPaths
from nasframe.core.registry import spaces, strategies
from nasframe.core.requests import (
    Evaluate,
    MeasureAngles,
    SaveBaseWeights,
    ScoreShared,
    TrainShared,
    as_request,
    request_from_state,
)
from nasframe.core.space import Arch
from nasframe.data import DataOptions, DataSource
from nasframe.search.config import merge_config
from nasframe.search.runner import Runner

FAKES = str(Path(__file__).resolve().parent / "plugins" / "abs_fakes.py")


@pytest.fixture(scope="module")
def fakes():
    load_plugin(FAKES)
    import nasframe_plugin_abs_fakes as mod

    return mod


def toy_space(**options):
    cls = spaces.get("abs_toy")
    return cls(build_options(cls.Options, {"decisions": 3, "choices": 3, **options}, "space"))


# ---- requests are plain data ----------------------------------------------------------------------
def test_every_request_round_trips_through_a_weights_only_checkpoint(fakes, tmp_path):
    a = Arch([("d0", "op1"), ("d1", "op0"), ("d2", 3)])
    requests = [
        Evaluate(a),
        Evaluate(a, Budget(epochs=0.5), phase="x"),
        ScoreShared(a, BNRecalibration(200, 0.1, 128)),
        ScoreShared(a, None, phase="p"),
        TrainShared(2.5, UniformPaths((("d0", ("op0", "op1")),)), phase="warm-up"),
        TrainShared(1.0, BinnedPaths((1.0, 2.0, 3.0), "params", 7)),
        TrainShared(1.0, CategoricalPaths.of({"d0": [0.5, 0.5, 0.0]})),
        MeasureAngles((a, a.replace(d0="op2"))),
        SaveBaseWeights(),
    ]
    torch.save([r.to_state() for r in requests], tmp_path / "r.pt")
    back = [request_from_state(s) for s in torch.load(tmp_path / "r.pt", weights_only=True)]
    assert back == requests


def test_a_bare_architecture_means_evaluate_it():
    a = Arch([("d0", "op1")])
    assert as_request(a) == Evaluate(a) and as_request({"d0": "op1"}) == Evaluate(a)
    with pytest.raises(Exception, match="ask\\(\\) returned int"):
        as_request(3)


# ---- path samplers ------------------------------------------------------------------------------------
def test_binned_paths_land_in_the_drawn_bin_or_fall_back_after_max_draws():
    space = spaces.get("nb201")()
    costs = ArchCosts(space, DataSource(DataOptions(name="digits"), seed=0).spec)
    assert costs.prepare_table()  # nb201 declares additive counts: the table is checked and used
    rng = np.random.default_rng(0)
    macs = np.array([costs.macs(space.sample(rng)) for _ in range(400)])
    edges = tuple(float(x) for x in np.quantile(macs, [0.0, 0.2, 0.5, 1.0]))
    draw = BinnedPaths(edges, "macs", 500).bind(space, costs)
    got = np.array([costs.macs(draw(rng)) for _ in range(600)])
    bins = np.clip(np.searchsorted(edges, got, side="right") - 1, 0, 2)
    assert np.all((got >= edges[0]) & (got <= edges[-1]))
    assert np.allclose(np.bincount(bins, minlength=3) / 600, 1 / 3, atol=0.06)  # each bin drawn uniformly
    impossible = BinnedPaths((0.0, 1.0), "macs", 3).bind(space, costs)  # no cell has under 1 MAC
    assert costs.macs(impossible(rng)) > 1  # falls back to a plain uniform draw


def test_categorical_paths_follow_the_probabilities():
    space = toy_space()
    draw = CategoricalPaths.of({"d0": [0.0, 0.25, 0.75]}).bind(space, None)
    rng = np.random.default_rng(1)
    picks = [draw(rng)["d0"] for _ in range(8000)]
    assert "op0" not in picks and abs(picks.count("op2") / 8000 - 0.75) < 0.02
    with pytest.raises(Exception, match="probabilities of d1 must be 3"):
        CategoricalPaths.of({"d1": [1.0]}).bind(space, None)


def test_additive_counts_equal_direct_counts_and_a_false_declaration_is_caught():
    spec = DataSource(DataOptions(name="digits"), seed=0).spec
    space = spaces.get("nb201")()
    costs = ArchCosts(space, spec)
    rng = np.random.default_rng(3)
    for _ in range(5):
        arch = space.sample(rng)
        assert costs.counts(arch) == costs.count_directly(arch)
    darts = spaces.get("darts")(build_options(spaces.get("darts").Options, {"C": 4, "layers": 2}, "space"))
    darts.additive_costs = True  # not true for DARTS: nodes without live inputs change the counts
    with pytest.raises(NotSupported, match="declares additive_costs but its counts do not add up"):
        ArchCosts(darts, spec).prepare_table()


# ---- the runner executes the work -------------------------------------------------------------------
@register_strategy("oneshot_test_script")
class Scripted(Strategy):
    """Test strategy: save base, train 2.5 epochs, measure 3 angles, then evaluate and score by turns."""

    requires = (AngleMetric,)

    def __init__(self, space, options=None, *, seed=None):
        super().__init__(space, options, seed=seed)
        self.step = 0
        self.reports: list[list] = []

    def ask(self):
        self.step += 1
        if self.step == 1:
            return [SaveBaseWeights(), TrainShared(2.5, UniformPaths.over(self.space), phase="training")]
        if self.step == 2:
            return [MeasureAngles(tuple(self.space.sample(self.rng) for _ in range(3)))]
        arch = self.space.sample(self.rng)
        return [arch if self.step % 2 else ScoreShared(arch, None)]

    def tell(self, arch, result):
        pass

    def tell_work(self, request, report):
        self.reports.append([request.kind, report.cost.epochs, report.values])

    def state_dict(self):
        return {**super().state_dict(), "step": self.step, "reports": self.reports}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.step, self.reports = state["step"], state["reports"]


def scripted_cfg(out: Path, **run) -> dict:
    return merge_config(
        {
            "plugins": [FAKES],
            "strategy": {"name": "oneshot_test_script"},
            "space": {"name": "abs_toy", "decisions": 3, "choices": 3},
            "evaluator": {"name": "abs_fake_ws"},
            "run": {
                "out": str(out),
                "progress": False,
                "tensorboard": False,
                "max_evaluations": 4,
                "work_chunk_epochs": 1.0,
                **run,
            },
        }
    )


def test_work_is_executed_in_pieces_charged_logged_and_told(fakes, tmp_path):
    summary = Runner.create(scripted_cfg(tmp_path / "r")).run()
    work = [json.loads(x) for x in (tmp_path / "r" / "work.jsonl").read_text().splitlines()]
    assert [(w["kind"], w["chunk"], w["epochs"]) for w in work] == [
        ("save_base_weights", 0, 0.0),
        ("train_shared", 0, 1.0),
        ("train_shared", 1, 1.0),
        ("train_shared", 2, 0.5),
        ("measure_angles", 0, 0.0),
    ]
    assert [w["work"] for w in work] == [0, 1, 1, 1, 2]
    strategy = Runner.resume(tmp_path / "r", quiet=True)  # reload the final checkpoint
    strategy.load_state_dict(strategy.files.load_checkpoint())
    reports = strategy.parts.strategy.reports
    assert [r[:2] for r in reports] == [["save_base_weights", 0.0], ["train_shared", 2.5], ["measure_angles", 0.0]]
    assert len(reports[2][2]) == 3 and all(v > 0 for v in reports[2][2])  # the trained paths turned
    result = summary.result
    assert result.evaluations == 4 and result.work == {
        "seconds": pytest.approx(result.work["seconds"]),
        "epochs": 2.5,
        "requests": 3,
    }
    assert result.cost["epochs"] == 2.5 + 4  # the fake charges 1 epoch per evaluation (ScoreShared included)
    history = [json.loads(x) for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    assert [h["index"] for h in history] == [0, 1, 2, 3]


def test_epoch_budget_counts_supernet_work(fakes, tmp_path):
    summary = Runner.create(scripted_cfg(tmp_path / "r", max_evaluations=None, max_epochs=2.0)).run()
    assert summary.stopped_because == "max_epochs" and summary.evaluations == 0
    work = (tmp_path / "r" / "work.jsonl").read_text().splitlines()
    assert len(work) == 3  # base, then two 1-epoch pieces: the budget is checked between pieces


class Interrupting:
    """Makes the fake evaluator raise KeyboardInterrupt inside its n-th training piece."""

    def __init__(self, fakes, n):
        self.cls, self.n, self.calls = fakes.FakeWeightSharing, n, 0
        self.original = self.cls.train_paths

    def __enter__(self):
        outer = self

        def train_paths(ev, epochs, next_path):
            outer.calls += 1
            if outer.calls == outer.n:
                next_path()  # half-way through: the evaluator's state is not a checkpoint's any more
                raise KeyboardInterrupt
            return outer.original(ev, epochs, next_path)

        self.cls.train_paths = train_paths
        return self

    def __exit__(self, *exc):
        self.cls.train_paths = self.original


def test_interrupt_inside_a_piece_of_work_resumes_to_the_identical_end(fakes, tmp_path):
    Runner.create(scripted_cfg(tmp_path / "straight")).run()
    with Interrupting(fakes, 3), pytest.raises(KeyboardInterrupt):
        Runner.create(scripted_cfg(tmp_path / "cut")).run()
    # the last piece broke off: the checkpoint is the one after the second piece, not a half-trained one
    assert len((tmp_path / "cut" / "work.jsonl").read_text().splitlines()) == 3
    Runner.resume(tmp_path / "cut", quiet=True).run()

    def strip(run):
        return [
            {k: v for k, v in json.loads(x).items() if k not in ("time", "cost")}
            for name in ("work.jsonl", "history.jsonl")
            for x in (run / name).read_text().splitlines()
        ]

    assert strip(tmp_path / "cut") == strip(tmp_path / "straight")
    a = json.loads((tmp_path / "straight" / "best.json").read_text())
    b = json.loads((tmp_path / "cut" / "best.json").read_text())
    assert a["final"]["arch"] == b["final"]["arch"] and a["best_evaluated"] == b["best_evaluated"]


@register_strategy("oneshot_test_undeclared")
class Undeclared(Strategy):
    """Test strategy that asks for supernet training without declaring the capability."""

    def ask(self):
        return [TrainShared(1.0)]

    def tell(self, arch, result):
        pass


def test_a_request_needs_its_capability_declared(fakes, tmp_path):
    cfg = scripted_cfg(tmp_path / "r")
    cfg["strategy"] = {"name": "oneshot_test_undeclared"}
    with pytest.raises(CapabilityError, match="requested train_shared without declaring SharedWeights"):
        Runner.create(cfg).run()


# ---- constraints ---------------------------------------------------------------------------------------
def toy_cfg(out: Path, plugin: str, **constraints) -> dict:
    return merge_config(
        {
            "plugins": [plugin],
            "strategy": {"name": "random"},
            "space": {"name": "core_toy", "decisions": 3, "choices": 3},
            "evaluator": {"name": "core_toy_eval"},
            "constraints": constraints,
            "run": {"out": str(out), "progress": False, "tensorboard": False, "max_evaluations": 6},
        }
    )


def test_infeasible_architectures_cost_nothing_and_are_told(core_toy, tmp_path):
    from nasframe.search.runner import Runner as R

    told = []
    original = strategies.get("random").tell

    def spy(self, arch, result):
        told.append(result.status)
        return original(self, arch, result)

    strategies.get("random").tell = spy
    try:
        # the toy net's hidden width is 1 + the choices' index sum: params grow with it
        summary = R.create(toy_cfg(tmp_path / "r", core_toy, max_params=64 * 4 + 4 + 4 * 10 + 10)).run()
    finally:
        strategies.get("random").tell = original
    history = [json.loads(x) for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    assert all(sum(int(v[1:]) for v in h["arch"].values()) <= 3 for h in history)  # width <= 4
    assert told.count("infeasible") == summary.result.infeasible > 0
    assert told.count("ok") == len(history) == summary.evaluations
    config = (tmp_path / "r" / "config.yaml").read_text()
    assert "constraints:" in config and "max_params: 310" in config


def test_a_strategy_that_cannot_meet_the_limits_stops_with_one_line(core_toy, tmp_path, cli):
    code, _, err = cli(
        "run",
        "--plugin",
        core_toy,
        "--strategy",
        "random",
        "--space",
        "core_toy",
        "--evaluator",
        "core_toy_eval",
        "--quiet",
        "--out",
        tmp_path / "r",
        "--set",
        "constraints.max_params=80",
        "--set",
        "constraints.max_rejections=5",
        "--set",
        "space.choices=3",
    )
    last = err.splitlines()[-1]
    assert code == 2 and last.startswith("nasframe: error: ") and "Traceback" not in err
    assert "proposed 5 architectures in a row over the limits (constraints.max_params=80)" in last
    assert "the smallest rejected had 85 params" in last


def test_limits_no_architecture_can_meet_are_refused_before_anything_runs(tmp_path, cli):
    code, _, err = cli(
        "run",
        "--strategy",
        "random",
        "--space",
        "nb201",
        "--evaluator",
        "tabular",
        "--quiet",
        "--out",
        tmp_path / "r",
        "--set",
        "constraints.max_macs=10k",
    )
    assert code == 2 and err.count("\n") == 1
    assert "constraints.max_macs=10,000: no architecture of space 'nb201' fits; the smallest has" in err
    assert not (tmp_path / "r").exists()


# ---- strategies never hold an evaluator or touch a global RNG ---------------------------------------
SMALL = {
    "spos": {
        "supernet_epochs": 1,
        "population": 4,
        "parents": 2,
        "mutations": 1,
        "crossovers": 1,
        "generations": 2,
        "bn_batches": 0,
    },
    "abs": {"warmup_epochs": 1, "epochs_between_steps": 1, "samples_per_operator": 4, "target_size": 10},
    "neas": {"warmup_epochs": 1, "epochs_between_steps": 0.5, "samples_per_step": 2, "final_epochs": 0.5},
    "nse": {"k": 3, "epochs": 1, "samples": 3, "extra_samples": 0, "cost_target": 75, "drift": 60},
}
#: strategies that need a particular kind of space (the default is the toy space of the fakes plugin)
SPACES = {
    "neas": {"name": "neas", "stage_layers": [2, 1], "widths": [8, 16], "strides": [1, 2], "ops": ["k3e4", "k5e4"]},
    "nse": {"name": "nse", "alloc_plan": "NR", "alloc_space": [1, 0, 0, 0, 0], "channel_dist": [4, 4, 4, 4, 4],
            "cell_plan": "multi_branch", "small_input": True, "last_channels": 8},
}  # fmt: skip


@pytest.mark.parametrize("name", strategies.installed())
def test_no_strategy_calls_an_evaluator_or_seeds_a_global_rng(name, fakes, tmp_path, monkeypatch):
    cls = strategies.get(name)
    inside: list[str] = []

    def enter(method):
        def wrapped(self, *args, **kwargs):
            inside.append(method.__name__)
            try:
                return method(self, *args, **kwargs)
            finally:
                inside.pop()

        return wrapped

    for meth in (
        "__init__",
        "ask",
        "tell",
        "tell_work",
        "final",
        "final_weights",
        "metrics",
        "state_dict",
        "load_state_dict",
    ):
        monkeypatch.setattr(cls, meth, enter(getattr(cls, meth)))

    def forbidden(what, original):
        def guard(*args, **kwargs):
            assert not inside, f"{name}.{inside[-1]} called {what}"
            return original(*args, **kwargs)

        return guard

    for module, fn in (
        (torch, "manual_seed"),
        (torch, "seed"),
        (torch, "set_rng_state"),
        (np.random, "seed"),
        (np.random, "set_state"),
        (random, "seed"),
        (random, "setstate"),
    ):
        monkeypatch.setattr(module, fn, forbidden(f"{module.__name__}.{fn}", getattr(module, fn)))
    ev_cls = fakes.FakeWeightSharing
    for fn in ("evaluate", "train_paths", "score_path", "path_angles", "save_base_weights", "state_dict"):
        monkeypatch.setattr(ev_cls, fn, forbidden(f"the evaluator's {fn}", getattr(ev_cls, fn)))
    cfg = merge_config(
        {
            "plugins": [FAKES],
            "strategy": {"name": name, **SMALL.get(name, {})},
            "space": SPACES.get(name, {"name": "abs_toy", "decisions": 3, "choices": 3}),
            "evaluator": {"name": "abs_fake_ws"},
            "run": {
                "out": str(tmp_path / "r"),
                "progress": False,
                "tensorboard": False,
                "max_evaluations": 10,
                "checkpoint_every": 2,
            },
        }
    )
    runner = Runner.create(cfg)
    summary = runner.run()
    assert summary.evaluations > 0
    # nothing reachable from the strategy object is an evaluator
    seen, todo = set(), [runner.parts.strategy]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, np.ndarray, torch.Tensor)):
            continue
        seen.add(id(obj))
        assert not isinstance(obj, Evaluator), f"{name} holds an evaluator"
        if isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            todo.extend(vars(obj).values())


def test_capability_classes_are_checked_by_subclassing_not_by_probing():
    from nasframe.core.capabilities import capabilities_of
    from nasframe.core.registry import evaluators

    assert capabilities_of(evaluators.get("supernet")) == [
        SharedWeights,
        BranchImportance,
        Distillation,
        Differentiable,
        AngleMetric,
    ]
    assert capabilities_of(evaluators.get("short_train")) == []
    source = "".join(Path(p).read_text() for p in Path(__file__).resolve().parent.parent.glob("nasframe/*.py"))
    assert "hasattr(" not in source.replace('"hasattr(', "")  # the core probes no plugin


def test_files_follow_the_umask(core_toy, tmp_path):
    old = os.umask(0o022)
    try:
        Runner.create(toy_cfg(tmp_path / "r", core_toy)).run()
    finally:
        os.umask(old)
    for name in ("config.yaml", "history.jsonl", "best.json", "checkpoint.pt", "run.json"):
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o644, name
    assert not (tmp_path / "r" / ".lock").exists()  # removed when the run ends


def test_binned_paths_need_additive_counts():
    spec = DataSource(DataOptions(name="digits"), seed=0).spec
    cls = spaces.get("darts")
    darts = cls(build_options(cls.Options, {"C": 4, "layers": 2}, "space"))
    with pytest.raises(Exception, match="binned paths need counts that add up over decisions"):
        BinnedPaths((1.0, 2.0)).bind(darts, ArchCosts(darts, spec))


def test_show_reports_supernet_work_of_an_unfinished_run(fakes, tmp_path, cli):
    Runner.create(scripted_cfg(tmp_path / "r", max_evaluations=None, max_epochs=2.0)).run()
    (tmp_path / "r" / "best.json").unlink()  # as a run stopped during its supernet training looks
    code, out, _ = cli("show", tmp_path / "r")
    assert code == 0 and "0 evaluations logged" in out
    assert "supernet work: 3 pieces, 2 epochs trained; last: training" in out
    code, out, _ = cli("show", tmp_path / "r", "--json")
    assert json.loads(out)["work"] == {"pieces": 3, "epochs": 2.0, "last_phase": "training"}
