"""The SPOS ShuffleNetV2 space: published counts through the CLI, decisions and text forms, layer
arithmetic counted by hand, initialisation, and the supernet (single path, gradients, angle terms,
mixed forward, restriction, the supernet evaluator on digits).

Counts are from reference/algorithms.md 3.1 and 3.5 (test S1). Everything except the S1 and
initialisation checks runs on a tiny digits-size configuration.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.common.model_stats import count_macs, count_parameters
from nasframe.common.options import build_options
from nasframe.core.registry import evaluators, spaces
from nasframe.core.space import Supernet
from nasframe.data import DataSpec
from nasframe.spaces.shufflenet_blocks import split_shuffled

CHOICES = ("shuffle3x3", "shuffle5x5", "shuffle7x7", "xception")
SPOS = (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)
IMAGENET = DataSpec("imagenet", 3, 224, 224, 1000)
DIGITS = DataSpec("digits", 1, 8, 8, 10)
# 6 blocks: stages 1 and 3 have a projecting block and a splitting block, stages 2 and 4 only a projecting one
TINY = {
    "small_input": True,
    "stem_width": 4,
    "widths": [8, 16, 24, 32],
    "stage_repeats": [2, 1, 2, 1],
    "last_width": 32,
}


def make_space(**options):
    cls = spaces.get("shufflenet")
    return cls(build_options(cls.Options, options, "space"))


@pytest.fixture(scope="module")
def tiny():
    return make_space(**TINY)


@pytest.fixture(scope="module")
def arch(tiny):
    # every op once in a projecting block and the two kinds of op in the splitting blocks
    return tiny.parse_arch("xception, shuffle7x7, shuffle3x3, shuffle5x5, xception, shuffle5x5")


# ---- the published network -----------------------------------------------------------------------


def test_inspect_spos_gives_the_published_counts(cli):
    code, out, err = cli("inspect", "--space", "shufflenet", "--arch", "SPOS", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["name"] == "SPOS" and info["data"] == "imagenet" and info["input_shape"] == [3, 224, 224]
    assert info["params"] == 3_558_464  # reference S1
    assert info["macs"] == 322_918_720  # 322.9M (S1); SPOS's own conv/linear hook count gives the same integer
    assert info["export"]["choice_indices"] == ",".join(map(str, SPOS))
    code, text, err = cli("inspect", "--space", "shufflenet", "--arch", "SPOS")
    assert code == 0, err
    assert "params: 3,558,464 (3.56M)" in text and "macs: 322,918,720 (322.92M)" in text


def test_registered_with_imagenet_reference_and_supernet():
    cls = spaces.get("shufflenet")
    assert cls.reference_data == "imagenet" and cls.supports_supernet


def test_spos_initialisation():
    torch.manual_seed(0)
    space = make_space()
    net = space.build(space.parse_arch("SPOS"), IMAGENET)
    assert net.stem[0].weight.std().item() == pytest.approx(0.01, rel=0.2)  # 432 draws
    assert net.conv_last[0].weight.std().item() == pytest.approx(1 / 640, rel=0.01)  # N(0, 1/in), 655k draws
    depthwise = net.blocks.stage3_block4.branch_main[3].weight  # SPOS index 0 (shuffle3x3): std 1 / 1
    assert depthwise.shape == (160, 1, 3, 3) and depthwise.std().item() == pytest.approx(1.0, rel=0.05)
    assert net.classifier.bias is None and net.classifier.weight.std().item() == pytest.approx(0.01, rel=0.01)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.affine for m in bns)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 1e-4) for m in bns)
    assert net.dropout.p == 0.1
    supernet = space.build_supernet(DataSpec("imagenet", 3, 32, 32, 1000))
    assert not any(m.affine for m in supernet.modules() if isinstance(m, nn.BatchNorm2d))


# ---- decisions, text forms, options ---------------------------------------------------------------


def test_decisions_and_named_architecture():
    space = make_space()
    names = [d.name for d in space.decisions]
    assert len(names) == 20 and names[:5] == [
        "stage1.block0",
        "stage1.block1",
        "stage1.block2",
        "stage1.block3",
        "stage2.block0",
    ]
    assert names[-1] == "stage4.block3" and sum(n.startswith("stage3.") for n in names) == 8
    assert all(d.choices == CHOICES for d in space.decisions)
    assert space.size() == 4**20
    spos = space.named_architectures()["SPOS"]
    assert spos["stage1.block0"] == "shuffle7x7" and spos["stage3.block3"] == "xception"
    assert [spos[n] for n in names] == [CHOICES[i] for i in SPOS]


def test_list_forms_and_export_round_trip():
    space = make_space()
    spos = space.parse_arch("SPOS")
    for text in (
        "2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3",
        str(list(SPOS)),
        str(SPOS),
        " ".join(CHOICES[i] for i in SPOS),
        json.dumps(spos.to_dict()),
    ):
        assert space.parse_arch(text) == spos, text
    exported = space.export(spos)
    assert space.parse_arch(exported["choice_indices"]) == spos
    assert space.parse_arch(str(exported["stages"])) == spos  # nested, quoted names
    assert exported["stages"][2] == [
        "shuffle7x7",
        "shuffle3x3",
        "shuffle7x7",
        "xception",
        "shuffle3x3",
        "shuffle3x3",
        "shuffle3x3",
        "shuffle3x3",
    ]
    assert exported["stage_table"]["widths"] == [64, 160, 320, 640]


@pytest.mark.parametrize(
    "text, match",
    [
        ("2,1,0", "expected 20 choices"),
        (",".join(["4"] * 20), "stage1.block0='4' is not a choice"),
        (",".join(["0"] * 19 + ["conv"]), "stage4.block3='conv'"),
        ("resnet", r"named architecture \(SPOS\)"),
    ],
)
def test_bad_architecture_text_is_one_line(text, match):
    with pytest.raises(InvalidArchitecture, match=match) as info:
        make_space().parse_arch(text)
    assert "\n" not in str(info.value)


def test_named_architecture_needs_twenty_blocks(tiny):
    assert tiny.named_architectures() == {}
    with pytest.raises(InvalidArchitecture, match=r"--set space.stage_repeats=\[4,4,8,4\]"):
        tiny.parse_arch("SPOS")
    # other widths keep the 20 blocks, so SPOS's choices still name an architecture there
    assert "SPOS" in make_space(**{**TINY, "stage_repeats": [4, 4, 8, 4]}).named_architectures()
    restricted = make_space().restrict({"stage1.block0": ["shuffle3x3"]})
    assert restricted.named_architectures() == {}


@pytest.mark.parametrize(
    "options, match",
    [
        ({"widths": [64, 161, 320, 640]}, "161 is odd"),
        ({"widths": [64, 64, 320, 640]}, "stage 2 width 64 must exceed its input width 64"),
        ({"stem_width": 64}, "stage 1 width 64 must exceed its input width 64"),
        ({"widths": [64, 160]}, "one entry per stage"),
        ({"stage_repeats": [4, 0, 8, 4]}, "space.stage_repeats: 0"),
        ({"stem_width": 0}, "space.stem_width"),
        ({"dropout": 1.0}, "space.dropout"),
    ],
)
def test_option_errors_are_one_line_config_errors(options, match):
    with pytest.raises(ConfigError, match=match) as info:
        make_space(**options)
    assert "\n" not in str(info.value)


# ---- layer arithmetic -----------------------------------------------------------------------------


def test_tiny_network_counted_by_hand():
    space = make_space(small_input=True, stem_width=4, widths=[8, 16], stage_repeats=[1, 2], last_width=32)
    net = space.build(space.parse_arch("shuffle3x3, xception, shuffle5x5"), DIGITS)
    # stem 1->4: 36 + BN 8. stage1.block0 (4 -> 8, mid 4): main pw 16, dw3 36, pw 4->4 16 (+3 BN of 4);
    # proj dw3 36, pw 16 (+2 BN of 4). stage2.block0 xception (8 -> 16, mid 8): 3 x (dw3 72 + pw 64) + 6 BN of 8;
    # proj dw3 72, pw 64 + 2 BN of 8. stage2.block1 shuffle5x5 (half of 16 in, 8 out): pw 64, dw5 200, pw 64
    # + 3 BN of 8. conv_last 16->32: 512 + BN 64. classifier 32x10, no bias.
    expected = (36 + 8) + (68 + 24 + 52 + 16) + (408 + 96 + 136 + 32) + (328 + 48) + (512 + 64) + 320
    assert count_parameters(net) == expected == 2148
    # at 8x8 (stride 1 stem and stage 1), stage 2 at 4x4: per conv, weight size x output positions
    macs = (
        (36 * 64)
        + (16 + 36 + 16 + 36 + 16) * 64
        + (72 + 64 * 3 + 72 * 2 + 72 + 64) * 16
        + (64 + 200 + 64) * 16
        + 512 * 16
        + 320
    )
    assert count_macs(net, DIGITS.input_shape) == macs == 32448


def test_split_keeps_even_channels_and_shuffles_the_rest():
    x = torch.arange(2 * 6 * 1 * 1, dtype=torch.float32).reshape(2, 6, 1, 1)
    kept, main = split_shuffled(x)
    assert kept[0, :, 0, 0].tolist() == [0, 2, 4] and main[1, :, 0, 0].tolist() == [7, 9, 11]
    space = make_space(**TINY)
    block = space.build(space.parse_arch("0,0,0,0,0,0"), DIGITS).blocks.stage1_block1.eval()
    x = torch.randn(3, 8, 5, 5)
    with torch.no_grad():
        out = block(x)
    assert out.shape == x.shape
    assert torch.equal(out[:, :4], x[:, 0::2])  # the passed-through half comes first


def test_tiny_space_runs_on_digit_size_inputs(tiny, arch):
    net = tiny.build(arch, DIGITS).eval()
    seen = []
    net.conv_last.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[1:])))
    with torch.no_grad():
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert seen == [(32, 1, 1)]  # strides 1, 1, 2, 2, 2: 8 -> 8 -> 8 -> 4 -> 2 -> 1


# ---- the supernet ---------------------------------------------------------------------------------


def test_separate_weights_per_candidate(tiny):
    net = tiny.build_supernet(DIGITS)
    assert isinstance(net, Supernet)
    slot = net.blocks["stage3_block1"]
    assert tuple(slot.keys()) == CHOICES
    assert slot["shuffle3x3"].branch_main[0].weight.data_ptr() != slot["shuffle5x5"].branch_main[0].weight.data_ptr()
    assert slot["shuffle3x3"].branch_proj is None and net.blocks["stage3_block0"]["xception"].branch_proj is not None


def test_path_equals_standalone_network(tiny, arch):
    """The stand-alone net takes the supernet path's conv weights and BN statistics; its affine BNs are set
    to the identity (weight 1, bias 0), which is what the supernet's affine-free BNs compute."""
    torch.manual_seed(1)
    supernet = tiny.build_supernet(DIGITS)
    supernet.set_path(arch)
    with torch.no_grad():
        for _ in range(3):  # train-mode forwards move the running statistics away from (0, 1)
            supernet(torch.randn(8, 1, 8, 8))
    supernet.eval()
    net = tiny.build(arch, DIGITS).eval()
    source = supernet.state_dict()
    state = {}
    for name, value in net.state_dict().items():
        parts = name.split(".")
        if parts[0] == "blocks":  # supernet names carry the op: blocks.<slot>.<op>.<rest>
            parts.insert(2, str(arch[parts[1].replace("_", ".")]))
        key = ".".join(parts)
        if key in source:
            state[name] = source[key]
        else:  # an affine parameter, which the supernet does not have
            assert name.endswith((".weight", ".bias")) and value.dim() == 1
            state[name] = torch.ones_like(value) if name.endswith(".weight") else torch.zeros_like(value)
    net.load_state_dict(state)
    assert any(not torch.all(v == 0) for k, v in state.items() if k.endswith("running_mean"))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), supernet(x))


