"""short_train: trains from scratch on search-train, scores on search-val, fails gracefully."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from nasframe.common.plugins import load_plugin
from nasframe.core.capabilities import capabilities_of
from nasframe.core.evaluator import Budget
from nasframe.core.registry import evaluators, spaces
from nasframe.data import DataOptions, DataSource

TOY = str(Path(__file__).parent / "plugins" / "supernet_toy.py")
ARCH = {"layer0": "conv3x3", "layer1": "conv5x5", "layer2": "identity"}


@pytest.fixture(scope="module")
def space():
    load_plugin(TOY)
    return spaces.get("supernet_toy")()


def make(space, digits, **opts):
    cls = evaluators.get("short_train")
    return cls(space, cls.Options(**opts), data=digits, device="cpu")


def test_reports_accuracy_params_macs_and_cost(space, digits):
    ev = make(space, digits, epochs=3, lr=0.1, batch_size=32)
    assert capabilities_of(type(ev)) == []  # measures only: no one-shot work, no table
    torch.manual_seed(0)
    r = ev.evaluate(space.validate(ARCH))
    assert r.ok, r.reason
    # stem 1->8 3x3 (72) + BN (16) + conv3x3 8->8 (576) + BN (16) + conv5x5 (1600) + BN (16) + linear 8->10 (90)
    assert r.params == 72 + 16 + 576 + 16 + 1600 + 16 + 90
    # MACs on 8x8: 8*1*9*64 + 8*8*9*64 + 8*8*25*64 + 8*10
    assert r.macs == 4608 + 36864 + 102400 + 80
    assert r.cost.epochs == 3.0 and r.cost.seconds > 0
    assert r.metrics["val_acc"] > 60  # trained: far above the 10% of chance on 10 balanced classes
    assert math.isfinite(r.metrics["val_loss"]) and r.metrics["train_loss"] < math.log(10)


def test_same_seed_same_result_other_seed_differs(space, digits):
    ev = make(space, digits, epochs=1)
    arch = space.validate(ARCH)
    results = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        results.append(ev.evaluate(arch).metrics)
    assert results[0] == results[1]
    assert results[0] != results[2]
    assert not torch.are_deterministic_algorithms_enabled()  # switched back off after the evaluation


def test_budget_overrides_epochs(space, digits):
    ev = make(space, digits, epochs=5, batch_size=64)
    spe = 719 // 64  # search-train holds round(1438 * 0.5) = 719 images (digits without its test split)
    r = ev.evaluate(space.validate(ARCH), Budget(steps=3))
    assert r.cost.epochs == pytest.approx(3 / spe)
    assert ev.evaluate(space.validate(ARCH), Budget(epochs=0.5)).cost.epochs == pytest.approx(round(spe / 2) / spe)


class _NanAfter(nn.Module):
    """Wraps a net; from the `k`-th training forward on, its logits are NaN."""

    def __init__(self, net: nn.Module, k: int):
        super().__init__()
        self.net, self.k, self.calls = net, k, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.k:
                return out * float("nan")
        return out


def test_nan_loss_fails_with_the_step_and_the_search_goes_on(space, digits, monkeypatch):
    ev = make(space, digits, epochs=2, check_every=50)
    build = type(space).build
    monkeypatch.setattr(type(space), "build", lambda self, arch, data: _NanAfter(build(self, arch, data), 3))
    r = ev.evaluate(space.validate(ARCH))
    assert not r.ok and r.reason == "loss became nan at step 3"
    assert r.cost.epochs == 2.0
    monkeypatch.undo()
    assert ev.evaluate(space.validate(ARCH), Budget(steps=2)).ok


def test_finiteness_is_checked_every_k_steps_not_every_step(space, digits, monkeypatch):
    import nasframe.training.steps as training

    calls = []
    real = training._raise_if_nonfinite
    monkeypatch.setattr(training, "_raise_if_nonfinite", lambda b, s, e: (calls.append((s, e)), real(b, s, e)))
    make(space, digits, check_every=4).evaluate(space.validate(ARCH), Budget(steps=10))
    assert calls == [(0, 4), (4, 8), (8, 10)]


class _OutOfMemory(nn.Module):
    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_is_a_failed_result(space, digits, monkeypatch):
    ev = make(space, digits)
    build = type(space).build

    def build_oom(self, arch, data):
        net = build(self, arch, data)
        net.layers[0] = _OutOfMemory()
        return net

    monkeypatch.setattr(type(space), "build", build_oom)
    monkeypatch.setattr("nasframe.common.model_stats.count_macs", lambda *a, **k: 0)  # imported in evaluate
    r = ev.evaluate(space.validate(ARCH))
    assert not r.ok and r.reason.startswith("out of GPU memory: CUDA out of memory")


def test_auxiliary_head_loss_is_weighted():
    from nasframe.training.step_options import StepSettings
    from nasframe.training.steps import classification_loss

    y = torch.tensor([1, 2])
    logits = torch.zeros(2, 10)
    plain = classification_loss(logits, y, StepSettings())
    with_aux = classification_loss((logits, torch.zeros(2, 10)), y, StepSettings(auxiliary_weight=0.4))
    assert plain.item() == pytest.approx(math.log(10))
    assert with_aux.item() == pytest.approx(1.4 * math.log(10))


def test_cosine_schedule_values():
    from nasframe.training.steps import cosine_lr

    assert cosine_lr(0, 100, 0.1) == pytest.approx(0.1)
    assert cosine_lr(50, 100, 0.1) == pytest.approx(0.05)
    assert cosine_lr(100, 100, 0.1, 0.001) == pytest.approx(0.001)
    assert cosine_lr(250, 100, 0.1, 0.001) == pytest.approx(0.001)  # held at the end
    assert cosine_lr(25, 100, 0.025, 0.001) == pytest.approx(0.001 + 0.012 * (1 + math.cos(math.pi / 4)))


def test_darts_space_on_digits():
    space_cls = spaces.get("darts")
    space = space_cls(space_cls.Options(C=4, layers=3, auxiliary=True, drop_path_prob=0.2))
    data = DataSource(DataOptions(name="digits", limit=300), seed=0)
    cls = evaluators.get("short_train")
    ev = cls(space, cls.Options(epochs=2), data=data)
    arch = space.parse_arch("DARTS_V2")
    torch.manual_seed(0)
    r = ev.evaluate(arch)
    assert r.ok, r.reason
    reference = space.build(arch, data.spec)
    from nasframe.common.model_stats import count_macs, count_parameters

    assert r.params == count_parameters(reference) and r.macs == count_macs(reference, (1, 8, 8))
    assert 0 <= r.metrics["val_acc"] <= 100 and r.cost.epochs == 2.0


def test_drop_path_ramps_up_per_epoch_as_in_darts():
    from types import SimpleNamespace

    from nasframe.evaluators.short_train import _drop_path_ramp

    model = nn.Linear(1, 1)
    model.drop_path_prob = 0.2
    hook = _drop_path_ramp(model, SimpleNamespace(all_params=["p"]), steps_per_epoch=10, steps=40)
    seen = []
    for i in (0, 9, 10, 39):
        assert hook(i) == ["p"]
        seen.append(model.drop_path_prob)
    assert seen == pytest.approx([0.0, 0.0, 0.05, 0.15])
    model.drop_path_prob = 0.0
    assert _drop_path_ramp(model, SimpleNamespace(all_params=[]), 10, 40) is None


def test_batchnorm_is_recalibrated_before_validation(space, digits, monkeypatch):
    import nasframe.training.measure as measure  # short_train imports it inside the training

    calls = []
    real = measure.recalibrate_bn
    monkeypatch.setattr(measure, "recalibrate_bn", lambda *a, **k: (calls.append(a[3]), real(*a, **k)))
    make(space, digits, bn_recalibration_batches=7).evaluate(space.validate(ARCH), Budget(steps=2))
    make(space, digits, bn_recalibration_batches=0).evaluate(space.validate(ARCH), Budget(steps=2))
    assert calls == [7]


def test_deterministic_and_compile_options_take_effect(space, digits, monkeypatch):
    seen = {}
    build = type(space).build

    def spy(self, arch, data):
        seen["deterministic"] = torch.are_deterministic_algorithms_enabled()
        return build(self, arch, data)

    compiled = []
    monkeypatch.setattr(type(space), "build", spy)
    monkeypatch.setattr(torch, "compile", lambda model: (compiled.append(model), model)[1])
    make(space, digits, compile=True).evaluate(space.validate(ARCH), Budget(steps=1))
    assert seen["deterministic"] is True and len(compiled) == 1  # CPU default: deterministic on
    make(space, digits, deterministic=False).evaluate(space.validate(ARCH), Budget(steps=1))
    assert seen["deterministic"] is False and len(compiled) == 1
