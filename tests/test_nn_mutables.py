"""nasframe.nn: mutables inside a user's module, the decisions a model space derives from them, the plain
network of one architecture, the supernet's single path and its mixed forward."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import nasframe
from nasframe import nn as nas
from nasframe.common.errors import ConfigError
from nasframe.common.model_stats import count_macs, count_parameters
from nasframe.core.registry import spaces
from nasframe.core.space import Arch
from nasframe.data import DataSpec
from nasframe.nn import MUTABLES, ModelSpace, ModelSpaceError
from nasframe.testing import SpaceConformance

SPEC = DataSpec("digits", 1, 8, 8, 10)


def space_of(factory, **attrs) -> ModelSpace:
    """A model space of `factory`, not registered (each test builds its own)."""
    cls = type(f"Space_{factory.__name__}", (ModelSpace,), {"factory": staticmethod(factory), **attrs})
    return cls()


class Block(nn.Module):
    def __init__(self, width, i):
        super().__init__()
        k = nas.choice(f"block{i}.kernel", [3, 5])
        self.conv = nas.Conv2d(width, width, k, padding=k // 2, bias=False)
        self.bn = nas.BatchNorm2d(width)
        self.act = nas.LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label=f"block{i}.act")

    def forward(self, x):
        return x + self.act(self.bn(self.conv(x)))


class Net(nn.Module):
    """Widths tied by one label, a kernel and an op per block, a depth, an input choice and an expansion."""

    def __init__(self, data):
        super().__init__()
        width = nas.choice("width", [4, 8])
        expand = nas.choice("expand", [1, 2])
        self.stem = nas.Conv2d(data.channels, width, 3, padding=1, bias=False)
        self.bn = nas.BatchNorm2d(width)
        self.blocks = nas.Repeat(lambda i: Block(width, i), depth=nas.choice("depth", [0, 1, 2]))
        self.widen = nas.Conv2d(width, width * expand, 1)
        self.dw = nas.Conv2d(width * expand, width * expand, 3, padding=1, groups=width * expand)
        self.pick = nas.InputChoice(2, 1, label="features")
        self.head = nas.Linear(width * expand, data.num_classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        wide = self.widen(x)
        x = self.pick([wide, self.dw(wide)])
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="module")
def space():
    return space_of(Net)


def archs(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


# ---- decisions -------------------------------------------------------------------------------------------------
def test_decisions_are_the_labels_in_first_use_order_one_label_one_decision(space):
    assert [(d.name, d.choices) for d in space.decisions] == [
        ("width", (4, 8)),
        ("expand", (1, 2)),
        ("depth", (0, 1, 2)),
        ("block0.kernel", (3, 5)),
        ("block0.act", ("relu", "tanh")),
        ("block1.kernel", (3, 5)),
        ("block1.act", ("relu", "tanh")),
        ("features", (0, 1)),
    ]
    assert space.decision_groups() == [
        ["width"],
        ["expand"],
        ["depth"],
        ["block0.kernel", "block0.act"],
        ["block1.kernel", "block1.act"],
        ["features"],
    ]
    assert space.size() == 2 * 2 * 3 * 4 * 4 * 2
    assert space.supports_supernet and space.supernet_extras == {"angle_terms", "forward_mixed"}


def test_a_label_shared_by_several_layer_choices_is_one_decision():
    class Cells(nn.Module):
        def __init__(self, data):
            super().__init__()
            ops = lambda: {"conv": nn.Conv2d(3, 3, 3, padding=1), "skip": nn.Identity()}  # noqa: E731
            self.cells = nn.Sequential(*(nas.LayerChoice(ops(), label="op") for _ in range(3)))
            self.stem, self.head = nn.Conv2d(data.channels, 3, 1), nn.Linear(3, data.num_classes)

        def forward(self, x):
            return self.head(self.cells(self.stem(x)).mean((2, 3)))

    s = space_of(Cells)
    assert [d.name for d in s.decisions] == ["op"]
    net = s.build(Arch({"op": "conv"}), SPEC)
    assert [type(m) for m in net.cells] == [nn.Conv2d] * 3
    sup = s.build_supernet(SPEC)
    names = sup.path_parameter_names(Arch({"op": "conv"}))
    assert sum(n.startswith("net.cells.") for n in names) == 6 and not any(".skip." in n for n in names)


# ---- errors: one line each, exit code 2 from the CLI (ConfigError) ----------------------------------------------
def _bad(body):
    class Bad(nn.Module):
        def __init__(self, data):
            super().__init__()
            body(self, data)

        def forward(self, x):
            return x

    return Bad


BAD = {
    "different values": (
        lambda s, d: (nas.choice("w", [4, 8]), nas.choice("w", [4, 16])),
        "label 'w' is used with values [4, 8] and [4, 16]: one label is one decision",
    ),
    "one value": (lambda s, d: nas.choice("w", [4]), "choice 'w' has one value (4): a choice needs at least two"),
    "no values": (lambda s, d: nas.choice("w", []), "choice 'w' has no values"),
    "unhashable": (lambda s, d: nas.choice("k", [[3, 3], [5, 5]]), "value [3, 3] is unhashable"),
    "tuple value": (lambda s, d: nas.choice("k", [(3, 3), (5, 5)]), "value (3, 3) is a tuple; values must be str"),
    "twice": (lambda s, d: nas.choice("k", [3, 3]), "value 3 appears twice"),
    "no label": (lambda s, d: nas.LayerChoice([nn.ReLU(), nn.Tanh()]), "LayerChoice needs label="),
    "bool": (
        lambda s, d: bool(nas.choice("w", [4, 8])),
        "choice('w', [4, 8]) has no single value while a model space builds its supernet (used as a truth value)",
    ),
    "range": (lambda s, d: range(nas.choice("n", [1, 2])), "(used as an index or a range)"),
    "comparison": (lambda s, d: nas.choice("w", [4, 8]) > 4, "(compared with >)"),
    "grouped": (
        lambda s, d: nas.Conv2d(nas.choice("w", [4, 8]), 8, 3, groups=2),
        "a grouped convolution (groups=2) keeps fixed widths",
    ),
    "parity": (lambda s, d: nas.Conv2d(4, 4, nas.choice("k", [3, 4])), "kernel sizes [3, 4] share the centre"),
    "fraction": (lambda s, d: nas.Linear(4, nas.choice("e", [1, 1.5]) * 3), "takes the value 4.5; it must be"),
    "no choice": (lambda s, d: None, "creates no choice"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_wrong_definition_is_one_line_naming_the_problem(case):
    body, message = BAD[case]
    with pytest.raises(ModelSpaceError) as info:
        space_of(_bad(body))
    text = str(info.value)
    assert message in text and "\n" not in text
    assert isinstance(info.value, ConfigError)  # the CLI's one line and exit code 2


def test_mutables_outside_a_model_space_are_refused_with_how_to_use_them():
    for make in (
        lambda: nas.choice("w", [4, 8]),
        lambda: nas.LayerChoice([nn.ReLU(), nn.Tanh()], label="act"),
        lambda: nas.InputChoice(2, label="x"),
    ):
        with pytest.raises(ModelSpaceError, match="used outside a model space: register the module with nasframe"):
            make()
    with pytest.raises(ModelSpaceError, match="outside a model space"):
        Net(SPEC)
    # fixed arguments make ordinary torch layers anywhere
    assert type(nas.Conv2d(3, 8, 3)) is nn.Conv2d and type(nas.BatchNorm2d(8)) is nn.BatchNorm2d
    assert type(nas.Linear(8, 2)) is nn.Linear and type(nas.Repeat(lambda i: nn.ReLU(), 2)) is nn.Sequential


def test_a_width_that_does_not_match_its_neighbour_is_named_before_training():
    class Mismatch(nn.Module):
        def __init__(self, data):
            super().__init__()
            self.conv = nas.Conv2d(data.channels, nas.choice("a", [4, 8]), 3, padding=1)
            self.bn = nas.BatchNorm2d(nas.choice("b", [4, 8]))
            self.head = nas.Linear(nas.choice("b", [4, 8]), data.num_classes)

        def forward(self, x):
            return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))

    s = space_of(Mismatch)
    with pytest.raises(ModelSpaceError) as info:
        s.build_supernet(SPEC)
    text = str(info.value)
    assert "fails: bn: this path gives it 8 channels but it expects 4 (choice('b', [4, 8]))" in text
    assert "a width must match its neighbour" in text and "\n" not in text


# ---- the network of one architecture -------------------------------------------------------------------------
def test_the_network_of_an_architecture_is_plain_torch(space):
    for arch in archs(space, 6):
        net = space.build(arch, SPEC)
        kinds = {type(m) for m in net.modules()}
        assert not [k for k in kinds if issubclass(k, MUTABLES)]
        assert {k.__module__.split(".")[0] for k in kinds} <= {"torch", "tests", "test_nn_mutables", "nasframe"}
        assert {k for k in kinds if k.__module__.startswith("nasframe")} <= {nas.ChosenInputs}
        assert net.widen.out_channels == arch["width"] * arch["expand"]
        assert net.dw.groups == net.dw.in_channels == arch["width"] * arch["expand"]
        assert len(net.blocks) == arch["depth"]
        if arch["depth"]:
            assert net.blocks[0].conv.kernel_size == (arch["block0.kernel"],) * 2
            assert type(net.blocks[0].act) is {"relu": nn.ReLU, "tanh": nn.Tanh}[arch["block0.act"]]
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_the_network_scripts_and_compiles_without_graph_breaks(space):
    arch = Arch({**archs(space, 1)[0], "depth": 2, "features": 1})
    net = space.build(arch, SPEC).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        want = net(x)
        torch.testing.assert_close(torch.jit.script(net)(x), want)
        torch.testing.assert_close(torch.compile(net, backend="eager", fullgraph=True)(x), want)


def test_counts_come_from_the_network_of_each_architecture(space):
    from nasframe.core.costs import ArchCosts

    costs = ArchCosts(space, SPEC)
    for arch in archs(space, 5, seed=1):
        net = space.build(arch, SPEC)
        assert costs.counts(arch) == (count_parameters(net), count_macs(net, SPEC.input_shape))


def test_an_additive_model_space_answers_counts_from_the_table():
    class Additive(nn.Module):
        def __init__(self, data):
            super().__init__()
            self.stem = nn.Conv2d(data.channels, 8, 3, padding=1)
            ops = lambda: {"c3": nn.Conv2d(8, 8, 3, padding=1), "c1": nn.Conv2d(8, 8, 1), "id": nn.Identity()}  # noqa: E731
            self.layers = nn.Sequential(*(nas.LayerChoice(ops(), label=f"layer{i}") for i in range(3)))
            self.head = nn.Linear(8, data.num_classes)

        def forward(self, x):
            return self.head(self.layers(self.stem(x)).mean((2, 3)))

    from nasframe.core.costs import ArchCosts

    s = space_of(Additive, additive_costs=True)
    costs = ArchCosts(s, SPEC)
    assert costs.prepare_table()
    for arch in archs(s, 5):
        assert costs.counts(arch) == costs.count_directly(arch)


# ---- the supernet -------------------------------------------------------------------------------------------
def test_path_parameters_are_the_networks_slice_for_tensor(space):
    sup = space.build_supernet(SPEC)
    params = dict(sup.named_parameters())
    for arch in archs(space, 12, seed=2):
        slices = sup.path_parameter_slices(arch)
        used = sum((params[n] if p is None else params[n][p]).numel() for n, p in slices.items())
        assert used == count_parameters(space.build(arch, SPEC))
    narrow = Arch({**archs(space, 1)[0], "width": 4, "expand": 1, "depth": 1, "block0.kernel": 3})
    slices = sup.path_parameter_slices(narrow)
    assert slices["net.stem.weight"] == (slice(0, 4), slice(0, 1), slice(0, 3), slice(0, 3))
    assert slices["net.blocks.0.conv.weight"] == (slice(0, 4), slice(0, 4), slice(1, 4), slice(1, 4))
    assert slices["net.dw.weight"] == (slice(0, 4), slice(None), slice(0, 3), slice(0, 3))
    assert not any(n.startswith("net.blocks.1.") for n in slices)
    assert sup.path_buffer_slices(narrow)["net.bn.running_var"] == (slice(0, 4),)
    wide = Arch({**narrow, "width": 8, "expand": 2, "block0.kernel": 5})
    assert sup.path_parameter_slices(wide)["net.blocks.0.conv.weight"] is None  # the whole tensor: the fast path
    terms = sup.angle_terms(narrow)
    assert [t if isinstance(t, str) else t.name for t in terms] == [
        n for n in slices if params[n].dim() >= 2
    ]  # conv and linear weights only, sliced


def test_a_path_of_the_supernet_computes_the_network_of_its_architecture(space):
    torch.manual_seed(0)
    sup = space.build_supernet(SPEC)
    for m in sup.modules():  # non-trivial statistics, so a wrong slice of them would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    sup.eval()
    x = torch.randn(4, 1, 8, 8)
    worst = 0.0
    for arch in archs(space, 12, seed=3):
        sup.set_path(arch)
        frozen = sup.freeze(arch).eval()
        assert not [m for m in frozen.modules() if isinstance(m, MUTABLES)]
        with torch.no_grad():
            worst = max(worst, float((sup(x) - frozen(x)).abs().max()))
    assert worst <= 1e-6, worst


def test_the_mixed_forward_of_a_linear_network_is_the_expected_single_path():
    """Mixing is exact where it can be checked by hand: a network with no nonlinearity in which each decision
    acts once along every chain is affine in each width mask, kernel mask, candidate and depth weight, so its
    mixed forward equals the average of the single paths of every architecture, weighted by the product of
    the decisions' weights. (A label acting several times along a chain, a width shared by consecutive
    layers, multiplies its masks: the mixed forward is then a relaxation, as DARTS' is.)"""

    class Linear(nn.Module):
        def __init__(self, data):
            super().__init__()
            w, k = nas.choice("w", [2, 3, 4]), nas.choice("k", [1, 3, 5])
            self.stem = nas.Conv2d(data.channels, w, 1)  # its width is consumed once, by `conv`
            self.conv = nas.Conv2d(w, 4, k, padding=k // 2)
            self.op = nas.LayerChoice({"conv": nn.Conv2d(4, 4, 3, padding=1), "skip": nn.Identity()}, label="op")
            self.rep = nas.Repeat(lambda i: nn.Conv2d(4, 4, 1), depth=nas.choice("d", [0, 1, 2]))
            self.pick = nas.InputChoice(3, 2, reduction="mean", label="pick")
            self.cat = nas.InputChoice(3, 2, reduction="concat", label="cat")
            self.head = nn.Linear(12, data.num_classes)

        def forward(self, x):
            a = self.conv(self.stem(x))
            b = self.op(a)
            c = self.rep(b)
            return self.head(torch.cat([self.pick([a, b, c]), self.cat([c, b, a])], 1).mean((2, 3)))

    s = space_of(Linear)
    torch.manual_seed(1)
    sup = s.build_supernet(SPEC).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    weights = {d.name: torch.softmax(torch.randn(len(d.choices), dtype=torch.float64), 0) for d in s.decisions}
    expected = torch.zeros(2, 10, dtype=torch.float64)
    for combo in itertools.product(*(range(len(d.choices)) for d in s.decisions)):
        arch = Arch([(d.name, d.choices[i]) for d, i in zip(s.decisions, combo)])
        p = math.prod(float(weights[d.name][i]) for d, i in zip(s.decisions, combo))
        sup.set_path(arch)
        with torch.no_grad():
            expected += p * sup(x)
    with torch.no_grad():
        mixed = sup.forward_mixed(x, weights)
    torch.testing.assert_close(mixed, expected, rtol=1e-10, atol=1e-12)


def test_a_one_hot_mixed_forward_is_the_single_path(space):
    sup = space.build_supernet(SPEC).eval()
    x = torch.randn(3, 1, 8, 8)
    for arch in archs(space, 8, seed=4):
        weights = {d.name: torch.tensor([float(c == arch[d.name]) for c in d.choices]) for d in space.decisions}
        sup.set_path(arch)
        with torch.no_grad():
            torch.testing.assert_close(sup.forward_mixed(x, weights), sup(x), rtol=1e-5, atol=1e-6)


def test_a_stride_choice_runs_single_paths_and_refuses_mixing_by_name():
    class Strided(nn.Module):
        def __init__(self, data):
            super().__init__()
            self.conv = nas.Conv2d(data.channels, 4, 3, stride=nas.choice("s", [1, 2]), padding=1)
            self.head = nn.Linear(4, data.num_classes)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))

    s = space_of(Strided)
    assert s.supernet_extras == {"angle_terms"}
    assert "conv: its stride is a choice" in s.supernet_extra_hint("forward_mixed")
    sup = s.build_supernet(SPEC)
    sup.set_path(Arch({"s": 2}))
    assert sup(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_the_supernet_copies_deeply_as_few_shot_splitting_does(space):
    sup = space.build_supernet(SPEC).eval()
    twin = copy.deepcopy(sup)
    arch = archs(space, 1, seed=5)[0]
    sup.set_path(arch)
    twin.set_path(arch)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), sup(x))
        weights = {d.name: torch.full((len(d.choices),), 1 / len(d.choices)) for d in space.decisions}
        torch.testing.assert_close(twin.forward_mixed(x, weights), sup.forward_mixed(x, weights))
    assert twin._shared is not sup._shared and twin.net.stem._shared is twin._shared


