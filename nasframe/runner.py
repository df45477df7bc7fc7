"""The Runner owns the search loop: budget, seeding, run files, logging, checkpoints, export.

Loop: take the next proposal (asking the strategy when none is pending), seed the global RNGs
from (run seed, evaluation index), evaluate, tell, append one line to history.jsonl, log, and
checkpoint now and then. Because every evaluation's randomness derives from its index and the
checkpoint holds the strategy, evaluator and pending proposals, a run resumed after a kill
ends exactly where the uninterrupted run would have ended (on the CPU).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasframe.checkpoint import (
    RunLock,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from nasframe.config import ResolvedConfig, dump_yaml, load_yaml, merge_config, resolve
from nasframe.data import DataSource
from nasframe.errors import CapabilityError, NasframeError, RunDirError, SpaceExhausted
from nasframe.evaluator import Evaluator, Result
from nasframe.registry import evaluators, spaces, strategies
from nasframe.space import Arch, SearchSpace
from nasframe.strategy import Strategy, arch_to_pairs
from nasframe.threads import apply_threads, resolve_threads

CHECKPOINT_VERSION = 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from nasframe.errors import ConfigError

        raise ConfigError("run.device=cuda but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def evaluation_seed(seed: int, index: int) -> int:
    """Seed of evaluation `index`: independent of how the run was split by resumes."""
    return (seed * 1_000_003 + index * 7919 + 17) % (2**63 - 1)


@dataclass
class Components:
    space: SearchSpace
    evaluator: Evaluator
    strategy: Strategy
    data: DataSource


def build_components(config: ResolvedConfig, device: torch.device) -> Components:
    """Construct space, data handle, evaluator and strategy, checking capabilities at build time."""
    seed = config.options["run"].seed
    space = spaces.get(config.names["space"])(config.options["space"])
    data = DataSource(config.options["data"], seed=seed, device=device)
    ev_cls = evaluators.get(config.names["evaluator"])
    st_cls = strategies.get(config.names["strategy"])
    missing = set(st_cls.requires) - set(ev_cls.capabilities)
    if missing:
        offering = [n for n in evaluators.names() if missing <= _capabilities(n)]
        raise CapabilityError(
            f"strategy {config.names['strategy']!r} needs an evaluator with {', '.join(sorted(missing))}; "
            f"{config.names['evaluator']!r} has none. Evaluators that offer it: {', '.join(offering) or '(none)'}"
        )
    evaluator = ev_cls(space, config.options["evaluator"], data=data, device=device)
    strategy = st_cls(space, config.options["strategy"], seed=seed)
    strategy.attach(evaluator)
    return Components(space, evaluator, strategy, data)


def _capabilities(evaluator_name: str) -> set[str]:
    try:
        return set(evaluators.get(evaluator_name).capabilities)
    except NasframeError:  # a broken third-party evaluator must not hide the message we are building
        return set()


@dataclass
class RunSummary:
    run_dir: Path
    evaluations: int
    stopped_because: str
    best: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Runs one search in one run directory. Use `Runner.create` or `Runner.resume`."""

    def __init__(self, config: ResolvedConfig, run_dir: Path, *, resume: bool = False, quiet: bool = False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.resuming = resume
        self.quiet = quiet
        self.config_changed = False  # set by resume when flags override the stored config
        self.run_opts = config.options["run"]
        self.device = resolve_device(self.run_opts.device)
        self.parts = build_components(config, self.device)
        # loop state (saved in checkpoints)
        self.n = 0
        self.total_seconds = 0.0
        self.total_epochs = 0.0
        self.elapsed = 0.0
        self.pending: list[Arch] = []
        self.best_acc: float | None = None
        self.best_index: int | None = None
        self.finished = False
        self.stopped_because = ""

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def create(cls, cfg: dict[str, Any], *, quiet: bool = False) -> Runner:
        """A new run from a merged config mapping (see `nasframe.config.merge_config`)."""
        config = resolve(cfg)
        ro = config.options["run"]
        if ro.out:
            run_dir = Path(ro.out)
            if (run_dir / "config.yaml").exists():
                raise RunDirError(f"{run_dir} already holds a run; use `nasframe resume {run_dir}` or another --out")
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            base = f"{stamp}-{config.names['strategy']}-{config.names['space']}-{config.names['evaluator']}"
            run_dir = Path(ro.runs_root) / base
            k = 1
            while run_dir.exists():
                k += 1
                run_dir = Path(ro.runs_root) / f"{base}-{k}"
        return cls(config, run_dir, quiet=quiet)

    @classmethod
    def resume(cls, run_dir: str | Path, *, overrides: dict[str, Any] | None = None, quiet: bool = False) -> Runner:
        """Continue a run from its last checkpoint (or from the start if it never checkpointed)."""
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise RunDirError(f"{run_dir}: not a run directory (no config.yaml)")
        cfg = merge_config(load_yaml(run_dir / "config.yaml"), run=overrides or {})
        cfg["run"]["out"] = str(run_dir)
        runner = cls(resolve(cfg), run_dir, resume=True, quiet=quiet)
        runner.config_changed = any(v is not None for v in (overrides or {}).values())
        return runner

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "runner": {
                "n": self.n, "total_seconds": self.total_seconds, "total_epochs": self.total_epochs,
                "elapsed": self.elapsed, "pending": [arch_to_pairs(a) for a in self.pending],
                "best_acc": self.best_acc, "best_index": self.best_index, "finished": self.finished,
                "stopped_because": self.stopped_because,
            },
            "strategy": self.parts.strategy.state_dict(),
            "evaluator": self.parts.evaluator.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": _np_global_state(), "python": _py_state()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != CHECKPOINT_VERSION:
            raise RunDirError(f"{self.run_dir}: checkpoint version {state.get('version')} is not supported")
        r = state["runner"]
        self.n, self.total_seconds, self.total_epochs = r["n"], r["total_seconds"], r["total_epochs"]
        self.elapsed = r["elapsed"]
        self.pending = [Arch([tuple(p) for p in a]) for a in r["pending"]]
        self.best_acc, self.best_index = r["best_acc"], r["best_index"]
        self.finished, self.stopped_because = r["finished"], r["stopped_because"]
        self.parts.strategy.load_state_dict(state["strategy"])
        self.parts.evaluator.load_state_dict(state["evaluator"])
        torch.set_rng_state(state["rng"]["torch"])
        _set_np_global_state(state["rng"]["numpy"])
        _set_py_state(state["rng"]["python"])

    # ---- the loop ----------------------------------------------------------------------------
    def _budget_left(self) -> str | None:
        ro = self.run_opts
        if ro.max_evaluations is not None and self.n >= ro.max_evaluations:
            return "max_evaluations"
        if ro.max_epochs is not None and self.total_epochs >= ro.max_epochs:
            return "max_epochs"
        if ro.max_seconds is not None and self.elapsed >= ro.max_seconds:
            return "max_seconds"
        if self.parts.strategy.done and not self.pending:
            return "strategy_done"
        return None

    def run(self) -> RunSummary:
        apply_threads(resolve_threads(self.run_opts.threads))  # before any training work; see nasframe/threads.py
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.run_dir):
            return self._run_locked()

    def _run_locked(self) -> RunSummary:
        history_path = self.run_dir / "history.jsonl"
        if self.resuming:
            if (self.run_dir / "checkpoint.pt").is_file():
                self.load_state_dict(load_checkpoint(self.run_dir))
            if self.finished:
                reason = self._budget_left()
                if reason is not None and self.config_changed:
                    raise RunDirError(f"{self.run_dir} already finished ({reason}); the new settings do not "
                                      f"extend it (--budget raises only run.max_evaluations)")
                if reason is not None:
                    return self._summary()
                self.finished = False  # resumed with a larger budget: keep searching
                (self.run_dir / "best.json").unlink(missing_ok=True)  # no stale result while it runs
            _truncate_lines(history_path, self.n)
            if self.config_changed:
                atomic_write_text(self.run_dir / "config.yaml", dump_yaml(self.config.to_dict()))
        else:
            atomic_write_text(self.run_dir / "config.yaml", dump_yaml(self.config.to_dict()))
            history_path.write_text("")

        writer = self._tensorboard()
        strategy, evaluator, space = self.parts.strategy, self.parts.evaluator, self.parts.space
        seed = self.run_opts.seed
        seeds_torch = evaluator.uses_torch_rng
        progress = self._progress()
        history = open(history_path, "a", buffering=1 << 16)
        last_ckpt_n, last_ckpt_t, last_flush = self.n, time.monotonic(), time.monotonic()
        last_tb, tb_interval = float("-inf"), self.run_opts.tensorboard_interval
        start = time.monotonic() - self.elapsed
        interrupted = False
        try:
            while True:
                self.elapsed = time.monotonic() - start
                reason = self._budget_left()
                if reason:
                    self.stopped_because = reason
                    break
                if not self.pending:
                    try:
                        self.pending = [space.validate(a) for a in strategy.ask()]
                    except SpaceExhausted as exc:
                        self.stopped_because = f"space_exhausted: {exc}"
                        break
                    if not self.pending:
                        self.stopped_because = "strategy_done"
                        break
                arch = self.pending[0]
                if seeds_torch:
                    torch.manual_seed(evaluation_seed(seed, self.n))
                t0 = time.perf_counter()
                result = evaluator.evaluate(arch)
                if result.cost.seconds == 0.0:
                    result.cost.seconds = time.perf_counter() - t0
                self.pending.pop(0)
                strategy.tell(arch, result)
                index = self.n
                self.n += 1
                self._add_cost(result.cost.seconds, result.cost.epochs)
                acc = result.accuracy
                improved = acc is not None and (self.best_acc is None or acc > self.best_acc)
                if improved:
                    self.best_acc, self.best_index = acc, index
                    if progress is not None:
                        progress.set_postfix(best=f"{acc:.2f}", refresh=False)
                extra = strategy.metrics()
                line = {"index": index, "arch": arch.to_dict(), "status": result.status, "metrics": result.metrics,
                        "params": result.params, "macs": result.macs,
                        "cost": {"seconds": result.cost.seconds, "epochs": result.cost.epochs},
                        "reason": result.reason, "best_val_acc": self.best_acc,
                        "time": round(time.monotonic() - start, 4)}
                if extra:
                    line["strategy"] = _plain(extra)
                history.write(json.dumps(line) + "\n")
                # TensorBoard's writer costs ~50 us a scalar: with evaluations faster than that
                # (tables), log at most every tensorboard_interval seconds, new bests always
                if writer is not None and (improved or time.monotonic() - last_tb >= tb_interval):
                    self._log(writer, index, result, extra)
                    last_tb = time.monotonic()
                if progress is not None:
                    progress.update(1)
                now = time.monotonic()
                every = self.run_opts.checkpoint_every
                due = every is not None and self.n - last_ckpt_n >= every
                if due or now - last_ckpt_t >= self.run_opts.checkpoint_seconds:
                    self.elapsed = now - start
                    history.flush()
                    self._checkpoint()
                    last_ckpt_n, last_ckpt_t = self.n, now
                elif now - last_flush > 1.0:
                    history.flush()
                    last_flush = now
        except KeyboardInterrupt:
            interrupted = True
        finally:
            history.close()
            if progress is not None:
                progress.close()
        self.elapsed = time.monotonic() - start
        if interrupted:
            self._add_cost(0.0, 0.0)
            self._checkpoint()
            if writer is not None:
                writer.close()
            raise KeyboardInterrupt
        self.finished = True
        summary = self._finish(writer)
        evaluator.close()
        return summary

    def _add_cost(self, seconds: float, epochs: float) -> None:
        """Add an evaluation's cost and any work the evaluator did for the strategy since the last call."""
        side = self.parts.evaluator.drain_extra_cost()
        self.total_seconds += seconds + side.seconds
        self.total_epochs += epochs + side.epochs

    def _finish(self, writer: Any) -> RunSummary:
        strategy, evaluator, space = self.parts.strategy, self.parts.evaluator, self.parts.space
        self._add_cost(0.0, 0.0)  # side work done in the last ask (e.g. shrinking) counts too
        final = strategy.final()
        best_line = _read_line(self.run_dir / "history.jsonl", self.best_index) if self.best_index is not None else None
        if final is None and best_line is not None:
            final = space.validate(best_line["arch"])
        out: dict[str, Any] = {
            "strategy": self.config.names["strategy"], "space": self.config.names["space"],
            "evaluator": self.config.names["evaluator"], "seed": self.run_opts.seed,
            "evaluations": self.n, "stopped_because": self.stopped_because,
            "cost": {"seconds": self.total_seconds, "epochs": self.total_epochs, "wall_seconds": self.elapsed},
            "final": None, "best_evaluated": None,
        }
        if final is not None:
            evaluated = _find_arch(self.run_dir / "history.jsonl", final)
            out["final"] = {
                "arch": final.to_dict(),
                "metrics": evaluated["metrics"] if evaluated else None,
                "held_out": evaluator.final_metrics(final),
                "export": space.export(final, strategy.final_weights()),
            }
        if best_line is not None:
            out["best_evaluated"] = {"index": best_line["index"], "arch": best_line["arch"],
                                     "metrics": best_line["metrics"]}
        if self.parts.data.split_record is not None:
            out["data_split"] = self.parts.data.split_record
        atomic_write_json(self.run_dir / "best.json", out)
        self._checkpoint()
        if writer is not None:
            writer.close()
        return RunSummary(self.run_dir, self.n, self.stopped_because, out)

    def _summary(self) -> RunSummary:
        path = self.run_dir / "best.json"
        best = json.loads(path.read_text()) if path.is_file() else {}
        return RunSummary(self.run_dir, self.n, self.stopped_because, best)

    def _checkpoint(self) -> None:
        save_checkpoint(self.run_dir, self.state_dict())

    # ---- logging -----------------------------------------------------------------------------
    def _tensorboard(self) -> Any:
        if not self.run_opts.tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events logged after the checkpoint we resumed from
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.n if self.resuming else None)

    def _log(self, writer: Any, index: int, result: Result, extra: dict[str, Any]) -> None:
        acc = result.accuracy
        if acc is not None:
            writer.add_scalar("search/val_acc", acc, index)
        if self.best_acc is not None:
            writer.add_scalar("search/best_val_acc", self.best_acc, index)
        writer.add_scalar("search/cost_seconds", result.cost.seconds, index)
        writer.add_scalar("search/failed", float(not result.ok), index)
        for key, value in extra.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(f"strategy/{key}", value, index)
            elif isinstance(value, (np.ndarray, torch.Tensor, list)):
                arr = np.asarray(value, dtype=np.float64)
                if arr.size:
                    writer.add_histogram(f"strategy/{key}", arr, index)

    def _progress(self) -> Any:
        if not self.run_opts.progress or self.quiet:
            return None
        from tqdm import tqdm

        total = self.run_opts.max_evaluations
        label = f"{self.config.names['strategy']}/{self.config.names['space']}/{self.config.names['evaluator']}"
        # disable=None: tqdm hides itself when stderr is not a terminal (CI logs stay clean)
        return tqdm(total=total, initial=self.n, desc=label, unit="eval", disable=None, file=sys.stderr,
                    dynamic_ncols=True)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return np.asarray(obj).tolist()
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _truncate_lines(path: Path, n: int) -> None:
    """Keep the first `n` complete lines (those covered by the checkpoint)."""
    if not path.exists():
        path.write_text("")
        return
    keep: list[str] = []
    with open(path) as fh:
        for line in fh:
            if len(keep) >= n or not line.endswith("\n"):
                break
            keep.append(line)
    if len(keep) < n:
        raise RunDirError(f"{path} has {len(keep)} complete lines but the checkpoint covers {n}")
    atomic_write_text(path, "".join(keep))


def _read_line(path: Path, index: int) -> dict[str, Any] | None:
    with open(path) as fh:
        for i, line in enumerate(fh):
            if i == index:
                return json.loads(line)
    return None


def _find_arch(path: Path, arch: Arch) -> dict[str, Any] | None:
    """The latest successful evaluation of `arch` in the history, if any."""
    target = arch.to_dict()
    found = None
    with open(path) as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["arch"] == target and rec["status"] == "ok":
                found = rec
    return found


def _np_global_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached": float(cached)}


def _set_np_global_state(s: dict[str, Any]) -> None:
    np.random.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached"]))


def _py_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_py_state(s: list) -> None:
    random.setstate((s[0], tuple(s[1]), s[2]))


