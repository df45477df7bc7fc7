"""The `nasframe` command line: run, resume, show, list, inspect, compare, train, export.

Every usage or input error prints one line to stderr and exits with code 2; `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from nasframe import flags
from nasframe.compare import CompareCommand
from nasframe.errors import ConfigError, NasframeError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message} (see {self.prog} --help)")


def _common() -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE_OR_PATH",
        help="import a module or .py file that registers components (repeatable)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return p


def _load_plugins(args: argparse.Namespace) -> None:
    from nasframe.registry import load_plugin

    for spec in args.plugin:
        load_plugin(spec)


def build_config(args: argparse.Namespace, run_flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge --config, component flags, run flags and --set items into one config mapping."""
    from nasframe.config import load_yaml, merge_config

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
        from nasframe.runner import Runner

        run_flags = {"seed": args.seed, "out": args.out, "device": args.device, "max_evaluations": args.budget,
                     "executor": args.executor, "address": args.address}  # fmt: skip
        runner = Runner.create(build_config(args, run_flags), quiet=args.quiet, command=args.command_line)
        _say(f"run directory: {runner.run_dir}")
        return _execute(runner)


class ResumeCommand:
    """Continue a killed or interrupted run from its last checkpoint (or extend a finished one)."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        from nasframe.flags import RESUME_SETTABLE

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
        from nasframe.runner import Runner

        overrides = {"device": args.device, "max_evaluations": args.budget, "executor": args.executor,
                     "address": args.address}  # fmt: skip
        runner = Runner.resume(
            args.run_dir, overrides=overrides, sets=args.set, quiet=args.quiet, command=args.command_line
        )
        _say(f"resuming {runner.run_dir}")
        return _execute(runner)


def _execute(runner: Any) -> int:
    try:
        summary = runner.run()
    except KeyboardInterrupt:
        _say(f"interrupted; continue with: nasframe resume {runner.run_dir}")
        return 130
    if not _is_writer():
        return 0
    if not summary.ran:
        hint = " Raise --budget to extend it." if summary.stopped_because == "max_evaluations" else ""
        _say(f"nothing to do: {runner.run_dir} already finished ({summary.stopped_because}); nothing ran.{hint}")
    if summary.result is not None:
        _print_result(summary.result, summary.run_dir)
    return 0


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_result(result: Any, run_dir: Path) -> None:
    from nasframe.costs import format_count

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
    be = result.best_evaluated
    if be:
        print(f"best evaluated: #{be['index']} val_acc={_fmt((be.get('metrics') or {}).get('val_acc'))}")
    final = result.final
    if final is None:
        print("final architecture: none (nothing was evaluated successfully)")
    else:
        values = dict(final.metrics or {})
        if final.final_evaluation and final.final_evaluation.get("status") == "ok":
            values.update({f"final {k}": v for k, v in final.final_evaluation["metrics"].items()})
        values.update(final.held_out)
        line = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items() if isinstance(v, (int, float)))
        print(f"final architecture ({final.source}): {line or '(not evaluated)'}")
        if final.answer != "arch":
            print(f"  the answer is the space's derivation ({final.answer}); its numbers follow")
        if final.params is not None:
            print(f"  params: {format_count(final.params)}  MACs: {format_count(final.macs or 0)}")
        for key, value in final.export.items():
            if isinstance(value, (str, int, float)):
                print(f"  {key}: {value}")
    for name, alt in result.alternatives.items():
        values = {**(alt.get("metrics") or {}), **(alt.get("held_out") or {})}
        line = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items() if isinstance(v, (int, float)))
        seen = "evaluated during the search" if alt.get("evaluated") else "never evaluated during the search"
        print(f"alternative {name}: {seen}" + (f"; {line}" if line else ""))
    print(f"details: {run_dir / 'best.json'}")


class ShowCommand:
    """Show a run: what ran, its final architecture, metrics and cost (or its progress so far)."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("run_dir", metavar="RUN_DIR")
        p.add_argument("--json", action="store_true", help="print best.json (or progress so far) as JSON")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.checkpoint import RunLock
        from nasframe.rundir import RunDir

        files = RunDir(args.run_dir)
        files.require_run()
        if files.is_finished():
            result = files.read_result()
            if args.json:
                print(json.dumps(result.to_dict(), indent=2))
                return 0
            print(f"{result.strategy} / {result.space} / {result.evaluator} on {result.data}, seed {result.seed}")
            _print_result(result, files.path)
            return 0
        records, damaged = files.readable_evaluations()
        if damaged:
            _say(f"note: {damaged}")
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
            print(f"best so far: #{top.index} val_acc={_fmt(top.val_acc)}")
        if not holder:
            print(f"continue with: nasframe resume {files.path}")
        return 0


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
        from nasframe.data import DataOptions
        from nasframe.evaluator import capabilities_of, capability_names
        from nasframe.options import describe_options
        from nasframe.registry import Registry, datasets, evaluators, spaces, strategies

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


