"""`nasframe latency`: the measured (or table-predicted) latency of one architecture on this machine."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nasframe.app import flags
from nasframe.common.errors import ConfigError


def add_measure_flags(p: argparse.ArgumentParser) -> None:
    """The flags that say what a latency is measured at and with (shared with `latency-table`)."""
    p.add_argument("--space", required=True, help="search space")
    p.add_argument("--set", action="append", default=[], metavar="space.KEY=VALUE", help="space option (repeatable)")
    p.add_argument(
        "--data",
        metavar="NAME",
        help="data set whose input size and classes to use (default: the space's reference, e.g. imagenet)",
    )
    p.add_argument("--runtime", default="torch", help="torch (default) or onnxruntime")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=flags.positive_int, default=1, metavar="N", help="runtime threads (default 1)")
    p.add_argument("--batch", type=flags.positive_int, default=1, metavar="N", help="images per forward (default 1)")
    p.add_argument(
        "--clock",
        default="wall",
        help="wall (default): elapsed time; cpu: the thread's CPU time (1 thread; steadier on a shared machine)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def settings_of(args: argparse.Namespace) -> Any:
    from nasframe.common.latency import LatencySettings

    return LatencySettings(
        runtime=args.runtime, device=args.device, threads=args.threads, batch=args.batch, clock=args.clock
    )


def space_options(args: argparse.Namespace) -> dict[str, Any]:
    from nasframe.search.config import parse_set

    values: dict[str, Any] = {}
    for item in args.set:
        section, key, value = parse_set(item)
        if section != "space":
            raise ConfigError(f"--set {item!r}: {args.command_name} takes only space.* options")
        values[key] = value
    return values


class LatencyCommand:
    """Measure one architecture's latency: warm-up, repeats until the median is stable, median and IQR."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_measure_flags(p)
        p.add_argument("--arch", help="a named architecture, a JSON mapping, or the space's text form")
        p.add_argument("--arch-file", metavar="FILE", help="read the architecture from a file (e.g. best.json)")
        p.add_argument("--table", metavar="FILE", help="predict from this latency table instead of measuring")
        p.add_argument(
            "--repeat", type=flags.positive_int, default=1, metavar="N", help="measure N times (how noisy is it?)"
        )
        p.set_defaults(command_name="latency")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.search.latency_tools import measure_latency, space_for, spec_for

        text = args.arch
        if args.arch_file:
            from nasframe.search.answer import arch_text_from_file

            text, _ = arch_text_from_file(args.arch_file)
        if text is None:
            raise ConfigError("latency: give --arch (a name, JSON mapping or text form) or --arch-file")
        settings = settings_of(args)
        space = space_for(args.space, space_options(args), text.strip())
        spec = spec_for(space, args.data)
        report = measure_latency(space, args.space, space.parse_arch(text), spec, settings, args.table, args.repeat)
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            print_report(report)
        return 0


def print_report(r: dict[str, Any]) -> None:
    shape = "x".join(map(str, r["input_shape"]))
    print(f"space: {r['space']}  input: {shape} ({r['data']}, {r['num_classes']} classes)")
    if r["source"] == "table":
        print(f"predicted latency: {r['latency_ms']:.3f} ms (sum of blocks {r['sum_of_blocks_ms']:.3f} ms)")
        print(f"table: {r['table_made']}")
        acc = r.get("accuracy")
        if acc:
            print(f"table accuracy on {acc['archs']} architectures: rho {acc['spearman']:.3f}, MAPE {acc['mape']:.1f}%")
        return
    s, env = r["settings"], r["environment"]
    for i, m in enumerate(r["measurements"]):
        head = "latency" if len(r["measurements"]) == 1 else f"run {i + 1}"
        print(
            f"{head}: median {m['median_ms']:.3f} ms, IQR {m['iqr_ms']:.3f} ms ({m['q1_ms']:.3f}-{m['q3_ms']:.3f}), "
            f"min {m['min_ms']:.3f} ms; {m['repeats']} calls, {'stable' if m['stable'] else 'NOT stable'}, "
            f"load {m['load']}"
        )
    if len(r["measurements"]) > 1:
        medians = [m["median_ms"] for m in r["measurements"]]
        spread = (max(medians) - min(medians)) / r["latency_ms"] * 100
        print(
            f"median of medians: {r['latency_ms']:.3f} ms; range {min(medians):.3f}-{max(medians):.3f} ({spread:.1f}%)"
        )
    print(
        f"runtime: {s['runtime']} on {s['device']}, {s['threads']} thread(s), batch {s['batch']}, {s['clock']} clock; "
        + ", ".join(f"{k} {env[k]}" for k in ("torch", "onnxruntime", "python") if k in env)
    )
    print(f"machine: {env.get('gpu') or env.get('cpu')} ({env.get('cores')} cores)")
    print(f"rule: {r['rule']}")
