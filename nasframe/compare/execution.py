"""Running a comparison's runs: create, resume or skip each one, and read back what it found.

Every (strategy, seed) is an ordinary run directory (`<out>/<label>/seed-<k>`), built with
`Runner.create`, so each can be shown or resumed on its own. A run directory left by an earlier
invocation is skipped when finished and resumed when not, after checking it was made with the
same settings. All files are read through `RunDir`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nasframe.common.errors import ConfigError, RunDirError
from nasframe.compare.plan import SECTIONS, Plan, RunSpec

if TYPE_CHECKING:
    from nasframe.search.records import RunResult
    from nasframe.search.rundir import RunDir

# nasframe.search.rundir and nasframe.search.runner import torch: they are imported inside functions.

#: run options that may differ between the first and a later invocation (they do not change results)
IGNORED_RUN_KEYS = ("out", "progress", "tensorboard", "device", "checkpoint_every", "checkpoint_seconds", "runs_root")
#: what happened to a run, as counted in `Comparison.actions`
ACTIONS = ("ran", "resumed", "done")


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in cfg.items() if k in SECTIONS}
    for key in IGNORED_RUN_KEYS:
        out["run"].pop(key, None)
    return out


def check_same_config(spec: RunSpec, files: RunDir) -> None:
    """A run directory left by an earlier invocation must have been made with the same settings."""
    from nasframe.search.config import resolve

    stored = _comparable(files.read_config())
    wanted = _comparable(resolve(spec.cfg).to_dict())
    for section in SECTIONS:
        a, b = stored.get(section, {}), wanted.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                raise ConfigError(
                    f"{spec.path} was run with {section}.{key}={a.get(key)!r} but this comparison "
                    f"asks for {b.get(key)!r}; use another --out or remove that run directory"
                )


def run_one(spec: RunSpec) -> str:
    """Create, resume or skip one run; returns what happened ('ran', 'resumed' or 'done')."""
    from nasframe.search.rundir import RunDir
    from nasframe.search.runner import Runner

    files = RunDir(spec.path)
    if not files.holds_run():
        Runner.create(spec.cfg, quiet=True).run()
        return "ran"
    files.require_run()
    check_same_config(spec, files)
    if files.is_finished():
        try:
            files.read_result()
            return "done"
        except RunDirError:  # a damaged best.json: resume sets it aside and computes it again
            pass
    Runner.resume(spec.path, quiet=True).run()
    return "resumed"


@dataclass
class RunRecord:
    """What the summary needs from one finished run directory."""

    label: str
    seed: int
    path: Path
    curve: np.ndarray  # best-so-far search accuracy after 1..budget evaluations (carried past an early stop)
    evaluations: int
    final: float | None
    final_metric: str | None
    cost_epochs: float
    cost_seconds: float
    wall_seconds: float
    stopped_because: str


def best_so_far_curve(files: RunDir, budget: int) -> np.ndarray:
    """History's best-so-far search accuracy after 1..budget evaluations; NaN before the first success,
    carried flat after the run stopped (nothing better can appear once it has)."""
    curve = np.full(budget, np.nan)
    n = 0
    for record in files.evaluations():
        if n >= budget:
            break
        curve[n] = np.nan if record.best_val_acc is None else record.best_val_acc
        n += 1
    if 0 < n < budget:
        curve[n:] = curve[n - 1]
    return curve


def final_accuracy(result: RunResult) -> tuple[float | None, str | None]:
    """(value, metric) of the returned architecture: its held-out test_acc, else its val_acc from the
    search, else its val_acc from the run's final evaluation (`run.final_evaluation`), else
    (None, None) when it was never evaluated and the evaluator has no held-out metric."""
    final = result.final
    if final is None:
        return None, None
    test_acc = final.held_out.get("test_acc")
    if isinstance(test_acc, (int, float)):
        return float(test_acc), "test_acc"
    val_acc = (final.metrics or {}).get("val_acc")
    if isinstance(val_acc, (int, float)):
        return float(val_acc), "val_acc"
    end = final.final_evaluation or {}
    val_acc = (end.get("metrics") or {}).get("val_acc") if end.get("status") == "ok" else None
    if isinstance(val_acc, (int, float)):
        return float(val_acc), "val_acc"
    return None, None


def read_run(spec: RunSpec, budget: int) -> RunRecord:
    """The summary's view of one finished run (best.json and history.jsonl through RunDir)."""
    from nasframe.search.rundir import RunDir

    files = RunDir(spec.path)
    result = files.read_result()
    final, metric = final_accuracy(result)
    cost = result.cost
    return RunRecord(
        spec.label,
        spec.seed,
        spec.path,
        best_so_far_curve(files, budget),
        result.evaluations,
        final,
        metric,
        float(cost["epochs"]),
        float(cost["seconds"]),
        float(cost["wall_seconds"]),
        result.stopped_because,
    )


