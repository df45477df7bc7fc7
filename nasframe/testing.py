"""Testing helpers and the conformance kit for plugin authors.

- `InMemoryRun` executes what a strategy asks for against an evaluator the way the runner does
  (the same seeding of every evaluation and piece of work, the same tells) but in memory, so a
  unit test can drive a one-shot strategy step by step.
- `ToySpace` and `ScriptedSharedWeights`: a tiny space and a network-free evaluator that answers
  every request of the one-shot protocol, for strategy tests.
- `StrategyConformance`, `SpaceConformance`, `EvaluatorConformance`: test classes to inherit in a
  pytest module (as Optuna ships its sampler tests); nasframe runs them over every built-in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from nasframe.angles import angle
from nasframe.costs import ArchCosts
from nasframe.data import DataSpec
from nasframe.errors import NotSupported
from nasframe.evaluator import (
    AlphaOptimizer,
    AngleMetric,
    BNRecalibration,
    BranchImportance,
    Budget,
    Cost,
    Differentiable,
    Distillation,
    Evaluator,
    ImportanceSettings,
    Result,
    SharedWeights,
    WorkReport,
)
from nasframe.executor import Executor, evaluation_seed
from nasframe.multibranch import BranchCosts, MultiBranchSpace
from nasframe.oneshot import (
    Evaluate,
    MeasureAngles,
    Request,
    SaveBaseWeights,
    ScoreShared,
    TrainMixed,
    TrainShared,
    as_request,
)
from nasframe.space import Arch, Decision, ParamSlice, SearchSpace
from nasframe.strategy import Strategy


class InMemoryRun:
    """Executes a strategy's requests with an evaluator in memory, seeded like the runner.

    Args:
        strategy: the strategy under test.
        evaluator: what executes its requests (any `Evaluator`; one-shot requests need the
            capability they name).
        seed: the run seed the runner would use.
        costs: counts for samplers that need them (`BinnedPaths`).
        judge: optional replacement for `evaluator.evaluate` on architectures, e.g. a scripted score.
        chunk_epochs: the run's `run.work_chunk_epochs` (training requests run in such pieces).

    Evaluations and work go through the same `nasframe.executor.Executor` as a run's, so the seeds
    and capability calls are the runner's; there are no files, budget or constraints here.
    """

    def __init__(
        self,
        strategy: Strategy,
        evaluator: Evaluator,
        *,
        seed: int = 0,
        costs: ArchCosts | None = None,
        judge: Callable[[Arch, int], Result] | None = None,
        chunk_epochs: float = 1.0,
    ):
        self.strategy = strategy
        self.evaluator = evaluator
        self.seed = seed
        self.costs = costs
        self.judge = judge
        self.evaluations: list[tuple[Arch, Result]] = []
        self.work: list[tuple[Request, WorkReport]] = []
        self.executor = Executor(evaluator, evaluator.space, costs, seed, chunk_epochs)

    def round(self) -> list[Arch] | None:
        """One `ask`, every item executed and told in order; the architectures evaluated (None when
        the strategy is done or asked for nothing)."""
        if self.strategy.done:
            return None
        items = self.strategy.ask()
        if not items:
            return None
        evaluated = []
        for item in items:
            request = as_request(item)
            if isinstance(request, (Evaluate, ScoreShared)):
                evaluated.append(self._evaluate(request))
            else:
                self._work(request)
        return evaluated

    def evaluate_rounds(self, rounds: int, max_rounds: int = 10_000) -> list[Arch]:
        """Run until `rounds` rounds that evaluated something have passed; every architecture
        evaluated, in order."""
        out: list[Arch] = []
        done = 0
        for _ in range(max_rounds):
            if done >= rounds:
                return out
            evaluated = self.round()
            if evaluated is None:
                return out
            if evaluated:
                done += 1
                out.extend(evaluated)
        raise AssertionError(f"{max_rounds} rounds without {rounds} evaluation rounds")

    def _evaluate(self, request: Evaluate | ScoreShared) -> Arch:
        arch = self.evaluator.space.validate(request.arch)
        index = len(self.evaluations)
        if self.judge is not None:
            torch.manual_seed(evaluation_seed(self.seed, index))
            result = self.judge(arch, index)
        else:
            result = self.executor.evaluate(replace(request, arch=arch), index)
        self.strategy.tell(arch, result)
        self.evaluations.append((arch, result))
        return arch

    def _work(self, request: Request) -> None:
        w = len(self.work)
        if isinstance(request, (TrainShared, TrainMixed)):
            progress = self.executor.start_training(request, w)
            while progress["done"] < progress["steps"]:
                _, progress = self.executor.train_piece(request, w, progress)
            report = self.executor.training_report(progress)
        else:
            report = self.executor.measure(request, w)
        self.strategy.tell_work(request, report)
        self.work.append((request, report))


# ---- a toy space and a scripted weight-sharing evaluator -------------------------------------------
class ToySpace(SearchSpace):
    """`decisions` decisions d0.. with choices op0..; a tiny network whose width grows with the choices."""

    def __init__(self, decisions: int = 4, choices: int = 3):
        super().__init__(None)
        self.n_decisions, self.n_choices = decisions, choices

    def define_decisions(self) -> list[Decision]:
        ops = tuple(f"op{j}" for j in range(self.n_choices))
        return [Decision(f"d{i}", ops) for i in range(self.n_decisions)]

    def build(self, arch: Arch, data: DataSpec) -> nn.Module:
        width = 1 + sum(int(str(c)[2:]) for c in arch.values())
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(data.channels * data.height * data.width, width),
            nn.ReLU(),
            nn.Linear(width, data.num_classes),
        )


def scripted_accuracy(arch: Arch) -> float:
    """A deterministic score for toy architectures: 10 x the mean choice index (op0 < op1 < ...)."""
    values = [int(str(c)[2:]) if str(c).startswith("op") else 0 for c in arch.values()]
    return 10.0 * sum(values) / max(1, len(values))


def scripted_importance_round(
    space: SearchSpace, steps: int, state: dict[str, Any], optimizer: AlphaOptimizer, steps_per_epoch: int
) -> WorkReport:
    """A network-free `BranchImportance.train_importance` for strategy tests on a multi-branch space:
    the logits of even ops rise and those of odd ops fall by lr x steps (plus a little noise from torch's
    global RNG), nothing is pruned, and op j of every cell costs (j + 1) million MACs and parameters."""
    if not isinstance(space, MultiBranchSpace):
        raise NotSupported(f"scripted importance learning needs a multi-branch space, not {space.name!r}")
    cells = space.branch_cells()
    alphas = state["alphas"].detach().clone().float()
    ramp = torch.tensor([1.0 if j % 2 == 0 else -1.0 for j in range(alphas.shape[1])])
    alphas += optimizer.lr * steps * ramp + 1e-4 * torch.randn(alphas.shape)
    per_op = tuple(tuple(float(j + 1) * 1e6 for j in range(len(c.gates))) for c in cells)
    costs = BranchCosts(0.0, 0.0, per_op, per_op)
    new_state = {
        **state,
        "alphas": alphas,
        "iteration": int(state["iteration"]) + steps,
        "fresh": False,
        "costs": costs.to_state(),
    }
    return WorkReport(Cost(0.0, steps / steps_per_epoch), {"train_loss": 1.0}, state=new_state)


class ScriptedSharedWeights(Evaluator, AngleMetric, Differentiable, Distillation, BranchImportance):
    """A weight-sharing evaluator without a network, for testing one-shot strategies on any space.

    Every (decision, choice) owns a small weight vector; training moves the vectors of the choices
    the drawn paths use by random steps (torch's global RNG, which the runner seeds); a path's angle
    is measured on the concatenation of its choices' vectors; its score is `scripted_accuracy` plus
    a little noise. One evaluation or one scoring costs one epoch.
    """

    def __init__(
        self,
        space: SearchSpace,
        options: Any = None,
        *,
        data: Any = None,
        device: Any = "cpu",
        dim: int = 4,
        paths_per_epoch: int = 16,
    ):
        super().__init__(space, options, data=data, device=device)
        g = torch.Generator().manual_seed(0)
        self.current = {(d.name, c): torch.randn(dim, generator=g) for d in space.define_decisions() for c in d.choices}
        self.base = {k: v.clone() for k, v in self.current.items()}
        self.paths_per_epoch = paths_per_epoch
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def evaluate(self, arch: Arch, budget: Budget | None = None) -> Result:
        self._count("evaluate")
        noise = 0.1 * float(torch.rand(()))
        return Result(metrics={"val_acc": scripted_accuracy(arch) + noise}, cost=Cost(0.0, 1.0))

    def steps_per_epoch(self) -> int:
        return self.paths_per_epoch

    def train_paths(self, steps: int, next_path: Callable[[], Arch]) -> WorkReport:
        self._count("train_paths")
        for _ in range(steps):
            for item in next_path().items():
                self.current[item] += 0.05 * torch.randn(self.current[item].shape)
        return WorkReport(Cost(0.0, steps / self.paths_per_epoch), {"train_loss": 1.0})

    def score_path(self, arch: Arch, recalibration: BNRecalibration | None) -> Result:
        self._count("score_path")
        return self.evaluate(arch)

    def train_mixed(
        self,
        steps: int,
        state: dict[str, Any],
        order: int,
        optimizer: AlphaOptimizer,
        next_path: Callable[[], Arch] | None,
    ) -> WorkReport:
        """Moves each alpha toward its higher choices (`scripted_accuracy` prefers them), with a little
        noise; trains the vectors of the paths `next_path` draws, if any."""
        self._count("train_mixed")
        alphas = {}
        for name, logits in state["alphas"].items():
            ramp = torch.linspace(-0.5, 0.5, len(logits))
            alphas[name] = logits + optimizer.lr * steps * ramp + 1e-4 * torch.randn(len(logits))
        if next_path is not None:
            for _ in range(steps):
                for item in next_path().items():
                    self.current[item] += 0.05 * torch.randn(self.current[item].shape)
        new_state = {"choices": state["choices"], "alphas": alphas, "adam": state.get("adam")}
        return WorkReport(Cost(0.0, steps / self.paths_per_epoch), {"train_loss": 1.0}, state=new_state)

    def train_distilled(
        self,
        steps: int,
        next_path: Callable[[], Arch],
        teacher: Callable[[], tuple[Arch, float] | None],
        observe: Callable[[Arch, float], None],
        label_smoothing: float,
    ) -> WorkReport:
        """Trains the drawn paths' vectors as `train_paths` does (a teacher pulls them a little toward
        its own); each student's training top-1 is `scripted_accuracy` plus noise."""
        self._count("train_distilled")
        for _ in range(steps):
            arch = next_path()
            picked = teacher()
            for item in arch.items():
                self.current[item] += 0.05 * torch.randn(self.current[item].shape)
                if picked is not None and item in picked[0].items():
                    self.current[item] *= 0.99
            observe(arch, scripted_accuracy(arch) + 10.0 * float(torch.rand(())))
        return WorkReport(Cost(0.0, steps / self.paths_per_epoch), {"train_loss": 1.0})

    def train_importance(
        self, steps: int, state: dict[str, Any], settings: ImportanceSettings, optimizer: AlphaOptimizer
    ) -> WorkReport:
        """`scripted_importance_round` (multi-branch spaces only)."""
        self._count("train_importance")
        return scripted_importance_round(self.space, steps, state, optimizer, self.paths_per_epoch)

    def save_base_weights(self) -> None:
        self._count("save_base_weights")
        self.base = {k: v.clone() for k, v in self.current.items()}

    def path_angles(self, archs: Sequence[Arch]) -> list[float]:
        self._count("path_angles")
        return [
            float(angle(torch.cat([self.base[i] for i in a.items()]), torch.cat([self.current[i] for i in a.items()])))
            for a in archs
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            "current": [[list(k), v] for k, v in self.current.items()],
            "base": [[list(k), v] for k, v in self.base.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current = {(str(k[0]), k[1]): v.clone() for k, v in state["current"]}
        self.base = {(str(k[0]), k[1]): v.clone() for k, v in state["base"]}


# ---- conformance kits ---------------------------------------------------------------------------------
class StrategyConformance:
    """Tests every strategy must pass. Inherit in a pytest module and name the strategy:

        from nasframe.testing import StrategyConformance

        class TestMyStrategy(StrategyConformance):
            strategy = "my_strategy"          # its registered name
            options = {"population": 4}       # small settings for speed

    The strategy runs on a `ToySpace` against a `ScriptedSharedWeights` evaluator (which answers
    plain evaluations and every one-shot request), driven by `InMemoryRun` exactly as the runner
    would drive it. Override `make_space` for a strategy that needs a particular space.
    """

    strategy: str = ""
    options: dict[str, Any] = {}
    #: rounds of ask/execute/tell per test
    rounds: int = 12

    def make_space(self) -> SearchSpace:
        return ToySpace(decisions=5, choices=4)

    def make_strategy(self, space: SearchSpace, seed: int) -> Strategy:
        from nasframe.options import build_options
        from nasframe.registry import strategies

        cls = strategies.get(self.strategy)
        return cls(space, build_options(cls.Options, self.options, "strategy"), seed=seed)

    def drive(
        self,
        strategy: Strategy,
        space: SearchSpace,
        rounds: int,
        evaluator: Evaluator | None = None,
        fail_every: int = 0,
    ) -> tuple[list[Arch], InMemoryRun]:
        """Run `rounds` rounds; every `fail_every`-th evaluation fails (0: none)."""
        ev = evaluator or ScriptedSharedWeights(space)

        def judge(arch: Arch, index: int) -> Result:
            if fail_every and index % fail_every == fail_every - 1:
                return Result.failed("scripted failure", Cost(0.0, 1.0))
            return ev.evaluate(arch)

        run = InMemoryRun(strategy, ev, judge=judge)
        seen: list[Arch] = []
        for _ in range(rounds):
            got = run.round()
            if got is None:
                break
            seen.extend(got)
        return seen, run

    def test_same_seed_same_proposals(self) -> None:
        space = self.make_space()
        a, _ = self.drive(self.make_strategy(space, 3), space, self.rounds)
        b, _ = self.drive(self.make_strategy(space, 3), space, self.rounds)
        assert a and a == b

    def test_state_round_trip_mid_run_continues_identically(self) -> None:
        import io

        space = self.make_space()
        straight = self.make_strategy(space, 5)
        ev = ScriptedSharedWeights(space)
        first, _ = self.drive(straight, space, self.rounds // 2, ev)
        buf = io.BytesIO()
        torch.save({"strategy": straight.state_dict(), "evaluator": ev.state_dict()}, buf)
        rest, _ = self.drive(straight, space, self.rounds // 2, ev)
        buf.seek(0)
        saved = torch.load(buf, weights_only=True)  # checkpoints hold plain data and tensors only
        resumed = self.make_strategy(space, 5)
        resumed.load_state_dict(saved["strategy"])
        ev2 = ScriptedSharedWeights(space)
        ev2.load_state_dict(saved["evaluator"])
        again, _ = self.drive(resumed, space, self.rounds // 2, ev2)
        assert first and again == rest
        assert resumed.final() == straight.final()

    def test_pickles_and_copies_carry_the_state(self) -> None:
        import pickle

        space = self.make_space()
        s = self.make_strategy(space, 7)
        self.drive(s, space, self.rounds // 2)
        clone = pickle.loads(pickle.dumps(s))
        a, _ = self.drive(s, space, 3)
        b, _ = self.drive(clone, space, 3)
        assert a == b

    def test_failed_and_infeasible_results_do_not_break_it(self) -> None:
        space = self.make_space()
        s = self.make_strategy(space, 0)
        seen, _ = self.drive(s, space, self.rounds, fail_every=3)
        assert seen
        final = s.final()
        assert final is None or space.validate(final) == final
        for item in s.ask() if not s.done else []:
            request = as_request(item)
            if isinstance(request, (Evaluate, ScoreShared)):
                s.tell(space.validate(request.arch), Result.infeasible("over a scripted limit"))
                break
        after = s.final()
        assert after is None or space.validate(after) == after

    def test_proposals_belong_to_the_space(self) -> None:
        space = self.make_space()
        seen, run = self.drive(self.make_strategy(space, 1), space, self.rounds)
        assert all(space.validate(a) == a for a in seen)
        for request, _ in run.work:
            assert isinstance(request, (TrainShared, TrainMixed, MeasureAngles, SaveBaseWeights))


class SpaceConformance:
    """Tests every search space must pass. Inherit in a pytest module and name the space:

    class TestMySpace(SpaceConformance):
        space = "my_space"
        options = {"width": 8}      # small settings for speed
        data = "digits"             # the data set whose input size networks are built for
    """

    space: str = ""
    options: dict[str, Any] = {}
    data: str = "digits"

    def make_space(self) -> SearchSpace:
        from nasframe.options import build_options
        from nasframe.registry import spaces

        cls = spaces.get(self.space)
        return cls(build_options(cls.Options, self.options, "space"))

    def spec(self) -> DataSpec:
        from nasframe.data import DataOptions, DataSource

        return DataSource(DataOptions(name=self.data), seed=0).spec

    def test_samples_are_valid_distinct_and_round_trip_as_text(self) -> None:
        import json

        space = self.make_space()
        rng = np.random.default_rng(0)
        archs = [space.sample(rng) for _ in range(20)]
        assert all(space.validate(a) == a for a in archs)
        assert len({a.key() for a in archs}) == len({a for a in archs})  # equal keys exactly for equal archs
        for a in archs[:5]:
            assert space.parse_arch(json.dumps(a.to_dict())) == a
            assert space.validate(json.loads(json.dumps(a.to_dict()))) == a

    def test_restriction_narrows_sampling_and_validation(self) -> None:
        from nasframe.errors import InvalidArchitecture

        space = self.make_space()
        d = next(d for d in space.decisions if len(d.choices) > 1)
        keep = d.choices[:1]
        small = space.restrict({d.name: keep})
        rng = np.random.default_rng(1)
        assert all(small.sample(rng)[d.name] == keep[0] for _ in range(20))
        other = space.sample(rng).replace(**{d.name: d.choices[-1]})
        try:
            small.validate(other)
        except InvalidArchitecture:
            pass
        else:
            raise AssertionError("a restricted space accepted a dropped choice")
        assert small.size() * len(d.choices) == space.size()

    def test_build_runs_a_forward_of_the_right_shape(self) -> None:
        space, spec = self.make_space(), self.spec()
        net = space.build(space.sample(np.random.default_rng(2)), spec)
        net.eval()
        with torch.no_grad():
            out = net(torch.zeros(2, *spec.input_shape))
        logits = out[0] if isinstance(out, (tuple, list)) else out
        assert logits.shape == (2, spec.num_classes)

    def test_supernet_paths_train_exactly_their_parameters(self) -> None:
        """Where a supernet exists: a path's forward has the right shape, gradients reach exactly the
        parameters `path_parameter_names` lists (and, of a parameter the path uses only part of, only that
        part), and the path's angle terms name real parameters (and parts of them)."""
        space = self.make_space()
        if not space.supports_supernet:
            return
        spec = self.spec()
        supernet = space.build_supernet(spec)
        params = dict(supernet.named_parameters())  # type: ignore[attr-defined]
        arch = space.sample(np.random.default_rng(3))
        supernet.set_path(arch)
        supernet.train()  # type: ignore[attr-defined]
        out = supernet(torch.randn(4, *spec.input_shape))  # type: ignore[operator]
        logits = out[0] if isinstance(out, (tuple, list)) else out
        assert logits.shape == (4, spec.num_classes)
        logits.float().pow(2).mean().backward()
        with_grad = {n for n, p in params.items() if p.grad is not None}
        listed = set(supernet.path_parameter_names(arch))
        assert listed <= set(params) and with_grad <= listed
        slices = supernet.path_parameter_slices(arch)
        assert list(slices) == supernet.path_parameter_names(arch)
        for name, part in slices.items():
            grad = params[name].grad
            if part is not None and grad is not None:
                outside = grad.clone()
                outside[part] = 0
                assert not outside.any(), f"{name}: gradient outside the part the path uses"
        buffers = dict(supernet.named_buffers())  # type: ignore[attr-defined]
        for name, part in supernet.path_buffer_slices(arch).items():
            assert buffers[name][part].numel() > 0, f"{name}: an empty part"
        try:
            terms = supernet.angle_terms(arch)
        except NotSupported:
            return
        assert all(t in params for t in terms if isinstance(t, str))
        for t in terms:
            if isinstance(t, ParamSlice):
                assert t.name in params and params[t.name][t.part].numel() > 0

    def test_declared_supernet_extras_are_implemented(self) -> None:
        """What `supernet_extras` declares works: angle terms for a path, a mixed forward of the right shape."""
        space = self.make_space()
        if not space.supports_supernet:
            assert not space.supernet_extras, "supernet_extras declared without supports_supernet"
            return
        assert set(space.supernet_extras) <= {"angle_terms", "forward_mixed"}
        spec = self.spec()
        supernet = space.build_supernet(spec)
        arch = space.sample(np.random.default_rng(4))
        if "angle_terms" in space.supernet_extras:
            assert supernet.angle_terms(arch), "declared angle terms, but the path's are empty"
        if "forward_mixed" in space.supernet_extras:
            weights = {d.name: torch.full((len(d.choices),), 1.0 / len(d.choices)) for d in space.decisions}
            with torch.no_grad():
                out = supernet.forward_mixed(torch.randn(2, *spec.input_shape), weights)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            assert logits.shape == (2, spec.num_classes)

    def test_model_space_networks_are_plain_and_match_their_paths(self) -> None:
        """A model space (`nasframe.nn`): the network of an architecture holds no mutable, its parameters are
        exactly the path's (slice for tensor), and the path of the supernet computes its logits."""
        from nasframe.model_stats import count_parameters
        from nasframe.nn import MUTABLES, ModelSpace

        space = self.make_space()
        if not isinstance(space, ModelSpace):
            return
        spec = self.spec()
        supernet = space.build_supernet(spec).eval()
        params = dict(supernet.named_parameters())
        rng = np.random.default_rng(5)
        x = torch.randn(3, *spec.input_shape)
        for _ in range(4):
            arch = space.sample(rng)
            net = space.build(arch, spec)
            assert not [type(m).__name__ for m in net.modules() if isinstance(m, MUTABLES)]
            used = sum(
                (params[n] if part is None else params[n][part]).numel()
                for n, part in supernet.path_parameter_slices(arch).items()
            )
            assert used == count_parameters(net)
            frozen = supernet.freeze(arch).eval()
            supernet.set_path(arch)
            with torch.no_grad():
                torch.testing.assert_close(frozen(x), supernet(x), rtol=0, atol=1e-5)


class EvaluatorConformance:
    """Tests every evaluator must pass. Inherit in a pytest module:

    class TestMyEvaluator(EvaluatorConformance):
        evaluator = "my_evaluator"
        space, space_options = "nb201", {}
        options = {"epochs": 0.1}
        data_options = {"name": "digits", "limit": 200}
    """

    evaluator: str = ""
    options: dict[str, Any] = {}
    space: str = "nb201"
    space_options: dict[str, Any] = {}
    data_options: dict[str, Any] = {"name": "digits", "limit": 200}

    def make(self) -> tuple[SearchSpace, Evaluator]:
        from nasframe.data import DataOptions, DataSource
        from nasframe.options import build_options
        from nasframe.registry import evaluators, spaces

        sp_cls, ev_cls = spaces.get(self.space), evaluators.get(self.evaluator)
        space = sp_cls(build_options(sp_cls.Options, self.space_options, "space"))
        data = DataSource(build_options(DataOptions, self.data_options, "data"), seed=0)
        return space, ev_cls(space, build_options(ev_cls.Options, self.options, "evaluator"), data=data)

    def evaluate(self, ev: Evaluator, arch: Arch, seed: int) -> Result:
        torch.manual_seed(seed)  # what the runner does before every evaluation
        return ev.evaluate(arch)

    def test_results_are_well_formed_and_seeded(self) -> None:
        import math

        space, ev = self.make()
        arch = space.sample(np.random.default_rng(0))
        first = self.evaluate(ev, arch, 11)
        assert first.status in ("ok", "failed") and first.cost.epochs >= 0 and first.cost.seconds >= 0
        if first.ok:
            acc = first.accuracy
            assert acc is not None and math.isfinite(acc)
            assert 0.0 <= acc <= 100.0 or not type(ev).val_acc_is_percent, f"val_acc {acc} is not a percentage"
        _, fresh = self.make()
        assert self.evaluate(fresh, arch, 11).metrics == first.metrics  # same seed, same result

    def test_holds_state_is_declared_truthfully(self) -> None:
        """An evaluator that says it holds no state must checkpoint nothing after working."""
        space, ev = self.make()
        self.evaluate(ev, space.sample(np.random.default_rng(3)), 1)
        assert ev.holds_state or not ev.state_dict()

    def test_state_round_trips_through_a_weights_only_checkpoint(self) -> None:
        import io

        space, ev = self.make()
        rng = np.random.default_rng(1)
        archs = [space.sample(rng) for _ in range(3)]
        self.evaluate(ev, archs[0], 1)
        buf = io.BytesIO()
        torch.save(ev.state_dict(), buf)
        buf.seek(0)
        _, other = self.make()
        other.load_state_dict(torch.load(buf, weights_only=True))
        assert [self.evaluate(ev, a, 2 + i).metrics for i, a in enumerate(archs[1:])] == [
            self.evaluate(other, a, 2 + i).metrics for i, a in enumerate(archs[1:])
        ]
        ev.close()
        other.close()

    def test_one_shot_capabilities_answer_their_requests(self) -> None:
        space, ev = self.make()
        if not isinstance(ev, SharedWeights):
            return
        rng = np.random.default_rng(2)
        torch.manual_seed(0)
        report = ev.train_paths(2, lambda: space.sample(rng))
        assert report.cost.epochs > 0
        arch = space.sample(rng)
        scored = ev.score_path(arch, BNRecalibration(batches=1, momentum=None, batch_size=None))
        assert scored.status in ("ok", "failed") and scored.cost.epochs == 0.0
        if isinstance(ev, AngleMetric):
            ev.save_base_weights()
            assert ev.path_angles([arch]) == [0.0]  # nothing moved since the base was saved
            ev.train_paths(2, lambda: arch)
            assert ev.path_angles([arch])[0] > 0.0
