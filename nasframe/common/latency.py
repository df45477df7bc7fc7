"""Measured inference latency of a PyTorch module: warm-up, repeats until the median is stable, median and IQR.

What is timed is one forward pass of a batch (`batch`, default 1) of seeded random inputs of a given shape,
in eval mode without autograd, with PyTorch (`torch`) or with onnxruntime (`onnxruntime`: the module is
exported to ONNX in memory first, and the session's graph optimisations are on, as in deployment).

The stopping rule, which is what makes two measurements comparable:

1. `warmup` untimed calls (allocations, oneDNN primitive caches, onnxruntime's first-run work);
2. timed calls in rounds of `round_size`; after each round, once at least `min_repeats` calls are timed,
   the median of all timed calls is compared with the median before that round: when they differ by at
   most `tolerance` (relative), the median is stable and the measurement stops;
3. otherwise it stops at `max_repeats` calls or after `max_seconds`, and says `stable: false`.

On a CPU each call is timed with the wall clock (`time.perf_counter_ns`, `clock: wall`), or with the calling
thread's CPU time (`time.thread_time_ns`, `clock: cpu`, one thread only: torch and onnxruntime then run every
kernel on the calling thread). The wall clock is what a user of the network waits; on a machine other
processes share, it also counts the time the scheduler gives them, and more so the longer a call is (a
100 ms network is preempted many times, a 1 ms block rarely), which breaks sums of short blocks. The CPU
clock leaves that out: it is the latency on an idle machine, less what the other processes still cost
through shared caches and memory bandwidth. On CUDA, each call is timed with torch's CUDA events around
it, synchronised after it (the kernel time on the device, not the launch time); onnxruntime on CUDA returns
its outputs on the host, so it is timed with the host clock. The thread count is set for the measurement
only (torch's intra-op pool, onnxruntime's intra-op threads) and restored after it.

Nothing here knows NAS: the table builder (`nasframe.core.latency_table`) and the run's latency costs use it.
"""

from __future__ import annotations

import io
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nasframe.common.errors import ConfigError, NotSupported

Runtime = Literal["torch", "onnxruntime"]
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime")
DEVICES: tuple[str, ...] = ("cpu", "cuda")
CLOCKS: tuple[str, ...] = ("wall", "cpu")


