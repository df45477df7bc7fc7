"""Fault injection in CI: a seeded handful of the kill -9 trials of benchmarks/fault_injection.py.

Here: ABS and `nasframe compare`, which no other kill test covers (random, MDENAS, SPOS, DARTS,
SETN, Cream and the few-shot split have their own kill tests next to their other tests), and a
full disk at every checkpoint of a small run. The full sweep (every built-in strategy, ten kills each)
is `python benchmarks/fault_injection.py`, whose figures docs/reliability.md reports.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fault_injection as faults  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("strategy, seed", [("abs", 11)])
def test_kill_9_at_a_random_point_resumes_to_the_identical_result(tmp_path, strategy, seed):
    rng = random.Random(seed)
    argv = faults.RUNS[strategy]
    faults.run_through(argv, tmp_path / "reference")
    total = faults.log_lines(tmp_path / "reference")
    lines, delay = rng.randrange(1, total), rng.uniform(0.0, 0.1)
    assert faults.kill_and_resume(argv, tmp_path / "killed", lines, delay) == "killed"
    assert faults.outcome(tmp_path / "killed") == faults.outcome(tmp_path / "reference")


@pytest.mark.slow
def test_a_killed_compare_run_again_gives_the_same_table(tmp_path):
    counts = faults.compare_trials(1, random.Random(5), tmp_path)
    assert counts == {"killed": 1, "identical": 1}


def test_a_full_disk_while_checkpointing_stops_cleanly_and_resumes_identically(tmp_path):
    counts = faults.disk_full_trials(tmp_path)
    assert counts == {"clean": 8}
