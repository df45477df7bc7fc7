"""Latency tables: the blocks each block-built space lists, the predictor (sum of entries, correction,
per-choice contributions) against sums worked out from the entries, the table file and its checks, the
calibration and accuracy maths, and `nasframe latency-table` end to end on a tiny space."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from latency_fakes import DIGITS, TINY_MOBILENET, entry_ms, fake_table, make_space, write_fake_table

from nasframe.common.errors import ConfigError
from nasframe.common.latency import Measurement
from nasframe.common.model_stats import count_parameters
from nasframe.common.options import options_to_dict
from nasframe.core import latency as latency_module
from nasframe.core.latency import accuracy_of, calibrate, check_accuracy, random_archs
from nasframe.core.latency_table import LatencyTable, TablePredictor
from nasframe.data import DataSpec

SPACES = {
    "mobilenet": TINY_MOBILENET,
    "mobilenet-first": {**TINY_MOBILENET, "search_first_block": True, "expand_ratios": [1, 3]},
    "shufflenet": {"widths": [8, 16, 24, 32], "stem_width": 4, "last_width": 32, "stage_repeats": [1, 2, 1, 1]},
    "nse": {"small_input": True, "alloc_space": [1, 1, 1, 1, 1, 1], "scale": 0.25, "last_channels": 32},
    "neas": {"small_input": True, "stage_layers": [2, 2, 1, 1, 1], "widths": [8, 16, 16, 24, 24], "last_width": 32,
             "head_width": 32, "stem_width": 8},
}  # fmt: skip


def space_of(label: str):
    return make_space(label.split("-")[0], **SPACES[label])


@pytest.mark.parametrize("label", sorted(SPACES))
@pytest.mark.parametrize("spec", [DIGITS, DataSpec("cifar10", 3, 32, 32, 10)], ids=["digits", "cifar"])
def test_the_blocks_are_exactly_the_network(label, spec):
    """Every parameter of the stand-alone network is in exactly one listed block, and each block is built."""
    space = space_of(label)
    rng = np.random.default_rng(0)
    for _ in range(3):
        arch = space.sample(rng)
        blocks = space.blocks(arch, spec)
        assert sum(count_parameters(b.build()) for b in blocks) == count_parameters(space.build(arch, spec))
        keys = {b.key for b in space.all_blocks(spec)}
        assert {b.key for b in blocks} <= keys


@pytest.mark.parametrize("label", ["mobilenet", "mobilenet-first", "shufflenet"])
def test_a_chain_of_blocks_feeds_each_block_the_shape_it_was_timed_on(label):
    space, spec = space_of(label), DataSpec("cifar10", 3, 32, 32, 10)
    arch = space.sample(np.random.default_rng(1))
    x = torch.randn(2, *spec.input_shape)
    with torch.no_grad():
        for block in space.blocks(arch, spec):
            assert tuple(x.shape[1:]) == block.input_shape, block.key
            x = block.build().eval()(x)
    assert tuple(x.shape) == (2, spec.num_classes)


def test_equal_blocks_share_one_entry():
    """The proxyless layout repeats shapes (blocks 1-3 of a stage): 21 slots x 7 choices, 69 distinct blocks."""
    space = make_space("mobilenet")
    blocks = space.all_blocks(DataSpec("imagenet", 3, 224, 224, 1000))
    assert len(blocks) == len({b.key for b in blocks}) == 69


@pytest.mark.parametrize("label", sorted(SPACES))
def test_a_prediction_is_the_sum_of_the_entries_then_the_correction(label):
    space = space_of(label)
    table = fake_table(space, DIGITS, correction={"slope": 2.0, "intercept": 0.5})
    predictor = TablePredictor(table, space, DIGITS)
    for arch in random_archs(space, 5, seed=3):
        by_hand = sum(entry_ms(b.key) for b in space.blocks(arch, DIGITS))
        assert predictor.raw_ms(arch) == pytest.approx(by_hand, rel=1e-12)
        assert predictor.predict_ms(arch) == pytest.approx(2.0 * by_hand + 0.5, rel=1e-12)


@pytest.mark.parametrize("label, additive", [("mobilenet", True), ("shufflenet", True), ("nse", True), ("neas", False)])
def test_per_choice_contributions_where_blocks_add_up_per_decision(label, additive):
    """NEAS' member layers count only above the split (two decisions per block): no contributions there,
    and predictions stay the per-architecture sums."""
    space = space_of(label)
    predictor = TablePredictor(fake_table(space, DIGITS, correction={"slope": 1.5, "intercept": -0.25}), space, DIGITS)
    assert predictor.prepare() is additive
    for arch in random_archs(space, 8, seed=4):
        direct = 1.5 * sum(entry_ms(b.key) for b in space.blocks(arch, DIGITS)) - 0.25
        assert predictor.predict_ms(arch) == pytest.approx(direct, rel=1e-9)


def test_the_smallest_prediction_is_the_minimum_over_the_space():
    space = space_of("mobilenet")
    names = [d.name for d in space.decisions]
    keep = {n: list(space.decision(n).choices[:2]) for n in names[:3]}
    keep.update({n: [space.decision(n).choices[-1]] for n in names[3:]})
    small = space.restrict(keep)  # 8 architectures
    predictor = TablePredictor(fake_table(space, DIGITS), small, DIGITS)
    every = [dict(zip(keep, c)) for c in itertools.product(*keep.values())]
    brute = min(predictor.raw_ms(small.validate(a)) for a in every)
    assert predictor.smallest() == pytest.approx(brute, rel=1e-12)


# ---- the file ------------------------------------------------------------------------------------
def test_a_table_file_round_trips_and_says_what_it_is_valid_for(tmp_path):
    space = space_of("mobilenet")
    path = write_fake_table(tmp_path / "t.json", space, DIGITS)
    table = LatencyTable.load(path)
    assert table.to_dict() == fake_table(space, DIGITS).to_dict()
    raw = json.loads(path.read_text())
    assert raw["format"] == "nasframe-latency-table" and raw["version"] == 1
    assert {"runtime", "device", "threads", "batch", "clock"} <= set(raw["settings"])
    table.check_matches("t", "mobilenet", options_to_dict(space.options), DIGITS)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "[1, 2]", "not a nasframe latency table"),
        (lambda text: text.replace('"version": 1', '"version": 7'), "table version 7; this nasframe reads version 1"),
        (lambda text: text.replace('"median_ms": 0.', '"median_ms": -0.', 1), "has no positive median_ms"),
    ],
)
def test_a_damaged_table_is_one_line(tmp_path, change, message):
    path = write_fake_table(tmp_path / "t.json", space_of("mobilenet"), DIGITS)
    path.write_text(change(path.read_text()))
    with pytest.raises(ConfigError, match=message) as info:
        LatencyTable.load(path)
    assert len(str(info.value).splitlines()) == 1 and str(path) in str(info.value)


def test_a_table_for_another_space_options_input_or_runtime_is_refused():
    space = space_of("mobilenet")
    table = fake_table(space, DIGITS)
    opts = options_to_dict(space.options)
    with pytest.raises(ConfigError, match="t was built for space 'mobilenet', not 'shufflenet'"):
        table.check_matches("t", "shufflenet", opts, DIGITS)
    with pytest.raises(ConfigError, match="t was built with space.width_mult=0.25; this space has 0.5"):
        table.check_matches("t", "mobilenet", {**opts, "width_mult": 0.5}, DIGITS)
    with pytest.raises(
        ConfigError, match="t was measured at input 1x8x8 with 10 classes .digits.; this asks for 3x32x32"
    ):
        table.check_matches("t", "mobilenet", opts, DataSpec("cifar10", 3, 32, 32, 10))
    with pytest.raises(ConfigError, match="t was measured with device 'cpu'; device 'cuda' was asked for"):
        table.check_settings("t", {"device": "cuda", "runtime": None})
    with pytest.raises(ConfigError, match="t was measured with runtime 'torch'; runtime 'onnxruntime' was asked for"):
        table.check_settings("t", {"runtime": "onnxruntime"})
    table.check_settings("t", {"runtime": "torch", "device": None, "threads": 1})


# ---- calibration and accuracy ----------------------------------------------------------------------
def test_accuracy_is_spearman_and_mape_worked_by_hand():
    pairs = [(1.0, 1.0), (2.0, 2.5), (3.0, 2.4), (4.0, 5.0)]  # (predicted, measured)
    got = accuracy_of(pairs)
    assert got["mape"] == pytest.approx(100 * (0 + 0.5 / 2.5 + 0.6 / 2.4 + 1.0 / 5.0) / 4)
    # ranks predicted 1 2 3 4, measured 1 3 2 4: d^2 = 0 1 1 0, rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert got["spearman"] == pytest.approx(0.8)


def test_calibration_fits_the_line_and_the_check_holds_out_its_architectures(monkeypatch):
    space = space_of("mobilenet")
    table = fake_table(space, DIGITS)
    predictor = TablePredictor(table, space, DIGITS)
    measured: list[str] = []

    def fake_measure(space_, arch, spec, settings):  # a machine where a network costs 3 x its blocks + 0.7 ms
        measured.append(arch.key())
        ms = 3.0 * predictor.raw_ms(arch) + 0.7
        return Measurement(ms, ms, ms, ms, 20, True, 0.0)

    monkeypatch.setattr(latency_module, "measure_arch", fake_measure)
    fit = calibrate(table, space, DIGITS, 6, seed=5)
    assert fit["slope"] == pytest.approx(3.0) and fit["intercept"] == pytest.approx(0.7)
    fitted = set(measured)
    measured.clear()
    acc = check_accuracy(table, space, DIGITS, 10, seed=6)
    assert not fitted & set(measured) and acc["archs"] == len(measured) == 10 - acc["left_out"]
    assert acc["mape"] == pytest.approx(0.0, abs=1e-9) and acc["spearman"] == pytest.approx(1.0)
    assert acc["mape_raw"] > 60  # the sum alone misses the factor 3


# ---- the command ---------------------------------------------------------------------------------------
TINY_SET = ["--space", "mobilenet", "--set", "space.small_input=true", "--set", "space.width_mult=0.25"]


@pytest.mark.slow
def test_latency_table_command_builds_fits_checks_and_predicts(cli, tmp_path):
    out = tmp_path / "table.json"
    argv = [*TINY_SET, "--data", "digits", "--clock", "cpu", "--calibrate", "3", "--check", "4", "--no-progress"]
    code, stdout, err = cli("latency-table", *argv, "--out", out)
    assert code == 0, err
    table = json.loads(out.read_text())
    space = make_space("mobilenet", **TINY_MOBILENET)
    assert set(table["entries"]) == {b.key for b in space.all_blocks(DIGITS)}
    assert table["settings"]["clock"] == "cpu" and table["settings"]["threads"] == 1
    assert {"torch", "python", "cpu", "host"} <= set(table["environment"]) and table["created"]
    assert table["correction"]["archs"] == 3 and table["accuracy"]["archs"] <= 4
    assert "correction: measured =" in stdout and "Spearman rho" in stdout
    code, stdout, err = cli(
        "latency", *TINY_SET, "--data", "digits", "--arch", json.dumps(_first(space)), "--table", out
    )
    assert code == 0, err
    assert "predicted latency" in stdout
    code, stdout, err = cli("latency", "--space", "shufflenet", "--arch", "SPOS", "--table", out)
    assert (
        code == 2
        and err.strip() == f"nasframe: error: latency table {out} was built for space 'mobilenet', not 'shufflenet'"
    )


def _first(space) -> dict:
    return {d.name: d.choices[0] for d in space.decisions}


def test_latency_with_a_damaged_or_foreign_table_is_one_line_exit_2(cli, tmp_path):
    space = make_space("mobilenet", **TINY_MOBILENET)
    path = write_fake_table(tmp_path / "t.json", space, DIGITS)
    arch = json.dumps(_first(space))
    code, out, err = cli("latency", *TINY_SET, "--data", "digits", "--arch", arch, "--table", path)
    assert code == 0 and "predicted latency" in out
    code, out, err = cli("latency", *TINY_SET, "--data", "cifar10", "--arch", arch, "--table", path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "was measured at input 1x8x8" in err
    path.write_text(path.read_text()[:100])
    code, out, err = cli("latency", *TINY_SET, "--data", "digits", "--arch", arch, "--table", path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not valid JSON" in err


def test_a_space_without_blocks_has_no_table(cli, tmp_path):
    code, out, err = cli("latency-table", "--space", "darts", "--out", tmp_path / "t.json", "--no-progress")
    assert code == 2 and "space 'darts' does not list its blocks (BlockSpace)" in err
    assert not (tmp_path / "t.json").exists()
