"""The conformance kit: test classes a plugin author inherits in a pytest module."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nasframe.common.errors import NotSupported
from nasframe.core.capabilities import (
    AngleMetric,
    BNRecalibration,
    SharedWeights,
)
from nasframe.core.evaluator import Cost, Evaluator, Result
from nasframe.core.requests import (
    Evaluate,
    MeasureAngles,
    SaveBaseWeights,
    ScoreShared,
    TrainMixed,
    TrainShared,
    as_request,
)
from nasframe.core.space import Arch, ParamSlice, SearchSpace
from nasframe.core.strategy import Strategy
from nasframe.data import DataSpec
from nasframe.testing.in_memory import InMemoryRun
from nasframe.testing.toys import ScriptedSharedWeights, ToySpace


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
        from nasframe.common.options import build_options
        from nasframe.core.registry import strategies

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
        from nasframe.common.options import build_options
        from nasframe.core.registry import spaces

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
        from nasframe.common.errors import InvalidArchitecture

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
        from nasframe.common.model_stats import count_parameters
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
        from nasframe.common.options import build_options
        from nasframe.core.registry import evaluators, spaces
        from nasframe.data import DataOptions, DataSource

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
