"""Evaluations as Ray tasks (`run.executor: ray`): Ray schedules, retries and places them.

One Ray actor per slot (`run.parallel`) builds the run's space and evaluator once from the
resolved config, with the run's thread count, and evaluates whatever it is sent with the same
`Executor` the runner uses, so results equal the local executor's. Ray places actors by the
resources they ask for (`run.task_cpus`, fractional `run.task_gpus`) on this machine or on the
cluster at `run.address`.

Faults: a worker that dies (killed, out of memory, node lost) fails its evaluation; the pool
starts a fresh worker and submits it once more, and a second loss becomes a failed result, so the
search goes on. `run.evaluation_timeout_s` is enforced here by killing the worker that ran past
it (a hang inside a C call cannot stop otherwise) and recording a failed result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nasframe.common.errors import ConfigError
from nasframe.core.evaluator import Result
from nasframe.core.requests import Evaluation
from nasframe.search.pool import EvaluationPool, timed_out


class EvaluationWorker:
    """The body of a Ray actor: one space + evaluator, built once, evaluating one request at a time."""

    def __init__(self, config_dict: dict[str, Any], threads: int, cwd: str):
        from nasframe.common.device import resolve_device
        from nasframe.common.threads import apply_threads
        from nasframe.search.components import build_components
        from nasframe.search.config import merge_config, resolve
        from nasframe.search.executor import Executor

        if os.path.isdir(cwd):  # relative data roots and plugin files mean what they meant for the driver
            os.chdir(cwd)
        apply_threads(threads)
        config = resolve(merge_config(config_dict))
        run = config.options["run"]
        parts = build_components(config, resolve_device(run.device))
        self.executor = Executor(parts.evaluator, parts.space, parts.costs, run.seed, run.work_chunk_epochs)

    def ready(self) -> int:
        return os.getpid()

    def evaluate(self, request: Evaluation, index: int) -> Result:
        try:
            return self.executor.evaluate(request, index)
        except (Exception, SystemExit) as exc:  # named here, where the traceback still shows the component
            from nasframe.core.faults import fault_of

            fault = fault_of(exc)
            if fault is None:
                raise
            raise fault from None


@dataclass
class _Task:
    request: Evaluation
    index: int
    slot: int
    ref: Any
    started: float
    tries: int = 1


def ray_module() -> Any:
    """Import Ray with its usage reporting off (nasframe never phones home)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("run.executor=ray needs Ray: pip install 'nasframe[ray]'") from None
    return ray


def init_ray(address: str | None, cpus_needed: float, temp_dir: str | None = None) -> bool:
    """Connect to `address` or start a local Ray instance; True when this call started it.

    A local instance runs its workers at the driver's priority: Ray's default niceness of 15 for
    workers starves them whenever anything else uses the cores (measured: 0.04x the local
    executor's speed with two busy processes beside it; `benchmarks/ray_throughput.py --load 2`).
    """
    ray = ray_module()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address:
        kwargs["address"] = address
    else:  # a local instance sized so every slot can start (oversubscribing the cores is the user's choice)
        kwargs["num_cpus"] = max(os.cpu_count() or 1, int(cpus_needed + 0.999))
        os.environ.setdefault("RAY_worker_niceness", "0")
        if temp_dir is not None:
            kwargs["_temp_dir"] = temp_dir
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise ConfigError(f"run.executor=ray: could not start or reach {where} ({str(exc).splitlines()[0]})") from None
    return True


