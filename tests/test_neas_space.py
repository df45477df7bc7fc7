"""The NEAS ensemble space (reference algorithms-2.md section 10): the released tuples' decoding (NE1),
the released models' parameter and MAC counts (NE2), the averaged output (NE3), the gradient division
and the summed member loss (NE4), skipped layers (NE5), and the K-path supernet's member scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasframe.common.errors import InvalidArchitecture
from nasframe.common.options import build_options
from nasframe.core.space import EnsembleLogits
from nasframe.data import DataSpec
from nasframe.spaces.neas import RELEASED, NeasSpace
from nasframe.spaces.neas_blocks import GradDivide
from nasframe.spaces.neas_net import parse_op
from nasframe.training.step_options import StepSettings
from nasframe.training.steps import classification_loss

#: reference 10.6: split, K, the shared choices (c_DS omitted) and the member paths (c_last included)
DECODED = {
    "neas_s": (20, 2, [0, -1, 0, 2, 0, 0, 2, -1, 0, -1, 0, 3, 2, 4, 0, 2, 5, 0, 4, 3], [[0], [0]]),
    "neas_m": (16, 2, [3, 2, 0, 2, 5, 0, -1, 3, 0, 2, 0, 0, 3, 5, 4, 0], [[5, 0, 5, 4, 0], [3, 5, 2, 5, 0]]),
    "neas_l": (16, 2, [5, 5, 1, 3, 5, 1, 3, 4, 1, 2, 5, 4, 1, 3, 3, 1], [[3, 1, 5, 1, 0], [5, 4, 4, 3, 0]]),
}
#: reference 10.6: parameters (the released code's count), conv + linear MACs at 224x224, and the
#: released model's block counts: shared blocks (the fixed DS block included) / blocks per member
PUBLISHED = {
    "neas_s": (8_700_104, 301.50e6, 18, 1),
    "neas_m": (11_629_384, 449.35e6, 16, 5),
    "neas_l": (12_518_304, 553.14e6, 17, 5),
}
OPS = ["k3e4", "k3e6", "k5e4", "k5e6", "k7e4", "k7e6"]
IMAGENET = DataSpec("imagenet", 3, 224, 224, 1000)
TINY = {
    "stage_layers": [2, 1],
    "widths": [8, 16],
    "strides": [1, 2],
    "stem_width": 8,
    "last_width": 16,
    "head_width": 16,
    "small_input": True,
    "ops": ["k3e4", "k5e4"],
}


def space(**options: object) -> NeasSpace:
    return NeasSpace(build_options(NeasSpace.Options, options, "space"))


def released_space() -> NeasSpace:
    return space(members=2, unused_released_layers=True)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_tuples_decode_as_the_reference_table(name):
    """NE1: the decoding of 10.6, the tuple length 2 + (split + 1) + K (20 - split + 1), and the round trip."""
    s = released_space()
    values = RELEASED[name]
    split, k, shared, paths = DECODED[name]
    assert len(values) == 2 + (split + 1) + k * (20 - split + 1) == (25 if split == 20 else 29)
    arch = s.named_architectures()[name]
    assert arch == s.from_tuple(list(values)) == s.parse_arch(json.dumps(list(values)))
    exported = s.export(arch)
    assert exported["split"] == split and exported["members"] == k
    index = {op: i for i, op in enumerate(OPS)} | {"skip": -1}
    assert [index[op] for op in exported["trunk"]] == shared
    assert [[index[op] for op in ops] + [0] for ops in exported["branches"]] == paths
    assert s.to_tuple(arch) == list(values)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_released_models_rebuild_with_the_published_counts(cli, name):
    """NE2 through `nasframe inspect`: the released parameter counts to the digit and the MACs."""
    code, out, err = cli("inspect", "--space", "neas", "--arch", name, "--json")
    assert code == 0, err
    info = json.loads(out)
    params, macs, _, _ = PUBLISHED[name]
    assert info["name"] == name and info["params"] == params
    assert info["macs"] == pytest.approx(macs, rel=2e-5)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_counts_include_the_released_blocks_unused_layers(name):
    """The released InvertedResidual builds a k x k depthwise conv on its output width and a BN that its
    forward never calls; the published counts include them: (k^2 + 2) x out channels per choice layer."""
    with_unused = released_space()
    functional = space(members=2)
    arch = with_unused.named_architectures()[name]
    net = with_unused.build(arch, IMAGENET)
    plain = functional.build(arch, IMAGENET)
    count = sum(p.numel() for p in net.parameters())
    by_hand = 0
    for path_index, path in enumerate(with_unused.member_layers(arch)):
        split = int(arch["split"])
        for i, (_, op) in enumerate(path):
            if op == "skip" or (path_index > 0 and i < split):  # the trunk is counted once
                continue
            kernel, _ = parse_op(str(op))
            by_hand += (kernel**2 + 2) * with_unused.chain.layers[i].cout
    assert count == PUBLISHED[name][0]
    assert count - sum(p.numel() for p in plain.parameters()) == by_hand
    _, _, shared_blocks, member_blocks = PUBLISHED[name]
    assert 1 + len(net.trunk) == shared_blocks  # the fixed DS block and the shared choice layers
    assert [len(m) for m in net.members] == [member_blocks] * 2  # own choice layers + the head (last conv)


def test_the_ensemble_outputs_the_mean_of_its_members_logits():
    """NE3: heads answering [2, 0] and [0, 2] give [1, 1] (pre-softmax mean), in eval and train mode."""
    s = space(**TINY)
    net = s.build(s.sample(np.random.default_rng(0)), DataSpec("toy", 1, 8, 8, 2))
    for member, bias in zip(net.members, ([2.0, 0.0], [0.0, 2.0])):
        torch.nn.init.zeros_(member.head.classifier.weight)
        member.head.classifier.bias.data = torch.tensor(bias)
    x = torch.randn(3, 1, 8, 8)
    net.eval()
    assert torch.equal(net(x), torch.ones(3, 2))
    net.train()
    out = net(x)
    assert isinstance(out, EnsembleLogits) and torch.equal(out.logits, torch.ones(3, 2))
    assert [m[0].tolist() for m in out.members] == [[2.0, 0.0], [0.0, 2.0]]


def test_grad_divide_is_the_identity_forward_and_halves_the_gradient():
    """NE4 with K = 2: y = x and d(sum y)/dx = 0.5 everywhere."""
    x = torch.randn(4, 3, requires_grad=True)
    y = GradDivide.apply(x, 2)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 0.5))


def test_the_training_loss_sums_the_members_cross_entropies():
    """With y = 0, logits [0, 0] and [ln 3, 0]: CE = ln 2 and ln(4/3), their sum ln(8/3)."""
    members = (torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]]))
    out = EnsembleLogits(torch.stack(members).mean(0), members)
    settings = StepSettings(amp=False, grad_clip=0.0, label_smoothing=0.0, auxiliary_weight=0.0, check_every=1)
    loss = classification_loss(out, torch.tensor([0]), settings)
    assert float(loss) == pytest.approx(math.log(8.0 / 3.0), abs=1e-6)


def test_the_trunk_gets_the_mean_of_the_members_gradients_and_each_member_its_own():
    """NE4 on a network: with the members' losses summed, a member's parameters get that member's full
    gradient, and the trunk gets the members' summed gradient divided by K (here 3)."""
    torch.manual_seed(0)
    s = space(**{**TINY, "members": 3})
    arch = s.sample(np.random.default_rng(1)).replace(split=2)
    net = s.build(arch, DataSpec("toy", 1, 8, 8, 10)).double()
    net.train()
    x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.tensor([1, 2, 3, 4])
    settings = StepSettings(amp=False, grad_clip=0.0, label_smoothing=0.1, auxiliary_weight=0.0, check_every=1)
    classification_loss(net(x), y, settings).backward()
    trunk_params = [p for n, p in net.named_parameters() if not n.startswith("members.")]
    # by hand: the trunk's output as a leaf, the members on it, the summed loss, then the chain rule
    features = net.trunk(net.first_block(net.stem(x)))
    leaf = features.detach().requires_grad_(True)
    losses = [F.cross_entropy(m(leaf), y, label_smoothing=0.1) for m in net.members]
    (d_features,) = torch.autograd.grad(sum(losses), leaf, retain_graph=True)
    expected = torch.autograd.grad(features, trunk_params, grad_outputs=d_features / 3)
    for p, g in zip(trunk_params, expected):
        torch.testing.assert_close(p.grad, g)
    member = net.members[1]
    own = torch.autograd.grad(losses[1], list(member.parameters()))
    for p, g in zip(member.parameters(), own):
        torch.testing.assert_close(p.grad, g)