def test_choices_combine_with_arithmetic():
    from nasframe.nn.context import Frame, building

    with building(Frame("supernet")):
        c, e, k = nas.choice("c", [8, 16]), nas.choice("e", [3, 6]), nas.choice("k", [3, 5, 7])
        mid = round(c * e / 2)
        pad = k // 2
    assert mid.labels == ("c", "e") and sorted(mid.results()) == [12, 24, 48]
    assert mid.evaluate({"c": 16, "e": 3}) == 24 and pad.results() == [1, 2, 3]
    assert repr(pad) == "(choice('k', [3, 5, 7]) // 2)"
    assert (2 + c - 1).evaluate({"c": 8}) == 9 and (-k).results() == [-3, -5, -7]


# ---- registration --------------------------------------------------------------------------------------------
def test_registration_in_one_line_and_as_a_decorator_with_options():
    from dataclasses import dataclass

    from nasframe.common.options import build_options

    @dataclass(frozen=True)
    class WideOptions:
        widths: list[int] = nasframe.option(default_factory=lambda: [4, 8], help="widths searched")

    @nasframe.model_space("test_nn_decorated", options=WideOptions)
    class Decorated(nn.Module):
        """A decorated model with options."""

        def __init__(self, data, options):
            super().__init__()
            w = nas.choice("w", options.widths)
            self.conv, self.head = nas.Conv2d(data.channels, w, 3), nas.Linear(w, data.num_classes)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))

    assert isinstance(Decorated, type) and issubclass(Decorated, nn.Module)  # left as it was
    cls = spaces.get("test_nn_decorated")
    assert cls.__doc__ == "A decorated model with options." and issubclass(cls, ModelSpace)
    assert cls(build_options(cls.Options, {"widths": [2, 6, 10]}, "space")).decisions[0].choices == (2, 6, 10)
    plain = nasframe.model_space("test_nn_plain", Net)
    assert spaces.get("test_nn_plain") is plain and plain().size() == 384