class RayPool(EvaluationPool):
    concurrent = True

    def __init__(self, run_options: Any, config_dict: dict[str, Any], threads: int):
        self.ray = ray_module()
        self.slots = run_options.parallel
        self.timeout_s: float | None = run_options.evaluation_timeout_s
        self._workers: list[Any] = []
        self._started_ray = init_ray(run_options.address, self.slots * run_options.task_cpus)
        self._check_resources(run_options)
        self._worker_class = self.ray.remote(num_cpus=run_options.task_cpus, num_gpus=run_options.task_gpus)(
            EvaluationWorker
        )
        self._args = (config_dict, threads, os.getcwd())
        self._workers = [None] * self.slots
        self._busy: list[bool] = [False] * self.slots
        self.retried = 0
        for slot in range(self.slots):
            self._start_worker(slot)
        self._wait_ready()

    def _check_resources(self, run_options: Any) -> None:
        """Refuse up front what Ray would otherwise leave waiting forever: more than the cluster has."""
        have = self.ray.cluster_resources()
        for name, per_task, option in (
            ("CPU", run_options.task_cpus, "task_cpus"),
            ("GPU", run_options.task_gpus, "task_gpus"),
        ):
            need, available = self.slots * per_task, float(have.get(name, 0.0))
            if need > available + 1e-9:
                self.close()
                raise ConfigError(
                    f"run.parallel={self.slots} x run.{option}={per_task:g} needs {need:g} {name}s but the Ray "
                    f"cluster has {available:g}; lower run.parallel or run.{option}"
                )

    # ---- workers ----------------------------------------------------------------------------------
    def _start_worker(self, slot: int) -> None:
        self._workers[slot] = self._worker_class.remote(*self._args)

    def _wait_ready(self) -> None:
        """Workers build space, data and evaluator up front: a broken config fails here, in one line."""
        try:
            self.ray.get([w.ready.remote() for w in self._workers])
        except self.ray.exceptions.RayActorError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
            self.close()
            raise ConfigError(f"run.executor=ray: a worker could not build the run ({_first_line(cause)})") from None

    def _replace_worker(self, slot: int) -> None:
        """Kill a slot's worker and wait for a fresh one, so the next evaluation's time limit counts
        evaluation time only, not the worker's start."""
        self.ray.kill(self._workers[slot], no_restart=True)
        self._start_worker(slot)
        self.ray.get(self._workers[slot].ready.remote())

    # ---- evaluations ------------------------------------------------------------------------------
    def submit(self, request: Evaluation, index: int) -> _Task:
        slot = self._busy.index(False)  # the runner never has more in flight than there are slots
        self._busy[slot] = True
        ref = self._workers[slot].evaluate.remote(request, index)
        return _Task(request, index, slot, ref, time.monotonic())

    def first_done(self, handles: Sequence[Any]) -> int:
        refs = [t.ref for t in handles]
        timeout = self._seconds_to_first_deadline(handles)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:  # someone ran past the limit: let `result` deal with the oldest deadline
            return min(range(len(handles)), key=lambda i: handles[i].started)
        return refs.index(ready[0])

    def _seconds_to_first_deadline(self, handles: Sequence[_Task]) -> float | None:
        if self.timeout_s is None:
            return None
        now = time.monotonic()
        return max(0.0, min(t.started + self.timeout_s - now for t in handles))

    def result(self, handle: Any) -> Result:
        task: _Task = handle
        errors = self.ray.exceptions
        while True:
            timeout = None if self.timeout_s is None else max(0.0, task.started + self.timeout_s - time.monotonic())
            try:
                ready, _ = self.ray.wait([task.ref], timeout=timeout)
                if not ready:
                    elapsed = time.monotonic() - task.started
                    self._replace_worker(task.slot)
                    self._busy[task.slot] = False
                    assert self.timeout_s is not None
                    return timed_out(self.timeout_s, elapsed)
                result: Result = self.ray.get(task.ref)
            except (errors.RayActorError, errors.WorkerCrashedError, errors.ObjectLostError) as exc:
                self._replace_worker(task.slot)
                if task.tries >= 2:
                    self._busy[task.slot] = False
                    return Result.failed(f"Ray worker lost twice ({type(exc).__name__})")
                self.retried += 1
                task.tries += 1
                task.ref = self._workers[task.slot].evaluate.remote(task.request, task.index)
                task.started = time.monotonic()
                continue
            except errors.RayTaskError as exc:  # the evaluator raised: the same error as in-process
                self._busy[task.slot] = False
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, Exception) else exc) from None
            self._busy[task.slot] = False
            return result

    def close(self) -> None:
        for worker in self._workers:
            if worker is not None:
                self.ray.kill(worker, no_restart=True)
        self._workers = [None] * self.slots
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"
