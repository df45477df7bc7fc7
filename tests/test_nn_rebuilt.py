"""Proof by rebuilding: NAS-Bench-201 and the MBConv space written again as model spaces (tests/plugins/
model_nb201.py, model_mobilenet.py) count and compute exactly what the hand-written spaces do.

For 20 random architectures each: parameters and MACs equal; with the hand-written network's weights
copied in, the model space's network and its supernet's path give the same logits (float32, max |diff|
printed with `pytest -s`; asserted <= 1e-6). BatchNorm statistics are randomised first so that a wrong
slice of them would show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nasframe.common.model_stats import count_macs, count_parameters
from nasframe.common.options import build_options
from nasframe.common.plugins import load_plugin
from nasframe.core.angles import angle
from nasframe.core.costs import ArchCosts, count_network
from nasframe.core.registry import spaces
from nasframe.core.space import Arch, ParamSlice
from nasframe.data import DataSpec
from nasframe.testing import SpaceConformance

PLUGINS = Path(__file__).resolve().parent / "plugins"
SPEC = DataSpec("digits", 1, 8, 8, 10)
ARCHS = 20
TOLERANCE = 1e-6


def load() -> None:
    load_plugin(str(PLUGINS / "model_nb201.py"))
    load_plugin(str(PLUGINS / "model_mobilenet.py"))


def make(name: str, **options):
    load()
    cls = spaces.get(name)
    return cls(build_options(cls.Options, options, "space"))


MOBILENET = {"small_input": True, "width_mult": 0.25, "layout": "fairnas", "allow_zero": False}
MOBILENET_ZERO = {**MOBILENET, "layout": "proxyless", "allow_zero": True}


def randomised(net: nn.Module, seed: int) -> nn.Module:
    """`net` in eval mode with random weights and BatchNorm statistics (seeded)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.3)
    return net.eval()


