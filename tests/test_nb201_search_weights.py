"""Weights of the benchmark's search model loaded into the NB201 supernet: with its conv biases folded
into the running means (default supernet) or taken as they are (`supernet_conv_bias=true`), the
supernet computes the reference's logits, in eval mode, in train mode and after a train-mode step.

The reference is rebuilt here from its module layout and forward rule in AutoDL-Projects:
`xautodl/models/cell_searchs/search_model_darts.py` (TinyNetworkDarts: stem, cells, lastact,
classifier, a (6, 5) `arch_parameters`), `search_cells.py` (NAS201SearchCell: a ModuleDict of edges
"i<-j", each a ModuleList of the five ops; node i sums, over j < i, the ops weighted by that edge's
row), and `cell_operations.py` (ReLUConvBN with its layers in a Sequential `op` and `bias=not affine`,
ResNetBasicblock with conv_a, conv_b and an avg-pool + 1x1-conv `downsample`, Zero as x * 0)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasframe.common.errors import NasframeError
from nasframe.common.model_stats import count_parameters
from nasframe.common.options import build_options
from nasframe.core.registry import spaces
from nasframe.data import DataSpec
from nasframe.spaces.nb201 import EDGE_NAMES, OPS
from nasframe.spaces.nb201_search_weights import load_search_model_state

DIGITS = DataSpec("digits", 1, 8, 8, 10)
# every op but none on a live edge, and a none edge
ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


class RefReLUConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool, track: bool):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=not affine),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class RefZero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class RefResNetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = RefReLUConvBN(c_in, c_out, 3, 2, True, True)
        self.conv_b = RefReLUConvBN(c_out, c_out, 3, 1, True, True)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def ref_op(name: str, c: int, affine: bool, track: bool) -> nn.Module:
    return {
        "none": lambda: RefZero(),
        "skip_connect": lambda: nn.Identity(),
        "nor_conv_1x1": lambda: RefReLUConvBN(c, c, 1, 1, affine, track),
        "nor_conv_3x3": lambda: RefReLUConvBN(c, c, 3, 1, affine, track),
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    }[name]()


class RefSearchCell(nn.Module):
    def __init__(self, c: int, affine: bool, track: bool):
        super().__init__()
        self.edges = nn.ModuleDict()
        for i in range(1, 4):
            for j in range(i):
                self.edges[f"{i}<-{j}"] = nn.ModuleList(ref_op(name, c, affine, track) for name in OPS)
        self.edge2index = {key: k for k, key in enumerate(sorted(self.edges.keys()))}

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in range(1, 4):
            terms = []
            for j in range(i):
                row = weights[self.edge2index[f"{i}<-{j}"]]
                terms.append(sum(op(nodes[j]) * w for op, w in zip(self.edges[f"{i}<-{j}"], row)))
            nodes.append(sum(terms))
        return nodes[-1]


class RefSearchModel(nn.Module):
    def __init__(self, C: int, N: int, channels: int, classes: int, affine: bool = False, track: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        widths = [C] * N + [2 * C] + [2 * C] * N + [4 * C] + [4 * C] * N
        reductions = [False] * N + [True] + [False] * N + [True] + [False] * N
        self.cells = nn.ModuleList()
        c_prev = C
        for c, reduction in zip(widths, reductions):
            self.cells.append(RefResNetBlock(c_prev, c) if reduction else RefSearchCell(c, affine, track))
            c_prev = c
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, classes)
        self.arch_parameters = nn.Parameter(1e-3 * torch.randn(6, len(OPS)))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        for cell in self.cells:
            out = cell(out, weights) if isinstance(cell, RefSearchCell) else cell(out)
        out = self.global_pooling(self.lastact(out)).flatten(1)
        return self.classifier(out)


def make_space(**opts):
    cls = spaces.get("nb201")
    return cls(build_options(cls.Options, opts, "space"))


def trained_reference(track: bool = True, affine: bool = False) -> RefSearchModel:
    """A float64 reference at C=4, N=1 with non-zero conv biases and running statistics unlike (0, 1)."""
    torch.manual_seed(0)
    ref = RefSearchModel(4, 1, DIGITS.channels, DIGITS.num_classes, affine=affine, track=track).double()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn_like(p))
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
                m.running_mean.copy_(0.5 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
    return ref


def supernet(**opts):
    space = make_space(C=4, N=1, **opts)
    return space, space.build_supernet(DIGITS).double()


def mixed(net, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return net.forward_mixed(x, dict(zip(EDGE_NAMES, weights)))


def test_the_rebuilt_reference_has_the_published_parameter_count():
    """SETN / the benchmark's search model at C=16, N=5 on CIFAR-10: 1,692,856 parameters with alphas."""
    assert count_parameters(RefSearchModel(16, 5, 3, 10)) == 1_692_856
    assert count_parameters(RefSearchModel(16, 5, 3, 100)) == 1_698_706


