"""The `darts` space as strategies and the CLI see it: decisions, names, text forms, export, plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nasframe.common.errors import InvalidArchitecture
from nasframe.core.registry import spaces
from nasframe.data import DataSpec
from nasframe.spaces.darts_genotype import DECISION_NAMES, PRIMITIVES, PUBLISHED, Genotype, parse_genotype


@pytest.fixture(scope="module")
def space():
    return spaces.get("darts")()


def test_decisions_and_class_attributes(space):
    assert [d.name for d in space.decisions] == list(DECISION_NAMES)
    assert all(d.choices == PRIMITIVES for d in space.decisions)
    assert space.size() == 8**28 and space.reference_data == "cifar10" and space.supports_supernet
    assert space.name == "darts"


def test_named_architectures(space):
    named = space.named_architectures()
    assert {"DARTS_V1", "DARTS_V2", "DARTS", "MDENAS", "DARTS_ABS", "PDARTS_ABS", "GM_NAS"} <= set(named)
    assert named["DARTS"] == named["DARTS_V2"] != named["DARTS_V1"]
    assert named["MDENAS"]["normal.5<-4"] == "max_pool_3x3" and named["MDENAS"]["reduce.3<-1"] == "skip_connect"
    assert space.parse_arch("darts_v1") == named["DARTS_V1"]


def test_parse_arch_reads_every_published_form(space):
    v2 = space.named_architectures()["DARTS_V2"]
    assert space.parse_arch(PUBLISHED["DARTS_V2"]) == v2
    assert space.parse_arch(PUBLISHED["DARTS_V2"].replace("[2, 3, 4, 5]", "range(2, 6)")) == v2
    g = parse_genotype(PUBLISHED["MDENAS"])
    assert space.parse_arch(json.dumps(g.to_json())) == g.to_arch()  # genotype JSON
    assert space.parse_arch(json.dumps(v2.to_dict())) == v2  # the Arch as a JSON mapping
    nested = (
        "Genotype(normal=[[('sep_conv_3x3', 0)], [], [('skip_connect', 2), ('avg_pool_3x3', 1), "
        "('dil_conv_5x5', 0)], []], normal_concat=range(2, 6), reduce=[[], [], [], [('max_pool_3x3', 4)]], "
        "reduce_concat=range(2, 6))"
    )
    arch = space.parse_arch(nested)
    assert sum(v != "none" for v in arch.values()) == 5 and arch["normal.4<-1"] == "avg_pool_3x3"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("DARTS_V9", "cannot read DARTS architecture 'DARTS_V9'"),
        ("Genotype(normal=[('sep_conv_3x3', 0)] + [], reduce=[])", "unexpected '\\+'"),
        ('{"normal.2<-0": "conv_9x9"}', "unknown decision|misses"),
        ('{"normal": [["sep_conv_3x3", 0]], "reduce": []}', "8"),
    ],
)
def test_parse_arch_rejects_bad_text(space, text, problem):
    with pytest.raises(InvalidArchitecture, match=problem) as info:
        space.parse_arch(text)
    assert "\n" not in str(info.value)


def test_parse_arch_respects_restriction(space):
    small = space.restrict({n: ["none", "skip_connect", "sep_conv_3x3"] for n in DECISION_NAMES})
    with pytest.raises(InvalidArchitecture, match="not allowed"):
        small.parse_arch("DARTS_V2")  # has max_pool_3x3 and dil_conv_3x3


def test_export_gives_genotype_text_and_the_darts_rule(space):
    arch = space.parse_arch("DARTS_V2")
    out = space.export(arch)
    assert space.parse_arch(out["genotype"]) == arch and "derived_genotype" not in out
    assert out["cells"]["normal"][3] == [["skip_connect", 0], ["dil_conv_3x3", 2]]
    json.dumps(out)
    weights = {n: [0.0] * 8 for n in DECISION_NAMES}
    for n, op in space.parse_arch("GM_NAS").items():
        weights[n][PRIMITIVES.index(op)] = 0.6 if op != "none" else 0.9
    out = space.export(space.sample(np.random.default_rng(0)), weights)
    assert space.parse_arch(out["derived_genotype"]) == space.parse_arch("GM_NAS")
    assert out["derived_arch"] == space.parse_arch("GM_NAS").to_dict()
    assert out["genotype"] is None or isinstance(out["genotype"], str)


def test_export_derives_on_restricted_choices(space):
    small = space.restrict({n: ["none", "sep_conv_3x3"] for n in DECISION_NAMES})
    weights = {n: [0.9, 0.1] for n in DECISION_NAMES}
    g = parse_genotype(small.export(small.sample(np.random.default_rng(1)), weights)["derived_genotype"])
    # every real op ties: each node keeps its two lowest edges, 'none' (0.9) never counts
    both = (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)) * 4
    assert g == Genotype(normal=both, reduce=both)


def test_genotype_helper_rejects_non_genotypes(space):
    assert space.genotype(space.parse_arch("MDENAS")).to_arch() == space.parse_arch("MDENAS")
    with pytest.raises(InvalidArchitecture, match="has 3 non-'none' inputs"):
        space.genotype(space.parse_arch("DARTS_V2").replace(**{"normal.4<-2": "avg_pool_3x3"}))


def test_sampled_architectures_build_and_run_on_digits(space):
    rng = np.random.default_rng(0)
    data = DataSpec("digits", 1, 8, 8, 10)
    for _ in range(3):
        net = space.build(space.sample(rng), data)
        assert net.eval()(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_plot_writes_a_png(space, tmp_path):
    path = tmp_path / "cells.png"
    space.plot(space.parse_arch("MDENAS"), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
