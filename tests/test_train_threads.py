"""`nasframe train` sets torch's CPU threads by the rule a search follows (`run.threads`).

`auto` (the default) is 1 thread, or OMP_NUM_THREADS when set; `--threads N` / `threads=N` sets the
count; a resumed training continues with the count its checkpoint recorded unless told otherwise.
What the rule is worth on a shared machine is measured by benchmarks/train_threads.py
(docs/benchmarks-cpu.md), not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"
SETS = ["space.C=4", "space.N=1", "recipe.epochs=1", "data.limit=96", "recipe.batch_size=32"]


def _argv(out: Path, *extra: str) -> list[str]:
    return ["train", "--space", "nb201", "--arch", ARCH, *[a for s in SETS for a in ("--set", s)], "--no-tensorboard",
            "--quiet", "--out", str(out), *extra]  # fmt: skip


def _recorded(folder: Path) -> int:
    return json.loads((folder / "model.json").read_text())["threads"]


@pytest.fixture
def threads(monkeypatch):
    """No OMP_NUM_THREADS, torch at 2 threads (its own choice on 2 cores); the count is restored after."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_default_is_one_thread_whatever_torch_chose(cli, tmp_path, threads):
    code, _, err = cli(*_argv(tmp_path / "a"))
    assert code == 0, err
    assert torch.get_num_threads() == 1 and _recorded(tmp_path / "a") == 1


def test_threads_option_and_omp_num_threads(cli, tmp_path, threads, monkeypatch):
    code, _, err = cli(*_argv(tmp_path / "two", "--threads", "2"))
    assert code == 0, err
    assert _recorded(tmp_path / "two") == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice, as for run.threads: auto
    torch.set_num_threads(1)
    code, _, err = cli(*_argv(tmp_path / "env"))
    assert code == 0, err
    assert _recorded(tmp_path / "env") == 2


def test_python_api_threads(tmp_path, threads):
    import nasframe

    result = nasframe.train(space="nb201", arch=ARCH, sets=SETS, out=tmp_path / "t", tensorboard=False, threads=2)
    assert result.epochs == 1 and _recorded(tmp_path / "t") == 2
    with pytest.raises(nasframe.ConfigError, match=r"^threads: 'two' is not allowed; give a whole number >= 1 or auto"):
        nasframe.train(space="nb201", arch=ARCH, sets=SETS, out=tmp_path / "u", threads="two")  # type: ignore[arg-type]
    assert not (tmp_path / "u").exists()


@pytest.mark.parametrize("value", ["0", "two", "1.5"])
def test_bad_threads_is_one_line_exit_2(cli, tmp_path, value):
    code, _, err = cli(*_argv(tmp_path / "x", "--threads", value))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--threads" in err, err
    assert not (tmp_path / "x").exists()


def test_resume_keeps_the_recorded_count_unless_told(cli, tmp_path, threads):
    """A training killed after its last epoch, before its weights were written, resumes: with `auto` it
    continues with the 2 threads its checkpoint recorded (and says so); with --threads 1 it uses 1."""
    folder = tmp_path / "t"
    code, _, err = cli(*_argv(folder, "--threads", "2"))
    assert code == 0, err
    for name in ("model.safetensors", "model.json"):
        (folder / name).unlink()  # as if killed before the end
    code, _, err = cli("train", "--resume", folder)
    assert code == 0, err
    assert "continuing with 2 CPU threads as this training recorded (not 1)" in err
    assert _recorded(folder) == 2 and torch.get_num_threads() == 2
    for name in ("model.safetensors", "model.json"):
        (folder / name).unlink()
    code, _, err = cli("train", "--resume", folder, "--threads", "1")
    assert code == 0, err
    assert "continues with 1 CPU threads, not the 2 it recorded" in err
    assert _recorded(folder) == 1