class InspectCommand:
    """Describe a space or one architecture: parameters (auxiliary heads excluded), MACs, name."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--space", required=True, help="search space")
        p.add_argument("--arch", help="a named architecture, a JSON mapping, or the space's text form")
        p.add_argument("--arch-file", metavar="FILE", help="read the architecture from a file (e.g. best.json)")
        p.add_argument(
            "--data",
            metavar="NAME",
            help="data set whose input size and classes to use (default: the space's reference, "
            "e.g. cifar10 for darts)",
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="space.KEY=VALUE",
            help="space option, e.g. --set space.C=36 --set space.layers=20",
        )
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--plot", metavar="FILE.png", help="draw the architecture to an image")
        p.add_argument("--no-macs", action="store_true", help="skip the MAC count (faster for large nets)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        space, spec, info = _inspect_space(args)
        text = args.arch
        if args.arch_file:
            text, source = arch_text_from_file(args.arch_file)
            if source:
                info["read"] = source
        if text is None:
            names, defined = space.architecture_names(), space.named_architectures()
            info["named_architectures"] = list(names)
            info["other_spellings"] = {name: list(spellings) for name, spellings in names.items() if spellings}
            info["named_on_other_options"] = [name for name in names if name not in defined]
        else:
            info.update(_inspect_arch(space, space.parse_arch(text), spec, args))
        if args.json:
            print(json.dumps(info, indent=2, default=str))
        else:
            _print_inspection(info)
        return 0


def _inspect_space(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The space built with the --arch's and --set's options, the data spec, and their description."""
    from nasframe.config import parse_set
    from nasframe.data import DataOptions, DataSource
    from nasframe.options import build_options, options_to_dict
    from nasframe.registry import spaces

    cls = spaces.get(args.space)
    name = (cls.published_name(args.arch) or args.arch) if args.arch else None
    values: dict[str, Any] = dict(cls.options_for_arch(name) or {}) if name else {}
    for item in args.set:
        section, key, value = parse_set(item)
        if section != "space":
            raise ConfigError(f"--set {item!r}: inspect takes only space.* options")
        values[key] = value
    space = cls(build_options(cls.Options, values, "space"))
    data_name = args.data or cls.reference_data
    spec = DataSource(build_options(DataOptions, {"name": data_name}, "data"), seed=0).spec
    info: dict[str, Any] = {
        "space": args.space,
        "options": options_to_dict(space.options),
        "decisions": len(space.decisions),
        "size": space.size(),
        "log10_size": round(space.log10_size(), 3),
        "data": data_name,
        "input_shape": list(spec.input_shape),
        "num_classes": spec.num_classes,
    }
    return space, spec, info


