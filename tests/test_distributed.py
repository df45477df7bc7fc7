"""Runs under torchrun (nasframe/distributed.py): 2-process gloo groups on the CPU.

Each process of a group must compute what every other one does (same paths, same weights, same
architecture weights, same board, same scores), and the group must compute what one process does
with the same global batch, up to float rounding: the averaged half-batch gradients and the
BatchNorm statistics summed over the processes are the single-process quantities summed in another
order. The groups are started with torch.multiprocessing (evaluator level) and with torchrun itself
(the command line), one thread per process so that they fit a 2-core machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from nasframe.common import distributed
from nasframe.common.errors import ConfigError
from nasframe.search import rundir as rundir_module
from nasframe.search.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
#: float tolerance between a 2-process group and one process with the same global batch
RTOL, ATOL = 1e-4, 1e-5


# ---- helpers: a group of processes ----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _join(rank: int, world: int, port: int) -> None:
    """What torchrun does for a process: its place in the environment; then nasframe joins the group."""
    os.environ.update(
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    assert distributed.start().size == world and distributed.active()


def _leave() -> None:
    distributed.shutdown()
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(name, None)


def _run_group(worker: Any, out: Path, world: int = 2) -> list[dict[str, Any]]:
    """Run `worker(out)` in `world` processes; each returns a dict, saved by rank in `out` and read back here."""
    mp.spawn(_group_main, args=(world, _free_port(), worker, str(out)), nprocs=world, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world)]


def _group_main(rank: int, world: int, port: int, worker: Any, out: str) -> None:
    _join(rank, world, port)
    try:
        result = worker(Path(out))
    finally:
        _leave()
    torch.save(result, Path(out) / f"rank{rank}.pt")


def _assert_same(a: Any, b: Any, where: str = "", *, exact: bool) -> None:
    """Nested dicts/lists of tensors and numbers: bit-identical (`exact`) or within RTOL/ATOL."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}", exact=exact)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]", exact=exact)
    elif isinstance(a, torch.Tensor):
        if exact or not a.is_floating_point():
            assert torch.equal(a, b), f"{where}: differs (max {float((a.double() - b.double()).abs().max()):.3g})"
        else:
            torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=lambda m: f"{where}: {m}")
    elif isinstance(a, float) and not exact:
        assert a == pytest.approx(b, rel=RTOL, abs=ATOL), where
    else:
        assert a == b, where


# ---- the evaluator-level scenarios ----------------------------------------------------------------------------
def _tiny(space_name: str, **evaluator: Any) -> tuple[Any, Any, Any]:
    from nasframe.common.options import build_options
    from nasframe.core.costs import ArchCosts
    from nasframe.core.registry import evaluators, spaces
    from nasframe.data import DataOptions, DataSource

    space_options = {"nb201": {"C": 4, "N": 1}, "darts": {"supernet_C": 4, "supernet_layers": 2}}[space_name]
    space_cls = spaces.get(space_name)
    space = space_cls(build_options(space_cls.Options, space_options, "space"))
    data = DataSource(DataOptions(name="digits", limit=128), seed=0)
    ev_cls = evaluators.get("supernet")
    options = build_options(ev_cls.Options, {"batch_size": 16, "lr": 0.05, **evaluator}, "evaluator")
    return space, ev_cls(space, options, data=data, device="cpu"), ArchCosts(space, data.spec)


def _train(executor: Any, request: Any, work: int) -> Any:
    """A training request piece by piece, as the runner executes it; its final report."""
    progress = executor.start_work(request, work)
    report = None
    while not progress.finished:
        report, progress = executor.work_piece(request, work, progress)
    return executor.work_report(request, progress, report)


def _supernet_state(ev: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in ev.supernet.state_dict().items()}