class TestByomToyConformance(SpaceConformance):
    """The conformance kit on the user's model of the end-to-end tests (tests/plugins/byom_toy.py)."""

    space = "byom_toy"

    def make_space(self):
        from pathlib import Path

        from nasframe.common.plugins import load_plugin

        load_plugin(str(Path(__file__).resolve().parent / "plugins" / "byom_toy.py"))
        return super().make_space()


class TestNetConformance(SpaceConformance):
    space = "test_nn_conformance_net"

    def make_space(self):
        if "test_nn_conformance_net" not in spaces.names():
            nasframe.model_space("test_nn_conformance_net", Net)
        return super().make_space()


# ---- dead code of a path (nasframe/nn/pruning.py) ------------------------------------------------------------------
class ZeroCell(nn.Module):
    """A two-node cell whose edges may be zero: with `out` zero, node 1 (and edge `a`) feed nothing."""

    def __init__(self, data):
        super().__init__()
        ops = lambda: {"conv": nn.Conv2d(4, 4, 3, padding=1), "skip": nn.Identity(), "none": nas.Zero()}  # noqa: E731
        self.stem = nn.Conv2d(data.channels, 4, 1)
        self.a, self.b, self.out = (nas.LayerChoice(ops(), label=n) for n in ("a", "b", "out"))
        self.head = nn.Linear(4, data.num_classes)

    def forward(self, x):
        x = self.stem(x)
        node1 = self.a(x)
        node2 = self.b(x) + self.out(node1)
        return self.head(node2.mean((2, 3)))


