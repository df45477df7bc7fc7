"""Latency measurement (nasframe.common.latency, nasframe latency): the stopping rule worked by hand on scripted
timings, both runtimes on a real module, the CPU clock, threads restored, and the refusals (unknown runtime,
CUDA without a GPU) as one line with exit code 2."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from nasframe.common.errors import ConfigError
from nasframe.common.latency import LatencySettings, _timed, measure_module


def scripted_timer(values):
    """A timer that returns the next scripted time (ms) and calls nothing: the stopping rule alone."""
    it = iter(values)
    return lambda call: next(it)


def test_a_steady_time_stops_as_soon_as_the_rule_allows():
    # round 1 (10 calls) has no median to compare with; after round 2 (20 >= min_repeats) the median is
    # unchanged, so the measurement stops there, stable
    s = LatencySettings(warmup=0, round_size=10, min_repeats=20, max_repeats=300, tolerance=0.01)
    m = _timed(lambda: None, s, scripted_timer(itertools.repeat(2.0)))
    assert m.repeats == 20 and m.stable
    assert m.median_ms == m.q1_ms == m.q3_ms == m.min_ms == 2.0 and m.iqr_ms == 0.0


def test_a_drifting_time_runs_to_max_repeats_and_says_it_was_not_stable():
    # every call 10% slower than the one before: the median of all calls moves > 1% per round of 10
    s = LatencySettings(warmup=0, round_size=10, min_repeats=20, max_repeats=50, tolerance=0.01)
    m = _timed(lambda: None, s, scripted_timer(1.1**i for i in range(1000)))
    assert m.repeats == 50 and not m.stable
    assert m.median_ms == pytest.approx((1.1**24 + 1.1**25) / 2)  # the median of 1.1^0..1.1^49


def test_the_rule_compares_with_the_median_before_the_last_round():
    # 10 calls at 1.0, then 10 at 1.0 (median 1.0 = before: stable at 20) -- but with min_repeats 30 the
    # first comparison happens after round 3: rounds 2 and 3 at 1.0 and 5.0 give medians 1.0 then 1.0
    # (20 of 30 values are 1.0), so it stops at 30, stable
    values = [1.0] * 20 + [5.0] * 10 + [5.0] * 1000
    s = LatencySettings(warmup=0, round_size=10, min_repeats=30, max_repeats=300, tolerance=0.01)
    m = _timed(lambda: None, s, scripted_timer(values))
    assert m.repeats == 30 and m.stable and m.median_ms == 1.0
    assert m.q3_ms == pytest.approx(5.0) and m.q1_ms == 1.0  # 75th percentile of 20 x 1.0 and 10 x 5.0


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"runtime": "tvm"}, "runtime 'tvm' is not allowed; choose one of torch, onnxruntime"),
        ({"device": "tpu"}, "device 'tpu' is not allowed"),
        ({"clock": "cycles"}, "clock 'cycles' is not allowed"),
        ({"clock": "cpu", "threads": 2}, "clock cpu (the calling thread's CPU time) needs device cpu and threads 1"),
        ({"threads": 0}, "threads must be a whole number >= 1"),
    ],
)
def test_settings_refuse_what_cannot_be_measured(bad, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LatencySettings(**bad)


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1))


QUICK = {"warmup": 2, "round_size": 5, "min_repeats": 10, "max_repeats": 40}


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_both_runtimes_measure_a_real_module(runtime, clock):
    m = measure_module(tiny(), (3, 16, 16), LatencySettings(runtime=runtime, clock=clock, **QUICK))
    assert 0 < m.min_ms <= m.q1_ms <= m.median_ms <= m.q3_ms
    assert 10 <= m.repeats <= 40 and m.repeats % 5 == 0
    assert m.to_dict()["iqr_ms"] == pytest.approx(m.q3_ms - m.q1_ms)


def test_a_measurement_leaves_the_thread_count_as_it_found_it():
    before = torch.get_num_threads()
    measure_module(tiny(), (3, 8, 8), LatencySettings(threads=2, **QUICK))
    assert torch.get_num_threads() == before


class Recording(nn.Module):
    def __init__(self):
        super().__init__()
        self.shapes: set[tuple[int, ...]] = set()
        self.training_calls = 0

    def forward(self, x):
        self.shapes.add(tuple(x.shape))
        self.training_calls += int(self.training or torch.is_grad_enabled())
        return x * 2


def test_the_module_sees_the_batch_asked_for_in_eval_mode_without_autograd():
    module = Recording().train()
    m = measure_module(module, (3, 5, 7), LatencySettings(batch=4, **QUICK))
    assert module.shapes == {(4, 3, 5, 7)} and module.training_calls == 0 and m.repeats >= 10


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line_exit_2(cli):
    code, out, err = cli("latency", "--space", "mobilenet", "--arch", "mobilenetv2", "--device", "cuda")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "nasframe: error: latency: device cuda needs a CUDA GPU, but none is visible here "
        "(torch.cuda.is_available() is False); measure with --device cpu"
    ]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_events_time_a_module_on_the_gpu():
    m = measure_module(tiny(), (3, 64, 64), LatencySettings(device="cuda", **QUICK))
    assert 0 < m.min_ms <= m.median_ms and m.repeats >= 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--runtime", "tvm"], "latency: runtime 'tvm' is not allowed; choose one of torch, onnxruntime"),
        (["--clock", "cpu", "--threads", "2"], "latency: clock cpu"),
        (["--set", "run.seed=1"], "--set 'run.seed=1': latency takes only space.* options"),
    ],
)
def test_bad_latency_flags_are_one_line_exit_2(cli, argv, message):
    code, out, err = cli("latency", "--space", "mobilenet", "--arch", "mobilenetv2", *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert message in err


def test_nasframe_latency_reports_median_iqr_rule_versions_and_threads(cli):
    argv = ["latency", "--space", "mobilenet", "--arch", "mobilenetv2", "--data", "digits", "--clock", "cpu"]
    code, out, err = cli(*argv, "--json", "--repeat", "2")
    assert code == 0, err
    report = json.loads(out)
    assert report["source"] == "measured" and report["input_shape"] == [1, 8, 8]
    assert len(report["measurements"]) == 2
    for m in report["measurements"]:
        assert {"median_ms", "iqr_ms", "q1_ms", "q3_ms", "repeats", "stable", "load"} <= set(m)
    assert report["settings"]["threads"] == 1 and report["settings"]["runtime"] == "torch"
    assert {"torch", "python", "cpu"} <= set(report["environment"])
    assert "warm-up calls, then rounds of 10 timed calls" in report["rule"]
    code, out, _ = cli(*argv)
    assert code == 0 and "latency: median" in out and "IQR" in out and "rule: 10 warm-up calls" in out


def test_the_python_call_measures_the_same_way():
    import nasframe

    report = nasframe.measure_latency("mobilenet", "mobilenetv2", data="digits", clock="cpu", runtime="onnxruntime")
    assert report["latency_ms"] == report["measurements"][0]["median_ms"] > 0
    assert report["settings"]["runtime"] == "onnxruntime" and "onnxruntime" in report["environment"]
