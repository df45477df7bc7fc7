"""DARTS genotypes: edge naming, the published formats, rejection of bad text, the DARTS rule."""

from __future__ import annotations

import json

import pytest

from nasframe.common.errors import InvalidArchitecture
from nasframe.spaces.darts_genotype import (
    DECISION_NAMES,
    EDGES,
    PRIMITIVES,
    PUBLISHED,
    Genotype,
    arch_from_value,
    decision_name,
    derive_genotype,
    edge_index,
    is_genotype,
    parse_genotype,
    parse_genotype_fields,
)

V2_NORMAL = (
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 1),
    ("skip_connect", 0),
    ("skip_connect", 0),
    ("dil_conv_3x3", 2),
)


def test_primitives_and_edge_order_follow_quark0():
    assert PRIMITIVES[0] == "none" and PRIMITIVES[3] == "skip_connect" and len(PRIMITIVES) == 8
    assert len(EDGES) == 14 and len(DECISION_NAMES) == 28
    assert [edge_index(j, k) for j, k in EDGES] == list(range(14))
    assert edge_index(5, 4) == 13 and edge_index(4, 0) == 5
    assert DECISION_NAMES[0] == "normal.2<-0" and DECISION_NAMES[13] == "normal.5<-4"
    assert DECISION_NAMES[14] == "reduce.2<-0" and decision_name("reduce", 5, 4) == DECISION_NAMES[-1]


def test_flat_darts_text_parses_to_the_right_edges():
    g = parse_genotype(PUBLISHED["DARTS_V2"])
    assert g.normal == V2_NORMAL and g.normal_concat == (2, 3, 4, 5)
    arch = g.to_arch()
    assert arch["normal.4<-1"] == "sep_conv_3x3" and arch["normal.4<-0"] == "skip_connect"
    assert arch["normal.5<-2"] == "dil_conv_3x3" and arch["normal.5<-1"] == "none"
    assert arch["reduce.3<-2"] == "skip_connect" and arch["reduce.3<-1"] == "max_pool_3x3"
    assert sum(v != "none" for v in arch.values()) == 16 and is_genotype(arch)


def test_nested_pt_darts_format_and_range_concat():
    g = parse_genotype(PUBLISHED["MDENAS"])  # one list of 2 pairs per node, concat=range(2, 6)
    assert g.normal[:4] == (("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_5x5", 1))
    assert g.reduce[-2:] == (("dil_conv_3x3", 3), ("sep_conv_5x5", 0))
    flat = (
        "Genotype(normal=[('sep_conv_5x5',1),('sep_conv_3x3',0),('skip_connect',0),('sep_conv_5x5',1),"
        "('sep_conv_5x5',3),('sep_conv_3x3',1),('dil_conv_5x5',3),('max_pool_3x3',4)], normal_concat=[2,3,4,5],"
        "reduce=[('max_pool_3x3',0),('sep_conv_5x5',1),('skip_connect',0),('skip_connect',1),"
        "('sep_conv_3x3',3),('skip_connect',2),('dil_conv_3x3',3),('sep_conv_5x5',0)], reduce_concat=[2,3,4,5])"
    )
    assert parse_genotype(flat) == g  # the reference's flat quark0 spelling of the same genotype


def test_nested_format_may_give_any_number_of_inputs_per_node():
    fields = parse_genotype_fields(
        "Genotype(normal=[[], [('skip_connect', 0), ('sep_conv_3x3', 1), "
        "('max_pool_3x3', 2)], [('none', 0)], []], reduce=[[], [], [], []])"
    )
    with pytest.raises(InvalidArchitecture, match="unknown op 'none'"):
        arch_from_value(fields)
    fields["normal"][2] = []
    arch = arch_from_value(fields)
    assert [arch[f"normal.3<-{k}"] for k in range(3)] == ["skip_connect", "sep_conv_3x3", "max_pool_3x3"]
    assert not is_genotype(arch)
    with pytest.raises(InvalidArchitecture, match="node 2 has 0 non-'none' inputs"):
        Genotype.from_arch(arch)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("Genotype(normal=[('sep_conv_3x3', 0)", "expected"),
        ("Genotype(normal=[('sep_conv_3x3', 0)], reduce=[])", "8"),
        ("Genotype(normal=__import__('os'), reduce=[])", "unexpected '__import__'"),
        ("Genotype(normal=[1; 2])", "unexpected ';'"),
        ("Foo(normal=[], reduce=[])", "expected Genotype"),
        ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)] * 4, reduce=[])", "unexpected '\\*'"),
        (PUBLISHED["DARTS_V2"].replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "node 5 reads input 5"),
        (PUBLISHED["DARTS_V2"].replace("('dil_conv_3x3', 2)", "('conv_7x1_1x7', 2)"), "unknown op 'conv_7x1_1x7'"),
        (PUBLISHED["DARTS_V2"].replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3]"), "normal_concat"),
        (PUBLISHED["DARTS_V2"].replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=range(0, 99999999)"), "range"),
        (PUBLISHED["DARTS_V2"].replace("normal=", "normal=[], normal="), "given twice"),
        (PUBLISHED["DARTS_V2"].replace("normal_concat", "weird"), "unknown field 'weird'"),
        (PUBLISHED["DARTS_V2"] + ")", "after the closing"),
    ],
)
def test_malformed_text_is_rejected_in_one_line(text, problem):
    with pytest.raises(InvalidArchitecture, match=problem) as info:
        parse_genotype(text)
    assert "\n" not in str(info.value)


