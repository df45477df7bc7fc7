"""NB201 supernet: the benchmark's search-model counts, a path equals the stand-alone network,
gradients follow `path_parameter_names`, mixed forward, ABS angle terms, and runs on digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from nasframe.common.errors import InvalidArchitecture
from nasframe.common.model_stats import count_parameters
from nasframe.common.options import build_options
from nasframe.core.registry import spaces
from nasframe.core.space import Arch, Supernet
from nasframe.data import DataOptions, DataSource, DataSpec
from nasframe.spaces.nb201 import EDGE_NAMES, OPS, load_table
from nasframe.spaces.nb201_net import ResNetBlock, live_edges, reads_input
from nasframe.spaces.nb201_supernet import NB201Supernet, SearchCell

DIGITS = DataSpec("digits", 1, 8, 8, 10)
CIFAR10 = DataSource(DataOptions(name="cifar10"), seed=0).spec  # the spec needs no files
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
# node 1 has no live input (zero), yet edge 2<-1 convolves it: in eval mode its BN makes a constant
ZERO_NODE = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
# node 1 never reaches node 3 (2<-1 and 3<-1 are none): edge 1<-0 is dead and must not run
DEAD_NODE = "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
# no path of live edges from node 0 to node 3: the cell's output ignores its input
CUT = "|none~0|+|none~0|nor_conv_3x3~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
CRAFTED = (RESNET, ALL_CONV3, ZERO_NODE, DEAD_NODE, CUT, ALL_NONE)


def make_space(**opts):
    cls = spaces.get("nb201")
    return cls(build_options(cls.Options, opts, "space"))


@pytest.fixture(scope="module")
def tiny():
    return make_space(C=4, N=2)  # cells at 0, 1 | 3, 4 | 6, 7; ResNet blocks at 2 and 5


def test_holds_every_op_on_every_edge_of_fifteen_cells():
    net = make_space().build_supernet(CIFAR10)
    assert isinstance(net, Supernet) and isinstance(net, nn.Module)
    layers = list(net.cells)
    assert [k for k, m in enumerate(layers) if isinstance(m, ResNetBlock)] == [5, 11]
    cells = [m for m in layers if isinstance(m, SearchCell)]
    assert len(cells) == 15 and [c.channels for c in cells] == [16] * 5 + [32] * 5 + [64] * 5
    assert all(len(c.edges) == 6 and [type(op).__name__ for op in c.op_table[0]][1:] == [
        "Identity", "ReLUConvBN", "ReLUConvBN", "AvgPool2d"] for c in cells)  # fmt: skip
    bn = cells[0].op_table[3][3][2]
    assert isinstance(bn, nn.BatchNorm2d) and not bn.affine and bn.track_running_stats
    assert net.stem[1].affine and layers[5].conv_a[2].affine and net.lastact[0].affine  # as in the benchmark
    free = make_space(supernet_track_running_stats=False).build_supernet(CIFAR10)
    assert all(not m.track_running_stats for c in free.cells if isinstance(c, SearchCell) for m in c.modules()
               if isinstance(m, nn.BatchNorm2d))  # fmt: skip


def test_parameter_counts_match_the_benchmark_search_model():
    """SETN's TinyNetworkSETN (reference 8.7/SE1): 1,692,856 parameters at 10 classes, of which 30 are
    the alpha tensor, i.e. 1,692,826 weights; 1,698,706 at 100 classes. Its search cells' convs carry a
    bias (bias=not affine): 2 convs x 6 edges x 5 cells x (16 + 32 + 64) channels = 6,720 parameters,
    which `supernet_conv_bias` adds and the default leaves out."""
    plain = count_parameters(make_space().build_supernet(CIFAR10))
    biased = make_space(supernet_conv_bias=True)
    assert plain == 1_692_826 - 6_720 == 1_686_106
    assert count_parameters(biased.build_supernet(CIFAR10)) == 1_692_856 - 30
    assert count_parameters(biased.build_supernet(DataSpec("cifar100", 3, 32, 32, 100))) == 1_698_706 - 30


def _path_count(net: NB201Supernet, arch: Arch) -> int:
    params = dict(net.named_parameters())
    return sum(params[n].numel() for n in net.path_parameter_names(arch))


def test_a_path_counts_the_stand_alone_network_less_its_cell_bn_affines():
    """Stand-alone (docs, benchmark): resnet 559,386 and all-conv3x3 1,531,546 parameters. A path holds
    the same convs; the cells' BNs are affine-free, so 2C per conv edge and cell fewer: resnet has 2
    conv edges per cell, 5 x 2 x 2 x (16 + 32 + 64) = 2,240; all-conv3x3 has 6, so 6,720 fewer."""
    space = make_space()
    net = space.build_supernet(CIFAR10)
    resnet, conv3 = space.parse_arch(RESNET), space.parse_arch(ALL_CONV3)
    assert count_parameters(space.build(resnet, CIFAR10)) == 559_386
    assert count_parameters(space.build(conv3, CIFAR10)) == 1_531_546
    assert _path_count(net, resnet) == 559_386 - 2_240
    assert _path_count(net, conv3) == 1_531_546 - 6_720
    assert _path_count(net, space.parse_arch(ALL_NONE)) == 64 * 2 + 64 * 10 + 10  # lastact BN and classifier


def _standalone_like(space, supernet: NB201Supernet, arch: Arch, spec: DataSpec) -> nn.Module:
    """The stand-alone network with the path's weights: stem, ResNet blocks, lastact and classifier by
    name; in cell k, stand-alone `cells.k.edges.m` is the m-th edge that is not `none` (edge order) and
    takes supernet `cells.k.edges.e.ops.o` (e: that edge, o: its op's index in OPS). The stand-alone
    cell BNs are affine: weight 1, bias 0 is what the supernet's affine-free BNs compute."""
    net = space.build(arch, spec).eval()
    ops = [str(arch[n]) for n in EDGE_NAMES]
    live = [(e, OPS.index(op)) for e, op in enumerate(ops) if op != "none"]
    source = supernet.state_dict()
    state = {}
    for name, value in net.state_dict().items():
        parts = name.split(".")
        if parts[0] == "cells" and parts[2] == "edges":
            e, o = live[int(parts[3])]
            parts[3:4] = [str(e), "ops", str(o)]
        key = ".".join(parts)
        if key in source:
            state[name] = source[key]
        else:  # an affine parameter of a cell BN, which the supernet does not have
            assert parts[-1] in ("weight", "bias") and value.dim() == 1 and ".edges." in name
            state[name] = torch.ones_like(value) if parts[-1] == "weight" else torch.zeros_like(value)
    net.load_state_dict(state)
    return net


@pytest.mark.parametrize("text", CRAFTED + ("sample",))
def test_path_logits_equal_the_stand_alone_network(tiny, text):
    arch = tiny.sample(np.random.default_rng(5)) if text == "sample" else tiny.parse_arch(text)
    torch.manual_seed(1)
    supernet = tiny.build_supernet(DIGITS)
    supernet.set_path(arch)
    with torch.no_grad():
        for _ in range(3):  # train-mode forwards move the running statistics away from (0, 1)
            supernet(torch.randn(8, 1, 8, 8))
    supernet.eval()
    net = _standalone_like(tiny, supernet, arch, DIGITS)
    ops = [str(arch[n]) for n in EDGE_NAMES]
    if reads_input(ops) and any(live and op.startswith("nor_conv") for op, live in zip(ops, live_edges(ops))):
        moved = [v for k, v in net.state_dict().items() if k.endswith("running_mean") and ".edges." in k]
        assert any(not torch.all(v == 0) for v in moved)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), supernet(x))
        torch.testing.assert_close(net.train()(x), supernet.train()(x))  # batch statistics too


