"""Stand-alone DARTS networks: published parameter / MAC counts, layout, 'none', aux head, drop path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasframe.common.errors import ConfigError
from nasframe.common.model_stats import count_macs, count_parameters
from nasframe.common.options import build_options
from nasframe.core.registry import spaces
from nasframe.data import DataSpec
from nasframe.spaces.darts_networks import AuxiliaryHead, EvalCell, reduction_cells
from nasframe.spaces.darts_ops import FactorizedReduce, Zero, drop_path, make_op

CIFAR = DataSpec("cifar10", 3, 32, 32, 10)
IMAGENET = DataSpec("imagenet", 3, 224, 224, 1000)
DIGITS = DataSpec("digits", 1, 8, 8, 10)


def make_space(**opts):
    cls = spaces.get("darts")
    return cls(build_options(cls.Options, opts, "space"))


def test_darts_v2_cifar_counts_match_the_paper_code():
    space = make_space(C=36, layers=20, auxiliary=True)
    net = space.build(space.parse_arch("DARTS_V2"), CIFAR)
    assert count_parameters(net) == 3_349_342  # D1: aux head excluded
    assert sum(p.numel() for p in net.parameters()) == 3_825_768  # D1: aux head included
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [6, 13]
    assert net.cells[13].preprocess1.op[1].out_channels == 144 and net.cell_out_channels[13] == 576
    assert isinstance(net.auxiliary_head, AuxiliaryHead)
    assert net.auxiliary_head.features[2].in_channels == 576  # D3: aux input 576 channels ...
    assert isinstance(net.auxiliary_head.features[1], nn.AvgPool2d)  # ... at 8x8: DARTS' own AvgPool(5, 3)


def test_mdenas_genotype_count_matches_quark0_pooling():
    space = make_space(C=36, layers=20, auxiliary=True)
    with torch.device("meta"):
        net = space.build(space.parse_arch("MDENAS"), CIFAR)
    assert count_parameters(net) == 3_783_286  # M6 (quark0 pooling, no BN after pools); paper says 4.06M


def test_darts_v2_imagenet_params_and_macs():
    space = make_space(C=48, layers=14)
    with torch.device("meta"):  # counts need shapes only; a meta forward does no arithmetic
        net = space.build(space.parse_arch("DARTS_V2"), IMAGENET)
    assert net.imagenet and [i for i, c in enumerate(net.cells) if c.reduction] == [4, 9]
    assert count_parameters(net) == 4_718_752  # D2
    assert count_macs(net, IMAGENET.input_shape) == pytest.approx(529.9e6, rel=1e-3)


def test_reduction_cells_and_channel_doubling():
    assert reduction_cells(8) == (2, 5) and reduction_cells(20) == (6, 13) and reduction_cells(14) == (4, 9)
    space = make_space(C=4, layers=8)
    net = space.build(space.parse_arch("DARTS_V1"), DIGITS)
    assert [c.reduction for c in net.cells] == [i in (2, 5) for i in range(8)]
    assert [c.channels for c in net.cells] == [4, 4, 8, 8, 8, 16, 16, 16]
    # the cell after a reduction shrinks c_{k-2} with a FactorizedReduce, as DARTS does
    assert [isinstance(c.preprocess0, FactorizedReduce) for c in net.cells] == [i in (3, 6) for i in range(8)]
    assert net.stem[0].in_channels == 1 and net.classifier.out_features == 10


def test_stride_two_skip_is_factorized_reduce_and_ops_are_eval_versions():
    assert isinstance(make_op("skip_connect", 8, 2), FactorizedReduce)
    assert isinstance(make_op("skip_connect", 8, 1), nn.Identity)
    assert isinstance(make_op("max_pool_3x3", 8, 1), nn.MaxPool2d)  # no BN after pooling in eval nets
    assert make_op("sep_conv_3x3", 8, 1).op[3].affine
    x = torch.randn(2, 8, 7, 7)  # odd sizes work (DARTS' FactorizedReduce fails there)
    assert make_op("skip_connect", 8, 2)(x).shape == (2, 8, 4, 4)


def test_none_outputs_exact_zeros():
    x = torch.randn(2, 4, 6, 6) + 5.0
    assert torch.equal(Zero(1)(x), torch.zeros(2, 4, 6, 6))
    assert torch.equal(Zero(2)(x), torch.zeros(2, 4, 3, 3))
    ops = ["none"] * 14
    ops[2] = "sep_conv_3x3"  # 3<-0: node 3 is live, nodes 2, 4, 5 have no input
    cell = EvalCell(ops, 6, 6, 4, reduction=True, reduction_prev=False).eval()
    out = cell(torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8))
    assert out.shape == (2, 16, 4, 4)
    assert torch.equal(out[:, :4], torch.zeros(2, 4, 4, 4)) and torch.equal(out[:, 8:], torch.zeros(2, 8, 4, 4))
    assert out[:, 4:8].abs().sum() > 0
    assert cell.needs == (True, False) and len(cell.edges) == 1


def test_forward_contract_on_digits_with_aux_and_drop_path():
    space = make_space(C=4, layers=5, auxiliary=True, drop_path_prob=0.3)
    net = space.build(space.parse_arch("DARTS_V2"), DIGITS)
    assert net.auxiliary_weight == 0.4 and net.drop_path_prob == 0.3
    x = torch.randn(6, 1, 8, 8)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (6, 10) and aux.shape == (6, 10)
    (logits.sum() + 0.4 * aux.sum()).backward()
    assert all(p.grad is not None for p in net.auxiliary_head.parameters())
    assert isinstance(net.auxiliary_head.features[1], nn.AdaptiveAvgPool2d)  # 2x2 map: DARTS' pool cannot apply
    net.eval()
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (6, 10)
    assert torch.equal(out, net(x))  # drop path is off in eval mode
    net.drop_path_prob = 0.0
    net.train()
    torch.manual_seed(0)
    a = net(x)[0]
    torch.manual_seed(1)
    assert torch.equal(a, net(x)[0])  # without drop path the train forward draws nothing random


def test_drop_path_drops_whole_samples_and_rescales():
    torch.manual_seed(0)
    y = drop_path(torch.ones(4000, 2, 3, 3), 0.25)
    per_sample = y.flatten(1)
    assert per_sample.unique().tolist() == pytest.approx([0.0, 1.0 / 0.75])
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)  # a sample is kept or dropped whole
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)


def test_variant_auto_and_option_checks():
    space = make_space(C=8, layers=3)
    assert space.variant_for(IMAGENET) == "imagenet" and space.variant_for(CIFAR) == "cifar"
    assert make_space(variant="imagenet").variant_for(DIGITS) == "imagenet"
    net = space.build(space.parse_arch("DARTS"), DataSpec("big", 3, 128, 96, 5))
    assert net.imagenet and net.stem0[0].in_channels == 3
    assert net.eval()(torch.randn(1, 3, 128, 96)).shape == (1, 5)
    with pytest.raises(ConfigError, match="odd"):
        make_space(C=15)
    with pytest.raises(ConfigError, match="variant"):
        make_space(variant="mobile")
