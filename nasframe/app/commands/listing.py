"""`nasframe list`: every registered component with its options."""

from __future__ import annotations

import argparse
from typing import Any

from nasframe.app.commands.inspect import names_text
from nasframe.common.errors import NasframeError


class ListCommand:
    """List every registered strategy, space, evaluator and data set with its options."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "kind", nargs="?", choices=["strategies", "spaces", "evaluators", "datasets"], help="only this kind"
        )
        p.add_argument("--brief", action="store_true", help="names and descriptions only")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.common.options import describe_options
        from nasframe.common.plugins import Registry
        from nasframe.core.capabilities import capabilities_of, capability_names
        from nasframe.core.registry import evaluators, spaces, strategies
        from nasframe.data import DataOptions
        from nasframe.data.registry import datasets

        kinds: dict[str, Registry[Any]] = {
            "strategies": strategies,
            "spaces": spaces,
            "evaluators": evaluators,
            "datasets": datasets,
        }
        for title, reg in kinds.items():
            if args.kind and args.kind != title:
                continue
            print(f"{title}:")
            for name in reg.names():
                try:
                    cls = reg.get(name)
                except NasframeError as exc:  # one broken plugin must not hide the others
                    print(f"  {name}: (cannot load: {exc})")
                    continue
                extra = ""
                if title == "strategies" and cls.requires:
                    extra = f" (needs: {', '.join(capability_names(cls.requires))})"
                elif title == "evaluators" and capabilities_of(cls):
                    extra = f" (offers: {', '.join(capability_names(capabilities_of(cls)))})"
                print(f"  {name}: {reg.describe(name)}{extra}")
                if args.brief or title == "datasets":
                    continue
                if title == "spaces" and cls.published_names():
                    print(f"      named architectures: {names_text(cls.published_names())}")
                for line in describe_options(cls.Options):
                    print(f"      {line}")
        if not args.kind or args.kind == "datasets":
            if not args.brief:
                print("data options (data.*):")
                for line in describe_options(DataOptions):
                    print(f"      {line}")
        return 0
