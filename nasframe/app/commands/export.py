"""`nasframe export`: a trained network or a run's answer as ONNX, TorchScript or JSON."""

from __future__ import annotations

import argparse

from nasframe.app.console import say


class ExportCommand:
    """Export a trained network (a training folder) or a run's untrained answer to ONNX, TorchScript or JSON."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        from nasframe.training.export import FORMATS

        p.add_argument("folder", metavar="RUN_DIR|TRAIN_DIR")
        p.add_argument("--format", required=True, metavar="FORMAT", help=f"one of {', '.join(FORMATS)}")
        p.add_argument(
            "--out", metavar="FILE", help="output file (default: model.onnx, model.pt or architecture.json inside)"
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.training.export import export

        path, loaded, diff = export(args.folder, args.format, args.out)
        if not loaded.trained:
            say(f"note: {args.folder} is a search run with no trained weights; exported the untrained network")
        print(f"wrote {path}")
        if diff is not None:
            print(f"checked: loaded back, max abs difference from PyTorch {diff:.3g}")
        return 0
