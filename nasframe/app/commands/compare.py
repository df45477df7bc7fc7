"""`nasframe compare`: the command-line front of a comparison."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from nasframe.app import flags
from nasframe.app.console import interrupted
from nasframe.compare.figures import FORMATS

if TYPE_CHECKING:
    from nasframe.compare.comparison import Comparison

_CONFIG_HELP = "YAML file with strategies, seeds, budget, out and the space/evaluator/data/run/constraints sections"
_SET_HELP = (
    "option for every run (e.g. evaluator.dataset=cifar100), or LABEL.KEY=VALUE for one strategy "
    "(e.g. mdenas.epochs=200); repeatable"
)

#: up to this many pairwise tests are printed after the table (all are in summary.md and pairs.csv)
_PAIRS_SHOWN = 10


class CompareCommand:
    """Run several strategies x seeds at the same budget and summarise them side by side."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--strategies",
            metavar="A,B,...",
            help="comma-separated strategy names (or 'strategies:' "
            "in --config, which may give each its own options and label)",
        )
        flags.add_components(p)
        p.add_argument("--seeds", metavar="N|A,B,...", help="number of seeds (0..N-1) or a list; default 5")
        flags.add_budget(p, "evaluations per run (run.max_evaluations)")
        p.add_argument(
            "--out",
            metavar="DIR",
            help="comparison folder; re-running on it skips finished runs "
            "and resumes unfinished ones (default runs/compare-<time>-<space>)",
        )
        flags.add_config(p, set_help=_SET_HELP, config_help=_CONFIG_HELP)
        p.add_argument(
            "--executor",
            choices=["local", "ray"],
            default="local",
            help="local: runs one after another; ray: runs as Ray tasks, --parallel at a time (same results)",
        )
        p.add_argument("--parallel", type=flags.positive_int, default=2, metavar="N", help="ray: runs at a time")
        p.add_argument("--address", metavar="HOST:PORT", help="ray: an existing cluster (default: start one here)")
        p.add_argument("--no-tensorboard", action="store_true", help="skip the comparison's TensorBoard logs")
        p.add_argument(
            "--format",
            choices=FORMATS,
            default="png",
            help="file format of the figures (curves.*, and regret.* on a tabular benchmark; default png)",
        )
        p.add_argument("--no-plot", action="store_true", help="skip the figures")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.common.distributed import world_from_env
        from nasframe.common.errors import ConfigError
        from nasframe.compare.comparison import run_comparison
        from nasframe.compare.execution import ExecutorChoice
        from nasframe.compare.plan import make_plan
        from nasframe.search.config import load_yaml

        if world_from_env().size > 1:
            raise ConfigError(
                "nasframe compare does not run under torchrun (every process would write the summary); run it "
                "directly, with --executor ray to spread its runs"
            )

        config = load_yaml(args.config) if args.config else {}
        plan = make_plan(
            config,
            strategies=args.strategies,
            seeds=args.seeds,
            budget=args.budget,
            out=args.out,
            names={"space": args.space, "evaluator": args.evaluator},
            sets=args.set,
            data=args.data,
            plugins=args.plugin,
        )
        _say(
            f"comparison folder: {plan.out} ({len(plan.strategies)} strategies x {len(plan.seeds)} seeds, "
            f"budget {plan.budget})"
        )
        try:
            executor = ExecutorChoice(args.executor, args.parallel, args.address)
            result = run_comparison(
                plan,
                tensorboard=not args.no_tensorboard,
                plot=not args.no_plot,
                say=_say,
                executor=executor,
                figure_format=args.format,
            )
        except KeyboardInterrupt as exc:
            return interrupted(exc, f"run the same command again (with --out {plan.out}) to continue")
        print(result.table)
        _print_tests(result)
        if result.fronts is not None:
            print("\n" + "\n".join(result.fronts.lines()))
        print(f"\n{_closing_line(result, args)}")
        return 0


def _print_tests(result: Comparison) -> None:
    """The pairwise tests after the table: all of them when few, else where to find them."""
    from nasframe.compare.comparison import PAIRS_CSV, SUMMARY_MD

    if not result.tests:
        return
    shown = result.tests if len(result.tests) <= _PAIRS_SHOWN else []
    print("\nMann-Whitney U, two-sided, on the final accuracies per seed:" if shown else "")
    for test in shown:
        print(f"  {test.line()}")
    if not shown:
        print(f"{len(result.tests)} pairwise Mann-Whitney tests: see {SUMMARY_MD} and {PAIRS_CSV}")


def _closing_line(result: Comparison, args: argparse.Namespace) -> str:
    from nasframe.compare.comparison import PAIRS_CSV, RUNS_CSV, SUMMARY_CSV, SUMMARY_MD

    done = result.actions
    files = [SUMMARY_CSV, SUMMARY_MD, RUNS_CSV, PAIRS_CSV] + [f.file for f in result.figures]
    if result.fronts is not None:
        from nasframe.compare.fronts import FRONTS_FIGURE, HYPERVOLUME_CSV

        files += [HYPERVOLUME_CSV] + ([] if args.no_plot else [FRONTS_FIGURE])
    return (
        f"{sum(done.values())} runs ({done['ran']} new, {done['resumed']} resumed, {done['done']} already "
        f"done) in {result.seconds:.1f} s; files in {result.plan.out}: {', '.join(files)}"
        + ("" if args.no_tensorboard else ", tensorboard/")
    )


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