def _inspect_arch(space: Any, arch: Any, spec: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Name, counts, the space's export and (with --plot) a drawing of one architecture."""
    from nasframe.costs import count_network

    info: dict[str, Any] = {}
    named = {a: n for n, a in space.named_architectures().items()}
    if arch in named:
        info["name"] = named[arch]
    info["params"], macs = count_network(space, arch, spec, with_macs=not args.no_macs)
    if macs is not None:
        info["macs"] = macs
    info["arch"] = arch.to_dict()
    info["export"] = space.export(arch)
    if args.plot:
        space.plot(arch, args.plot)
        info["plot"] = args.plot
    return info


def _print_inspection(info: dict[str, Any]) -> None:
    for key in ("read", "space", "name", "data", "input_shape", "decisions", "size", "params", "macs", "plot"):
        if key in info:
            value = info[key]
            if key == "size" and value >= 1e12:  # beyond a float (multi-branch spaces): the exponent
                value = f"{value:.3e} architectures" if value < 1e300 else f"10^{info['log10_size']:g} architectures"
            elif key in ("params", "macs", "size") and isinstance(value, int):
                value = f"{value:,}" + (f" ({value / 1e6:.2f}M)" if value >= 1e6 else "")
            print(f"{key}: {value}")
    for key, value in (info.get("export") or {}).items():
        if isinstance(value, (str, int, float)):
            print(f"{key}: {value}")
    if "named_architectures" in info:
        spellings = info["other_spellings"]
        named = {name: spellings.get(name, ()) for name in info["named_architectures"]}
        print(f"named architectures: {names_text(named) or '(none)'}")
        if info["named_on_other_options"]:
            print(f"  on other space options, which --arch NAME sets: {', '.join(info['named_on_other_options'])}")


def names_text(names: dict[str, Any]) -> str:
    """'a, b (paper spelling), c': architecture names, each with its other spellings."""
    return ", ".join(name + (f" ({', '.join(spellings)})" if spellings else "") for name, spellings in names.items())


def arch_text_from_file(path: str) -> tuple[str, str | None]:
    """The architecture text in `path`, and which part of a run's best.json it came from.

    From a best.json, the space's derived architecture (`final.export.derived_arch`, e.g. the DARTS
    genotype derived from MDENAS' probabilities) is taken when the space gives one: that is the
    answer the run reports; otherwise the final architecture itself.
    """
    from nasframe.loading import parse_json, read_text

    p = Path(path)
    text = read_text(p, "--arch-file", ConfigError)
    if p.suffix != ".json":
        return text, None
    data = parse_json(text, f"--arch-file {path}", ConfigError)
    if isinstance(data, dict) and isinstance(data.get("final"), dict):  # a run's best.json
        from nasframe.rundir import RunResult, answer_of

        arch, where = answer_of(RunResult.from_dict(data, path))
        note = " (the space's derived architecture)" if where.startswith("final.export") else ""
        return json.dumps(arch), f"{path}: {where}{note}"
    return json.dumps(data), None


class TrainCommand:
    """Train an architecture from scratch with a named recipe (a run's answer, or --space with --arch)."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        from nasframe.recipes import describe_recipe, recipe_names

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
        p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard event files")
        flags.add_quiet(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.trainer import Trainer, plan_training

        options = {"device": args.device or "auto", "quiet": args.quiet, "tensorboard": not args.no_tensorboard}
        if args.resume:
            if args.run_dir or args.space or args.arch or args.set or args.data or args.out:
                raise ConfigError("train --resume takes only the training folder (and --device, --quiet)")
            trainer = Trainer.resume(args.resume, **options)
            _say(f"resuming {trainer.out}")
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
            _say(f"training folder: {trainer.out}")
        try:
            result = trainer.run()
        except KeyboardInterrupt:
            _say(f"interrupted; continue with: nasframe train --resume {trainer.out}")
            return 130
        from nasframe.costs import format_count

        if not _is_writer():
            return 0
        macs = f"  MACs: {format_count(result.macs)}" if result.macs is not None else ""
        print(f"trained {result.epochs} epochs in {result.seconds:.1f} s: train loss {result.train_loss:.4f}")
        print(f"test accuracy: {result.test_acc:.2f}%  test loss: {result.test_loss:.4f}")
        print(f"params: {format_count(result.params)}{macs}")
        print(f"weights: {result.out / 'model.safetensors'}  (architecture and recipe: {result.out / 'model.json'})")
        return 0


class ExportCommand:
    """Export a trained network (a training folder) or a run's untrained answer to ONNX, TorchScript or JSON."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        from nasframe.export import FORMATS

        p.add_argument("folder", metavar="RUN_DIR|TRAIN_DIR")
        p.add_argument("--format", required=True, metavar="FORMAT", help=f"one of {', '.join(FORMATS)}")
        p.add_argument(
            "--out", metavar="FILE", help="output file (default: model.onnx, model.pt or architecture.json inside)"
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.export import export

        path, loaded, diff = export(args.folder, args.format, args.out)
        if not loaded.trained:
            _say(f"note: {args.folder} is a search run with no trained weights; exported the untrained network")
        print(f"wrote {path}")
        if diff is not None:
            print(f"checked: loaded back, max abs difference from PyTorch {diff:.3g}")
        return 0


COMMANDS: dict[str, Any] = {
    "run": RunCommand,
    "resume": ResumeCommand,
    "show": ShowCommand,
    "list": ListCommand,
    "inspect": InspectCommand,
    "compare": CompareCommand,
    "train": TrainCommand,
    "export": ExportCommand,
}


#: commands whose config resolution loads the plugins (so the CLI does not load them first)
RESOLVING = (RunCommand, ResumeCommand, CompareCommand)


def _say(msg: str) -> None:
    if _is_writer():
        print(msg, file=sys.stderr, flush=True)


def _is_writer() -> bool:
    """Under torchrun, rank 0 alone prints results and notes (every process still prints its errors)."""
    if "nasframe.distributed" not in sys.modules:  # nothing joined a process group: torchrun's RANK decides
        return os.environ.get("RANK", "0").strip() in ("", "0")
    from nasframe.distributed import is_writer

    return is_writer()


def _one_line(message: str) -> str:
    """`message` with every character that would break or hide the line (newlines, other line and
    record separators, control characters a user's input may carry) written as an escape."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


def make_parser() -> argparse.ArgumentParser:
    from nasframe import __version__

    parser = _Parser(
        prog="nasframe", description="Neural architecture search with pluggable spaces, evaluators and strategies."
    )
    parser.add_argument("--version", action="version", version=f"nasframe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    common = _common()
    for name, cmd in COMMANDS.items():
        doc = (cmd.__doc__ or "").strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=doc, parents=[common])  # type: ignore[list-item]
        cmd.add_arguments(p)
        p.set_defaults(_cmd=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = make_parser().parse_args(argv)
        args.command_line = ["nasframe", *argv]  # recorded in run.json
        if args._cmd not in RESOLVING:  # these load --plugin modules with the rest of the config, once
            _load_plugins(args)
        return int(args._cmd.run(args) or 0)
    except NasframeError as exc:
        if debug:
            raise
        print(f"nasframe: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable --out, missing permissions, full disk: the user's to fix
        if debug:
            raise
        message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        print(f"nasframe: error: {_one_line(message)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if isinstance(exc.code, int) else 0
    finally:
        if "torch.distributed" in sys.modules:  # a run under torchrun joined a process group: leave it
            from nasframe.distributed import shutdown

            shutdown()


if __name__ == "__main__":
    sys.exit(main())
