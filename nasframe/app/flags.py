"""Command-line flags shared by `run`, `resume` and `compare`, declared once.

Each function adds one group of flags to a parser; the commands combine them, so a flag means the
same thing, with the same help and checks, wherever it appears.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_at_least(lowest: int) -> Callable[[str], int]:
    """An argparse type for whole numbers >= `lowest` (argparse names the flag in the message)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {value}")
        if value > 2**63 - 1:  # what the options these flags set take (nasframe.common.options.INT_LIMIT)
            raise argparse.ArgumentTypeError(f"must be at most {2**63 - 1}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def add_components(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", help="search space (nasframe list spaces); default darts")
    p.add_argument("--evaluator", help="evaluator (nasframe list evaluators); default short_train")
    p.add_argument("--data", metavar="NAME", help="data set (digits, fashion_mnist, cifar10, ...); default digits")


def add_config(p: argparse.ArgumentParser, set_help: str | None = None, config_help: str | None = None) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help=config_help or "YAML file with strategy/space/evaluator/data/run/constraints sections",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=set_help
        or "override any option, e.g. --set strategy.lr=0.02 (repeatable; value read as "
        "YAML; counts may be written 330e6 or 330M)",
    )


def add_budget(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument(
        "--budget",
        type=positive_int,
        metavar="N",
        help=help or "evaluations: shorthand for --set run.max_evaluations=N",
    )


def add_device(p: argparse.ArgumentParser, help: str = "default auto: CUDA when present") -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=help)


def add_executor(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="where evaluations run (run.executor; never changes results); ray: see docs/distributed.md",
    )
    p.add_argument("--address", metavar="HOST:PORT", help="ray: an existing cluster (run.address; default: start one)")


def thread_setting(text: str) -> int | str:
    """An argparse type for a CPU thread count: `auto` or a whole number >= 1."""
    return "auto" if text == "auto" else positive_int(text)


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=thread_setting,
        default="auto",
        metavar="N|auto",
        help="torch's CPU threads (default auto: 1, or OMP_NUM_THREADS when set), as run.threads for a search; "
        "one thread stays fast when other work shares the cores (docs/benchmarks-cpu.md)",
    )


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar and no notes")