def test_single_path_gradients(tiny, arch):
    torch.manual_seed(0)
    net = tiny.build_supernet(DIGITS)
    net.set_path(arch)
    out = net(torch.randn(4, 1, 8, 8))
    assert out.shape == (4, 10)
    out.logsumexp(1).sum().backward()
    with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    assert with_grad == set(net.path_parameter_names(arch))
    for name in (d.name for d in tiny.decisions):
        key = name.replace(".", "_")
        for op in CHOICES:
            prefix = f"blocks.{key}.{op}."
            got = {n for n in with_grad if n.startswith(prefix)}
            assert bool(got) == (op == arch[name]), prefix  # unchosen candidates: grad None
    assert {"stem.0.weight", "conv_last.0.weight", "classifier.weight"} <= with_grad


def test_angle_terms_order_and_content(tiny, arch):
    net = tiny.build_supernet(DIGITS)
    terms = net.angle_terms(arch)
    assert terms[:3] == ["stem.0.weight", "conv_last.0.weight", "classifier.weight"]
    # convs per block: projecting xception 6 + 2, splitting shuffle 3, projecting shuffle 3 + 2
    assert len(terms) == 3 + 8 + 3 + 5 + 5 + 8 + 3
    assert terms[3:11] == [f"blocks.stage1_block0.xception.branch_main.{i}.weight" for i in (0, 2, 5, 7, 10, 12)] + [
        f"blocks.stage1_block0.xception.branch_proj.{i}.weight" for i in (0, 2)
    ]
    params = dict(net.named_parameters())
    assert all(params[t].dim() in (2, 4) for t in terms)  # conv and linear weights only
    # the block part is the path's parameters in network order (all conv weights: BNs have no affine)
    path = net.path_parameter_names(arch)
    assert terms[3:] == [n for n in path if n.startswith("blocks.")]
    assert sorted(terms) == sorted(path)


