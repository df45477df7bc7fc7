"""run.threads: the count `auto` picks, the pools apply_threads sets, and the option's checks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from nasframe.common.errors import ConfigError
from nasframe.common.threads import apply_threads, resolve_threads


def test_auto_is_one_thread_unless_omp_num_threads_says_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_threads("auto") == 1 and resolve_threads(None) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice
    assert resolve_threads("auto") == 3
    for meaningless in ("0", "", "two", "-2"):
        monkeypatch.setenv("OMP_NUM_THREADS", meaningless)
        assert resolve_threads("auto") == 1


def test_numbers_pass_and_bad_settings_fail_with_one_line():
    assert resolve_threads(3) == 3
    for bad in (0, -1, True, 1.5, "two"):
        with pytest.raises(ConfigError, match=r"^run\.threads: .* whole number >= 1 or auto$"):
            resolve_threads(bad)
    with pytest.raises(ConfigError):
        apply_threads(0)


def test_apply_sets_both_pools_once_and_later_calls_change_only_intra_op():
    # a fresh interpreter, whose inter-op pool has no size yet; the second call's inter-op size is
    # refused by torch (the pool has its size by then) and apply_threads leaves it
    code = (
        "from nasframe.common.threads import apply_threads\n"
        "a = apply_threads(1); b = apply_threads(2)\n"
        "print(a.intra_op, a.inter_op, b.intra_op, b.inter_op)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "2", "1"]


def test_a_run_applies_its_setting_and_the_option_is_checked(cli, core_toy, tmp_path):
    base = [
        "run",
        "--plugin",
        core_toy,
        "--space",
        "core_toy",
        "--evaluator",
        "core_toy_eval",
        "--strategy",
        "random",
        "--budget",
        "2",
        "--quiet",
    ]
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
