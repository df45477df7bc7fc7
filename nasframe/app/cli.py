"""The `nasframe` command line: run, resume, show, list, inspect, compare, train, export, report, latency,
latency-table.

One module per command under `nasframe.app.commands`, each a class with `add_arguments(parser)` and
`run(args) -> int`. Every usage or input error prints one line to stderr and exits with code 2, and so
does an exception or `sys.exit` inside a component (a plugin): the line names the component, the method
and the exception. `--debug` shows the traceback instead. Ctrl-C (or a KeyboardInterrupt from a plugin)
ends with 130, SIGTERM with 143, each after one line. Commands import torch and the components only
inside `run`, so `--help` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from nasframe.app.commands.compare import CompareCommand
from nasframe.app.commands.export import ExportCommand
from nasframe.app.commands.inspect import InspectCommand
from nasframe.app.commands.latency import LatencyCommand
from nasframe.app.commands.latency_table import LatencyTableCommand
from nasframe.app.commands.listing import ListCommand
from nasframe.app.commands.report import ReportCommand
from nasframe.app.commands.run import ResumeCommand, RunCommand
from nasframe.app.commands.show import ShowCommand
from nasframe.app.commands.train import TrainCommand
from nasframe.common.errors import ConfigError, NasframeError, Terminated


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
    from nasframe.common.plugins import load_plugin

    for spec in args.plugin:
        load_plugin(spec)


COMMANDS: dict[str, Any] = {
    "run": RunCommand,
    "resume": ResumeCommand,
    "show": ShowCommand,
    "list": ListCommand,
    "inspect": InspectCommand,
    "compare": CompareCommand,
    "train": TrainCommand,
    "export": ExportCommand,
    "latency": LatencyCommand,
    "latency-table": LatencyTableCommand,
    "report": ReportCommand,
}

#: commands whose config resolution loads the plugins (so the CLI does not load them first)
RESOLVING = (RunCommand, ResumeCommand, CompareCommand)


def _one_line(message: str) -> str:
    """`message` with every character that would break or hide the line (newlines, other line and
    record separators, control characters a user's input may carry) written as an escape."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


def make_parser() -> argparse.ArgumentParser:
    from nasframe.common.version import __version__

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
    _tolerant_stdout()
    try:
        try:
            args = make_parser().parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0) if isinstance(exc.code, int) else 0
        args.command_line = ["nasframe", *argv]  # recorded in run.json
        with _sigterm_interrupts():
            if args._cmd not in RESOLVING:  # these load --plugin modules with the rest of the config, once
                _load_plugins(args)
            return int(args._cmd.run(args) or 0)
    except NasframeError as exc:
        if debug:
            raise
        return _error(str(exc))
    except OSError as exc:  # unwritable --out, missing permissions, full disk: the user's to fix
        if debug:
            raise
        return _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except KeyboardInterrupt as exc:  # a command that did not say how to continue
        if debug:
            raise
        print(f"nasframe: {'terminated (SIGTERM)' if isinstance(exc, Terminated) else 'interrupted'}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except (Exception, SystemExit) as exc:  # inside a component (a plugin): one line; else nasframe's own bug
        from nasframe.core.faults import fault_of

        fault = fault_of(exc)
        if fault is None or debug:
            raise
        return _error(str(fault))
    finally:
        if "torch.distributed" in sys.modules:  # a run under torchrun joined a process group: leave it
            from nasframe.common.distributed import shutdown

            shutdown()


def _error(message: str) -> int:
    print(f"nasframe: error: {_one_line(message)}", file=sys.stderr)
    return 2


def _tolerant_stdout() -> None:
    """Print a path that is not valid UTF-8 (its bytes carried as surrogates) with escapes rather than
    fail on it after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            reconfigure(errors="backslashreplace")


class _sigterm_interrupts:
    """While a command runs, SIGTERM stops it as Ctrl-C does (`Terminated`, a KeyboardInterrupt): the
    last consistent state is checkpointed and one line says how to continue. The main thread only."""

    def __enter__(self) -> None:
        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _terminate)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


if __name__ == "__main__":
    sys.exit(main())
