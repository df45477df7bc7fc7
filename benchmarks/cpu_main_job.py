"""The README's main job on a CPU: its time idle and under load, per thread setting, and where the time goes.

Main mode runs the design-card command, `nasframe run --strategy mdenas --space darts --evaluator
short_train` (plus `--out` in a temporary folder, `--quiet`, and `--set run.threads=T` for each
`--threads` entry other than `default`), each time as a fresh process, first on the machine as it
is ("idle") and then with `--load` CPU-bound processes of its own running beside it ("loaded").
Those are pure-Python busy loops that exit by themselves after `--load-seconds` at the latest and
are stopped as soon as the loaded runs end. It prints, per run, the wall and CPU seconds, the
evaluations done and the best search-val accuracy, then loaded/idle and thread ratios. A run that
passes `--timeout` is stopped; its line says so and extrapolates from the evaluations it finished.

`--profile` instead times the parts of single evaluations in this process (the evaluator's own
code, with timers around its calls): build, parameter count, MAC count, training steps, BatchNorm
recalibration and validation. Then it measures what a training step's time consists of:
deterministic algorithms (and torch's NaN-filling of new tensors) on and off, NCHW against
channels_last, the fixed cost per step against the cost per image (a line fitted over batch
sizes), and the top operators from torch's profiler.

    .venv/bin/python benchmarks/cpu_main_job.py                        # idle vs 2 busy processes, threads default vs 1
    .venv/bin/python benchmarks/cpu_main_job.py --threads default,1,2 --timeout 300
    .venv/bin/python benchmarks/cpu_main_job.py --profile              # one evaluation, phase by phase
    .venv/bin/python benchmarks/cpu_main_job.py --profile --set space.C=16 --set space.layers=8   # the 0.1 size
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = ["run", "--strategy", "mdenas", "--space", "darts", "--evaluator", "short_train"]
clock = time.perf_counter


# ---- the machine ---------------------------------------------------------------------------------
def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cpus} usable CPUs, torch {torch.__version__}, Python {platform.python_version()}"


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# ---- load processes ------------------------------------------------------------------------------
class Load:
    """`n` CPU-bound processes, each ending by itself after `seconds` at the latest."""

    def __init__(self, n: int, seconds: float):
        self.n, self.seconds = n, seconds
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Load:
        code = f"import time\nend = time.monotonic() + {self.seconds}\nwhile time.monotonic() < end:\n    pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.n)]
        time.sleep(1.0)  # let them reach the CPU before the measured run starts
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---- one run of the command ----------------------------------------------------------------------
def run_command(threads: str, out: Path, timeout: float, extra: list[str]) -> dict:
    """Run the design-card command once as a fresh process; wall and CPU seconds, evaluations, accuracy."""
    argv = [sys.executable, "-m", "nasframe.app.cli", *COMMAND, "--out", str(out), "--quiet", *extra]
    if threads != "default":
        argv += ["--set", f"run.threads={threads}"]
    start_load = load_average()
    t0 = clock()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if clock() - t0 > timeout:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            timed_out = True
            break
        time.sleep(0.05)
    wall = clock() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0 and not timed_out:
        raise SystemExit(f"the command failed ({proc.returncode}): {err.strip()[-500:]}")
    lines = (out / "history.jsonl").read_text().splitlines() if (out / "history.jsonl").exists() else []
    rows = [json.loads(x) for x in lines]
    accs = [r["metrics"]["val_acc"] for r in rows if r["status"] == "ok"]
    eval_seconds = sum(r["cost"]["seconds"] for r in rows)
    budget = next((int(x.split("=", 1)[1]) for x in extra if x.startswith("run.max_evaluations=")), 20)
    return {
        "threads": threads,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "evaluations": len(rows),
        "timed_out": timed_out,
        "best_acc": max(accs) if accs else float("nan"),
        "mean_acc": statistics.mean(accs) if accs else float("nan"),
        "eval_seconds": eval_seconds,
        "projected": (wall / len(rows) * budget) if timed_out and rows else None,
        "load_before": start_load,
    }


def describe(r: dict) -> str:
    done = f"{r['evaluations']} evals"
    if r["timed_out"]:
        proj = f", ~{r['projected']:.0f} s projected for the budget" if r["projected"] else ""
        done = f"STOPPED at the timeout after {r['evaluations']} evals{proj}"
    return (
        f"wall {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s  ({done}; evaluating {r['eval_seconds']:.1f} s, "
        f"rest {r['wall'] - r['eval_seconds']:.1f} s)  best val_acc {r['best_acc']:.2f}  mean {r['mean_acc']:.2f}  "
        f"load before {r['load_before']}"
    )


def effective_wall(r: dict) -> tuple[float, bool]:
    """(seconds, is_lower_bound): a stopped run counts with its projection, or with its wall time as
    a lower bound when it finished no evaluation."""
    if r["timed_out"]:
        return (r["projected"], False) if r["projected"] else (r["wall"], True)
    return r["wall"], False


def seconds(value: tuple[float, bool]) -> str:
    return f"{'>' if value[1] else ' '}{value[0]:6.1f} s"


def ratio(a: tuple[float, bool], b: tuple[float, bool]) -> str:
    """a / b, marked as a lower bound when a is one (and unknown when b is)."""
    if b[1]:
        return "  n/a"
    return f"{'>' if a[1] else ' '}{a[0] / b[0]:5.2f}"


def main_mode(args: argparse.Namespace) -> int:
    settings = [t.strip() for t in args.threads.split(",") if t.strip()]
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if not settings or not conditions or set(conditions) - {"idle", "loaded"}:
        raise SystemExit("--threads needs at least one setting; --conditions is idle, loaded or both")
    print(f"machine: {machine()}")
    print(f"command: nasframe {' '.join(COMMAND)}  (+ --out TMP --quiet [--set run.threads=T])")
    print(f"load average at start (1/5/15 min): {load_average()}")
    results: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    extra = [x for s in args.set for x in ("--set", s)]
    with tempfile.TemporaryDirectory() as tmp:
        k = 0
        for rep in range(args.repeats):
            for condition in conditions:
                with Load(args.load, args.load_seconds) if condition == "loaded" else contextlib.nullcontext():
                    for threads in settings:
                        k += 1
                        r = run_command(threads, Path(tmp) / f"run{k}", args.timeout, extra)
                        results[(condition, threads)].append(r)
                        label = f"{condition:6s} threads={threads:7s}"
                        if condition == "loaded":
                            label += f" +{args.load} busy"
                        print(f"[{rep + 1}] {label}: {describe(r)}", flush=True)
    print(f"load average at end: {load_average()}")
    print("\nsummary (best of repeats; a stopped run counts with its projection, '>' marks a lower bound):")
    best = {key: min(map(effective_wall, rs)) for key, rs in results.items()}
    for threads in settings:
        line = "   ".join(f"{c} {seconds(best[(c, threads)])}" for c in conditions)
        if len(conditions) == 2:
            line += f"   loaded/idle {ratio(best[('loaded', threads)], best[('idle', threads)])}"
        print(f"  threads={threads:7s}: {line}")
    if len(settings) > 1:
        base = settings[0]
        for threads in settings[1:]:
            for condition in conditions:
                print(
                    f"  {condition:6s}: threads={threads} / threads={base} = "
                    f"{ratio(best[(condition, threads)], best[(condition, base)])}"
                )
    return 0


# ---- profile mode --------------------------------------------------------------------------------
def build_parts(sets: list[str]):
    """The design-card run's space, data and evaluator (with --set overrides), as the runner builds them."""
    import torch

    from nasframe.search.config import merge_config, resolve
    from nasframe.search.runner import build_components

    cfg = resolve(
        merge_config(
            {},
            names={"strategy": "mdenas", "space": "darts", "evaluator": "short_train"},
            sets=sets,
            run={"device": "cpu"},
        )
    )
    return build_components(cfg, torch.device("cpu"))