def test_path_equals_stand_alone_network_at_full_size():
    space = make_space()
    arch = space.parse_arch(ZERO_NODE)
    torch.manual_seed(2)
    supernet = space.build_supernet(CIFAR10)
    supernet.set_path(arch)
    with torch.no_grad():
        supernet(torch.randn(4, 3, 32, 32))
    supernet.eval()
    net = _standalone_like(space, supernet, arch, CIFAR10)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), supernet(x))


def _grads(net: NB201Supernet, arch: Arch, x: torch.Tensor) -> set[str]:
    net.zero_grad(set_to_none=True)
    net.set_path(arch)
    net(x).logsumexp(1).sum().backward()
    return {n for n, p in net.named_parameters() if p.grad is not None}


def test_only_the_path_runs_and_gets_gradients(tiny):
    net = tiny.build_supernet(DIGITS)
    called: set[str] = set()
    for name, mod in net.named_modules():
        if name.count(".") == 4 and ".edges." in name:  # cells.k.edges.e.ops.o
            mod.register_forward_hook(lambda m, i, o, name=name: called.add(name))
    rng = np.random.default_rng(0)
    cells = [k for k, m in enumerate(net.cells) if isinstance(m, SearchCell)]
    for arch in [tiny.parse_arch(t) for t in CRAFTED] + [tiny.sample(rng) for _ in range(4)]:
        called.clear()
        with_grad = _grads(net, arch, torch.randn(3, 1, 8, 8))
        assert with_grad == set(net.path_parameter_names(arch)), arch
        chosen = {e: OPS.index(str(arch[n])) for e, n in enumerate(EDGE_NAMES) if arch[n] != "none"}
        assert all(int(n.split(".")[5]) == chosen[int(n.split(".")[3])] for n in with_grad if ".edges." in n)
        assert {int(n.split(".")[3]) for n in called} <= set(chosen)
        assert all(n.split(".")[1] in map(str, cells) for n in called)
    # dead edge 1<-0 (node 1 reaches nothing) neither runs nor trains; edge 2<-1 of a zero node does both
    assert "cells.0.edges.0.ops.3.1.weight" not in _grads(net, tiny.parse_arch(DEAD_NODE), torch.randn(2, 1, 8, 8))
    assert "cells.0.edges.2.ops.3.1.weight" in _grads(net, tiny.parse_arch(ZERO_NODE), torch.randn(2, 1, 8, 8))


