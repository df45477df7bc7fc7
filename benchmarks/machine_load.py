"""What the start-up and training benchmarks share: the machine's description, its load, and busy processes
that load it (`with Load(2, seconds=...)`), so both measure "idle" and "loaded" the same way."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    model = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {len(os.sched_getaffinity(0))} usable CPUs, Python {platform.python_version()}"


class Load:
    """`n` CPU-bound processes (`while True: pass`), each ending by itself after `seconds` at the latest."""

    def __init__(self, n: int, seconds: float):
        self.n, self.seconds = n, seconds
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Load:
        code = f"import time\nend = time.monotonic() + {self.seconds}\nwhile time.monotonic() < end:\n    pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.n)]
        time.sleep(1.0)  # let them reach the CPU before the first measured command
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()