@dataclass(frozen=True)
class LatencySettings:
    """How a latency is measured (see the module docstring for the stopping rule)."""

    runtime: str = "torch"
    device: str = "cpu"
    threads: int = 1
    batch: int = 1
    clock: str = "wall"
    warmup: int = 10
    round_size: int = 10
    min_repeats: int = 20
    max_repeats: int = 300
    tolerance: float = 0.01
    max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"latency: runtime {self.runtime!r} is not allowed; choose one of {', '.join(RUNTIMES)}")
        if self.device not in DEVICES:
            raise ConfigError(f"latency: device {self.device!r} is not allowed; choose one of {', '.join(DEVICES)}")
        for name in ("threads", "batch", "round_size", "min_repeats", "max_repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"latency: {name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"latency: warmup must be a whole number >= 0, got {self.warmup!r}")
        if self.clock not in CLOCKS:
            raise ConfigError(f"latency: clock {self.clock!r} is not allowed; choose one of {', '.join(CLOCKS)}")
        if self.clock == "cpu" and (self.device != "cpu" or self.threads != 1):
            raise ConfigError(
                "latency: clock cpu (the calling thread's CPU time) needs device cpu and threads 1; use clock wall"
            )
        if not 0 < self.tolerance < 1 or not self.max_seconds > 0:
            raise ConfigError("latency: tolerance must be in (0, 1) and max_seconds positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe_rule(self) -> str:
        return (
            f"{self.warmup} warm-up calls, then rounds of {self.round_size} timed calls until the median moves by "
            f"at most {self.tolerance:.0%} over a round (at least {self.min_repeats}, at most {self.max_repeats} "
            f"calls or {self.max_seconds:g} s)"
        )


@dataclass(frozen=True)
class Measurement:
    """One measured latency, in milliseconds per batch, with how it was obtained."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    repeats: int
    stable: bool
    seconds: float
    load: float | None = None  # the machine's 1-minute load average when the measurement ended

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "iqr_ms": self.iqr_ms}


def check_available(settings: LatencySettings) -> None:
    """Refuse, in one line, a runtime or device this machine cannot measure on."""
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "latency: device cuda needs a CUDA GPU, but none is visible here (torch.cuda.is_available() is False); "
            "measure with --device cpu"
        )
    if settings.runtime == "onnxruntime":
        try:
            import onnx  # noqa: F401  (torch's exporter needs it)
            import onnxruntime
        except ImportError:
            raise NotSupported(
                "latency: runtime onnxruntime needs the onnx and onnxruntime packages: pip install 'nasframe[export]'"
            ) from None
        if settings.device == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise ConfigError(
                "latency: onnxruntime here has no CUDAExecutionProvider (install onnxruntime-gpu) for device cuda"
            )


def environment(settings: LatencySettings) -> dict[str, Any]:
    """Versions and the machine a measurement is valid for (recorded beside every latency)."""
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__.split("+")[0],
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "host": platform.node(),
    }
    if settings.runtime == "onnxruntime":
        import onnx
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
        out["onnx"] = onnx.__version__
    if settings.device == "cuda" and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
        out["cuda"] = torch.version.cuda
    return out


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def measure_module(module: nn.Module, input_shape: tuple[int, ...], settings: LatencySettings) -> Measurement:
    """The latency of one forward of `module` on a batch of inputs of `input_shape` (one sample's shape)."""
    check_available(settings)
    device = torch.device(settings.device)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(settings.batch, *input_shape, generator=generator)
    module = module.eval()
    with _threads(settings.threads):
        if settings.runtime == "onnxruntime":
            call = _onnx_call(module, x, settings)
            return _timed(call, settings, _cpu_timer if settings.clock == "cpu" else _host_timer)
        module = module.to(device)
        xd = x.to(device)

        def forward() -> None:
            with torch.inference_mode():
                module(xd)

        timer = _cuda_timer if device.type == "cuda" else _cpu_timer if settings.clock == "cpu" else _host_timer
        return _timed(forward, settings, timer)


def _timed(call: Callable[[], None], s: LatencySettings, timer: Callable[[Callable[[], None]], float]) -> Measurement:
    """Warm up, then time calls in rounds until the median is stable (or the limits are reached)."""
    start = time.perf_counter()
    for _ in range(s.warmup):
        call()
    samples: list[float] = []
    stable = False
    previous: float | None = None
    while len(samples) < s.max_repeats and time.perf_counter() - start < s.max_seconds:
        for _ in range(min(s.round_size, s.max_repeats - len(samples))):
            samples.append(timer(call))
        median = float(np.median(samples))
        if len(samples) >= s.min_repeats and previous is not None and abs(median - previous) <= s.tolerance * previous:
            stable = True
            break
        previous = median
    values = np.asarray(samples)
    q1, med, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    return Measurement(
        median_ms=med,
        q1_ms=q1,
        q3_ms=q3,
        min_ms=float(values.min()),
        repeats=len(samples),
        stable=stable,
        seconds=time.perf_counter() - start,
        load=load_average(),
    )


def _host_timer(call: Callable[[], None]) -> float:
    t0 = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - t0) / 1e6


def _cpu_timer(call: Callable[[], None]) -> float:
    t0 = time.thread_time_ns()
    call()
    return (time.thread_time_ns() - t0) / 1e6


def _cuda_timer(call: Callable[[], None]) -> float:
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    call()
    end.record()
    end.synchronize()
    return float(begin.elapsed_time(end))


def _onnx_call(module: nn.Module, x: torch.Tensor, settings: LatencySettings) -> Callable[[], None]:
    """An onnxruntime session of `module` exported in memory, and the call that runs it on `x`."""
    import warnings

    import onnxruntime

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
            torch.onnx.export(module, (x,), buffer, input_names=["x"], opset_version=17, dynamo=False)  # type: ignore[arg-type]
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise NotSupported(f"latency: this network cannot be exported to ONNX: {first}") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    providers = ["CUDAExecutionProvider"] if settings.device == "cuda" else ["CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=providers)
    feed = {session.get_inputs()[0].name: x.numpy()}

    def run() -> None:
        session.run(None, feed)

    return run


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op pool at `n` threads for the measurement, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
