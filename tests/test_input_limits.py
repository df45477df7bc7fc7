"""Limits that hold whatever the input is: user files read with a limit while reading (pipes, FIFOs and
devices included), numeric options bounded to what the code they reach takes, names that are not
valid UTF-8 refused in one line; and the end of a training, an export and a SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import toy_argv

from nasframe.common.errors import ConfigError, RunDirError
from nasframe.common.loading import MAX_TEXT_BYTES, read_lines, read_text

TRAIN = ["--space", "core_toy", "--arch", "all_first", "--set", "recipe.epochs=2", "--set", "data.limit=64", "--quiet",
         "--no-tensorboard"]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CLI = [sys.executable, "-m", "nasframe.app.cli"]


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    assert err.count("nasframe: error:") == 1, err
    return err.strip().splitlines()[-1]


# ---- defect 8: reads bounded while reading -----------------------------------------------------------------------
def test_a_fifo_nobody_writes_to_is_refused_at_once_not_waited_on(core_toy, tmp_path):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    done = subprocess.run([*CLI, *toy_argv(core_toy, "--config", fifo, "--out", tmp_path / "r")], capture_output=True,
                          text=True, env=ENV, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert f"config file {fifo}: the pipe gave no data (nothing wrote to it)" in one_line(done.stderr)


def test_a_pipe_is_read_up_to_the_limit_and_no_further(tmp_path):
    fifo = tmp_path / "big.fifo"
    os.mkfifo(fifo)
    written = {"bytes": 0}

    def writer() -> None:
        try:
            with open(fifo, "wb") as fh:
                chunk = b"# " + b"a" * (1 << 20) + b"\n"
                for _ in range(64):  # 64 MiB offered: four times the limit
                    fh.write(chunk)
                    written["bytes"] += len(chunk)
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.2)  # the writer opens first: read_text then finds a pipe with data
    with pytest.raises(ConfigError, match=f"more than {MAX_TEXT_BYTES:,} bytes is more than such a file"):
        read_text(fifo, "config file", streams=True)
    thread.join(timeout=30)
    assert written["bytes"] < 24 * (1 << 20)  # the reader stopped soon after the limit


def test_a_pipe_with_a_config_is_read(cli, core_toy, tmp_path):
    read, write = os.pipe()
    os.write(write, b"run:\n  max_evaluations: 2\n")
    os.close(write)
    try:
        code, _, err = cli(*toy_argv(core_toy, "--config", f"/dev/fd/{read}", "--out", tmp_path / "r"))
    finally:
        os.close(read)
    assert code == 0, err
    assert len((tmp_path / "r" / "history.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("flag", ["--config", "--arch-file"])
def test_a_device_is_refused_without_reading_it(cli, core_toy, tmp_path, flag):
    if flag == "--config":
        code, _, err = cli(*toy_argv(core_toy, "--config", "/dev/zero", "--out", tmp_path / "r"))
    else:
        code, _, err = cli("inspect", "--space", "nb201", "--arch-file", "/dev/zero")
    assert code == 2 and "/dev/zero is a device, not a file; give a regular file" in one_line(err)


def test_run_folder_files_must_be_regular_files(cli, core_toy, tmp_path):
    assert cli(*toy_argv(core_toy, "--budget", 2, "--out", tmp_path / "r"))[0] == 0
    (tmp_path / "r" / "best.json").unlink()
    history = tmp_path / "r" / "history.jsonl"
    history.unlink()
    os.mkfifo(history)  # a FIFO in its place: before, `show` waited for a writer forever
    code, _, err = cli("show", tmp_path / "r")
    assert code == 2 and f"{history} is a pipe, not a file" in one_line(err)
    with pytest.raises(RunDirError, match="longer than 10 characters"):
        path = tmp_path / "long.jsonl"
        path.write_text("x" * 20 + "\n")
        list(read_lines(path, max_line=10))


# ---- defect 9: values at the platform's limits -------------------------------------------------------------------
@pytest.mark.parametrize(
    "item, expected",
    [
        ("run.evaluation_timeout_s=1e300", "run.evaluation_timeout_s: 1e+300 is beyond the float32 range"),
        ("run.evaluation_timeout_s=1e20", "run.evaluation_timeout_s: 1e+20 is above the maximum 1000000000.0"),
        ("run.threads=100000000000000000000", "beyond the 64-bit integers"),
        ("run.threads=100000", "run.threads: 100000 is above the maximum 4096"),
        ("run.seed=100000000000000000000000", "run.seed: 100000000000000000000000 is beyond the 64-bit integers"),
        ("evaluator.noise=1e300", "evaluator.noise: 1e+300 is beyond the float32 range"),
        ('run.out="x\\udcff"', "run.out: 'x\\udcff' is not valid UTF-8 (byte 0xff)"),
        ('run.out="x\\ud800"', "run.out: 'x\\ud800' is not valid text (a lone surrogate)"),
    ],
)
def test_an_option_beyond_what_its_code_takes_is_one_line(cli, core_toy, tmp_path, item, expected):
    code, _, err = cli(*toy_argv(core_toy, "--budget", 2, "--out", tmp_path / "r", "--set", item))
    assert code == 2 and expected in one_line(err)


def test_a_training_option_beyond_what_torch_takes_is_one_line(cli, core_toy, tmp_path):
    huge = "1" + "0" * 23
    for item, expected in [
        ("recipe.lr=1e308", "recipe.lr: 1e+308 is beyond the float32 range"),
        (f"recipe.seed={huge}", f"recipe.seed: {huge} is beyond the 64-bit integers"),
    ]:
        code, _, err = cli("train", "--plugin", core_toy, *TRAIN, "--set", item, "--out", tmp_path / "t")
        assert code == 2 and expected in one_line(err)


@pytest.mark.parametrize("command", ["run", "compare", "train", "export"])
def test_a_name_that_is_not_utf8_is_refused_before_anything_is_written(core_toy, tmp_path, command):
    bad = os.fsencode(tmp_path) + b"/out\xff"
    if command == "run":
        argv = [*toy_argv(core_toy, "--budget", 2, "--set", "run.tensorboard=true"), "--out", bad]
    elif command == "compare":
        argv = ["compare", "--strategies", "random", "--seeds", "1", "--budget", "2", "--space", "nb201",
                "--evaluator", "tabular", "--no-plot", "--out", bad]  # fmt: skip
    elif command == "train":
        argv = ["train", "--plugin", core_toy, *TRAIN, "--out", bad]
    else:
        run = tmp_path / "run"
        subprocess.run([*CLI, *toy_argv(core_toy, "--budget", 2, "--out", run)], check=True, env=ENV)
        argv = ["export", str(run), "--format", "json", "--out", bad + b".json"]
    done = subprocess.run([*CLI, *argv], capture_output=True, env=ENV)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2 and "is not valid UTF-8 (byte 0xff)" in one_line(err)
    assert not any(name.endswith(b"\xff") or name.endswith(b"\xff.json") for name in os.listdir(os.fsencode(tmp_path)))


# ---- defect 4: a killed training always either continues or is finished -----------------------------------------
def test_a_training_killed_after_its_weights_before_model_json_finishes_on_resume(cli, core_toy, tmp_path, monkeypatch):
    import nasframe.training.trainer as trainer_module

    real = trainer_module.atomic_write_json

    def killed_at_model_json(path, obj):
        if Path(path).name == "model.json":
            raise KeyboardInterrupt  # as kill -9 right after model.safetensors was written
        return real(path, obj)

    train = tmp_path / "t"
    with monkeypatch.context() as m:
        m.setattr(trainer_module, "atomic_write_json", killed_at_model_json)
        code, _, err = cli("train", "--plugin", core_toy, *TRAIN, "--out", train)
    assert code == 130 and (train / "model.safetensors").exists() and not (train / "model.json").exists()
    code, _, err = cli("export", train, "--format", "json")
    assert code == 2 and "the training has not finished (no model.json); continue it with" in one_line(err)
    code, out, err = cli("train", "--resume", train, "--quiet", "--plugin", core_toy)
    assert code == 0 and "trained 2 epochs" in out, err
    code, _, err = cli("export", train, "--format", "json")
    assert code == 0, err
    code, _, err = cli("train", "--resume", train, "--quiet", "--plugin", core_toy)
    assert code == 2 and "this training already finished" in one_line(err)


def test_a_training_checkpoint_of_another_training_is_refused(cli, core_toy, tmp_path):
    import shutil

    for name, seed in (("a", 0), ("b", 1)):
        code, _, err = cli(
            "train", "--plugin", core_toy, *TRAIN, "--set", f"recipe.seed={seed}", "--out", tmp_path / name
        )
        assert code == 0, err
    for name in ("model.json", "model.safetensors"):  # as if killed before its end
        (tmp_path / "a" / name).unlink()
    shutil.copy(tmp_path / "b" / "checkpoint.pt", tmp_path / "a" / "checkpoint.pt")
    code, _, err = cli("train", "--resume", tmp_path / "a", "--quiet", "--plugin", core_toy)
    assert code == 2 and "checkpoint.pt: written by another training" in one_line(err)


# ---- the smaller items ---------------------------------------------------------------------------------------------
def test_sigterm_stops_a_training_with_a_line_and_it_resumes(core_toy, tmp_path):
    train = tmp_path / "t"
    argv = ["train", "--plugin", core_toy, *TRAIN[:-1], "--set", "recipe.epochs=400", "--set", "data.limit=600",
            "--out", str(train)]  # fmt: skip
    proc = subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 300
    while time.time() < deadline and not (train / "checkpoint.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert f"terminated (SIGTERM); continue with: nasframe train --resume {train}" in err and "Traceback" not in err
    assert (train / "checkpoint.pt").exists() and not (train / "model.json").exists()


def test_two_exports_to_one_out_both_succeed_and_leave_no_temporary_file(cli, core_toy, tmp_path):
    code, _, err = cli("train", "--plugin", core_toy, *TRAIN, "--out", tmp_path / "t")
    assert code == 0, err
    out = tmp_path / "model.pt"
    cmd = [*CLI, "export", str(tmp_path / "t"), "--format", "torchscript", "--out", str(out)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(code == 0 and f"wrote {out}" in stdout for code, stdout, _ in results), results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "t"]


def test_an_export_checks_the_file_in_memory_and_writes_it_once(cli, core_toy, tmp_path, monkeypatch):
    """Killed while exporting (here: while checking the exported network), it leaves nothing behind."""
    import torch

    code, _, err = cli("train", "--plugin", core_toy, *TRAIN, "--out", tmp_path / "t")
    assert code == 0, err

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.jit, "load", killed)
    code, _, err = cli("export", tmp_path / "t", "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_an_export_removes_what_an_export_killed_mid_write_left_and_nothing_else(cli, core_toy, tmp_path):
    """A SIGKILL between the temporary file and its rename leaves the file (no cleanup can run); the next
    export removes it: a tagged file of a process of this machine that is gone. A live writer's file, another
    machine's and a user's file of a similar name stay."""
    import socket

    from nasframe.common.checkpoint import _writer_tag

    code, _, err = cli("train", "--plugin", core_toy, *TRAIN, "--out", tmp_path / "t")
    assert code == 0, err
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    stale = tmp_path / f".m.json.{host}-{gone.pid}.abc123.tmp"
    kept = [
        tmp_path / f".m.json.{_writer_tag()}.def456.tmp",  # a live writer (this process)
        tmp_path / f".m.json.other-host-{gone.pid}.ghi789.tmp",  # another machine's
        tmp_path / ".m.json.mine.tmp",  # not a tagged file
    ]
    for path in [stale, *kept]:
        path.write_text("partial")
    code, _, err = cli("export", tmp_path / "t", "--format", "json", "--out", tmp_path / "m.json")
    assert code == 0, err
    assert not stale.exists() and all(path.exists() for path in kept)
    assert json.loads((tmp_path / "m.json").read_text())["trained"] is True
