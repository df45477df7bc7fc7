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

So `auto` is 1 thread. It does not follow the load the machine has when the run starts, for two
reasons: a run cannot see the load that arrives after it starts, where a thread too many costs
far more than it could have saved; and the thread count changes the order of float sums inside
the kernels, so a seed reproduces a run only at the same count, which must therefore not depend
on what else the machine was doing. An `OMP_NUM_THREADS` in the environment counts as the
user's choice and is what `auto` returns; a number sets the count directly (worth it for larger
networks on cores nobody else uses).
"""

from __future__ import annotations

import os
from typing import Literal, NamedTuple

from nasframe.common.errors import ConfigError

ThreadSetting = int | Literal["auto"]


class Threads(NamedTuple):
    """The pool sizes in force after `apply_threads`."""

    intra_op: int
    inter_op: int


def resolve_threads(setting: ThreadSetting | None, what: str = "run.threads") -> int:
    """The thread count for `run.threads` (or `what`, as errors name it): a number as given; `auto`
    (or None) 1, unless OMP_NUM_THREADS holds a positive number."""
    if setting is None or setting == "auto":
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        return int(env) if env.isascii() and env.isdigit() and 0 < len(env) < 6 and int(env) > 0 else 1
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"{what}: {setting!r} is not allowed; give a whole number >= 1 or auto")
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
    import torch  # here: `resolve_threads` serves the command line, which starts without torch

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
