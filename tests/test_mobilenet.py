"""The MBConv space: decisions, validation, layouts and the published networks' exact sizes.

Counts are from reference/algorithms.md (sections 1.7b, 2.5, 5.2, 5.3; tests P1-P3, M7, A3, A6).
Each 224x224 network runs exactly one forward pass (its MAC count).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.common.model_stats import count_macs, count_parameters
from nasframe.common.options import build_options
from nasframe.core.registry import spaces
from nasframe.data import DataSpec

IMAGENET = DataSpec("imagenet", 3, 224, 224, 1000)
CIFAR = DataSpec("cifar10", 3, 32, 32, 10)
OPS = ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6")


def make_space(**options):
    cls = spaces.get("mobilenet")
    return cls(build_options(cls.Options, options, "space"))


def test_registered_with_imagenet_reference_and_supernet():
    cls = spaces.get("mobilenet")
    assert cls.reference_data == "imagenet"
    assert cls.supports_supernet


def test_mobilenetv2_matches_torchvision():
    torchvision = pytest.importorskip("torchvision")
    space = make_space(layout="mobilenetv2")
    net = space.build(space.parse_arch("mobilenetv2"), IMAGENET)
    ref = torchvision.models.mobilenet_v2()
    ref_params = sum(p.numel() for p in ref.parameters())
    assert ref_params == 3_504_872
    assert count_parameters(net) == ref_params
    # same layer shapes, not only the same total
    shapes = sorted(tuple(p.shape) for p in net.parameters())
    assert shapes == sorted(tuple(p.shape) for p in ref.parameters())
    assert count_macs(net, IMAGENET.input_shape) == 300_774_272
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert net.eval()(x).shape == ref.eval()(x).shape == (2, 1000)


@pytest.mark.parametrize(
    "name, options, params, macs_m",
    [
        ("proxyless_gpu", {"layout": "proxyless_gpu"}, 7_119_848, 465.3),
        ("proxyless_cpu", {"layout": "proxyless_cpu"}, 4_361_648, 439.2),
        (
            "mdenas_gpu",
            {"layout": "proxyless_gpu", "expand_ratios": [1, 3, 6], "search_first_block": True},
            5_745_984,
            765.1,
        ),
        (
            "mdenas_cpu",
            {"layout": "proxyless_cpu", "expand_ratios": [1, 3, 6], "search_first_block": True},
            4_069_992,
            515.5,
        ),
        ("spos_abs", {"layout": "proxyless_gpu"}, 5_936_776, 470.8),
        ("proxyless_abs", {"layout": "proxyless_gpu"}, 5_955_808, 469.0),
        ("fairnas_abs", {"layout": "fairnas", "allow_zero": False}, 3_774_992, 310.9),
    ],
)
def test_published_networks_sizes(name, options, params, macs_m):
    space = make_space(**options)
    assert name in space.named_architectures()
    net = space.build(space.parse_arch(name), IMAGENET)
    assert count_parameters(net) == params
    assert round(count_macs(net, IMAGENET.input_shape) / 1e6, 1) == macs_m


def test_proxyless_gpu_arch_reads_as_published():
    arch = make_space(layout="proxyless_gpu").parse_arch("proxyless_gpu")
    assert [arch[f"stage2.block{j}"] for j in range(4)] == ["k7e3", "zero", "zero", "k3e3"]
    assert arch["stage6.block0"] == "k7e6"
    assert sum(v == "zero" for v in arch.values()) == 8  # blocks 2,3,4,6,7,10,11,14 of reference 1.7b


def test_mdenas_gene_overwrites_first_block():
    arch = make_space(layout="proxyless_gpu", expand_ratios=[1, 3, 6], search_first_block=True).parse_arch("mdenas_gpu")
    assert list(arch)[0] == "stage0.block0"
    assert arch["stage0.block0"] == "k7e6"  # gene entry 0
    assert arch["stage3.block3"] == "k3e1"  # gene entry 5: the 6th non-zero block, 56->56
    assert arch["stage6.block0"] == "k5e6"  # last gene entry


def test_decisions_and_zero_placement():
    space = make_space()
    names = [d.name for d in space.decisions]
    assert len(names) == 21 and names[0] == "stage1.block0" and names[-1] == "stage6.block0"
    with_zero = [d.name for d in space.decisions if "zero" in d.choices]
    first_of_stage = {
        "stage1.block0",
        "stage2.block0",
        "stage3.block0",
        "stage4.block0",
        "stage5.block0",
        "stage6.block0",
    }
    assert len(with_zero) == 15
    assert set(with_zero) == set(names) - first_of_stage
    assert space.decision("stage1.block0").choices == OPS
    assert space.decision("stage1.block1").choices == (*OPS, "zero")
    assert space.size() == 6**6 * 7**15 == 221_502_229_807_900_608  # reference A3
    # the CIFAR variant changes strides only where no zero was allowed before (first slots keep in != out)
    assert [d.choices for d in make_space(small_input=True).decisions] == [d.choices for d in space.decisions]
    assert not any("zero" in d.choices for d in make_space(allow_zero=False).decisions)


def test_zero_follows_stride_and_width_rule():
    # stage 2 keeps the width at stride 1, so its first slot may be zero too; stage 3 halves resolution
    space = make_space(custom_layout={"widths": [16, 16, 16], "blocks": [1, 2, 1], "strides": [1, 1, 2]})
    zero = {d.name: "zero" in d.choices for d in space.decisions}
    assert zero == {"stage1.block0": True, "stage2.block0": True, "stage2.block1": True, "stage3.block0": False}


def test_expansion_one_option():
    space = make_space(kernels=[3, 5], expand_ratios=[1, 6])
    assert space.decision("stage1.block0").choices == ("k3e1", "k3e6", "k5e1", "k5e6")


def test_zero_block_returns_input_unchanged():
    space = make_space(small_input=True, width_mult=0.25)
    arch = space.sample(np.random.default_rng(0)).replace(**{"stage1.block1": "zero"})
    net = space.build(arch, CIFAR)
    block = net.blocks.stage1_block1
    x = torch.randn(2, space.slots[1].cin, 8, 8)
    assert torch.equal(block(x), x)
    assert sum(p.numel() for p in block.parameters()) == 0


def test_invalid_choice_fails_validation_in_one_line():
    space = make_space()
    arch = dict(space.parse_arch(str(["k3e6"] * 21)))
    for bad in ({"stage1.block0": "zero"}, {"stage2.block1": "k9e6"}):
        with pytest.raises(InvalidArchitecture) as info:
            space.validate({**arch, **bad})
        message = str(info.value)
        name = next(iter(bad))
        assert "\n" not in message and name in message and "k3e3" in message
    with pytest.raises(InvalidArchitecture, match="not allowed"):
        space.build({**arch, "stage1.block0": "zero"}, IMAGENET)


def test_named_arch_on_another_layout_says_how_to_fix():
    space = make_space()
    assert space.named_architectures() == {}
    with pytest.raises(InvalidArchitecture) as info:
        space.parse_arch("mdenas_cpu")
    message = str(info.value)
    assert "\n" not in message
    for flag in (
        "--set space.layout=proxyless_cpu",
        "--set space.expand_ratios=[1,3,6]",
        "--set space.search_first_block=true",
    ):
        assert flag in message
    assert "mobilenetv2" in make_space(layout="mobilenetv2").named_architectures()
    assert make_space(layout="mobilenetv2", width_mult=0.5).named_architectures() == {}
    options = spaces.get("mobilenet").options_for_arch("mdenas_cpu")
    assert options == {
        "layout": "proxyless_cpu",
        "kernels": [3, 5, 7],
        "expand_ratios": [1, 3, 6],
        "search_first_block": True,
    }
    assert "mdenas_cpu" in make_space(**options).named_architectures()


def test_list_text_form_and_export():
    space = make_space(layout="proxyless_cpu")
    arch = space.parse_arch("proxyless_cpu")
    exported = space.export(arch)
    assert exported["stages"][2] == ["k3e6", "zero", "zero", "k3e3"]
    assert exported["stage_table"]["widths"] == [32, 48, 88, 104, 216, 360]
    assert space.parse_arch(str(exported["stages"])) == arch
    with pytest.raises(InvalidArchitecture, match="expected 21 choices"):
        space.parse_arch("[k3e6, k3e6]")


def test_option_errors_are_config_errors():
    with pytest.raises(ConfigError, match="space.kernels"):
        make_space(kernels=[4])
    with pytest.raises(ConfigError, match="one entry per stage"):
        make_space(custom_layout={"widths": [8, 16]})
    with pytest.raises(ConfigError, match="unknown key 'depth'"):
        make_space(custom_layout={"depth": [1]})
    with pytest.raises(ConfigError, match="strides"):
        make_space(custom_layout={"strides": [2, 2, 3, 1, 2, 1]})
    with pytest.raises(ConfigError, match="space.layout"):
        make_space(layout="resnet")


def test_small_input_strides_and_tiny_inputs():
    space = make_space(small_input=True, width_mult=0.25)
    assert space.layout.first_stride == 1 and space.layout.strides == (1, 2, 2, 1, 2, 1)
    assert space.layout.widths == (8, 16, 24, 24, 48, 80)  # make_divisible(w / 4, 8)
    net = space.build(space.sample(np.random.default_rng(1)), CIFAR).eval()
    seen = []
    net.head.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert seen == [(4, 4), (1, 1)]  # 32 / 8 and 8 / 8 (rounded up) before pooling


def test_custom_layout_from_yaml_text():
    import yaml

    table = yaml.safe_load(
        "{first_conv: 8, first_block: 8, widths: [8, 16], blocks: [2, 1], strides: [1, 2], head: 32}"
    )
    space = make_space(custom_layout=table, small_input=True)
    assert [d.name for d in space.decisions] == ["stage1.block0", "stage1.block1", "stage2.block0"]
    net = space.build(space.parse_arch("[k3e3, zero, k5e6]"), DataSpec("x", 1, 8, 8, 4))
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 4)
    # stem 1->8 (72+16), fixed dw (72+16) pw 8->8 (64+16), block k3e3 8->8: 8*24+48 + 24*9+48 + 24*8+16,
    # block k5e6 8->16: 8*48+96 + 48*25+96 + 48*16+32, head 16->32 (512+64), linear 32*4+4
    expected = (88 + 88 + 80) + (240 + 264 + 208) + (480 + 1296 + 800) + 576 + 132
    assert count_parameters(net) == expected
