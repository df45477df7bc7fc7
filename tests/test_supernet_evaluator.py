"""supernet evaluator: single-path training leaves other ops untouched, resumes exactly, and offers
the weight-sharing interface (uniform training, angle vectors, base weights)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nasframe.common.errors import NasframeError
from nasframe.common.plugins import load_plugin
from nasframe.core.capabilities import (
    AngleMetric,
    Differentiable,
    Distillation,
    SharedWeights,
    capabilities_of,
    capability_names,
)
from nasframe.core.evaluator import Budget
from nasframe.core.registry import evaluators, spaces
from nasframe.core.space import Arch
from nasframe.data import DataOptions, DataSource
from nasframe.training.steps import cosine_lr

TOY = str(Path(__file__).parent / "plugins" / "supernet_toy.py")


@pytest.fixture(scope="module")
def space():
    load_plugin(TOY)
    return spaces.get("supernet_toy")()


def make(space, digits, **opts):
    cls = evaluators.get("supernet")
    return cls(space, cls.Options(**opts), data=digits, device="cpu")


def uniform(space, choice: str) -> Arch:
    return space.validate({d.name: choice for d in space.decisions})


def _op_state(ev, prefix: str) -> dict[str, torch.Tensor]:
    """Weights, buffers and momentum buffers of every tensor under `prefix` (copies)."""
    out = {k: v.clone() for k, v in ev.supernet.state_dict().items() if k.startswith(prefix)}
    for name, p in ev.supernet.named_parameters():
        if name.startswith(prefix) and p in ev.optimizer.state:
            out[name + ":momentum"] = ev.optimizer.state[p]["momentum_buffer"].clone()
    return out


def train_uniform(ev, space, epochs: float, seed: int = 0):
    """Uniform single-path training, as the runner executes `TrainShared(epochs, UniformPaths)`."""
    rng = np.random.default_rng(seed)
    return ev.train_paths(max(1, round(epochs * ev.steps_per_epoch())), lambda: space.sample(rng))


def test_declares_the_one_shot_capabilities(space, digits):
    ev = make(space, digits)
    assert isinstance(ev, AngleMetric) and isinstance(ev, SharedWeights)
    assert isinstance(ev, Differentiable) and isinstance(ev, Distillation)
    assert capability_names(capabilities_of(type(ev))) == [
        "shared weights",
        "branch importance",
        "distillation",
        "differentiable",
        "angle metric",
    ]


def test_unchosen_ops_get_no_update_at_all(space, digits):
    ev = make(space, digits, steps=6)
    torch.manual_seed(0)
    assert ev.evaluate(uniform(space, "conv3x3")).ok
    conv3_before = _op_state(ev, "layers.0.conv3x3.")
    conv5_before = _op_state(ev, "layers.0.conv5x5.")
    assert any(k.endswith(":momentum") for k in conv3_before)  # conv3x3 was trained: it has momentum
    assert not any(k.endswith(":momentum") for k in conv5_before)  # conv5x5 was not: no optimizer state
    torch.manual_seed(1)
    assert ev.evaluate(uniform(space, "conv5x5")).ok
    conv3_after = _op_state(ev, "layers.0.conv3x3.")
    assert conv3_after.keys() == conv3_before.keys()
    for key, value in conv3_before.items():  # weights, BN statistics and momentum bit-identical
        assert torch.equal(conv3_after[key], value), key
    conv5_after = _op_state(ev, "layers.0.conv5x5.")
    assert not torch.equal(conv5_after["layers.0.conv5x5.0.weight"], conv5_before["layers.0.conv5x5.0.weight"])
    assert "layers.0.conv5x5.0.weight:momentum" in conv5_after


def test_schedule_position_runs_across_evaluations(space, digits):
    ev = make(space, digits, steps=4, schedule_epochs=2.0, lr=0.1, lr_min=0.01)
    spe = 719 // 64  # search-train: half of the 1,438 digits train images
    for k in range(1, 4):
        torch.manual_seed(k)
        r = ev.evaluate(uniform(space, "conv3x3"))
        assert r.ok and r.cost.epochs == pytest.approx(4 / spe)
        assert ev.step == 4 * k
        # the last step of evaluation k ran at schedule position 4k - 1
        assert ev.optimizer.param_groups[0]["lr"] == pytest.approx(cosine_lr(4 * k - 1, 2 * spe, 0.1, 0.01))


def _run(ev, archs, seeds):
    results = []
    for arch, seed in zip(archs, seeds):
        torch.manual_seed(seed)
        results.append(ev.evaluate(arch).metrics)
    return results


def test_resumed_evaluator_equals_uninterrupted(space, digits):
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(4)]
    seeds = [11, 12, 13, 14]
    whole = make(space, digits, steps=5)
    expected = _run(whole, archs, seeds)
    torch.manual_seed(99)
    train_uniform(whole, space, 0.2)

    first = make(space, digits, steps=5)
    got = _run(first, archs[:2], seeds[:2])
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # plain tensors and numbers only
    second = make(space, digits, steps=5)
    second.load_state_dict(state)
    got += _run(second, archs[2:], seeds[2:])
    assert got == expected
    torch.manual_seed(99)
    train_uniform(second, space, 0.2)
    for (k, a), b in zip(whole.supernet.state_dict().items(), second.supernet.state_dict().values()):
        assert torch.equal(a, b), k
    assert whole.step == second.step
    assert all(torch.equal(whole.base[k], second.base[k]) for k in whole.base)


def test_train_uniform_samples_every_op_and_records_cost(space, digits):
    ev = make(space, digits)
    torch.manual_seed(0)
    ev._build()
    before = {k: v.clone() for k, v in ev.supernet.state_dict().items()}
    report = train_uniform(ev, space, 2.0)
    assert report.cost.epochs == 2.0 and report.cost.seconds > 0
    assert math.isfinite(report.metrics["train_loss"]) and report.metrics["steps"] == 22  # 2 x (719 // 64)
    after = ev.supernet.state_dict()
    for i in range(3):  # 22 steps of uniform paths: every conv of every layer was trained at some step
        for op in ("conv3x3", "conv5x5"):
            key = f"layers.{i}.{op}.0.weight"
            assert not torch.equal(before[key], after[key]), key


def test_train_uniform_respects_a_restricted_space(space, digits):
    ev = make(space, digits)
    torch.manual_seed(0)
    ev._build()
    before = ev.supernet.state_dict()["layers.0.conv5x5.0.weight"].clone()
    train_uniform(ev, space.restrict({"layer0": ["conv3x3", "identity"]}), 1.0)
    assert torch.equal(ev.supernet.state_dict()["layers.0.conv5x5.0.weight"], before)


def test_path_vectors_follow_the_angle_terms(space, digits):
    ev = make(space, digits, steps=5)
    arch = space.validate({"layer0": "conv3x3", "layer1": "avg_pool", "layer2": "identity"})
    torch.manual_seed(0)
    v0, v1 = ev.path_vectors(arch)
    # stem 8*1*3*3, conv3x3 8*8*3*3, avg_pool surrogate 8*3*3 (constant 1/9), identity nothing, head 10*8
    assert v0.shape == (72 + 576 + 72 + 80,)
    assert torch.equal(v0, v1)  # nothing trained yet: base == current, angle 0
    assert torch.equal(v0[648:720], torch.full((72,), 1 / 9))
    ev.evaluate(arch)
    v0b, v1b = ev.path_vectors(arch)
    assert torch.equal(v0b, v0) and not torch.equal(v1b, v0)
    assert torch.equal(v1b[648:720], v0b[648:720])  # the constant is the same in both
    cos = torch.nn.functional.cosine_similarity(v0b, v1b, dim=0)
    assert 0 < math.acos(min(1.0, float(cos))) < math.pi / 2
    ev.save_base_weights()
    v0c, v1c = ev.path_vectors(arch)
    assert torch.equal(v0c, v1c) and torch.equal(v1c, v1b)


class _NanOnce(nn.Module):
    def forward(self, x):
        return x * float("nan")


def test_diverged_path_fails_and_leaves_the_shared_weights_as_they_were(space, digits):
    ev = make(space, digits, steps=4)
    torch.manual_seed(0)
    ev.evaluate(uniform(space, "conv3x3"))
    saved = {k: v.clone() for k, v in ev.supernet.state_dict().items()}
    momentum = {p: s["momentum_buffer"].clone() for p, s in ev.optimizer.state.items()}
    step = ev.step
    ev.supernet.layers[1]["identity"] = _NanOnce()
    r = ev.evaluate(space.validate({"layer0": "conv3x3", "layer1": "identity", "layer2": "conv3x3"}))
    assert not r.ok and r.reason.startswith("loss became nan at step 1")
    for k, v in ev.supernet.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert all(torch.equal(ev.optimizer.state[p]["momentum_buffer"], m) for p, m in momentum.items())
    assert ev.step == step
    ev.supernet.layers[1]["identity"] = nn.Identity()
    with pytest.raises(NasframeError, match="diverged"):
        ev.supernet.layers[0]["avg_pool"] = _NanOnce()
        train_uniform(ev, space.restrict({"layer0": ["avg_pool"]}), 0.1)
    ev.supernet.layers[0]["avg_pool"] = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    assert ev.evaluate(uniform(space, "conv3x3")).ok  # the search goes on


def test_out_of_memory_is_a_failed_result(space, digits):
    class OOM(nn.Module):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    ev = make(space, digits, steps=2)
    torch.manual_seed(0)
    ev._build()
    ev.supernet.layers[2]["identity"] = OOM()
    r = ev.evaluate(uniform(space, "identity"))
    assert not r.ok and r.reason.startswith("out of GPU memory")


def test_bn_recalibration_reestimates_only_the_path(space, digits):
    from nasframe.data.augment import BatchTransform
    from nasframe.training.measure import recalibrate_bn

    class Holder(nn.Module):  # a path (net) and an op off the path (unused)
        def __init__(self):
            super().__init__()
            self.net, self.unused = nn.Sequential(nn.BatchNorm2d(1), nn.Identity()), nn.BatchNorm2d(1)

        def forward(self, x):
            return self.net(x)

    holder = Holder()
    net, unused = holder.net, holder.unused
    unused.running_mean.fill_(3.0)
    batches = [torch.full((2, 1, 1, 1), v, dtype=torch.uint8) for v in (10, 20, 60)]
    stream = iter([(b, None) for b in batches])
    t = BatchTransform(torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 1 / 255))  # identity on the values
    recalibrate_bn(holder, stream, t, 3, torch.device("cpu"), amp=False)
    # cumulative average of the three batch means, not an EMA from the reset value
    assert net[0].running_mean.item() == pytest.approx(30.0)
    assert net[0].momentum == 0.1
    assert unused.running_mean.item() == 3.0 and unused.num_batches_tracked.item() == 0


def test_evaluate_with_recalibration_and_model_stats(space, digits):
    ev = make(space, digits, steps=3, bn_recalibration_batches=2, model_stats=True)
    torch.manual_seed(0)
    r = ev.evaluate(uniform(space, "conv3x3"))
    assert r.ok and 0 <= r.metrics["val_acc"] <= 100
    assert r.params == 72 + 16 + 3 * (576 + 16) + 90


def test_darts_space_on_digits():
    space_cls = spaces.get("darts")
    space = space_cls(space_cls.Options(supernet_C=4, supernet_layers=3))
    data = DataSource(DataOptions(name="digits", limit=300), seed=0)
    ev = make(space, data, steps=3)
    arch = space.parse_arch("DARTS_V2")
    torch.manual_seed(0)
    assert ev.evaluate(arch).ok
    # DARTS_V2's normal cell never uses max_pool on edge 0 (node 2 <- c_{k-2}); that op stays as built
    untouched = _op_state(ev, "cells.0.edges.0.ops.1.")
    trained = {k: v.clone() for k, v in ev.supernet.state_dict().items() if k.startswith("cells.0.edges.0.ops.4.")}
    assert ev.evaluate(arch, Budget(steps=2)).ok
    assert all(torch.equal(v, _op_state(ev, "cells.0.edges.0.ops.1.")[k]) for k, v in untouched.items())
    assert any(not torch.equal(v, ev.supernet.state_dict()[k]) for k, v in trained.items())
    cost = train_uniform(ev, space, 0.5).cost
    assert cost.epochs == pytest.approx(round(0.5 * (150 // 64)) / (150 // 64))
    v0, v1 = ev.path_vectors(arch)
    assert v0.shape == v1.shape and v0.numel() > 0 and not torch.equal(v0, v1)


@pytest.mark.parametrize(
    "strategy, sets, length",
    [
        ("spos", [], 120.0),  # SPOS' supernet_epochs: the schedule spans the whole supernet training
        ("spos", ["strategy.supernet_epochs=7"], 7.0),
        ("darts", [], 50.0),
        ("spos", ["evaluator.schedule_epochs=30"], 30.0),  # a value given wins
        ("nse", [], 50.0),  # a strategy that plans no global schedule: the default
    ],
)
def test_the_schedule_follows_the_strategys_plan_unless_set(strategy, sets, length, tmp_path):
    """`schedule_epochs: null` (the default) takes the strategy's planned supernet training, so SPOS'
    defaults no longer warn that a 50-epoch schedule ends before its 120 epochs of training."""
    from nasframe.search.components import build_components
    from nasframe.search.config import merge_config, resolve

    space = {"spos": "shufflenet", "darts": "darts", "nse": "nse"}[strategy]
    names = {"strategy": strategy, "space": space, "evaluator": "supernet"}
    config = resolve(merge_config({}, names=names, sets=sets))
    parts = build_components(config, torch.device("cpu"))
    assert parts.evaluator.schedule_epochs() == length
    planned = parts.strategy.planned_training_epochs()
    note = parts.evaluator.training_plan_note(planned) if planned is not None else None
    if "evaluator.schedule_epochs=30" in sets:  # a schedule set shorter than the plan is still said
        assert note is not None and "schedule is 30 epochs" in note
    else:
        assert note is None
