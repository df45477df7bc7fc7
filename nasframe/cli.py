"""The `nasframe` command line: run, resume, show, list, inspect, compare.

Every usage or input error prints one line to stderr and exits with code 2; `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nasframe.compare import CompareCommand
from nasframe.errors import ConfigError, NasframeError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message} (see {self.prog} --help)")


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_PATH",
                   help="import a module or .py file that registers components (repeatable)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return p


def _config_flags(p: argparse.ArgumentParser, components: bool = True) -> None:
    if components:
        p.add_argument("--strategy", help="search strategy (nasframe list shows them); default mdenas")
        p.add_argument("--space", help="search space; default darts")
        p.add_argument("--evaluator", help="evaluator; default short_train")
    p.add_argument("--config", metavar="FILE", help="YAML file with strategy/space/evaluator/data/run sections")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any option, e.g. --set strategy.lr=0.02 (repeatable; value read as YAML)")
    p.add_argument("--data", metavar="NAME", help="data set (digits, fashion_mnist, cifar10, ...); default digits")


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
        _config_flags(p)
        p.add_argument("--seed", type=int, help="run seed (default 0)")
        p.add_argument("--out", metavar="DIR", help="run directory (default runs/<time>-<names>)")
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto: CUDA when present")
        p.add_argument("--budget", type=int, metavar="N", help="shorthand for --set run.max_evaluations=N")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.runner import Runner

        flags = {"seed": args.seed, "out": args.out, "device": args.device, "max_evaluations": args.budget}
        runner = Runner.create(build_config(args, flags), quiet=args.quiet)
        _say(f"run directory: {runner.run_dir}")
        return _execute(runner)


class ResumeCommand:
    """Continue a killed or interrupted run from its last checkpoint."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("run_dir", metavar="RUN_DIR")
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the run's device")
        p.add_argument("--budget", type=int, metavar="N", help="raise the evaluation budget (extends a finished run)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.runner import Runner

        overrides = {"device": args.device, "max_evaluations": args.budget}
        runner = Runner.resume(args.run_dir, overrides=overrides, quiet=args.quiet)
        _say(f"resuming {runner.run_dir}")
        return _execute(runner)


def _execute(runner: Any) -> int:
    try:
        summary = runner.run()
    except KeyboardInterrupt:
        _say(f"interrupted; continue with: nasframe resume {runner.run_dir}")
        return 130
    _print_best(summary.best, summary.run_dir)
    return 0


def _print_best(best: dict[str, Any], run_dir: Path) -> None:
    print(f"run: {run_dir}")
    print(f"evaluations: {best.get('evaluations')}  stopped: {best.get('stopped_because')}")
    cost = best.get("cost") or {}
    print(f"cost: {cost.get('seconds', 0):.1f} s evaluating, {cost.get('epochs', 0):g} epochs, "
          f"{cost.get('wall_seconds', 0):.1f} s wall")
    be = best.get("best_evaluated")
    if be:
        acc = (be.get("metrics") or {}).get("val_acc")
        print(f"best evaluated: #{be['index']} val_acc={acc}")
    final = best.get("final")
    if final:
        metrics = final.get("metrics") or {}
        held = final.get("held_out") or {}
        line = ", ".join(f"{k}={v:.4g}" for k, v in {**metrics, **held}.items() if isinstance(v, (int, float)))
        print(f"final architecture: {line or '(not evaluated)'}")
        for key, value in (final.get("export") or {}).items():
            if isinstance(value, (str, int, float)):
                print(f"  {key}: {value}")
    print(f"details: {run_dir / 'best.json'}")


class ShowCommand:
    """Show a run: what ran, its best architecture, metrics and cost."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("run_dir", metavar="RUN_DIR")
        p.add_argument("--json", action="store_true", help="print best.json (or progress so far) as JSON")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.errors import RunDirError

        run_dir = Path(args.run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise RunDirError(f"{run_dir}: not a run directory (no config.yaml)")
        best_path = run_dir / "best.json"
        if best_path.is_file():
            best = json.loads(best_path.read_text())
            if args.json:
                print(json.dumps(best, indent=2))
                return 0
            cfg = _read_config(run_dir)
            print(f"{cfg['strategy']['name']} / {cfg['space']['name']} / {cfg['evaluator']['name']} "
                  f"on {cfg['data']['name']}, seed {cfg['run']['seed']}")
            _print_best(best, run_dir)
            return 0
        text = (run_dir / "history.jsonl").read_text() if (run_dir / "history.jsonl").exists() else ""
        # a killed run may have left half a line at the end: only complete lines count
        records = [json.loads(x) for x in text.split("\n")[:-1] if x.strip()]
        ok = [r for r in records if r["status"] == "ok"]
        top = max(ok, key=lambda r: r["metrics"].get("val_acc", float("-inf"))) if ok else None
        progress = {"finished": False, "evaluations": len(records), "failed": len(records) - len(ok),
                    "best_so_far": top}
        if args.json:
            print(json.dumps(progress, indent=2))
        else:
            print(f"{run_dir}: unfinished, {len(records)} evaluations logged ({progress['failed']} failed)")
            if top:
                print(f"best so far: #{top['index']} val_acc={top['metrics'].get('val_acc')}")
            print(f"continue with: nasframe resume {run_dir}")
        return 0


def _read_config(run_dir: Path) -> dict[str, Any]:
    from nasframe.config import load_yaml

    return load_yaml(run_dir / "config.yaml")


class ListCommand:
    """List every registered strategy, space, evaluator and data set with its options."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("kind", nargs="?", choices=["strategies", "spaces", "evaluators", "datasets"],
                       help="only this kind")
        p.add_argument("--brief", action="store_true", help="names and descriptions only")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.data import DataOptions
        from nasframe.options import describe_options
        from nasframe.registry import datasets, evaluators, spaces, strategies

        kinds = {"strategies": strategies, "spaces": spaces, "evaluators": evaluators, "datasets": datasets}
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
                if getattr(cls, "requires", None):
                    extra = f" (needs: {', '.join(sorted(cls.requires))})"
                if getattr(cls, "capabilities", None):
                    extra = f" (offers: {', '.join(sorted(cls.capabilities))})"
                print(f"  {name}: {reg.describe(name)}{extra}")
                if args.brief or title == "datasets":
                    continue
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
        p.add_argument("--data", metavar="NAME",
                       help="data set whose input size and classes to use (default: the space's reference, "
                            "e.g. cifar10 for darts)")
        p.add_argument("--set", action="append", default=[], metavar="space.KEY=VALUE",
                       help="space option, e.g. --set space.C=36 --set space.layers=20")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--plot", metavar="FILE.png", help="draw the architecture to an image")
        p.add_argument("--no-macs", action="store_true", help="skip the MAC count (faster for large nets)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.config import parse_set
        from nasframe.data import DataOptions, DataSource
        from nasframe.options import build_options, options_to_dict
        from nasframe.registry import spaces

        cls = spaces.get(args.space)
        values: dict[str, Any] = dict(cls.options_for_arch(args.arch) or {}) if args.arch else {}
        for item in args.set:
            section, key, value = parse_set(item)
            if section != "space":
                raise ConfigError(f"--set {item!r}: inspect takes only space.* options")
            values[key] = value
        space = cls(build_options(cls.Options, values, "space"))
        data_name = args.data or cls.reference_data
        spec = DataSource(build_options(DataOptions, {"name": data_name}, "data"), seed=0).spec
        info: dict[str, Any] = {"space": args.space, "options": options_to_dict(space.options),
                                "decisions": len(space.decisions), "size": space.size(),
                                "log10_size": round(space.log10_size(), 3), "data": data_name,
                                "input_shape": list(spec.input_shape), "num_classes": spec.num_classes}
        text = args.arch
        if args.arch_file:
            text = _arch_text_from_file(args.arch_file)
        if text is None:
            info["named_architectures"] = sorted(space.named_architectures())
        else:
            arch = space.parse_arch(text)
            named = {a: n for n, a in space.named_architectures().items()}
            if arch in named:
                info["name"] = named[arch]
            info["params"], macs = _count(space, arch, spec, with_macs=not args.no_macs)
            if macs is not None:
                info["macs"] = macs
            info["arch"] = arch.to_dict()
            info["export"] = space.export(arch)
            if args.plot:
                space.plot(arch, args.plot)
                info["plot"] = args.plot
        if args.json:
            print(json.dumps(info, indent=2, default=str))
            return 0
        for key in ("space", "name", "data", "input_shape", "decisions", "size", "params", "macs", "plot"):
            if key in info:
                value = info[key]
                if key == "size" and value >= 1e12:
                    value = f"{value:.3e} architectures"
                elif key in ("params", "macs", "size") and isinstance(value, int):
                    value = f"{value:,}" + (f" ({value / 1e6:.2f}M)" if value >= 1e6 else "")
                print(f"{key}: {value}")
        for key, value in (info.get("export") or {}).items():
            if isinstance(value, (str, int, float)):
                print(f"{key}: {value}")
        if "named_architectures" in info:
            print(f"named architectures: {', '.join(info['named_architectures']) or '(none)'}")
        return 0


def _count(space: Any, arch: Any, spec: Any, with_macs: bool) -> tuple[int, int | None]:
    """Parameters and MACs, computed on the meta device (shapes only: fast, no memory) when the
    space's network supports it, else on the CPU."""
    import torch

    from nasframe.model_stats import count_macs, count_parameters

    try:
        with torch.device("meta"):
            model = space.build(arch, spec)
        return count_parameters(model), count_macs(model, spec.input_shape) if with_macs else None
    except (RuntimeError, NotImplementedError, TypeError):
        model = space.build(arch, spec)
        return count_parameters(model), count_macs(model, spec.input_shape) if with_macs else None


def _arch_text_from_file(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--arch-file {path!r} does not exist")
    text = p.read_text()
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--arch-file {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, dict) and isinstance(data.get("final"), dict):  # a run's best.json
            data = data["final"]["arch"]
        return json.dumps(data)
    return text


COMMANDS: dict[str, Any] = {
    "run": RunCommand,
    "resume": ResumeCommand,
    "show": ShowCommand,
    "list": ListCommand,
    "inspect": InspectCommand,
    "compare": CompareCommand,
}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_parser() -> argparse.ArgumentParser:
    from nasframe import __version__

    parser = _Parser(prog="nasframe", description="Neural architecture search with pluggable spaces, evaluators "
                     "and strategies.")
    parser.add_argument("--version", action="version", version=f"nasframe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    common = _common()
    for name, cmd in COMMANDS.items():
        doc = (cmd.__doc__ or "").strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=doc, parents=[common])
        cmd.add_arguments(p)
        p.set_defaults(_cmd=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = make_parser().parse_args(argv)
        _load_plugins(args)
        return int(args._cmd.run(args) or 0)
    except NasframeError as exc:
        if debug:
            raise
        print(f"nasframe: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable --out, missing permissions, full disk: the user's to fix
        if debug:
            raise
        print(f"nasframe: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if isinstance(exc.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