def test_two_ops_on_one_edge_is_rejected():
    text = PUBLISHED["DARTS_V2"].replace(
        "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0)",
        "('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 0)",
        1,
    )
    with pytest.raises(InvalidArchitecture, match=r"edge 2<-0 has two ops \('sep_conv_3x3' and 'skip_connect'\)"):
        parse_genotype(text)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_round_trips_text_json_and_arch(name):
    g = parse_genotype(PUBLISHED[name])
    assert parse_genotype(g.to_text()) == g
    assert Genotype.from_json(json.loads(json.dumps(g.to_json()))) == g
    arch = g.to_arch()
    back = Genotype.from_arch(arch)
    assert back.to_arch() == arch and parse_genotype(back.to_text()).to_arch() == arch
    # from_arch lists each node's inputs in ascending order; the set of edges is what matters
    for i in range(4):
        assert sorted(back.normal[2 * i : 2 * i + 2]) == sorted(g.normal[2 * i : 2 * i + 2])


def _uniform_weights() -> dict[str, list[float]]:
    return {name: [0.125] * 8 for name in DECISION_NAMES}


def test_darts_rule_ignores_none_and_keeps_top_two_edges():
    w = _uniform_weights()
    #            none  max   avg   skip  sep3  sep5  dil3  dil5
    w["normal.3<-0"] = [0.90, 0.01, 0.01, 0.01, 0.05, 0.01, 0.00, 0.01]  # strongest real op 0.05
    w["normal.3<-1"] = [0.10, 0.20, 0.05, 0.30, 0.10, 0.10, 0.10, 0.05]  # 0.30 skip
    w["normal.3<-2"] = [0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.15, 0.25]  # 0.25 dil5
    w["normal.5<-4"] = [0.00, 0.00, 0.00, 0.00, 0.00, 0.90, 0.10, 0.00]
    w["normal.5<-1"] = [0.00, 0.00, 0.60, 0.00, 0.00, 0.00, 0.00, 0.40]
    w["reduce.2<-1"] = [0.99, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.01]  # node 2 keeps both edges anyway
    g = derive_genotype(w)
    assert g.normal[2:4] == (("skip_connect", 1), ("dil_conv_5x5", 2))  # stronger edge first, 'none' ignored
    assert g.normal[6:8] == (("sep_conv_5x5", 4), ("avg_pool_3x3", 1))
    # all-equal rows: ties go to the lower edges and the first non-'none' op, as DARTS' sort does
    assert g.normal[0:2] == (("max_pool_3x3", 0), ("max_pool_3x3", 1))
    assert g.normal[4:6] == (("max_pool_3x3", 0), ("max_pool_3x3", 1))
    assert g.reduce[0:2] == (("max_pool_3x3", 0), ("dil_conv_5x5", 1))
    assert is_genotype(g.to_arch())


def test_darts_rule_with_restricted_choices_and_a_table():
    choices = {name: ["none", "skip_connect"] for name in DECISION_NAMES}
    w = {name: [0.7, 0.3] for name in DECISION_NAMES}
    w["normal.5<-3"] = [0.1, 0.9]
    g = derive_genotype(w, choices)
    assert g.normal[6:] == (("skip_connect", 3), ("skip_connect", 0))
    assert all(op == "skip_connect" for op, _ in g.normal + g.reduce)
    table = [[0.125] * 8 for _ in DECISION_NAMES]
    table[0] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert derive_genotype(table).normal[0] == ("dil_conv_5x5", 0)
    with pytest.raises(InvalidArchitecture, match="fewer than 2 edges"):
        derive_genotype({name: [1.0] for name in DECISION_NAMES}, {name: ["none"] for name in DECISION_NAMES})
    with pytest.raises(InvalidArchitecture, match="have 7 entries"):
        derive_genotype({name: [0.1] * 7 for name in DECISION_NAMES})
