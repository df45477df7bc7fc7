"""`nasframe report`: one self-contained HTML page about a run or a comparison."""

from __future__ import annotations

import argparse


class ReportCommand:
    """Write one self-contained HTML page about a run or a comparison (figures inline; no server, no network)."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("folder", metavar="RUN_DIR|COMPARE_DIR")
        p.add_argument("--out", metavar="FILE.html", help="the page (default: report.html inside the folder)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.report import write_report

        path = write_report(args.folder, args.out)
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB): open it in a browser")
        return 0