def single_path_scenario() -> dict[str, Any]:
    """Uniform single-path training, distilled (Cream) training, a shared-weight score; a few-shot supernet."""
    from nasframe.core.capabilities import BNRecalibration
    from nasframe.core.requests import ScoreShared, TrainDistilled, TrainShared
    from nasframe.search.executor import Executor

    space, ev, costs = _tiny("nb201")
    executor = Executor(ev, space, costs, seed=5, chunk_epochs=1.0)
    uniform = _train(executor, TrainShared(epochs=1.0), 0)
    after_uniform = _supernet_state(ev)
    board = {"size": 3, "acc_gap": 100.0, "entries": []}  # every student enters: the board changes every step
    distilled = _train(executor, TrainDistilled(epochs=1.0, board=board), 1)
    arch = space.sample(np.random.default_rng(0))
    score = executor.evaluate(ScoreShared(arch, BNRecalibration(batches=2, momentum=None)), 0)
    # a few-shot supernet (GM-NAS): the split, computed whole on every process, is the same everywhere
    space, few_shot, costs = _tiny("nb201", few_shot="gradient", split_epochs=[0.5], split_batches=2)
    _train(Executor(few_shot, space, costs, seed=5, chunk_epochs=1.0), TrainShared(epochs=1.0), 0)
    return {
        "few_shot_weights": _supernet_state(few_shot),
        "few_shot_splits": few_shot.splits,
        "uniform_weights": after_uniform,
        "uniform_loss": uniform.metrics["train_loss"],
        "weights": _supernet_state(ev),
        "momentum": [s["momentum_buffer"].clone() for s in ev.optimizer.state.values()],
        "board": json.dumps(distilled.state, sort_keys=True),
        "score": score.metrics,
    }


def mixed_scenario() -> dict[str, Any]:
    """DARTS (mixed forward, first then second order) and SETN (single paths): architecture weights."""
    from nasframe.core.capabilities import AlphaOptimizer
    from nasframe.core.paths import UniformPaths
    from nasframe.core.requests import TrainMixed
    from nasframe.search.executor import Executor
    from nasframe.strategies.alphas import ArchitectureWeights

    out: dict[str, Any] = {}
    for name, order, paths in (("darts1", 1, None), ("darts2", 2, None), ("setn", 1, UniformPaths())):
        space, ev, costs = _tiny("darts" if name.startswith("darts") else "nb201")
        executor = Executor(ev, space, costs, seed=7, chunk_epochs=1.0)
        w = ArchitectureWeights(space.decisions, 1e-3, np.random.default_rng(0), "test")
        # two steps: the alphas' Adam steps turn float differences in their tiny gradients into visible ones
        # within a few more (see docs/distributed.md), whatever the number of processes
        epochs = 2 / ev.steps_per_epoch()
        request = TrainMixed(
            epochs=epochs, state=w.request_state(), order=order, optimizer=AlphaOptimizer(lr=0.05), paths=paths
        )
        report = _train(executor, request, 0)
        out[name] = {"alphas": report.state["alphas"], "weights": _supernet_state(ev)}
    return out


def per_process_batchnorm_scenario() -> dict[str, Any]:
    """sync_batchnorm false: each process normalises its slice by its own statistics; the running
    statistics are averaged after each piece, so scores stay the same on every process."""
    from nasframe.core.capabilities import BNRecalibration
    from nasframe.core.requests import ScoreShared, TrainShared
    from nasframe.search.executor import Executor

    space, ev, costs = _tiny("nb201", sync_batchnorm=False)
    executor = Executor(ev, space, costs, seed=5, chunk_epochs=0.5)
    _train(executor, TrainShared(epochs=1.0), 0)
    arch = space.sample(np.random.default_rng(0))
    score = executor.evaluate(ScoreShared(arch, BNRecalibration(batches=0)), 0)  # the averaged running statistics
    return {"weights": _supernet_state(ev), "score": score.metrics}


def every_scenario(out: Path) -> dict[str, Any]:
    """What one 2-process group computes for the tests below (one group: process start-up is most of the time)."""
    return {
        "single_path": single_path_scenario(),
        "mixed": mixed_scenario(),
        "batchnorm": _batchnorm_halves(),
        "per_process_batchnorm": per_process_batchnorm_scenario(),
        "training": _resumed_training(out / "training"),
    }


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> list[dict[str, Any]]:
    """every_scenario's results on rank 0 and rank 1 of a 2-process gloo group."""
    out = tmp_path_factory.mktemp("ddp_group")
    _interrupted_training(out / "training")
    return _run_group(every_scenario, out)


@pytest.fixture(scope="module")
def single_path_runs(group) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return [r["single_path"] for r in group], single_path_scenario()


