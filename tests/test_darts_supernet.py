"""DARTS supernet: single-path execution and gradients, mixed forward, ABS angle terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nasframe.common.options import build_options
from nasframe.core.registry import spaces
from nasframe.core.space import Arch, Supernet
from nasframe.data import DataSpec
from nasframe.spaces.darts_genotype import DECISION_NAMES, PRIMITIVES
from nasframe.spaces.darts_supernet import ANGLE_PATHS, DartsSupernet

DIGITS = DataSpec("digits", 1, 8, 8, 10)


def make_space(**opts):
    cls = spaces.get("darts")
    return cls(build_options(cls.Options, {"supernet_C": 4, "supernet_layers": 4, **opts}, "space"))


def arch_of(**ops: str) -> Arch:
    """All edges 'none' except the given ones (keys like normal_2_0 for normal.2<-0)."""
    chosen = {f"{k.split('_')[0]}.{k.split('_')[1]}<-{k.split('_')[2]}": v for k, v in ops.items()}
    return Arch([(n, chosen.get(n, "none")) for n in DECISION_NAMES])


def test_supernet_holds_search_ops_on_every_edge():
    space = make_space(supernet_layers=8)
    net = space.build_supernet(DIGITS)
    assert isinstance(net, Supernet) and isinstance(net, nn.Module)
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [2, 5]
    assert all(len(c.edges) == 14 and all(len(e.ops) == 8 for e in c.edges) for c in net.cells)
    pool = net.cells[0].edges[0].ops[PRIMITIVES.index("max_pool_3x3")]
    assert isinstance(pool[1], nn.BatchNorm2d) and not pool[1].affine  # D4: affine-free BN after pooling
    assert not net.cells[0].edges[0].ops[4].op[3].affine and not net.cells[0].preprocess1.op[2].affine


def test_single_path_runs_only_the_chosen_ops_and_grads_follow():
    space = make_space()
    net = space.build_supernet(DIGITS)
    called: set[str] = set()
    for name, mod in net.named_modules():
        if name.count(".") == 5 and ".edges." in name:  # cells.i.edges.e.ops.o
            mod.register_forward_hook(lambda m, i, o, name=name: called.add(name))
    rng = np.random.default_rng(0)
    for _ in range(4):
        arch = space.sample(rng)
        called.clear()
        net.zero_grad(set_to_none=True)
        net.set_path(arch)
        net(torch.randn(3, 1, 8, 8)).sum().backward()
        expected = {
            f"cells.{i}.edges.{e}.ops.{PRIMITIVES.index(arch[n])}"
            for i, c in enumerate(net.cells)
            for e, n in enumerate(DECISION_NAMES[14:] if c.reduction else DECISION_NAMES[:14])
            if arch[n] != "none"
        }
        assert called == expected  # nothing else ran, not even 'none'
        with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
        assert with_grad == set(net.path_parameter_names(arch))
        op_params = {n for n in with_grad if ".edges." in n}
        assert op_params and all(".".join(n.split(".")[:6]) in expected for n in op_params)


def test_unused_inputs_and_dead_cells_get_no_gradient():
    space = make_space(supernet_layers=3)  # cells: normal, reduce, reduce
    net = space.build_supernet(DIGITS)
    arch = arch_of(normal_3_1="sep_conv_3x3", reduce_2_1="skip_connect")  # only c_{k-1} is ever read
    net.set_path(arch)
    net(torch.randn(2, 1, 8, 8)).sum().backward()
    names = net.path_parameter_names(arch)
    assert not any("preprocess0" in n for n in names)
    assert "cells.0.edges.3.ops.4.op.1.weight" in names and "stem.0.weight" in names
    assert all((p.grad is not None) == (n in names) for n, p in net.named_parameters())
    everything_off = arch_of()
    net.zero_grad(set_to_none=True)
    net.set_path(everything_off)
    out = net(torch.randn(2, 1, 8, 8))
    out.sum().backward()
    assert net.path_parameter_names(everything_off) == ["classifier.weight", "classifier.bias"]
    assert [n for n, p in net.named_parameters() if p.grad is not None] == ["classifier.weight", "classifier.bias"]


def test_forward_mixed_with_one_hot_weights_equals_the_single_path():
    space = make_space()
    net = space.build_supernet(DIGITS).eval()
    arch = space.parse_arch("MDENAS").replace(**{"normal.4<-3": "none", "normal.4<-1": "none"})  # node 4 dead
    net.set_path(arch)
    x = torch.randn(2, 1, 8, 8)
    weights = {
        n: torch.nn.functional.one_hot(torch.tensor(PRIMITIVES.index(arch[n])), 8).float() for n in DECISION_NAMES
    }
    assert torch.allclose(net(x), net.forward_mixed(x, weights), atol=1e-6)
    alphas = {n: torch.zeros(8, requires_grad=True) for n in DECISION_NAMES}
    net.forward_mixed(x, {n: a.softmax(0) for n, a in alphas.items()}).sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in alphas.values())


def test_forward_mixed_follows_a_restricted_space():
    space = make_space().restrict({n: ["none", "skip_connect", "sep_conv_3x3"] for n in DECISION_NAMES})
    net = space.build_supernet(DIGITS)
    assert net.mixed_choices["normal.2<-0"] == (0, 3, 4)
    out = net.forward_mixed(torch.randn(2, 1, 8, 8), {n: torch.full((3,), 1 / 3) for n in DECISION_NAMES})
    assert out.shape == (2, 10)
    with pytest.raises(Exception, match="expected 3"):
        net.forward_mixed(torch.randn(2, 1, 8, 8), {n: torch.full((8,), 0.125) for n in DECISION_NAMES})


def test_forward_needs_a_path():
    net = make_space().build_supernet(DIGITS)
    with pytest.raises(RuntimeError, match="set_path"):
        net(torch.randn(1, 1, 8, 8))


def _extras(layers: int) -> int:
    """stem conv + per cell preprocess0 (FactorizedReduce: 2 convs) and preprocess1 + classifier."""
    reduced_prev = {i + 1 for i in (layers // 3, 2 * layers // 3)}
    return 1 + sum(2 if i in reduced_prev else 1 for i in range(layers)) + layers + 1


def test_angle_paths_are_abs_sixteen():
    assert len(ANGLE_PATHS) == 16 and ANGLE_PATHS[0] == (0, 2, 3, 4, 5) and ANGLE_PATHS[7] == (0, 5)
    assert ANGLE_PATHS[8] == (1, 2, 3, 4, 5)


def test_angle_terms_none_drops_paths_pool_is_constant_skip_is_empty():
    space = make_space(supernet_layers=3)  # cell 0 normal (C=4), cells 1, 2 reduce
    net: DartsSupernet = space.build_supernet(DIGITS)
    reduce_skips = {f"reduce_{j}_{k}": "skip_connect" for j in range(2, 6) for k in range(j)}
    arch = arch_of(normal_2_0="max_pool_3x3", normal_5_2="sep_conv_3x3", normal_3_1="dil_conv_3x3", **reduce_skips)
    terms = net.angle_terms(arch)
    # normal cell: only path 0->2->5 survives ('none' cuts the others; 1->3 leads nowhere), pooling
    # gives a [C,3,3] constant of 1/9, sep_conv its 4 conv weights; all-skip reduce cells add nothing
    const = terms[0]
    assert isinstance(const, torch.Tensor) and const.shape == (4, 3, 3) and torch.all(const == 1 / 9)
    assert terms[1:5] == [f"cells.0.edges.11.ops.4.op.{i}.weight" for i in (1, 2, 5, 6)]
    assert terms[5] == "stem.0.weight" and terms[-1] == "classifier.weight"
    assert len(terms) == 5 + _extras(3)
    assert "cells.2.preprocess0.conv_2.weight" in terms
    params = dict(net.named_parameters())
    assert all(isinstance(t, torch.Tensor) or t in params for t in terms)


def test_angle_terms_repeat_shared_edges():
    space = make_space(supernet_layers=3)
    net = space.build_supernet(DIGITS)
    arch = Arch([(n, "sep_conv_3x3" if n.startswith("normal") else "dil_conv_5x5") for n in DECISION_NAMES])
    terms = net.angle_terms(arch)
    # 16 paths with 20 edges from each input: 40 edge visits per cell; 4 weights (sep) or 2 (dil) each
    assert len(terms) == 40 * 4 + 2 * 40 * 2 + _extras(3)
    assert terms.count("cells.0.edges.13.ops.4.op.1.weight") == 8  # edge 4->5 lies on 8 paths