def max_diff(a: nn.Module, b: nn.Module, seed: int) -> float:
    x = torch.randn(4, *SPEC.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def counts(net: nn.Module) -> tuple[int, int]:
    """(parameters, MACs) as `nasframe.core.costs` counts them (here on the CPU network already built: the same
    functions, without a second construction on the meta device)."""
    return count_parameters(net), count_macs(net, SPEC.input_shape)


@pytest.mark.slow
def test_the_rebuilt_spaces_count_through_the_costs_path_and_their_additive_tables():
    """One architecture each through `nasframe.core.costs` (meta-device construction), and the additive tables the
    rebuilds declare, checked by `ArchCosts` against direct counts."""
    nb201, model_nb201 = make("nb201"), make("model_nb201")
    arch = nb201.sample(np.random.default_rng(0))
    assert count_network(model_nb201, Arch(arch.to_dict()), SPEC) == count_network(nb201, arch, SPEC)
    small = {"C": 4, "N": 1}
    table = ArchCosts(make("model_nb201", **small), SPEC)
    assert table.prepare_table() and table.counts(Arch(arch.to_dict())) == count_network(
        make("nb201", **small), arch, SPEC
    )
    tiny = {**MOBILENET_ZERO, "custom_layout": {"blocks": [1, 2, 1, 1, 1, 1]}, "kernels": [3, 5]}
    mobile = ArchCosts(make("model_mobilenet", **tiny), SPEC)
    assert mobile.prepare_table()
    ref = make("mobilenet", **tiny)
    for arch in [ref.sample(np.random.default_rng(i)) for i in range(3)]:
        assert mobile.counts(Arch(arch.to_dict())) == count_network(ref, arch, SPEC)


def nb201_state(ref_net: nn.Module, arch: Arch, prefix: str = "", supernet: bool = False) -> dict[str, torch.Tensor]:
    """The hand-written network's tensors under the rebuilt module's names: its cells keep only the edges that
    are not `none` (`edges.<m>`), the rebuild keeps every edge (`edges.<e>`, `.<op>` inside the supernet)."""
    ops = [str(v) for v in arch.values()]
    live = [e for e, op in enumerate(ops) if op != "none"]
    out = {}
    for name, t in ref_net.state_dict().items():
        parts = name.split(".")
        if parts[0] == "cells" and len(parts) > 3 and parts[2] == "edges":
            e = live[int(parts[3])]
            parts[3] = str(e) + (f".{ops[e]}" if supernet else "")
        out[prefix + ".".join(parts)] = t
    return out


@pytest.mark.slow
def test_nb201_rebuilt_counts_and_computes_what_the_hand_written_space_does():
    ref, mine = make("nb201"), make("model_nb201")
    assert [(d.name, d.choices) for d in mine.decisions] == [(d.name, d.choices) for d in ref.decisions]
    assert mine.decision_groups() == [[d.name] for d in ref.decisions]  # no families in the edge names
    supernet = mine.build_supernet(SPEC).eval()
    rng = np.random.default_rng(0)
    worst_net = worst_path = 0.0
    for i in range(ARCHS):
        arch = ref.sample(rng)
        ours = Arch(arch.to_dict())
        ref_net = randomised(ref.build(arch, SPEC), i)
        net = mine.build(ours, SPEC).eval()
        assert counts(net) == counts(ref_net)
        net.load_state_dict(nb201_state(ref_net, arch))
        worst_net = max(worst_net, max_diff(ref_net, net, i))
        loaded = supernet.load_state_dict(nb201_state(ref_net, arch, "net.", supernet=True), strict=False)
        assert not loaded.unexpected_keys
        supernet.set_path(ours)
        worst_path = max(worst_path, max_diff(ref_net, supernet, i))
    print(f"\nNB201 C=16 N=5, {ARCHS} cells: max |logit diff| network {worst_net:.3g}, supernet path {worst_path:.3g}")
    assert worst_net <= TOLERANCE and worst_path <= TOLERANCE


def ofa_arch(arch: Arch) -> Arch:
    """A hand-written `k<k>e<e>` op per slot as the elastic rebuild's kernel and expansion decisions."""
    out = []
    for slot, op in arch.items():
        kernel, expand = str(op)[1:].split("e")
        out += [(f"{slot}.kernel", int(kernel)), (f"{slot}.expand", int(expand))]
    return Arch(out)


@pytest.mark.slow
@pytest.mark.parametrize("options", [MOBILENET, MOBILENET_ZERO], ids=["fairnas", "proxyless-with-zero"])
def test_mobilenet_rebuilt_with_layer_choices_counts_and_computes_what_the_hand_written_space_does(options):
    ref, mine = make("mobilenet", **options), make("model_mobilenet", **options)
    assert [(d.name, d.choices) for d in mine.decisions] == [(d.name, d.choices) for d in ref.decisions]
    ref_super, supernet = randomised(ref.build_supernet(SPEC), 0), mine.build_supernet(SPEC).eval()
    supernet.load_state_dict({"net." + k: v for k, v in ref_super.state_dict().items()})  # the same names
    rng = np.random.default_rng(2)
    worst_net = worst_path = 0.0
    for i in range(ARCHS):
        arch = ref.sample(rng)
        ref_net = randomised(ref.build(arch, SPEC), i)
        net = mine.build(Arch(arch.to_dict()), SPEC).eval()
        assert counts(net) == counts(ref_net)
        net.load_state_dict(ref_net.state_dict())  # the same names: a LayerChoice becomes its candidate
        worst_net = max(worst_net, max_diff(ref_net, net, i))
        ref_super.set_path(arch)
        supernet.set_path(Arch(arch.to_dict()))
        worst_path = max(worst_path, max_diff(ref_super, supernet, i))
    print(f"\nMobileNet {options['layout']}: max |logit diff| network {worst_net:.3g}, supernet path {worst_path:.3g}")
    assert worst_net <= TOLERANCE and worst_path <= TOLERANCE


@pytest.mark.slow
def test_mobilenet_rebuilt_with_elastic_layers_counts_and_computes_what_the_hand_written_space_does():
    """The OFA-style rebuild shares one MBConv per slot by slicing: the hand-written network's weights written
    into the path's slices give its logits, and so does the rebuild's own network of the architecture."""
    ref, mine = make("mobilenet", **MOBILENET), make("model_mobilenet_ofa", **MOBILENET)
    supernet = mine.build_supernet(SPEC).eval()
    rng = np.random.default_rng(3)
    worst_net = worst_path = 0.0
    for i in range(ARCHS):
        arch = ref.sample(rng)
        ours = ofa_arch(arch)
        ref_net = randomised(ref.build(arch, SPEC), i)
        net = mine.build(ours, SPEC).eval()
        assert counts(net) == counts(ref_net)
        net.load_state_dict(ref_net.state_dict())
        worst_net = max(worst_net, max_diff(ref_net, net, i))
        with torch.no_grad():
            for name, t in ref_net.state_dict().items():
                supernet._source(name, ours).copy_(t)  # a view of the path's slice
        supernet.set_path(ours)
        worst_path = max(worst_path, max_diff(ref_net, supernet, i))
    print(f"\nMobileNet elastic: max |logit diff| network {worst_net:.3g}, supernet path {worst_path:.3g}")
    assert worst_net <= TOLERANCE and worst_path <= TOLERANCE


def test_mobilenet_rebuilt_abs_angles_equal_the_hand_written_supernets():
    """ABS on MobileNet spaces takes the path's conv and linear weights (reference 2.1); the rebuild takes the
    same tensors in module order, and an angle does not depend on the order of the vector's parts."""
    ref, mine = make("mobilenet", **MOBILENET), make("model_mobilenet", **MOBILENET)
    ref_super, supernet = randomised(ref.build_supernet(SPEC), 0), mine.build_supernet(SPEC)
    supernet.load_state_dict({"net." + k: v for k, v in ref_super.state_dict().items()})
    base = {k: v.clone() for k, v in ref_super.state_dict().items()}
    randomised(ref_super, 1)
    supernet.load_state_dict({"net." + k: v for k, v in ref_super.state_dict().items()})
    ref_params, params = dict(ref_super.named_parameters()), dict(supernet.named_parameters())
    rng = np.random.default_rng(4)
    for _ in range(5):
        arch = ref.sample(rng)
        terms = supernet.angle_terms(Arch(arch.to_dict()))
        assert not any(isinstance(t, ParamSlice) for t in terms)  # separate weights per op: whole tensors
        assert sorted(t[4:] for t in terms) == sorted(ref_super.angle_terms(arch))
        ours = angle(torch.cat([base[t[4:]].flatten() for t in terms]), torch.cat([params[t].flatten() for t in terms]))
        theirs = angle(
            torch.cat([base[t].flatten() for t in ref_super.angle_terms(arch)]),
            torch.cat([ref_params[t].flatten() for t in ref_super.angle_terms(arch)]),
        )
        assert float(ours) == pytest.approx(float(theirs), abs=1e-9)


class TestModelNb201Conformance(SpaceConformance):
    space, options = "model_nb201", {"C": 4, "N": 1}

    def make_space(self):
        load()
        return super().make_space()


class TestModelMobilenetConformance(SpaceConformance):
    space, options = "model_mobilenet_ofa", {"layout": "proxyless"}

    def make_space(self):
        load()
        return super().make_space()
