"""How many CPU threads torch uses in a run (`run.threads`), chosen on purpose rather than left to torch.

Why not torch's default: torch sizes its intra-op pool (OpenMP, also used by oneDNN and MKL) to
every core of the machine. The networks a search trains on a CPU are small: a DARTS cell network
on 8x8 digits runs thousands of sub-millisecond ops per step, and every op split over threads
ends in a barrier. When every thread has a core, that pays a little: on an idle 2-core machine
the main job took 38-45 s with 2 threads against 47-48 s with 1, for 1.5-1.8 times the CPU time.
When the cores are shared, a thread at the barrier waits, spinning, for a partner the scheduler
has given to someone else, once per op: with 2 other busy processes the same job ran 6.6 times
slower than idle with 2 threads (17 times with 0.1's defaults; a user saw over 60), but only
1.5 times slower with 1 thread, which just loses its share of the CPU (docs/benchmarks-cpu.md).

So `auto` takes the cores that are free right now, keeps one of them as headroom for the next job
that starts on the machine, and never goes below 1 or above `AUTO_MAX`: a run cannot see the load
that comes after it starts, and there a thread too many costs far more than it could have saved.
On a 2-core machine that is 1 thread, idle or not; on an idle 16-core machine it is 8. A number
sets the count directly, and an `OMP_NUM_THREADS` in the environment counts as the user's choice
and is what `auto` returns.
"""

from __future__ import annotations

import os
import time
from typing import Literal, NamedTuple

import torch

from nasframe.errors import ConfigError

ThreadSetting = int | Literal["auto"]

#: upper bound of `auto`: beyond this, tiny per-op work makes more threads cost more than they save
#: (a judgement, not a measurement: this project's test machines have 2 cores)
AUTO_MAX = 8
#: how long `free_cpus` watches the machine
SAMPLE_SECONDS = 0.1


class Threads(NamedTuple):
    """The pool sizes in force after `apply_threads`."""

    intra_op: int
    inter_op: int


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; containers and taskset narrow it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def parse_cpu_times(stat: str, cpus: set[int]) -> tuple[float, float] | None:
    """(busy, total) clock ticks summed over `cpus` from the text of /proc/stat; None if none is listed.

    Idle and iowait count as free; user, nice, system, irq, softirq and steal (time the hypervisor
    gave to another machine) as busy. Guest time is already inside user time.
    """
    busy = total = 0.0
    for line in stat.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        values = [float(v) for v in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        free = values[3] + (values[4] if len(values) > 4 else 0.0)
        total += sum(values)
        busy += sum(values) - free
    return (busy, total) if total > 0 else None


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    try:
        with open("/proc/stat") as f:
            return parse_cpu_times(f.read(), cpus)
    except OSError:
        return None


def free_cpus(sample_seconds: float = SAMPLE_SECONDS) -> float:
    """Usable CPUs not busy right now: from /proc/stat over `sample_seconds` (Linux), else from
    the 1-minute load average, else all of them."""
    n = usable_cpus()
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        cpus = set(range(n))
    before = _cpu_times(cpus)
    if before is not None:
        time.sleep(sample_seconds)
        after = _cpu_times(cpus)
        if after is not None and after[1] > before[1]:
            busy_fraction = (after[0] - before[0]) / (after[1] - before[1])
            return max(0.0, n * (1.0 - busy_fraction))
    try:
        return max(0.0, n - os.getloadavg()[0])
    except (AttributeError, OSError):
        return float(n)


def auto_threads(free: float, usable: int) -> int:
    """`auto`'s rule: the free cores less one kept as headroom, within [1, min(usable, AUTO_MAX)]."""
    return max(1, min(int(free + 0.25) - 1, usable, AUTO_MAX))


def resolve_threads(setting: ThreadSetting | None) -> int:
    """The thread count for `run.threads`: a number as given, `auto` (or None) by `auto_threads`
    on the cores free now, unless OMP_NUM_THREADS holds a positive number."""
    if setting is None or setting == "auto":
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env.isdigit() and int(env) > 0:
            return int(env)
        usable = usable_cpus()
        if usable <= 2:  # the rule gives 1 whatever the load: skip watching the machine
            return 1
        return auto_threads(free_cpus(), usable)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"run.threads: {setting!r} is not allowed; give a whole number >= 1 or auto")
    return setting


def apply_threads(n: int) -> Threads:
    """Set torch's intra-op pool to `n` threads and, while that is still possible, its inter-op pool too.

    The intra-op count can change at any time. The inter-op pool takes its size once: torch
    refuses a new size after the pool has started (its first inter-op work, e.g. `torch.jit.fork`)
    or after an earlier `set_num_interop_threads`. That refusal is expected in a process that runs
    several searches (`nasframe compare`, tests), so it leaves the pool as it is; the returned
    sizes say what is in force. The convolutions and BatchNorms of a training step run in the
    intra-op pool, so that is the count that matters.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"run.threads: {n!r} is not allowed; give a whole number >= 1 or auto")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # the pool has its size already; see the docstring
            pass
    return Threads(torch.get_num_threads(), torch.get_num_interop_threads())