@pytest.mark.slow
def test_single_path_training_is_identical_on_every_process(single_path_runs):
    """Same paths on both processes (the generator is seeded from the run seed and the work index, not the
    process), so the same parameters move, by the same averaged gradient: weights, momentum buffers,
    BatchNorm statistics, Cream's board, the shared-weight score and a few-shot split are bit-identical."""
    (rank0, rank1), _ = single_path_runs
    assert "shots.1." in " ".join(rank0["few_shot_weights"])  # the few-shot supernet did split
    _assert_same(rank0, rank1, "rank0 vs rank1", exact=True)


@pytest.mark.slow
def test_single_path_training_matches_one_process_with_the_same_global_batch(single_path_runs):
    (rank0, _), single = single_path_runs
    moved = [k for k, v in single["uniform_weights"].items() if v.is_floating_point()]
    assert moved  # a real comparison: the weights changed in training
    # the few-shot split's distance sums are 1 - cosine of nearly parallel gradients, summed over pairs:
    # the subtraction magnifies the all-reduce's round-off (measured 1.1e-4 relative on digits), so they
    # get 1e-3; the split itself (which choices go together) must be the same
    for ours, theirs in zip(rank0["few_shot_splits"], single["few_shot_splits"]):
        for key in ("within", "cross"):
            assert ours.pop(key) == pytest.approx(theirs.pop(key), rel=1e-3), key
    _assert_same(rank0, single, "2 processes vs 1", exact=False)


@pytest.mark.slow
def test_per_process_batchnorm_keeps_the_processes_identical(group):
    rank0, rank1 = (r["per_process_batchnorm"] for r in group)
    _assert_same(rank0, rank1, "rank0 vs rank1", exact=True)
    single = per_process_batchnorm_scenario()  # one process: its statistics are the whole batch's
    differs = [k for k, v in single["weights"].items() if "running" in k and not torch.allclose(v, rank0["weights"][k])]
    assert differs  # the processes' statistics are not the global batch's: a real difference from one process


@pytest.mark.slow
def test_architecture_weights_stay_identical_and_match_one_process(group):
    """DARTS' alphas (first and second order) and SETN's: every process takes the architecture step on the
    same whole search-val batch, so the alphas are bit-identical across processes; the weight steps are
    data parallel, so everything matches one process within float tolerance."""
    rank0, rank1 = (r["mixed"] for r in group)
    _assert_same(rank0, rank1, "rank0 vs rank1", exact=True)
    single = mixed_scenario()
    for name in single:
        start = _initial_alphas(name)
        assert any(not torch.equal(a, start[k]) for k, a in single[name]["alphas"].items()), name
    _assert_same(rank0, single, "2 processes vs 1", exact=False)


def _initial_alphas(name: str) -> dict[str, torch.Tensor]:
    from nasframe.strategies.alphas import ArchitectureWeights

    space, _, _ = _tiny("darts" if name.startswith("darts") else "nb201")
    return ArchitectureWeights(space.decisions, 1e-3, np.random.default_rng(0), "test").request_state()["alphas"]


# ---- unit checks without a group ------------------------------------------------------------------------------
def test_world_from_the_environment():
    assert distributed.world_from_env({}) == distributed.World(1, 0, 0)
    assert distributed.world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == distributed.World(4, 3, 1)
    with pytest.raises(ConfigError, match="RANK='x'"):
        distributed.world_from_env({"WORLD_SIZE": "2", "RANK": "x"})
    with pytest.raises(ConfigError, match="RANK=2 with WORLD_SIZE=2"):
        distributed.world_from_env({"WORLD_SIZE": "2", "RANK": "2"})


def test_a_single_process_is_untouched():
    """Without a group: no sharding, no averaging, plain BatchNorm, writable run folder."""
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_writer()
    x, g = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.equal(distributed.average_(x.clone()), x)
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = g[0].clone()
    distributed.average_gradients([p])
    assert torch.equal(p.grad, g[0])
    assert type(rundir_module.run_files("somewhere")) is RunDir