def test_a_cell_that_ignores_its_input_cuts_the_gradient(tiny):
    """CUT: node 0 reaches node 3 through no live edge, so only the last cell's ops (and the head) learn."""
    net = tiny.build_supernet(DIGITS)
    names = net.path_parameter_names(tiny.parse_arch(CUT))
    assert names == [
        "cells.7.edges.2.ops.3.1.weight",  # 2<-1 conv3x3 on the zero node 1
        "cells.7.edges.5.ops.2.1.weight",  # 3<-2 conv1x1
        "lastact.0.weight",
        "lastact.0.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    assert net.path_parameter_names(tiny.parse_arch(ALL_NONE)) == names[2:]
    resnet = set(net.path_parameter_names(tiny.parse_arch(RESNET)))
    assert {"stem.0.weight", "stem.1.weight", "cells.2.conv_a.1.weight", "cells.5.shortcut.1.weight"} <= resnet


def test_conv_bias_option_trains_its_biases(tiny):
    space = make_space(C=4, N=2, supernet_conv_bias=True)
    net = space.build_supernet(DIGITS)
    arch = space.parse_arch(RESNET)
    with_grad = _grads(net, arch, torch.randn(3, 1, 8, 8))
    assert with_grad == set(net.path_parameter_names(arch))
    assert "cells.0.edges.0.ops.3.1.bias" in with_grad


def _one_hot(arch: Arch) -> dict[str, torch.Tensor]:
    return {n: nn.functional.one_hot(torch.tensor(OPS.index(str(arch[n]))), 5).float() for n in EDGE_NAMES}


@pytest.mark.parametrize("text", [ZERO_NODE, DEAD_NODE, CUT, ALL_CONV3])
def test_forward_mixed_with_one_hot_weights_equals_the_single_path(tiny, text):
    torch.manual_seed(3)
    net = tiny.build_supernet(DIGITS)
    arch = tiny.parse_arch(text)
    with torch.no_grad():
        net.forward_mixed(torch.randn(8, 1, 8, 8), {n: torch.full((5,), 0.2) for n in EDGE_NAMES})  # move BN stats
    net.eval()
    net.set_path(arch)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net.forward_mixed(x, _one_hot(arch)), net(x))