def test_a_skipped_layer_builds_no_module_and_a_first_layer_cannot_be_skipped():
    """NE5: -1 omits the layer; -1 on the first layer of a stage is rejected (it would drop the stride)."""
    s = released_space()
    net = s.build(s.named_architectures()["neas_m"], IMAGENET)
    assert "stage2_layer2" not in dict(net.trunk.named_children()) and "stage2_layer1" in dict(
        net.trunk.named_children()
    )
    assert all("skip" not in s.decision(f"member{k}.stage{i}.layer0").choices for k in (0, 1) for i in range(1, 6))
    bad = list(RELEASED["neas_m"])
    bad[3 + 4] = -1  # stage2.layer0
    with pytest.raises(InvalidArchitecture, match="first layer of a stage"):
        s.from_tuple(bad)
    with pytest.raises(InvalidArchitecture, match="29 entries"):
        s.from_tuple(bad[:-1])


def test_named_models_need_the_released_chain():
    s = space(**TINY)
    assert s.named_architectures() == {}
    with pytest.raises(InvalidArchitecture, match="released chain"):
        s.parse_arch("neas_m")


def test_canonical_and_solo_rewrite_unused_choices_only():
    s = space(**{**TINY, "members": 2})
    arch = s.sample(np.random.default_rng(4)).replace(split=1)
    canonical = s.canonical(arch)
    assert s.member_layers(canonical) == s.member_layers(arch)
    assert canonical["member1.stage1.layer0"] == arch["member0.stage1.layer0"]
    for k in (0, 1):
        solo = s.solo(arch, k)
        assert s.member_layers(solo) == [s.member_layers(arch)[k]] * 2


def test_supernet_ensemble_is_the_mean_of_its_members_alone():
    """The K-path supernet shares all weights among members, so (eval mode) an ensemble's logits are the
    mean of the logits of its `solo` ensembles, each computing one member; the ensemble also trains
    exactly its path's parameters."""
    torch.manual_seed(0)
    s = space(**{**TINY, "members": 3})
    spec = DataSpec("toy", 1, 8, 8, 10)
    net = s.build_supernet(spec)
    net.eval()
    x = torch.randn(5, 1, 8, 8)
    rng = np.random.default_rng(2)
    for split in (0, 1, 3):
        arch = s.sample(rng).replace(split=split)
        net.set_path(arch)
        together = net(x)
        alone = []
        for k in range(3):
            net.set_path(s.solo(arch, k))
            alone.append(net(x))
        torch.testing.assert_close(together, torch.stack(alone).mean(0))