@pytest.mark.parametrize("conv_bias", [False, True])
def test_loaded_reference_weights_give_the_references_logits(conv_bias):
    """Eval-mode logits of the mixed forward and of a single path equal the reference's to 1e-10 (float64),
    and still do after one train-mode forward on both (running statistics updated) and in train mode.
    Dropping the biases without the fold was 0.18 apart at C=16 in the side-by-side run; here it must be
    visibly off too."""
    ref = trained_reference()
    space, net = supernet(supernet_conv_bias=conv_bias)
    alphas = load_search_model_state(net, ref.state_dict())
    assert alphas is not None and torch.equal(alphas, ref.arch_parameters.detach())
    weights = torch.softmax(torch.randn(6, len(OPS), generator=torch.Generator().manual_seed(2)), -1).double()
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref.eval()
    net.eval()
    with torch.no_grad():
        expected = ref(x, weights)
        assert torch.allclose(mixed(net, weights, x), expected, rtol=0, atol=1e-10)
        arch = space.parse_arch(ARCH)
        net.set_path(arch)
        one_hot = torch.zeros(6, len(OPS), dtype=torch.float64)
        for e, name in enumerate(EDGE_NAMES):
            one_hot[e, OPS.index(arch[name])] = 1.0
        assert torch.allclose(net(x), ref(x, one_hot), rtol=0, atol=1e-10)
        ref.train()
        net.train()
        assert torch.allclose(mixed(net, weights, x), ref(x, weights), rtol=0, atol=1e-10)  # stats updated
        ref.eval()
        net.eval()
        assert torch.allclose(mixed(net, weights, x), ref(x, weights), rtol=0, atol=1e-10)
    if not conv_bias:  # the same weights with the biases dropped instead of folded
        _, naive = supernet(supernet_conv_bias=True)
        load_search_model_state(naive, ref.state_dict())
        with torch.no_grad():
            for name, p in naive.named_parameters():
                if ".edges." in name and name.endswith(".1.bias"):
                    p.zero_()
            assert (mixed(naive.eval(), weights, x) - expected).abs().max() > 1e-3


def test_without_running_statistics_the_bias_cancels_and_is_dropped():
    ref = trained_reference(track=False)
    _, net = supernet(supernet_track_running_stats=False)
    load_search_model_state(net, ref.state_dict())
    weights = torch.softmax(torch.randn(6, len(OPS), generator=torch.Generator().manual_seed(4)), -1).double()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(mixed(net.eval(), weights, x), ref.eval()(x, weights), rtol=0, atol=1e-10)


def test_weights_of_another_layout_are_refused_in_one_line_and_nothing_is_loaded():
    _, net = supernet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    wider = RefSearchModel(8, 1, 1, 10).double().state_dict()
    with pytest.raises(NasframeError, match=r"has shape \(8, 1, 3, 3\), the supernet's is \(4, 1, 3, 3\)"):
        load_search_model_state(net, wider)
    affine = trained_reference(affine=True).state_dict()  # affine=1: BN weights, no conv biases
    with pytest.raises(NasframeError, match=r"not in the supernet cells\.0\.edges\.0\.ops\.2\.2\.bias.*affine=0"):
        load_search_model_state(net, affine)
    untracked = trained_reference(track=False).state_dict()
    with pytest.raises(NasframeError, match=r"missing cells\..*supernet_track_running_stats"):
        load_search_model_state(net, untracked)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_keys_saved_from_a_data_parallel_wrapper_load_too():
    ref = trained_reference()
    _, net = supernet(supernet_conv_bias=True)
    load_search_model_state(net, {f"module.{k}": v for k, v in ref.state_dict().items()})
    ours, theirs = net.state_dict(), ref.state_dict()
    assert torch.equal(ours["cells.0.edges.5.ops.3.1.bias"], theirs["cells.0.edges.3<-2.3.op.1.bias"])
    assert torch.equal(ours["cells.1.shortcut.1.weight"], theirs["cells.1.downsample.1.weight"])