def test_forward_mixed_gradients_reach_every_op_and_weight(tiny):
    net = tiny.build_supernet(DIGITS)
    alphas = {n: torch.zeros(5, requires_grad=True) for n in EDGE_NAMES}
    net.forward_mixed(torch.randn(4, 1, 8, 8), {n: a.softmax(0) for n, a in alphas.items()}).logsumexp(
        1
    ).sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in alphas.values())
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []  # every op of every edge of every cell, and the frame


def test_forward_mixed_follows_a_restricted_space_and_checks_weights():
    space = make_space(C=4, N=1).restrict({n: ["none", "skip_connect", "nor_conv_3x3"] for n in EDGE_NAMES})
    net = space.build_supernet(DIGITS)
    assert net.mixed_choices["2<-1"] == (0, 1, 3)
    assert [n for n, _ in net.named_parameters()] == [n for n, _ in make_space(C=4, N=1).build_supernet(DIGITS)
                                                       .named_parameters()]  # fmt: skip
    out = net.forward_mixed(torch.randn(2, 1, 8, 8), {n: torch.full((3,), 1 / 3) for n in EDGE_NAMES})
    assert out.shape == (2, 10)
    with pytest.raises(InvalidArchitecture, match=r"weights\['1<-0'\] needs 3 entries \(none, skip_connect, nor_"):
        net.forward_mixed(torch.randn(2, 1, 8, 8), {n: torch.full((5,), 0.2) for n in EDGE_NAMES})
    with pytest.raises(InvalidArchitecture, match=r"weights\['3<-2'\] needs 3 entries .* got nothing"):
        net.forward_mixed(torch.randn(2, 1, 8, 8), {n: torch.full((3,), 1 / 3) for n in EDGE_NAMES[:5]})


def test_set_path_checks_the_architecture_and_forward_needs_one(tiny):
    net = tiny.build_supernet(DIGITS)
    with pytest.raises(RuntimeError, match="set_path"):
        net(torch.randn(1, 1, 8, 8))
    arch = tiny.parse_arch(RESNET)
    with pytest.raises(InvalidArchitecture, match=r"unknown op 'sep_conv_3x3' for decision '3<-2'"):
        net.set_path(arch.replace(**{"3<-2": "sep_conv_3x3"}))
    with pytest.raises(InvalidArchitecture, match=r"misses decision '1<-0'"):
        net.set_path(Arch([(n, arch[n]) for n in EDGE_NAMES[1:]]))


FIXED = ["lastact.0.weight", "lastact.0.bias", "classifier.weight", "classifier.bias", "stem.0.weight",
         "stem.1.weight", "stem.1.bias"]  # fmt: skip


def _block(k: int) -> list[str]:
    return [f"cells.{k}.{c}.{i}.{p}" for c in ("conv_a", "conv_b") for i, p in ((1, "weight"), (2, "weight"),
            (2, "bias"))] + [f"cells.{k}.shortcut.1.weight"]  # fmt: skip