def profile_mode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import nasframe.training.step_options as so
    import nasframe.training.steps as tr
    from nasframe.common.threads import apply_threads, resolve_threads
    from nasframe.data.augment import BatchTransform

    threads = apply_threads(resolve_threads(args.profile_threads))
    parts = build_parts(args.set)
    space, evaluator = parts.space, parts.evaluator
    spec = parts.data.spec
    channels, layers = space.size_for(spec)
    o = evaluator.options
    print(
        f"machine: {machine()}; torch threads {threads.intra_op} intra-op / {threads.inter_op} inter-op; "
        f"load average {load_average()}"
    )
    print(
        f"network: darts C={channels}, {layers} cells on {spec.name} {spec.input_shape}; short_train "
        f"epochs={o.epochs}, batch {o.batch_size}, BN recalibration {o.bn_recalibration_batches} batches, "
        f"channels_last={o.channels_last}"
    )
    w0, c0 = clock(), time.process_time()
    batches, transform = evaluator._setup()
    print(f"data load and split (once per run): wall {clock() - w0:.2f} s, cpu {time.process_time() - c0:.2f} s")

    timers: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])

    def timed(name, fn):
        def wrapper(*a, **k):
            w, c = clock(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                timers[name][0] += clock() - w
                timers[name][1] += time.process_time() - c

        return wrapper

    # short_train imports these inside evaluate (so `nasframe list` runs without torch): time them at home
    import nasframe.common.model_stats as stats_mod
    import nasframe.training.measure as measure_mod
    from nasframe.training.steps import StepRunner

    homes = {"count_parameters": stats_mod, "count_macs": stats_mod, "recalibrate_bn": measure_mod,
             "validate": measure_mod}  # fmt: skip
    saved = {name: getattr(mod, name) for name, mod in homes.items()}
    saved_build, saved_run = space.build, StepRunner.run
    stats_mod.count_parameters = timed("parameter count", stats_mod.count_parameters)
    stats_mod.count_macs = timed("MAC count (one traced forward)", stats_mod.count_macs)
    measure_mod.recalibrate_bn = timed("BN recalibration", measure_mod.recalibrate_bn)
    measure_mod.validate = timed("validation", measure_mod.validate)
    space.build = timed("build", space.build)
    StepRunner.run = timed("training steps", StepRunner.run)  # type: ignore[method-assign]
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    rows = []  # (phase -> [wall, cpu], total wall, total cpu, result)
    try:
        for i, arch in enumerate(archs):
            timers.clear()
            torch.manual_seed(i)
            w, c = clock(), time.process_time()
            result = evaluator.evaluate(arch)
            rows.append(({k: list(v) for k, v in timers.items()}, clock() - w, time.process_time() - c, result))
    finally:
        for name, fn in saved.items():
            setattr(homes[name], name, fn)
        space.build, StepRunner.run = saved_build, saved_run
    steps = max(1, round(o.epochs * batches.steps_per_epoch(o.batch_size)))
    names = [
        "build",
        "parameter count",
        "MAC count (one traced forward)",
        "training steps",
        "BN recalibration",
        "validation",
        "other",
    ]

    def phase(row, name: str, which: int) -> float:
        if name == "other":
            return row[1 + which] - sum(v[which] for v in row[0].values())
        return row[0].get(name, [0.0, 0.0])[which]

    later = rows[1:] or rows
    print(
        f"\none evaluation, phase by phase: seconds of the first evaluation, then the mean of the other "
        f"{len(later)} (wall and CPU), and the share of the CPU time; {steps} training steps:"
    )
    print(f"  {'phase':32s} {'first':>7s}  {'wall':>7s}  {'cpu':>7s}  share")
    mean_cpu = statistics.mean(r[2] for r in later)
    for name in names:
        first = phase(rows[0], name, 0)
        wall = statistics.mean(phase(r, name, 0) for r in later)
        cpu = statistics.mean(phase(r, name, 1) for r in later)
        print(f"  {name:32s} {first:7.3f}  {wall:7.3f}  {cpu:7.3f}  {cpu / mean_cpu:5.1%}")
    print(f"  {'total':32s} {rows[0][1]:7.3f}  {statistics.mean(r[1] for r in later):7.3f}  {mean_cpu:7.3f}")
    accs = [r[3].metrics.get("val_acc", float("nan")) for r in rows]
    print(f"  val_acc of these evaluations: mean {statistics.mean(accs):.2f} ({', '.join(f'{a:.1f}' for a in accs)})")
    cpu_step = statistics.mean(phase(r, "training steps", 1) for r in later) / steps
    print(f"  per training step: {cpu_step * 1000:.1f} ms CPU")

    def step_cpu(
        arch, *, deterministic: bool, fill: bool, channels_last: bool, batch_size: int, n: int = args.steps
    ) -> float:
        """CPU seconds per training step of `arch` (after one warm-up step), trained as short_train trains."""
        tf = BatchTransform(batches.data.mean, batches.data.std, transform.policy, channels_last=channels_last)
        with so.deterministic_mode(deterministic):
            torch.utils.deterministic.fill_uninitialized_memory = fill
            torch.manual_seed(0)
            model = space.build(arch, spec)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(
                model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, fused=True
            )
            runner = tr.StepRunner(model, opt, tf, so.step_settings(o, model, torch.device("cpu")), torch.device("cpu"))
            it = batches.train(batch_size)
            runner.run(it, 1, lambda i: o.lr)
            c = time.process_time()
            runner.run(it, n, lambda i: o.lr)
            return (time.process_time() - c) / n

    arch = archs[0]
    base = dict(deterministic=True, fill=False, channels_last=o.channels_last, batch_size=o.batch_size)
    variants = {
        "as the evaluator trains (deterministic, no NaN fill)": base,
        "deterministic algorithms off": {**base, "deterministic": False},
        "deterministic with torch's NaN fill of new tensors (as in 0.1)": {**base, "fill": True},
        f"{'NCHW' if o.channels_last else 'channels_last'} instead": {**base, "channels_last": not o.channels_last},
    }
    print(
        f"\nwhat a training step costs (architecture 1; ms CPU per step over {args.steps} steps; variants "
        f"interleaved, best of {args.repeats}):"
    )
    timings: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(args.repeats):
        for name, kw in variants.items():
            timings[name].append(step_cpu(arch, **kw))
    for name in variants:
        print(f"  {name:66s} {min(timings[name]) * 1000:7.1f}")
    sizes = [16, 32, 64, 128]
    per_size = {b: min(step_cpu(arch, **{**base, "batch_size": b}) for _ in range(args.repeats)) for b in sizes}
    slope, intercept = np.polyfit(sizes, [per_size[b] for b in sizes], 1)
    print("  by batch size: " + ", ".join(f"{b}: {per_size[b] * 1000:.1f}" for b in sizes))
    print(
        f"  fitted line: {intercept * 1000:.1f} ms fixed per step (Python, dispatch, kernel set-up) + "
        f"{slope * 1e6:.0f} us per image; at batch {o.batch_size} the fixed part is "
        f"{intercept / (intercept + slope * o.batch_size):.0%} of a step"
    )

    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step_cpu(arch, **base, n=5)
        print("\ntop operators over 6 steps (torch profiler, self CPU time):")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--threads",
        default="default,1",
        help="comma-separated run.threads settings; 'default' leaves the option unset (default: default,1)",
    )
    p.add_argument("--conditions", default="idle,loaded", help="idle, loaded or both (default both)")
    p.add_argument("--load", type=int, default=2, help="busy processes for the loaded runs (default 2)")
    p.add_argument(
        "--load-seconds",
        type=float,
        default=1800.0,
        help="each busy process exits by itself after this long at the latest (default 1800)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="stop a run after this many seconds (default 600)")
    p.add_argument("--repeats", type=int, default=1, help="rounds of idle+loaded runs (default 1)")
    p.add_argument("--set", action="append", default=[], help="extra --set for the command, e.g. space.C=16")
    p.add_argument("--profile", action="store_true", help="time the parts of single evaluations instead")
    p.add_argument("--profile-threads", default="auto", help="--profile: a run.threads setting (default auto)")
    p.add_argument("--archs", type=int, default=4, help="--profile: sampled architectures to evaluate (default 4)")
    p.add_argument("--steps", type=int, default=8, help="--profile: steps per step-cost measurement (default 8)")
    p.add_argument("--seed", type=int, default=0, help="--profile: seed of the sampled architectures")
    p.add_argument("--ops", type=int, default=0, help="--profile: also print this many top operators")
    args = p.parse_args(argv)
    if args.profile_threads != "auto":
        args.profile_threads = int(args.profile_threads)
    if args.profile and args.repeats < 2:
        args.repeats = 2
    return profile_mode(args) if args.profile else main_mode(args)


if __name__ == "__main__":
    raise SystemExit(main())
