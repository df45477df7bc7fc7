"""`nasframe train`: retrain an architecture from scratch with a named recipe."""

from __future__ import annotations

import argparse

from nasframe.app import flags
from nasframe.app.console import interrupted, is_writer, say
from nasframe.common.errors import ConfigError


class TrainCommand:
    """Train an architecture from scratch with a named recipe (a run's answer, or --space with --arch)."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        from nasframe.training.recipes import describe_recipe, recipe_names

        p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a finished run: train its final architecture")
        p.add_argument("--space", help="search space of --arch (instead of RUN_DIR)")
        p.add_argument("--arch", help="a named architecture, a JSON mapping, the space's text form, or a file")
        p.add_argument("--resume", metavar="TRAIN_DIR", help="continue a killed training from its last epoch")
        recipes = "; ".join(f"{n}: {describe_recipe(n)}" for n in recipe_names())
        p.add_argument("--recipe", default="quick", metavar="NAME", help=f"training recipe (default quick). {recipes}")
        p.add_argument("--data", metavar="NAME", help="data set (default: the run's, or digits)")
        p.add_argument("--out", metavar="DIR", help="training folder (default runs/train-<time>-<space>-<recipe>)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override a recipe, space or data option, e.g. --set recipe.epochs=50 --set space.C=36 "
            "(repeatable; value read as YAML)",
        )
        flags.add_device(p)
        flags.add_threads(p)
        p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard event files")
        flags.add_quiet(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.training.plan import plan_training
        from nasframe.training.trainer import Trainer

        options = {"device": args.device or "auto", "quiet": args.quiet, "tensorboard": not args.no_tensorboard,
                   "threads": args.threads}  # fmt: skip
        if args.resume:
            if args.run_dir or args.space or args.arch or args.set or args.data or args.out:
                raise ConfigError("train --resume takes only the training folder (and --device, --threads, --quiet)")
            trainer = Trainer.resume(args.resume, **options)
            say(f"resuming {trainer.out}")
        else:
            plan = plan_training(
                args.run_dir,
                space=args.space,
                arch=args.arch,
                recipe=args.recipe,
                data=args.data,
                sets=args.set,
                plugins=args.plugin,
            )
            trainer = Trainer.create(plan, args.out, **options)
            say(f"training folder: {trainer.out}")
        try:
            result = trainer.run()
        except KeyboardInterrupt as exc:
            return interrupted(exc, f"continue with: nasframe train --resume {trainer.out}")
        from nasframe.core.costs import format_count

        if not is_writer():
            return 0
        macs = f"  MACs: {format_count(result.macs)}" if result.macs is not None else ""
        print(f"trained {result.epochs} epochs in {result.seconds:.1f} s: train loss {result.train_loss:.4f}")
        print(f"test accuracy: {result.test_acc:.2f}%  test loss: {result.test_loss:.4f}")
        print(f"params: {format_count(result.params)}{macs}")
        print(f"weights: {result.out / 'model.safetensors'}  (architecture and recipe: {result.out / 'model.json'})")
        return 0
