"""`nasframe show`: a run's answer, or its progress so far."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nasframe.app.commands.run import print_result
from nasframe.app.console import fmt, say


class ShowCommand:
    """Show a run: what ran, its final architecture, metrics and cost (or its progress so far)."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("run_dir", metavar="RUN_DIR")
        p.add_argument("--json", action="store_true", help="print best.json (or progress so far) as JSON")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.common.checkpoint import RunLock
        from nasframe.search.rundir import RunDir

        files = RunDir(args.run_dir)
        files.require_run()
        if files.is_finished():
            result = files.read_result()
            if args.json:
                print(json.dumps(result.to_dict(), indent=2))
                return 0
            print(f"{result.strategy} / {result.space} / {result.evaluator} on {result.data}, seed {result.seed}")
            print_result(result, files.path)
            return 0
        records, damaged = files.readable_evaluations()
        if damaged:
            say(f"note: {damaged}")
        ok = [r for r in records if r.val_acc is not None]
        top = max(ok, key=lambda r: r.val_acc) if ok else None  # type: ignore[arg-type, return-value]
        holder = RunLock.holder(files.path)
        work = list(files.work_records())
        work_summary: dict[str, Any] = {
            "pieces": len(work),
            "epochs": sum(w.epochs for w in work),
            "last_phase": work[-1].phase if work else None,
        }
        failed = sum(r.status == "failed" for r in records)
        progress = {
            "finished": False,
            "running": holder,
            "evaluations": len(records),
            "failed": failed,
            "best_so_far": None if top is None else {"index": top.index, "arch": top.arch, "metrics": top.metrics},
            "work": work_summary,
        }
        if args.json:
            print(json.dumps(progress, indent=2))
            return 0
        state = f"running ({holder})" if holder else "unfinished"
        print(f"{files.path}: {state}, {len(records)} evaluations logged ({failed} failed)")
        if work:
            w = work_summary
            print(f"supernet work: {w['pieces']} pieces, {w['epochs']:g} epochs trained; last: {w['last_phase']}")
        if top is not None:
            print(f"best so far: #{top.index} val_acc={fmt(top.val_acc)}")
        if not holder:
            print(f"continue with: nasframe resume {files.path}")
        return 0
