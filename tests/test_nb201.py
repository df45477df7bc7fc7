"""NAS-Bench-201 space: size, benchmark index <-> cell string, shipped table figures, network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasframe.common.errors import InvalidArchitecture
from nasframe.common.model_stats import count_parameters
from nasframe.core.registry import spaces
from nasframe.core.space import Arch
from nasframe.data import DataSpec
from nasframe.spaces.nb201 import EDGE_NAMES, OPS, TABLE_PATH, NB201Space, cell_string, load_table

# rows 0 and 1 of the benchmark's own table (index order is the benchmark's, not an enumeration)
ROW0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
ROW1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
CIFAR10 = DataSpec("cifar10", 3, 32, 32, 10)


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return spaces.get("nb201")()


def test_decisions_and_size(space):
    assert [d.name for d in space.decisions] == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert all(
        d.choices == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3") for d in space.decisions
    )
    assert space.size() == 15625 == len(load_table())
    assert space.reference_data == "cifar10"


def test_index_and_cell_string_round_trip_for_every_cell(space):
    table = load_table()
    seen = set()
    for i in range(len(table)):
        text = space.to_string(space.arch_at(i))
        seen.add(text)
        assert space.index_of(space.parse_arch(text)) == i
    assert len(seen) == 15625
    assert space.to_string(space.arch_at(0)) == ROW0 and space.to_string(space.arch_at(1)) == ROW1
    assert space.export(space.parse_arch(ROW1)).items() >= {"arch_str": ROW1, "index": 1}.items()


def test_shipped_table_figures():
    table = load_table()
    assert round(float(table.column("cifar10", "test", 200).max()), 2) == 94.37
    assert round(float(table.column("cifar100", "test", 200).max()), 2) == 73.51
    assert round(float(table.column("imagenet16-120", "test", 200).max()), 2) == 47.31
    assert round(float(table.column("cifar10", "test", 12).max()), 2) == 89.16  # the low-fidelity table
    space = NB201Space()
    assert table.column("cifar10", "test", 200)[space.index_of(space.parse_arch("resnet"))] == pytest.approx(93.91)
    assert table.column("cifar10", "val", 12)[0] == pytest.approx(63.364)
    assert TABLE_PATH.stat().st_size < 2_000_000  # a few hundred kB in the package


def test_parse_arch_forms_and_errors(space):
    arch = space.parse_arch(RESNET)
    assert space.parse_arch("resnet") == arch
    assert space.parse_arch(str(space.index_of(arch))) == arch
    assert (
        space.parse_arch(
            '{"1<-0": nor_conv_3x3, "2<-0": none, "2<-1": nor_conv_3x3, "3<-0": skip_connect, '
            '"3<-1": none, "3<-2": skip_connect}'
        )
        == arch
    )
    assert cell_string([arch[n] for n in EDGE_NAMES]) == RESNET
    with pytest.raises(InvalidArchitecture, match="expected"):
        space.parse_arch("|nor_conv_3x3~0|+|none~0|")
    with pytest.raises(InvalidArchitecture, match="unknown NB201 op 'conv_5x5'"):
        space.parse_arch(RESNET.replace("nor_conv_3x3~0|+", "conv_5x5~0|+"))
    with pytest.raises(InvalidArchitecture, match="out of range"):
        space.parse_arch("15625")


def test_sample_is_uniform_and_respects_restriction(space):
    rng = np.random.default_rng(0)
    counts = {op: 0 for op in OPS}
    for _ in range(5000):
        a = space.sample(rng)
        assert space.validate(a) is a
        counts[a["3<-2"]] += 1
    assert all(abs(c / 5000 - 0.2) < 0.03 for c in counts.values())
    small = space.restrict({"1<-0": ["none", "skip_connect"], "3<-2": ["nor_conv_3x3"]})
    assert small.size() == 2 * 5**4 == len(small.all_archs())
    for _ in range(200):
        a = small.sample(rng)
        assert a["1<-0"] in ("none", "skip_connect") and a["3<-2"] == "nor_conv_3x3"
        assert small.validate(a) == a
    with pytest.raises(InvalidArchitecture):
        small.validate(space.parse_arch(ROW1))  # 1<-0 = nor_conv_3x3 is no longer allowed
    with pytest.raises(InvalidArchitecture):
        space.validate(Arch([(n, "max_pool") for n in EDGE_NAMES]))


def test_network_parameter_counts_worked_out_by_hand(space):
    # Skeleton: stem 3*16*9 + BN 32; ResNet blocks 16->32 (4608+64+9216+64+512) and 32->64
    # (18432+128+36864+128+2048); last BN 128; classifier 64*10+10  = 73,306 parameters.
    none = space.parse_arch(cell_string(["none"] * 6))
    assert count_parameters(space.build(none, CIFAR10)) == 73_306
    # Each 3x3 edge adds C*C*9 + 2C, 6 edges x 5 cells per stage at C = 16, 32, 64: +1,458,240.
    conv = space.parse_arch(cell_string(["nor_conv_3x3"] * 6))
    assert count_parameters(space.build(conv, CIFAR10)) == 1_531_546


def test_network_forward_shapes():
    small = NB201Space(NB201Space.Options(C=4, N=1))
    for text in (RESNET, ROW0, cell_string(["none"] * 6)):
        net = small.build(small.parse_arch(text), DataSpec("x", 1, 16, 16, 7))
        out = net(torch.randn(2, 1, 16, 16))
        assert out.shape == (2, 7) and torch.isfinite(out).all()