def test_synchronised_batchnorm_outside_the_block_is_plain_batchnorm():
    """The class swap keeps the layer's object, parameters and names, and its forward outside a
    synchronised block (and in any single process) is BatchNorm's own, bit for bit."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm1d(4, affine=False))
    net[2] = torch.nn.Identity()
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("2.")})
    params = list(net.parameters())
    distributed.synchronize_batchnorm(net)
    assert isinstance(net[1], distributed.GlobalBatchNormMixin) and isinstance(net[1], torch.nn.BatchNorm2d)
    assert list(net.parameters()) == params
    x = torch.randn(8, 3, 6, 6)
    with distributed.synced_batchnorm(True):  # no group: stays off
        assert torch.equal(net(x), plain(x))
    assert torch.equal(net[1].running_var, plain[1].running_var)


@pytest.mark.slow
def test_global_batchnorm_matches_batchnorm_on_the_whole_batch(group):
    """2 processes with half a batch each give the output, the input gradient and the running statistics
    of one BatchNorm over the whole batch; and every process takes rank 0's flag and text."""
    rank0, rank1 = (r["batchnorm"] for r in group)
    torch.manual_seed(0)
    whole = _batchnorm_whole()
    half = whole["out"].shape[0] // 2
    for name, got in (("rank0", rank0), ("rank1", rank1)):
        sl = slice(0, half) if name == "rank0" else slice(half, None)
        torch.testing.assert_close(got["out"], whole["out"][sl], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got["grad"], whole["grad"][sl], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got["running_var"], whole["running_var"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["weight_grad"], whole["weight_grad"], rtol=1e-4, atol=1e-6)
        assert bool(got["flag"]) and bytes(got["name"].tolist()).decode() == "runs/é-0"


def _batchnorm_data() -> tuple[torch.Tensor, torch.Tensor, torch.nn.BatchNorm2d]:
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    w = torch.randn(8, 3, 4, 4)
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
    return x, w, bn


def _batchnorm_whole() -> dict[str, torch.Tensor]:
    x, w, bn = _batchnorm_data()
    x.requires_grad_(True)
    out = bn(x)
    (out * w).sum().div(8).backward()
    return {"out": out.detach(), "grad": x.grad, "running_var": bn.running_var, "weight_grad": bn.weight.grad}


def _batchnorm_halves() -> dict[str, torch.Tensor]:
    x, w, bn = _batchnorm_data()
    distributed.synchronize_batchnorm(bn)
    r = distributed.rank()
    xs, ws = x[r * 4 : (r + 1) * 4].clone().requires_grad_(True), w[r * 4 : (r + 1) * 4]
    with distributed.synced_batchnorm(True):
        out = bn(xs)
    (out * ws).sum().div(4).backward()  # this process's mean loss; the group's loss is the mean of the two
    distributed.average_gradients([bn.weight, bn.bias])
    # the input gradient of the group's loss: half of this process's (the mean over 2 processes)
    result = {"out": out.detach(), "grad": xs.grad / 2, "running_var": bn.running_var, "weight_grad": bn.weight.grad}
    # rank 0's decisions and names, whatever the others hold
    result["flag"] = torch.tensor(distributed.agree_flag(r == 0))
    result["name"] = torch.tensor(list(distributed.agree_text(f"runs/{'é' * (r + 1)}-{r}").encode()))
    return result


def test_every_write_of_a_run_folder_is_a_no_op_for_other_processes():
    """FollowerRunDir must override each RunDir method that writes: a method added to RunDir has to be
    classified here, as a read or a write."""
    reads = {
        "holds_run",
        "has_checkpoint",
        "is_finished",
        "require_run",
        "format",
        "read_info",
        "read_config",
        "evaluations",
        "work_records",
        "evaluation",
        "load_checkpoint",
        "read_result",
        "readable_evaluations",
        "intact_history_lines",
        "has_previous_checkpoint",
        "owner",
        "check_owner",
        "expected_run",
        "disk_full_message",
    }
    public = {n for n in vars(RunDir) if not n.startswith("_") and callable(getattr(RunDir, n))}
    assert public - reads == set(rundir_module.FollowerRunDir.WRITES)
    for name in rundir_module.FollowerRunDir.WRITES:
        assert name in vars(rundir_module.FollowerRunDir), name


def test_the_global_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    distributed.check_batch(64, "evaluator.batch_size")
    with pytest.raises(ConfigError, match="evaluator.batch_size=63 .* multiple of 2"):
        distributed.check_batch(63, "evaluator.batch_size")


# ---- the command line under torchrun ----------------------------------------------------------------------------
SPOS = [
    "--strategy", "spos", "--space", "nb201", "--evaluator", "supernet", "--data", "digits", "--seed", "1",
    "--set", "data.limit=128", "--set", "space.C=4", "--set", "space.N=1", "--set", "evaluator.batch_size=16",
    "--set", "strategy.supernet_epochs=2", "--set", "strategy.population=4", "--set", "strategy.parents=2",
    "--set", "strategy.mutations=2", "--set", "strategy.crossovers=2", "--set", "strategy.generations=1",
    "--set", "strategy.bn_batches=2",
]  # fmt: skip


def torchrun(*argv: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m nasframe.app.cli ...`, one thread per process."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*cmd, "-m", "nasframe.app.cli", *argv], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _outcome_close(a: tuple, b: tuple) -> None:
    """run_outcome of two runs: the same architectures in the same order; metrics within float tolerance."""
    _assert_same(json.loads(json.dumps(a)), json.loads(json.dumps(b)), "outcome", exact=False)


@pytest.mark.slow
def test_a_search_under_torchrun_writes_once_resumes_and_matches_one_process(cli, tmp_path):
    """SPOS (uniform single-path training, then evolution scored with the shared weights) on 2 processes:
    the run folder's name is rank 0's, only rank 0 writes (one session per command in run.json, one
    TensorBoard file per command) and prints, a resume under torchrun continues it, and the run's
    history, supernet work and answer are those of one process running it uninterrupted."""
    from conftest import run_outcome

    code, _, err = cli("run", *SPOS, "--out", tmp_path / "single", "--quiet")
    assert code == 0, err
    root = tmp_path / "runs"
    first = torchrun("run", *SPOS, "--set", f"run.runs_root={root}", "--budget", "3")
    (run_dir,) = list(root.iterdir())  # one folder: rank 1 took rank 0's name, with its time of day
    assert first.stdout.count("evaluations: 3") == 1  # rank 0 alone prints
    torchrun("resume", str(run_dir), "--budget", "100", "--quiet")
    sessions = json.loads((run_dir / "run.json").read_text())["sessions"]
    assert len(sessions) == 2
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 2
    _outcome_close(run_outcome(run_dir), run_outcome(tmp_path / "single"))


# ---- nasframe train: DistributedDataParallel --------------------------------------------------------------------
def _training_plan() -> Any:
    from nasframe.training.plan import plan_training

    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|avg_pool_3x3~2|"
    sets = ["space.C=4", "space.N=1", "recipe.epochs=2", "recipe.batch_size=32", "data.limit=256"]
    sets.append("recipe.augment=crop_flip")  # augmentation of the global batch, then each process's slice
    return plan_training(space="nb201", arch=arch, sets=sets)


def _interrupted_training(folder: Path) -> None:
    """A training folder as a kill after the first of 2 epochs leaves it, written by one process."""
    from nasframe.training.trainer import Trainer

    partial = Trainer.create(_training_plan(), folder, device="cpu", tensorboard=False)
    partial.prepare()
    partial.train_epoch(0)
    partial._save_checkpoint(1, [], 0.0)


def _resumed_training(folder: Path) -> dict[str, Any]:
    from nasframe.training.trainer import Trainer

    trainer = Trainer.resume(folder, device="cpu", tensorboard=False)
    result = trainer.run()
    assert trainer.model is not None
    distributed.barrier()  # rank 0 has written its files
    files = sorted(p.name for p in folder.iterdir())
    return {"weights": _copy(trainer.model.state_dict()), "test_acc": result.test_acc, "files": files}


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


@pytest.mark.slow
def test_training_resumed_on_2_processes_matches_one_process(group, tmp_path):
    """`nasframe train` (DistributedDataParallel, global BatchNorm) killed after its first epoch in one
    process and resumed on 2: bit-identical weights on both processes, the weights of one process
    training both epochs within float tolerance, and rank 0 wrote the weights and model.json."""
    from safetensors.torch import load_file

    from nasframe.training.trainer import Trainer

    rank0, rank1 = (r["training"] for r in group)
    _assert_same(rank0, rank1, "rank0 vs rank1", exact=True)
    whole = Trainer.create(_training_plan(), tmp_path / "single", device="cpu", tensorboard=False).run()
    single = load_file(tmp_path / "single" / "model.safetensors")
    _assert_same(rank0["weights"], single, "weights", exact=False)
    assert rank0["test_acc"] == pytest.approx(whole.test_acc, abs=0.6)  # two of 359 test images
    assert {"model.json", "model.safetensors", "checkpoint.pt"} <= set(rank0["files"])