def test_a_path_skips_its_zero_edges_and_what_only_feeds_them_with_the_same_results():
    s = space_of(ZeroCell)
    torch.manual_seed(0)
    sup = s.build_supernet(SPEC)
    calls: list[str] = []
    for name in ("a", "b", "out"):
        getattr(sup.net, name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    x = torch.randn(2, 1, 8, 8)
    for values in itertools.product(*(d.choices for d in s.decisions)):
        arch = Arch(zip([d.name for d in s.decisions], values))
        sup.set_path(arch)
        calls.clear()
        pruned = sup(x)
        pruned.sum().backward()
        grads = {n: None if p.grad is None else p.grad.clone() for n, p in sup.named_parameters()}
        sup.zero_grad(set_to_none=True)
        ran = list(calls)
        full = sup.net(x)  # the user's own forward: every edge
        full.sum().backward()
        torch.testing.assert_close(pruned, full, rtol=0, atol=0)
        for n, p in sup.named_parameters():
            assert (grads[n] is None) == (p.grad is None) and (p.grad is None or torch.equal(grads[n], p.grad)), n
        sup.zero_grad(set_to_none=True)
        dead = arch["out"] == "none"
        expected = ["b"] if dead else ["a", "b", "out"]
        if arch["b"] == "none" and not dead:
            expected = ["a", "out"]
        if dead and arch["b"] == "none":
            expected = ["b"]  # node 2 is all zeros: the first zero edge stands for it
        assert ran == expected, (arch, ran)


def test_a_module_that_cannot_be_traced_keeps_its_own_forward():
    class Untraceable(ZeroCell):
        def forward(self, x):
            x = self.stem(x)
            if x.sum() > 0:  # control flow on a tensor value: torch.fx cannot trace it
                x = x * 1.0
            return self.head((self.b(x) + self.out(self.a(x))).mean((2, 3)))

    s = space_of(Untraceable)
    sup = s.build_supernet(SPEC)
    assert sup._pruner.graph is None
    sup.set_path(Arch({"a": "conv", "b": "none", "out": "none"}))
    assert sup._run is sup.net and sup(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_sliced_batchnorm_is_refused_by_synchronised_statistics_in_one_line(space):
    """Under torchrun the supernet evaluator synchronises BatchNorm by putting a global-statistics forward in
    front of each layer's; a BatchNorm with choice widths normalises a slice of its channels in a forward of its
    own, which that would replace (full-size statistics on a narrower input), so it is refused, naming the
    class; the plain BatchNorm of a built network, and DARTS' affine-free one, are synchronised as before."""
    from nasframe.common import distributed
    from nasframe.common.errors import NotSupported

    with pytest.raises(NotSupported, match=r"nasframe\.nn\.layers\.BatchNorm2d normalises a slice of its channels"):
        distributed.synchronize_batchnorm(space.build_supernet(SPEC))
    net = space.build(space.sample(np.random.default_rng(0)), SPEC)
    assert distributed.synchronize_batchnorm(net) is net
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(isinstance(m, distributed.GlobalBatchNormMixin) for m in norms)
    from nasframe.spaces.darts_ops import AffineFreeBN

    assert isinstance(distributed.synchronize_batchnorm(AffineFreeBN(4)), distributed.GlobalBatchNormMixin)
