"""A supernet contract that knows slices (nasframe/training/sliced.py and its hooks in the supernet evaluator).

The reference is SPOS (algorithms.md 3.2, S3): parameters off the sampled path get no momentum or
weight-decay update. Here the unit is a part of a parameter: after a wide path's step, a narrow path's
step must move exactly the narrow part, as torch's SGD would move it were it a parameter of its own, and
leave the rest of the weight and of its momentum buffer as they were. BatchNorm recalibration of a narrow
path must leave the other channels' statistics alone, and ABS' angle must tell widths and kernels apart.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nasframe
from nasframe import nn as nas
from nasframe.core.capabilities import BNRecalibration
from nasframe.core.registry import spaces
from nasframe.core.space import Arch, ParamSlice
from nasframe.data import DataOptions, DataSource, DataSpec
from nasframe.evaluators.supernet import SupernetEvaluator
from nasframe.nn import ModelSpace
from nasframe.training.measure import recalibrate_bn
from nasframe.training.sliced import SlicedPath, path_parameters

SPEC = DataSpec("digits", 1, 8, 8, 10)


class Wide(nn.Module):
    """The issue's case: a width and a kernel choice on one convolution."""

    def __init__(self, data):
        super().__init__()
        w, k = nas.choice("width", [8, 16]), nas.choice("kernel", [3, 5])
        self.stem = nn.Conv2d(data.channels, 4, 3, padding=1, bias=False)
        self.conv = nas.Conv2d(4, w, k, padding=k // 2, bias=False)
        self.bn = nas.BatchNorm2d(w)
        self.head = nas.Linear(w, data.num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(self.stem(x)))).mean((2, 3)))


class WideSpace(ModelSpace):
    factory = staticmethod(Wide)


WIDE = Arch({"width": 16, "kernel": 5})
NARROW = Arch({"width": 8, "kernel": 3})
INSIDE = (slice(0, 8), slice(0, 4), slice(1, 4), slice(1, 4))


def outside(t: torch.Tensor) -> torch.Tensor:
    """The conv weight (or its buffer) with the narrow path's part zeroed."""
    out = t.detach().clone()
    out[INSIDE] = 0
    return out


def step(supernet, optimizer, arch, x, y, params=None):
    """One training step of `arch`'s path; returns the conv weight's gradient."""
    supernet.set_path(arch)
    params = path_parameters(supernet, arch, dict(supernet.named_parameters())) if params is None else params
    nn.functional.cross_entropy(supernet(x), y).backward()
    grad = supernet.net.conv.weight.grad.clone()
    all_params = list(optimizer.param_groups[0]["params"])
    if isinstance(params, SlicedPath):
        params.step(optimizer, all_params)
    else:
        optimizer.param_groups[0]["params"] = params
        optimizer.step()
        optimizer.param_groups[0]["params"] = all_params
    optimizer.zero_grad(set_to_none=True)
    return grad


