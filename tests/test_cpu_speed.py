"""What makes the main job fast on a CPU: DARTS sizes by input, short_train's defaults, the
deterministic switch without the compiler import, NHWC on the CPU, and the digits file read directly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options
from nasframe.core.evaluator import Budget
from nasframe.core.registry import evaluators, spaces
from nasframe.data import DataSpec

TOY = str(Path(__file__).parent / "plugins" / "supernet_toy.py")
DIGITS = DataSpec("digits", 1, 8, 8, 10)
CIFAR = DataSpec("cifar10", 3, 32, 32, 10)


def darts(**options):
    cls = spaces.get("darts")
    return cls(build_options(cls.Options, options, "space"))


def test_darts_auto_size_is_small_for_tiny_inputs_and_darts_search_size_otherwise():
    assert darts().size_for(DIGITS) == (8, 4)
    assert darts().size_for(CIFAR) == (16, 8)
    assert darts().size_for(DataSpec("fashion_mnist", 1, 28, 28, 10)) == (16, 8)
    assert darts(C=16, layers=8).size_for(DIGITS) == (16, 8)  # a number always wins
    assert darts(C="auto", layers=3).size_for(DIGITS) == (8, 3)
    net = darts().build(darts().parse_arch("DARTS_V2"), DIGITS)
    assert len(net.cells) == 4 and net.stem[0].out_channels == 3 * 8
    assert [c.reduction for c in net.cells] == [False, True, True, False]  # cells 4//3 and 8//3
    with pytest.raises(ConfigError, match="space.C: 7 is odd"):
        darts(C=7)
    with pytest.raises(ConfigError, match="space.layers"):
        darts(layers="many")


def test_short_train_defaults_and_nhwc_on_the_cpu(digits, monkeypatch):
    from nasframe.common.plugins import load_plugin
    from nasframe.training.steps import StepRunner  # short_train imports it inside the training

    cls = evaluators.get("short_train")
    assert cls.Options().bn_recalibration_batches == 4 and cls.Options().channels_last
    seen = {}
    real_init = StepRunner.__init__

    def spy(self, model, optimizer, transform, settings, device):
        seen["weight"] = model.layers[0][0].weight  # the toy's first 3x3 conv, 8 -> 8 channels
        seen["nhwc_batches"] = transform.channels_last
        seen["fused"] = optimizer.defaults["fused"]
        real_init(self, model, optimizer, transform, settings, device)

    monkeypatch.setattr(StepRunner, "__init__", spy)
    load_plugin(TOY)
    space = spaces.get("supernet_toy")()
    arch = space.validate({"layer0": "conv3x3", "layer1": "conv3x3", "layer2": "identity"})
    assert cls(space, data=digits).evaluate(arch, Budget(steps=1)).ok
    assert seen["weight"].is_contiguous(memory_format=torch.channels_last) and not seen["weight"].is_contiguous()
    assert seen["nhwc_batches"] is True and seen["fused"] is True
    assert cls(space, cls.Options(channels_last=False), data=digits).evaluate(arch, Budget(steps=1)).ok
    assert seen["weight"].is_contiguous() and not seen["weight"].is_contiguous(memory_format=torch.channels_last)
    assert seen["nhwc_batches"] is False


def test_deterministic_mode_skips_the_compiler_import_and_the_nan_fill(monkeypatch):
    from nasframe.training.step_options import deterministic_mode

    monkeypatch.delitem(sys.modules, "torch._inductor", raising=False)  # as in a run that never compiles
    monkeypatch.setattr(
        torch, "use_deterministic_algorithms", lambda *a, **k: pytest.fail("the public switch imports torch._inductor")
    )
    fill_before = torch.utils.deterministic.fill_uninitialized_memory
    with deterministic_mode(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is fill_before


def test_digits_read_from_the_file_equal_scikit_learns_loader(monkeypatch):
    from sklearn.datasets import load_digits

    import nasframe.data.digits as digits_module

    pixels, labels = digits_module._read_digits()
    reference = load_digits()
    assert np.array_equal(pixels, reference.data) and np.array_equal(labels, reference.target)
    monkeypatch.setattr(digits_module.importlib.util, "find_spec", lambda name: None)  # the file cannot be found
    pixels2, labels2 = digits_module._read_digits()
    assert np.array_equal(pixels2, reference.data) and np.array_equal(labels2, reference.target)


def _benchmark():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "cpu_main_job.py"
    spec = importlib.util.spec_from_file_location("cpu_main_job", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_load_processes_run_and_are_stopped():
    import time

    bench = _benchmark()
    start = time.monotonic()
    with bench.Load(2, seconds=60) as load:
        assert len(load.procs) == 2 and all(p.poll() is None for p in load.procs)
    assert all(p.poll() is not None for p in load.procs)
    assert time.monotonic() - start < 20  # stopped at the block's end, not after their 60 s


def test_benchmark_profiles_a_tiny_evaluation(capsys):
    bench = _benchmark()
    assert (
        bench.main(
            [
                "--profile",
                "--archs",
                "2",
                "--steps",
                "1",
                "--profile-threads",
                "1",
                "--set",
                "space.C=4",
                "--set",
                "space.layers=2",
                "--set",
                "evaluator.epochs=0.2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "network: darts C=4, 2 cells on digits" in out
    for phase in ("build", "MAC count", "training steps", "BN recalibration", "validation", "fitted line"):
        assert phase in out