def test_forward_mixed_one_hot_equals_single_path(tiny, arch):
    torch.manual_seed(2)
    net = tiny.build_supernet(DIGITS).eval()
    net.set_path(arch)
    weights = {
        name: torch.tensor([1.0 if c == arch[name] else 0.0 for c in choices]) for name, choices in net.choices.items()
    }
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net.forward_mixed(x, weights), net(x), rtol=0, atol=0)
    # soft weights reach every candidate
    soft = {name: torch.full((4,), 0.25, requires_grad=True) for name in net.choices}
    net.forward_mixed(x, soft).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(InvalidArchitecture, match="needs 4 entries"):
        net.forward_mixed(x, {**weights, "stage1.block0": torch.ones(3)})


def test_restricted_space_builds_the_full_supernet(tiny):
    small = tiny.restrict({"stage1.block0": ["shuffle3x3"], "stage4.block0": ["xception", "shuffle7x7"]})
    assert small.decision("stage4.block0").choices == ("shuffle7x7", "xception")
    full_names = [n for n, _ in tiny.build_supernet(DIGITS).named_parameters()]
    assert [n for n, _ in small.build_supernet(DIGITS).named_parameters()] == full_names


def test_set_path_rejects_unknown_op(tiny, arch):
    net = tiny.build_supernet(DIGITS)
    with pytest.raises(InvalidArchitecture, match="stage1.block0"):
        net.set_path(arch.replace(**{"stage1.block0": "conv3x3"}))
    with pytest.raises(RuntimeError, match="set_path"):
        tiny.build_supernet(DIGITS)(torch.randn(1, 1, 8, 8))