@dataclass(frozen=True)
class ExecutorChoice:
    """Where a comparison's runs go: one after another here, or as Ray tasks (`--executor ray`)."""

    name: str = "local"
    parallel: int = 2  # ray: runs at a time
    address: str | None = None  # ray: an existing cluster


def execute_runs(
    plan: Plan, say: Callable[[str], None], executor: ExecutorChoice | None = None
) -> tuple[list[RunRecord], dict[str, int]]:
    """Run, resume or skip every run of the plan; one progress line per run as it ends. The records
    come back in plan order whatever the executor, so the summary does not depend on it."""
    specs = plan.runs()
    actions = dict.fromkeys(ACTIONS, 0)
    records: dict[int, RunRecord] = {}
    for done, (i, action, seconds) in enumerate(_executed(specs, executor or ExecutorChoice()), 1):
        spec = specs[i]
        actions[action] += 1
        records[i] = read_run(spec, spec.budget)
        say(f"[{done}/{len(specs)}] {spec.label} seed {spec.seed}: {_outcome(records[i], action)} in {seconds:.2f} s")
    return [records[i] for i in range(len(specs))], actions


def _executed(specs: list[RunSpec], executor: ExecutorChoice) -> Iterator[tuple[int, str, float]]:
    """(position, action, seconds) of every run as it finishes."""
    if executor.name == "local":
        for i, spec in enumerate(specs):
            started = time.perf_counter()
            yield i, run_one(spec), time.perf_counter() - started
        return
    yield from _executed_on_ray(specs, executor)


def _run_in_worker(spec: RunSpec, cwd: str, threads: int) -> tuple[str, float]:
    """The body of one Ray task: the same `run_one`, in the driver's folder and thread count."""
    os.chdir(cwd)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # what run.threads=auto resolved to in the driver
    started = time.perf_counter()
    return run_one(spec), time.perf_counter() - started


def _executed_on_ray(specs: list[RunSpec], executor: ExecutorChoice) -> Iterator[tuple[int, str, float]]:
    """Up to `parallel` runs at a time as Ray tasks. A task whose worker dies is run once more
    (Ray's own retry); the run directory's checkpoint makes that retry a resume."""
    from nasframe.common.threads import resolve_threads
    from nasframe.search.ray_pool import init_ray, ray_module

    ray = ray_module()
    started_ray = init_ray(executor.address, executor.parallel)
    task = ray.remote(num_cpus=1, max_retries=1, retry_exceptions=False)(_run_in_worker)
    threads = resolve_threads("auto")
    waiting = list(enumerate(specs))
    running: dict[Any, int] = {}
    try:
        while waiting or running:
            while waiting and len(running) < executor.parallel:
                i, spec = waiting.pop(0)
                running[task.remote(spec, os.getcwd(), threads)] = i
            ready, _ = ray.wait(list(running), num_returns=1)
            i = running.pop(ready[0])
            try:
                action, seconds = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, Exception) else exc) from None
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayActorError) as exc:
                raise ConfigError(
                    f"{specs[i].path}: the Ray worker running it was lost twice ({type(exc).__name__}); run the same "
                    "command again to resume it"
                ) from None
            yield i, action, seconds
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
        if started_ray:
            ray.shutdown()


def _outcome(record: RunRecord, action: str) -> str:
    final = f"{record.final_metric} {record.final:.2f}" if record.final is not None else "no final architecture"
    verb = {"ran": "", "resumed": " (resumed)", "done": " (already done)"}[action]
    return f"{record.evaluations} evaluations, {final}{verb}"
