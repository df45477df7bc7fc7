"""run.threads: the count `auto` picks, the pools apply_threads sets, and the option's checks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import nasframe.threads as threads
from nasframe.errors import ConfigError
from nasframe.threads import apply_threads, auto_threads, parse_cpu_times, resolve_threads


@pytest.mark.parametrize(("free", "usable", "expected"), [
    (2.0, 2, 1),    # an idle 2-core machine: one core kept as headroom
    (0.0, 2, 1),    # fully busy: never below 1
    (3.9, 4, 3),    # an idle 4-core machine (sampling never reads exactly 4.0)
    (1.2, 16, 1),   # a busy 16-core machine
    (6.0, 16, 5),
    (16.0, 16, 8),  # capped at AUTO_MAX
])
def test_auto_keeps_one_free_core_as_headroom_within_bounds(free, usable, expected):
    assert auto_threads(free, usable) == expected


def test_numbers_pass_and_bad_settings_fail_with_one_line():
    assert resolve_threads(3) == 3
    for bad in (0, -1, True, 1.5, "two"):
        with pytest.raises(ConfigError, match=r"^run\.threads: .* whole number >= 1 or auto$"):
            resolve_threads(bad)
    with pytest.raises(ConfigError):
        apply_threads(0)


def test_auto_takes_omp_num_threads_as_the_users_choice(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads("auto") == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    assert resolve_threads(None) == 1


def test_auto_on_two_cores_does_not_watch_the_machine(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads, "free_cpus", lambda *a: pytest.fail("sampled the load on 2 cores"))
    assert resolve_threads("auto") == 1
    monkeypatch.setattr(threads, "usable_cpus", lambda: 16)
    monkeypatch.setattr(threads, "free_cpus", lambda *a: 6.2)
    assert resolve_threads("auto") == 5


def test_proc_stat_counts_idle_and_iowait_as_free_and_steal_as_busy():
    stat = ("cpu  60 0 20 100 10 0 0 10 0 0\n"
            "cpu0 30 0 10 50 5 0 0 5 0 0\n"      # busy 30+10+5 = 45, total 100
            "cpu1 30 0 10 50 5 0 0 5 0 0\n"
            "cpu2 99 0 0 1 0 0 0 0 0 0\n"        # not in the affinity set below
            "intr 12345\nctxt 999\n")
    assert parse_cpu_times(stat, {0, 1}) == (90.0, 200.0)
    assert parse_cpu_times(stat, {7}) is None


def test_free_cpus_is_the_share_not_busy_between_two_samples(monkeypatch):
    samples = iter([(100.0, 400.0), (250.0, 600.0)])  # 150 of 200 ticks busy
    monkeypatch.setattr(threads, "_cpu_times", lambda cpus: next(samples))
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    assert threads.free_cpus(0.0) == pytest.approx(0.5)


def test_free_cpus_reads_this_machine():
    assert 0.0 <= threads.free_cpus(0.05) <= threads.usable_cpus()


def _fresh_python(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_apply_sets_both_pools_once_and_later_calls_change_only_intra_op():
    # the second call's inter-op size is refused by torch (the pool has its size); apply_threads leaves it
    out = _fresh_python("from nasframe.threads import apply_threads\n"
                        "a = apply_threads(1); b = apply_threads(2)\n"
                        "print(a.intra_op, a.inter_op, b.intra_op, b.inter_op)")
    assert out == ["1", "1", "2", "1"]


def test_a_run_applies_its_setting_and_the_option_is_checked(cli, core_toy, tmp_path):
    base = ["run", "--plugin", core_toy, "--space", "core_toy", "--evaluator", "core_toy_eval", "--strategy", "random",
            "--budget", "2", "--quiet"]
    try:
        code, _, err = cli(*base, "--out", tmp_path / "a", "--set", "run.threads=2")
        assert code == 0, err
        assert torch.get_num_threads() == 2
        assert "threads: 2" in (tmp_path / "a" / "config.yaml").read_text()
    finally:
        torch.set_num_threads(1)  # the test session's setting (conftest)
    code, _, err = cli(*base, "--out", tmp_path / "b", "--set", "run.threads=0")
    assert code == 2 and err.strip() == "nasframe: error: run.threads: 0 is below the minimum 1"
    code, _, err = cli(*base, "--out", tmp_path / "c", "--set", "run.threads=many")
    assert code == 2 and err.count("\n") == 1 and "run.threads" in err and "'auto'" in err
