"""The MBConv weight-sharing supernet: single path, gradients, angle terms, mixed forward.

Everything runs on the CIFAR-size variant at width 1/4 with 8x8 inputs, so it stays fast on CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasframe.common.errors import InvalidArchitecture
from nasframe.common.options import build_options
from nasframe.core.registry import spaces
from nasframe.core.space import Supernet
from nasframe.data import DataSpec

SPEC = DataSpec("cifar10", 3, 8, 8, 10)


def make_space(**options):
    cls = spaces.get("mobilenet")
    return cls(build_options(cls.Options, {"small_input": True, "width_mult": 0.25, **options}, "space"))


@pytest.fixture(scope="module")
def space():
    return make_space()


@pytest.fixture(scope="module")
def arch(space):
    a = space.sample(np.random.default_rng(3))
    # pin a few slots so the checks below see a zero block and both kinds of op
    return a.replace(**{"stage1.block1": "zero", "stage2.block3": "zero", "stage3.block0": "k7e6"})


def test_separate_weights_per_candidate(space):
    net = space.build_supernet(SPEC)
    assert isinstance(net, Supernet)
    slot = net.blocks["stage2_block1"]
    assert sorted(slot.keys()) == sorted(c for c in space.decision("stage2.block1").choices if c != "zero")
    assert slot["k3e3"].depthwise[0].weight.data_ptr() != slot["k3e6"].depthwise[0].weight.data_ptr()


def test_single_path_gradients(space, arch):
    torch.manual_seed(0)
    net = space.build_supernet(SPEC)
    net.set_path(arch)
    out = net(torch.randn(4, 3, 8, 8))
    assert out.shape == (4, 10)
    out.logsumexp(1).sum().backward()
    with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    assert with_grad == set(net.path_parameter_names(arch))
    assert not any(n.startswith("blocks.stage1_block1.") for n in with_grad)  # the zero slot
    unchosen = [
        n
        for n in dict(net.named_parameters())
        if n.startswith("blocks.stage3_block0.") and not n.startswith("blocks.stage3_block0.k7e6.")
    ]
    assert unchosen and not with_grad & set(unchosen)


def test_path_equals_standalone_network(space, arch):
    torch.manual_seed(1)
    supernet = space.build_supernet(SPEC).eval()
    supernet.set_path(arch)
    net = space.build(arch, SPEC).eval()
    params = dict(supernet.named_parameters()) | dict(supernet.named_buffers())
    state = {}
    for name in net.state_dict():
        parts = name.split(".")
        if parts[0] == "blocks":  # supernet names carry the op: blocks.<slot>.<op>.<rest>
            parts.insert(2, str(arch[parts[1].replace("_", ".")]))
        state[name] = params[".".join(parts)]
    net.load_state_dict(state)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), supernet(x))


def test_angle_terms_order_and_zero_slots(space, arch):
    net = space.build_supernet(SPEC)
    terms = net.angle_terms(arch)
    assert terms[:5] == [
        "stem.0.weight",
        "first_block.depthwise.0.weight",
        "first_block.project.0.weight",
        "head.0.weight",
        "classifier.weight",
    ]
    live = [n for n in (d.name for d in space.decisions) if arch[n] != "zero"]
    assert len(terms) == 5 + 3 * len(live)  # expand, depthwise, project per non-zero block (no e1 ops here)
    assert terms[5:8] == [
        f"blocks.stage1_block0.{arch['stage1.block0']}.{p}.0.weight" for p in ("expand", "depthwise", "project")
    ]
    assert not any(t.startswith("blocks.stage1_block1.") for t in terms)
    params = dict(net.named_parameters())
    assert all(params[t].dim() in (2, 4) for t in terms)  # conv and linear weights only: no BN, no bias


def test_angle_terms_skip_missing_expand_and_include_searched_first_block():
    space = make_space(expand_ratios=[1, 3], search_first_block=True)
    arch = space.parse_arch(str(["k5e1"] * len(space.decisions)))
    terms = space.build_supernet(SPEC).angle_terms(arch)
    assert terms[:3] == ["stem.0.weight", "head.0.weight", "classifier.weight"]
    assert terms[3:5] == ["blocks.stage0_block0.k5e1.depthwise.0.weight", "blocks.stage0_block0.k5e1.project.0.weight"]
    assert len(terms) == 3 + 2 * 22


def test_forward_mixed_one_hot_equals_single_path(space, arch):
    torch.manual_seed(2)
    net = space.build_supernet(SPEC).eval()
    net.set_path(arch)
    weights = {
        name: torch.tensor([1.0 if c == arch[name] else 0.0 for c in choices]) for name, choices in net.choices.items()
    }
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net.forward_mixed(x, weights), net(x))


def test_restricted_space_builds_the_full_supernet(space):
    small = space.restrict({"stage1.block0": ["k3e3"]})
    full_names = [n for n, _ in space.build_supernet(SPEC).named_parameters()]
    assert [n for n, _ in small.build_supernet(SPEC).named_parameters()] == full_names


def test_set_path_rejects_unknown_op(space, arch):
    net = space.build_supernet(SPEC)
    with pytest.raises(InvalidArchitecture, match="stage1.block0"):
        net.set_path(arch.replace(**{"stage1.block0": "k9e9"}))
    with pytest.raises(RuntimeError, match="set_path"):
        space.build_supernet(SPEC)(torch.randn(1, 3, 8, 8))