@pytest.mark.parametrize(
    "momentum, nesterov, weight_decay", [(0.9, False, 3e-4), (0.9, True, 5e-4), (0.0, False, 3e-4)]
)
def test_a_narrow_step_moves_exactly_its_part_as_sgd_would_a_parameter_of_its_own(momentum, nesterov, weight_decay):
    torch.manual_seed(0)
    sup = WideSpace().build_supernet(SPEC)
    opt = torch.optim.SGD(sup.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    step(sup, opt, WIDE, x, y)
    weight = sup.net.conv.weight
    w1 = weight.detach().clone()
    buf1 = opt.state[weight]["momentum_buffer"].clone() if momentum else None
    grad = step(sup, opt, NARROW, x, y)

    # outside the part: weight and momentum exactly as the wide step left them (no decay, no momentum)
    assert torch.equal(outside(weight), outside(w1))
    if momentum:
        assert torch.equal(outside(opt.state[weight]["momentum_buffer"]), outside(buf1))
    # inside: torch's SGD on the part as a parameter of its own, with the part of the momentum buffer
    alone = nn.Parameter(w1[INSIDE].clone())
    alone.grad = grad[INSIDE].clone()
    ref = torch.optim.SGD([alone], lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if momentum:
        ref.state[alone]["momentum_buffer"] = buf1[INSIDE].clone()
    ref.step()
    torch.testing.assert_close(weight.detach()[INSIDE], alone.detach(), rtol=0, atol=0)
    if momentum:
        torch.testing.assert_close(
            opt.state[weight]["momentum_buffer"][INSIDE], ref.state[alone]["momentum_buffer"], rtol=0, atol=0
        )
    # the same two steps with whole tensors move the unused channels and kernel ring: the case the issue measured
    torch.manual_seed(0)
    plain = WideSpace().build_supernet(SPEC)
    plain_opt = torch.optim.SGD(
        plain.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )
    step(plain, plain_opt, WIDE, x, y)
    before = plain.net.conv.weight.detach().clone()
    whole = list(plain.parameters())
    step(plain, plain_opt, NARROW, x, y, params=whole)
    assert not torch.equal(outside(plain.net.conv.weight), outside(before))  # weight decay at least


def test_a_narrow_path_first_creates_its_momentum_as_torch_would():
    torch.manual_seed(1)
    sup = WideSpace().build_supernet(SPEC)
    opt = torch.optim.SGD(sup.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    w0 = sup.net.conv.weight.detach().clone()
    grad = step(sup, opt, NARROW, x, y)
    buf = opt.state[sup.net.conv.weight]["momentum_buffer"]
    assert not outside(buf).any() and torch.equal(outside(sup.net.conv.weight), outside(w0))
    alone = nn.Parameter(w0[INSIDE].clone())
    alone.grad = grad[INSIDE].clone()
    ref = torch.optim.SGD([alone], lr=0.05, momentum=0.9, weight_decay=3e-4)
    ref.step()  # torch's first step: the buffer is a copy of the (decayed) gradient
    torch.testing.assert_close(sup.net.conv.weight.detach()[INSIDE], alone.detach(), rtol=0, atol=0)
    torch.testing.assert_close(buf[INSIDE], ref.state[alone]["momentum_buffer"], rtol=0, atol=0)


def test_built_in_supernets_still_train_whole_tensors():
    nb201 = spaces.get("nb201")(spaces.get("nb201").Options(C=4, N=1))
    sup = nb201.build_supernet(SPEC)
    arch = nb201.sample(__import__("numpy").random.default_rng(0))
    params = path_parameters(sup, arch, dict(sup.named_parameters()))
    assert type(params) is list and [id(p) for p in params] == [
        id(dict(sup.named_parameters())[n]) for n in sup.path_parameter_names(arch)
    ]
    assert sup.path_buffer_slices(arch) == {} and all(v is None for v in sup.path_parameter_slices(arch).values())


# ---- through the evaluator --------------------------------------------------------------------------------------
def make_evaluator(**options):
    data = DataSource(DataOptions(name="digits", limit=200), seed=0)
    return SupernetEvaluator(WideSpace(), SupernetEvaluator.Options(batch_size=16, **options), data=data)


def test_training_a_narrow_path_leaves_the_rest_of_every_sliced_tensor_untouched():
    ev = make_evaluator()
    torch.manual_seed(0)
    ev.train_paths(2, lambda: WIDE)  # every part has weights and momentum now
    net = ev.supernet
    state = {k: v.clone() for k, v in net.state_dict().items()}
    momentum = {n: ev.optimizer.state[p]["momentum_buffer"].clone() for n, p in net.named_parameters()}
    ev.train_paths(3, lambda: NARROW)
    after = net.state_dict()
    slices = net.path_parameter_slices(NARROW) | net.path_buffer_slices(NARROW)
    for name, part in slices.items():
        if part is None:
            continue
        for before, now in ((state[name], after[name]), (momentum.get(name), None)):
            if before is None:
                continue
            now = ev.optimizer.state[dict(net.named_parameters())[name]]["momentum_buffer"] if now is None else now
            kept_before, kept_now = before.clone(), now.clone()
            kept_before[part], kept_now[part] = 0, 0
            assert torch.equal(kept_before, kept_now), name
            assert not torch.equal(before[part], now[part]), name  # while the path's part did train
    assert slices["net.conv.weight"] == INSIDE and slices["net.bn.running_mean"] == (slice(0, 8),)


def test_recalibrating_a_narrow_path_leaves_the_other_channels_statistics_as_they_were():
    ev = make_evaluator()
    torch.manual_seed(0)
    ev.train_paths(4, lambda: WIDE)
    bn = ev.supernet.net.bn
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    torch.manual_seed(7)
    ev.score_path(NARROW, BNRecalibration(batches=3, momentum=None, batch_size=None))
    assert torch.equal(bn.running_mean[8:], mean0[8:]) and torch.equal(bn.running_var[8:], var0[8:])
    assert not torch.equal(bn.running_mean[:8], mean0[:8])
    # the path's channels hold what recalibrating the narrow network itself gives on the same batches
    frozen = ev.supernet.freeze(NARROW)
    batches, transform = ev._data()
    torch.manual_seed(7)
    recalibrate_bn(frozen, batches.train(16), transform, 3, ev.device, False, momentum=None)
    torch.testing.assert_close(bn.running_mean[:8], frozen.bn.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var[:8], frozen.bn.running_var, rtol=1e-5, atol=1e-6)


def test_angles_come_from_the_parts_a_path_uses():
    ev = make_evaluator()
    torch.manual_seed(0)
    ev.save_base_weights()
    narrow, wide = ev.path_vectors(NARROW), ev.path_vectors(WIDE)
    assert narrow[0].numel() == 4 * 9 + 8 * 4 * 9 + 10 * 8 and wide[0].numel() == 4 * 9 + 16 * 4 * 25 + 10 * 16
    assert any(isinstance(t, ParamSlice) for t in ev.supernet.angle_terms(NARROW))
    with torch.no_grad():  # move only what the narrow path does not use: the ring of the 5x5 kernel
        w = ev.supernet.net.conv.weight
        ring = w.clone()
        ring[:, :, 1:4, 1:4] = 0
        w.add_(ring)
    narrow_angle, wide_angle = ev.path_angles([NARROW, WIDE])
    assert narrow_angle == 0.0 and wide_angle > 0.01
    ev.train_paths(2, lambda: Arch({"width": 8, "kernel": 5}))
    assert ev.path_angles([NARROW])[0] > 0.0  # the 3x3 centre did train


# ---- refused when the run is built --------------------------------------------------------------------------------
def test_a_space_without_angle_terms_is_refused_by_abs_before_anything_runs(cli, tmp_path):
    class NoAngles(ModelSpace):
        factory = staticmethod(Wide)
        supernet_extras = frozenset({"forward_mixed"})

    spaces.add("test_sliced_no_angles", NoAngles)
    out = tmp_path / "r"
    code, _, err = cli("run", "--strategy", "abs", "--space", "test_sliced_no_angles", "--evaluator", "supernet",
                       "--quiet", "--out", out)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and not out.exists()
    assert "ABS' angle metric needs the supernet's angle_terms, which space 'test_sliced_no_angles' does not" in err
    assert "implement Supernet.angle_terms and add 'angle_terms' to the space's supernet_extras" in err


def test_a_model_space_that_cannot_mix_is_refused_by_darts_naming_the_layer(cli, tmp_path):
    class Strided(nn.Module):
        def __init__(self, data):
            super().__init__()
            self.conv = nas.Conv2d(data.channels, 4, 3, stride=nas.choice("stride", [1, 2]), padding=1)
            self.head = nn.Linear(4, data.num_classes)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))

    nasframe.model_space("test_sliced_strided", Strided)
    out = tmp_path / "r"
    code, _, err = cli("run", "--strategy", "darts", "--space", "test_sliced_strided", "--evaluator", "supernet",
                       "--quiet", "--out", out)  # fmt: skip
    assert code == 2 and not out.exists()
    assert "a differentiable search (DARTS, SETN) needs the supernet's forward_mixed" in err
    assert "its supernet cannot mix conv: its stride is a choice" in err


def test_a_sliced_step_without_1d_decay_decays_only_the_parts_of_weights_of_two_or_more_dimensions():
    """`evaluator.decay_1d: false` on a sliced path: with zero gradients, a step moves the used part of a 2-D
    weight by -lr * decay * w and leaves the 1-D parts (and every unused part) exactly as they were."""
    weight = nn.Parameter(torch.randn(6, 4))
    bias = nn.Parameter(torch.randn(6))
    for p in (weight, bias):
        p.grad = torch.zeros_like(p)
    before_w, before_b = weight.detach().clone(), bias.detach().clone()
    opt = torch.optim.SGD([weight, bias], lr=0.5, momentum=0.0, weight_decay=0.1)
    path = SlicedPath([weight, bias], [(slice(0, 3), slice(None)), (slice(0, 3),)])
    path.step(opt, [weight, bias], decay_1d=False)
    expected = before_w.clone()
    expected[:3] = before_w[:3].add(torch.zeros(3, 4).add(before_w[:3], alpha=0.1), alpha=-0.5)  # SGD's own order
    assert torch.equal(weight.detach(), expected)
    assert torch.equal(bias.detach(), before_b)
    assert opt.param_groups[0]["weight_decay"] == 0.1  # restored for the next step
