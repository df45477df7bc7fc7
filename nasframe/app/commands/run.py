"""`nasframe run` and `nasframe resume`: start a search, or continue one from its checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nasframe.app import flags
from nasframe.app.console import fmt, interrupted, is_writer, say


def build_config(args: argparse.Namespace, run_flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge --config, component flags, run flags and --set items into one config mapping."""
    from nasframe.search.config import load_yaml, merge_config

    base = load_yaml(args.config) if getattr(args, "config", None) else {}
    names = {k: getattr(args, k, None) for k in ("strategy", "space", "evaluator")}
    cfg = merge_config(base, names=names, sets=getattr(args, "set", []), run=run_flags or {})
    if getattr(args, "data", None):
        cfg["data"]["name"] = args.data
    cfg["plugins"] = list(cfg.get("plugins", [])) + list(getattr(args, "plugin", []))
    return cfg


class RunCommand:
    """Run a search: nasframe run --strategy S --space P --evaluator E."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--strategy", help="search strategy (nasframe list strategies); default mdenas")
        flags.add_components(p)
        flags.add_config(p)
        p.add_argument("--seed", type=flags.non_negative_int, help="run seed (default 0)")
        p.add_argument("--out", metavar="DIR", help="run directory (default runs/<time>-<names>)")
        flags.add_device(p)
        flags.add_executor(p)
        flags.add_budget(p)
        flags.add_quiet(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.search.config import resolve

        run_flags = {"seed": args.seed, "out": args.out, "device": args.device, "max_evaluations": args.budget,
                     "executor": args.executor, "address": args.address}  # fmt: skip
        cfg = build_config(args, run_flags)
        resolve(cfg)  # names and options checked before the runner imports torch: a typo costs no seconds
        from nasframe.search.runner import Runner

        runner = Runner.create(cfg, quiet=args.quiet, command=args.command_line)
        say(f"run directory: {runner.run_dir}")
        return execute(runner)


class ResumeCommand:
    """Continue a killed or interrupted run from its last checkpoint (or extend a finished one)."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        from nasframe.search.config import RESUME_SETTABLE

        p.add_argument("run_dir", metavar="RUN_DIR")
        flags.add_device(p, "override the run's device")
        flags.add_executor(p)
        flags.add_budget(p, "raise the evaluation budget (extends a finished run)")
        allowed = ", ".join(f"{s}.{k}" for s, keys in RESUME_SETTABLE.items() for k in sorted(keys))
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help=f"change a setting that cannot alter results so far: {allowed}",
        )
        flags.add_quiet(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.search.runner import Runner

        overrides = {"device": args.device, "max_evaluations": args.budget, "executor": args.executor,
                     "address": args.address}  # fmt: skip
        runner = Runner.resume(
            args.run_dir, overrides=overrides, sets=args.set, quiet=args.quiet, command=args.command_line
        )
        say(f"resuming {runner.run_dir}")
        return execute(runner)


def execute(runner: Any) -> int:
    try:
        summary = runner.run()
    except KeyboardInterrupt as exc:
        return interrupted(exc, f"continue with: nasframe resume {runner.run_dir}")
    if not is_writer():
        return 0
    if not summary.ran:
        hint = " Raise --budget to extend it." if summary.stopped_because == "max_evaluations" else ""
        say(f"nothing to do: {runner.run_dir} already finished ({summary.stopped_because}); nothing ran.{hint}")
    if summary.result is not None:
        print_result(summary.result, summary.run_dir)
    return 0


def print_result(result: Any, run_dir: Path) -> None:
    """The closing lines: what ran and cost, then ONE answer with its numbers, units and split, its
    held-out figures, and why it is the answer (`nasframe.search.answer.describe_answer`)."""
    print(f"run: {run_dir}")
    print(
        f"evaluations: {result.evaluations}  stopped: {result.stopped_because}"
        + (f"  (rejected by constraints: {result.infeasible})" if result.infeasible else "")
    )
    cost, work = result.cost, result.work
    shared = f" (supernet work {work['seconds']:.1f} s, {work['epochs']:g} epochs)" if work.get("requests") else ""
    print(
        f"cost: {cost['seconds']:.1f} s computing{shared}, {cost['epochs']:g} epochs in all, "
        f"{cost['wall_seconds']:.1f} s wall"
    )
    if result.final is None:
        print("answer: none (nothing was evaluated successfully)")
    else:
        _print_answer(result, run_dir)
    for name, alt in result.alternatives.items():
        values = {**(alt.get("metrics") or {}), **(alt.get("held_out") or {})}
        line = ", ".join(f"{k}={fmt(v)}" for k, v in values.items() if isinstance(v, (int, float)))
        seen = "evaluated during the search" if alt.get("evaluated") else "never evaluated during the search"
        print(f"alternative {name} (not the answer): {seen}" + (f"; {line}" if line else ""))
    if result.pareto:
        print_front(result.objectives or [], result.pareto)
    print(f"details: {run_dir / 'best.json'}")


#: front members printed in full by `show` (all of them are in best.json)
FRONT_SHOWN = 20


def print_front(objectives: list[str], members: list[dict[str, Any]]) -> None:
    """The Pareto front, most accurate first; the first row is the run's `final` (the front's most accurate)."""
    print(f"Pareto front over {', '.join(objectives)}: {len(members)} architectures (final = the most accurate)")
    for member in members[:FRONT_SHOWN]:
        where = f"#{member['index']}" if member.get("index") is not None else "(not in history)"
        values = "  ".join(f"{k}={_front_value(k, member[k])}" for k in objectives)
        print(f"  {where:>8}  {values}")
    if len(members) > FRONT_SHOWN:
        print(f"  ... {len(members) - FRONT_SHOWN} more in best.json (pareto)")


def _front_value(name: str, value: float) -> str:
    if name in ("params", "macs"):
        return f"{value / 1e6:.3f}M"
    return f"{value:.3f}" if name == "latency_ms" else f"{value:.2f}"


def _print_answer(result: Any, run_dir: Path) -> None:
    from nasframe.core.costs import format_count
    from nasframe.search.answer import describe_answer

    final, answer = result.final, describe_answer(result)
    print(f"answer: {answer.what}")
    if answer.figures:
        head, rest = answer.figures[0], answer.figures[1:]
        print(f"  {head.text()} on {head.where}")
        print(f"    measured by: {answer.measured_by}")
        if rest:
            print(f"  also: {', '.join(f.text() for f in rest)}")
    else:
        print(f"  no numbers; measured by: {answer.measured_by}")
    if answer.held_out:
        head, rest = answer.held_out[0], answer.held_out[1:]
        also = f"; {', '.join(f.text() for f in rest)}" if rest else ""
        print(f"  held out: {head.text()} on {head.where}{also}")
    else:
        print(f"  held out: none ({result.evaluator} gives no held-out figure for this data)")
    print(f"  its own accuracy as a trained network: nasframe train {run_dir} (from scratch, on the test split)")
    if final.params is not None:
        print(f"  params: {format_count(final.params)}  MACs: {format_count(final.macs or 0)}")
    if final.latency_ms is not None:
        print(f"  latency: {final.latency_ms:.3f} ms ({final.latency_source})")
    for key, value in final.export.items():
        if isinstance(value, (str, int, float)):
            print(f"  {key}: {value}")
    print(f"why this one: {answer.why[0]}")
    for line in answer.why[1:]:
        print(f"  {line}")
