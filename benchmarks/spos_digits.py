"""Why SPOS' default run on digits scores what it scores: the best-scored architecture of a SPOS run
folder measured several ways, side by side, from the run's own final checkpoint.

    .venv/bin/python benchmarks/spos_digits.py RUN_DIR [--standalone-epochs 10]

Rows: the score the run reports (shared weights, BatchNorm recalibrated as SPOS does: 200 batches of
128, exponential average 0.1); recalibrated with the cumulative average instead; not recalibrated;
the same path's accuracy on the images it trained on (search-train), which tells underfitting from
overfitting; and the architecture trained on its own from scratch (short_train) for comparison.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nasframe.core.capabilities import BNRecalibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--standalone-epochs", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from nasframe.core.registry import evaluators
    from nasframe.search.loop_state import read_checkpoint
    from nasframe.search.runner import Runner
    from nasframe.training.measure import validate

    runner = Runner.resume(args.run_dir, quiet=True)
    found = read_checkpoint(runner.files, runner.config.names, print)
    assert found is not None, "no checkpoint"
    runner.load_state_dict(*found)
    records = [r for r in runner.files.evaluations() if r.val_acc is not None]
    best = max(records, key=lambda r: r.val_acc or 0.0)
    arch = runner.parts.space.validate(best.arch)
    ev = runner.parts.evaluator
    rows = [("reported by the run (history.jsonl)", best.val_acc)]
    for label, recal in (
        ("shared weights, recalibrated (200 x 128, momentum 0.1)", BNRecalibration(200, 0.1, 128)),
        ("shared weights, recalibrated (200 x 128, cumulative)", BNRecalibration(200, None, 128)),
        ("shared weights, not recalibrated", None),
    ):
        torch.manual_seed(0)
        rows.append((label, ev.score_path(arch, recal).metrics["val_acc"]))
    torch.manual_seed(0)
    ev.score_path(arch, BNRecalibration(200, 0.1, 128))  # statistics as scored, then the train images in order
    batches, transform = ev._data()
    data = batches.data
    train = ((data.train_x[i : i + 256], data.train_y[i : i + 256]) for i in range(0, batches.n_train, 256))
    rows.append(
        ("shared weights, on search-train (recalibrated)", validate(ev.supernet, train, transform, ev.device, False)[0])
    )
    cls = evaluators.get("short_train")
    alone = cls(
        runner.parts.space, cls.Options(epochs=args.standalone_epochs, test_metrics=False), data=runner.parts.data
    )
    torch.manual_seed(0)
    start = time.perf_counter()
    score = alone.evaluate(arch).metrics["val_acc"]
    seconds = time.perf_counter() - start
    rows.append((f"stand-alone, trained {args.standalone_epochs:g} epochs (short_train, {seconds:.0f} s)", score))
    work = list(runner.files.work_records())
    print(
        f"run {args.run_dir}: {sum(w.epochs for w in work):g} supernet epochs, last train_loss "
        f"{work[-1].metrics.get('train_loss', float('nan')):.3f}; best-scored architecture #{best.index}"
    )
    print("| measured | search-val accuracy (%) |\n|---|---:|")
    for label, value in rows:
        print(f"| {label} | {value:.2f} |")


if __name__ == "__main__":
    main()
