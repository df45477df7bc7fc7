"""`nasframe latency-table`: time every block of a space on this machine, then fit and check the predictor."""

from __future__ import annotations

import argparse
import json
import sys

from nasframe.app import flags
from nasframe.app.commands.latency import add_measure_flags, settings_of, space_options
from nasframe.common.errors import ConfigError


class LatencyTableCommand:
    """Build a latency table for a space (each block timed once) and measure how well it predicts."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_measure_flags(p)
        p.add_argument("--out", required=True, metavar="FILE", help="the table file to write (JSON)")
        p.add_argument(
            "--table",
            metavar="FILE",
            help="reuse the blocks of this table (fit and check again) instead of timing them",
        )
        p.add_argument(
            "--calibrate",
            type=flags.non_negative_int,
            default=30,
            metavar="N",
            help="random whole networks the linear correction is fitted on (default 30; 0: none)",
        )
        p.add_argument(
            "--check",
            type=flags.non_negative_int,
            default=100,
            metavar="N",
            help="other random whole networks the prediction is checked on (default 100; 0: none)",
        )
        p.add_argument(
            "--seed", type=flags.non_negative_int, default=0, help="seed of the calibration draw (check: +1)"
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(command_name="latency-table")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from nasframe.common.progress import Progress
        from nasframe.search.latency_tools import make_table, space_for, spec_for, table_summary

        out = Path(args.out)
        if out.is_dir():
            raise ConfigError(f"latency-table: --out {out} is a folder; give a file name")
        if not out.parent.is_dir():
            raise ConfigError(f"latency-table: the folder of --out {out} does not exist")
        space = space_for(args.space, space_options(args))
        spec = spec_for(space, args.data)
        bars: dict[str, Progress] = {}

        def progress(done: int, total: int, what: str) -> None:
            label = "whole networks" if what == "whole networks" else "blocks"
            bar = bars.get(label)
            if bar is None:
                bar = bars[label] = Progress(label, total, 0, not args.no_progress, unit=label.split()[-1])
            if done:
                bar.update(1)
            if done >= total:
                bar.close()
                del bars[label]

        table = make_table(
            space,
            spec,
            settings_of(args),
            out,
            existing=args.table,
            calibrate_archs=args.calibrate,
            check_archs=args.check,
            seed=args.seed,
            progress=progress,
            say=lambda text: print(text, file=sys.stderr, flush=True),
        )
        if args.json:
            print(json.dumps({k: v for k, v in table.to_dict().items() if k != "entries"}, indent=2))
        else:
            for line in table_summary(table):
                print(line)
            print(f"written: {out}")
        return 0