def test_supernet_evaluator_trains_spos_on_digits(digits):
    """The published 20-block architecture at digit size: one evaluation trains its path only."""
    space = make_space(small_input=True, stem_width=4, widths=[8, 16, 24, 32], last_width=32)
    cls = evaluators.get("supernet")
    ev = cls(space, cls.Options(steps=3), data=digits, device="cpu")
    spos = space.parse_arch("SPOS")
    torch.manual_seed(0)
    ev._build()
    before = {k: v.clone() for k, v in ev.supernet.state_dict().items()}
    result = ev.evaluate(spos)
    assert result.ok and 0 <= result.metrics["val_acc"] <= 100
    after = ev.supernet.state_dict()
    chosen = "blocks.stage3_block3.xception.branch_main.0.weight"  # SPOS index 3 at block 11
    unchosen = "blocks.stage3_block3.shuffle3x3.branch_main.0.weight"
    assert not torch.equal(after[chosen], before[chosen])
    assert torch.equal(after[unchosen], before[unchosen])
    v0, v1 = ev.path_vectors(spos)
    params = dict(ev.supernet.named_parameters())
    assert v0.numel() == sum(params[t].numel() for t in ev.supernet.angle_terms(spos))
    assert not torch.equal(v0, v1)
    assert not np.isnan(float(torch.nn.functional.cosine_similarity(v0, v1, dim=0)))


def test_small_input_auto_follows_the_input_size():
    """auto: stride 1 in the stem and stage 1 under 64 px, the reference's stride 2 at 224 px."""
    from nasframe.data import DataSpec

    space = make_space(small_input="auto", stem_width=4, widths=[8, 16, 24, 32], last_width=32)
    digits, imagenet = DataSpec("d", 1, 8, 8, 10), DataSpec("i", 3, 224, 224, 1000)
    assert space.layout_for(digits).stem_stride == 1 and space.layout_for(digits).strides[0] == 1
    assert space.layout_for(imagenet) == space.layout and space.layout.stem_stride == 2
    net = space.build(space.sample(np.random.default_rng(0)), digits)
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
