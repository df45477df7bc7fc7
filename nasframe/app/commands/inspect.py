"""`nasframe inspect`: a space or one architecture, with counts, names and a drawing."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nasframe.common.errors import ConfigError


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
            from nasframe.search.answer import arch_text_from_file

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
    from nasframe.common.options import build_options, options_to_dict
    from nasframe.core.registry import spaces
    from nasframe.data import DataOptions, DataSource
    from nasframe.search.config import parse_set

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
    from nasframe.core.costs import count_network

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