def test_angle_terms_follow_abs_nb201_study():
    """N=1: cells 0 (C=4), 2 (C=8), 4 (C=16), ResNet blocks 1 and 3. Arch 1<-0 avg_pool, 2<-0 none,
    2<-1 conv3x3, 3<-0 skip, 3<-1 none, 3<-2 conv1x1: path 0->3 is a skip (adds nothing), 0->2->3 and
    0->1->3 go through 'none' (dropped), 0->1->2->3 adds pool constant, conv3x3, conv1x1 per cell."""
    space = make_space(C=4, N=1)
    net = space.build_supernet(DIGITS)
    arch = space.parse_arch("|avg_pool_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    terms = net.angle_terms(arch)
    assert terms[:21] == FIXED + _block(1) + _block(3)
    rest = terms[21:]
    assert len(rest) == 9
    for cell, (k, c) in enumerate(((0, 4), (2, 8), (4, 16))):
        const, conv3, conv1 = rest[3 * cell : 3 * cell + 3]
        assert isinstance(const, torch.Tensor) and const.shape == (c, 3, 3) and torch.all(const == 1 / 9)
        assert (conv3, conv1) == (f"cells.{k}.edges.2.ops.3.1.weight", f"cells.{k}.edges.5.ops.2.1.weight")
    params = dict(net.named_parameters())
    assert all(isinstance(t, torch.Tensor) or t in params for t in terms)


def test_angle_terms_repeat_an_edge_once_per_path_and_go_path_by_path():
    space = make_space(C=4, N=1)
    net = space.build_supernet(DIGITS)
    terms = net.angle_terms(space.parse_arch(ALL_CONV3))
    # paths of 1, 2, 3 and 2 edges: 8 conv weights per cell, 3 cells
    assert len(terms) == 21 + 8 * 3
    assert terms[21:24] == [f"cells.{k}.edges.3.ops.3.1.weight" for k in (0, 2, 4)]  # path 0->3, every cell
    assert terms.count("cells.2.edges.5.ops.3.1.weight") == 2  # 3<-2 lies on 0->2->3 and 0->1->2->3
    assert net.angle_terms(space.parse_arch(ALL_NONE)) == FIXED + _block(1) + _block(3)


def test_supernet_evaluator_trains_the_path_and_measures_its_angle(digits):
    from nasframe.core.registry import evaluators

    space = make_space(C=4, N=1)
    cls = evaluators.get("supernet")
    ev = cls(space, cls.Options(steps=2), data=digits, device="cpu")
    arch = space.parse_arch(RESNET)
    torch.manual_seed(0)
    result = ev.evaluate(arch)
    assert result.ok and 0 <= result.metrics["val_acc"] <= 100
    v0, v1 = ev.path_vectors(arch)
    params = dict(ev.supernet.named_parameters())
    assert v0.numel() == sum(params[t].numel() for t in ev.supernet.angle_terms(arch))
    assert not torch.equal(v0, v1) and 0 < ev.path_angles([arch])[0] < np.pi / 2
    unchosen = ev.supernet.cells[0].edges[0].ops[2][1].weight  # 1<-0 conv1x1: off the path
    assert torch.equal(unchosen, ev.base["cells.0.edges.0.ops.2.1.weight"])


def test_export_reports_the_tables_verdict():
    space = make_space()
    arch = space.parse_arch(RESNET)
    out = space.export(arch)
    assert out["arch_str"] == RESNET and out["index"] == 11472
    bench = out["benchmark"]
    assert list(bench) == [
        f"{d}_{s}" for d in ("cifar10", "cifar100", "imagenet16-120") for s in ("val_12", "test_200")
    ]
    assert bench["cifar10_test_200"] == pytest.approx(93.91)  # the benchmark's ResNet cell
    table = load_table()
    assert bench["imagenet16-120_val_12"] == table.column("imagenet16-120", "val", 12)[11472]
    json.dumps(out)  # plain floats for best.json


TINY = ["--data", "digits", "--device", "cpu", "--quiet", "--set", "space.C=4", "--set", "space.N=1"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["mdenas", "spos"])
def test_weight_sharing_strategies_run_on_nb201(cli, tmp_path, strategy):
    """The paper protocol at toy size on digits: best.json reports the table's accuracies of the answer
    in `final.export.benchmark`; the supernet evaluator has no table, so `final.held_out` is empty."""
    out = tmp_path / strategy
    extra = [f"--set=strategy.{kv}" for kv in ("supernet_epochs=1", "population=4", "parents=2", "mutations=1",
             "crossovers=1", "generations=1")] if strategy == "spos" else []  # fmt: skip
    argv = ["run", "--strategy", strategy, "--space", "nb201", "--evaluator", "supernet", "--out", out]
    code, _, err = cli(*argv, "--set", "evaluator.steps=2", "--budget", "4", *TINY, *extra)
    assert code == 0, err
    best = json.loads((out / "best.json").read_text())
    final = best["final"]
    space = make_space()
    arch = space.validate(final["arch"])
    row = space.index_of(arch)
    assert final["export"]["index"] == row and final["export"]["arch_str"] == space.to_string(arch)
    table = load_table()
    assert final["export"]["benchmark"]["cifar10_test_200"] == table.column("cifar10", "test", 200)[row]
    assert final["held_out"] == {}
