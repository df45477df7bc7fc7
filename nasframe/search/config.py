"""Run configuration: YAML sections plus CLI overrides, checked against each component's Options.

A run is described by six sections: `strategy`, `space`, `evaluator`, `data`, `run` and
`constraints`. The first three hold a `name` plus that component's options; the others have fixed
options. A
top-level `plugins` list names modules or files to import first. `--set section.key=value`
overrides any option; the value is read as YAML (`0.02`, `true`, `[1, 2]`).
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options, cut, option, options_to_dict
from nasframe.data import DataOptions
from nasframe.search.constraints import ConstraintOptions

if TYPE_CHECKING:
    from nasframe.core.evaluator import Evaluator
    from nasframe.core.space import SearchSpace
    from nasframe.core.strategy import Strategy

SECTIONS = ("strategy", "space", "evaluator", "data", "run", "constraints")
COMPONENT_SECTIONS = ("strategy", "space", "evaluator")
DEFAULT_NAMES = {"strategy": "mdenas", "space": "darts", "evaluator": "short_train"}


#: settings `resume --set` may change: where things are and how they are shown, never results so far
RESUME_SETTABLE: dict[str, set[str]] = {
    "run": {
        "device",
        "progress",
        "tensorboard",
        "tensorboard_interval",
        "checkpoint_every",
        "checkpoint_seconds",
        "max_evaluations",
        "max_epochs",
        "max_seconds",
        "executor",
        "address",
        "task_cpus",
        "task_gpus",
        "evaluation_timeout_s",
    },
    "data": {"root", "workers", "download"},
    "constraints": {"max_rejections"},
}


@dataclass(frozen=True)
class RunOptions:
    """The `run:` section: budget, seeding, files and display."""

    seed: int = option(0, "seed of every random choice (strategy, split, weights, data order)", min=0)
    max_evaluations: int | None = option(20, "stop after this many evaluations (null: no limit)", min=1)
    max_epochs: float | None = option(
        None, "stop once evaluations and supernet work have trained this many epochs in all", min=0
    )
    max_seconds: float | None = option(None, "stop after this much wall time, resumed time included", min=0)
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto uses CUDA when present, else the CPU")
    out: str | None = option(None, "run directory (default: runs/<time>-<strategy>-<space>-<evaluator>)")
    runs_root: str = option("runs", "parent folder of run directories named by default")
    checkpoint_every: int | None = option(None, "checkpoint after this many evaluations", min=1)
    checkpoint_seconds: float = option(30.0, "also checkpoint when this much time passed since the last", min=0)
    work_chunk_epochs: float = option(
        1.0,
        "one-shot strategies: supernet training is executed (and checkpointed) in pieces of at most this many epochs",
        min=0.001,
    )
    final_evaluation: Literal["auto", "always", "never"] = option(
        "auto",
        "evaluate the returned architecture once more at the end with the run's evaluator; auto: only "
        "when the search never evaluated it (e.g. MDENAS' most likely architecture)",
    )
    tensorboard: bool = option(True, "write TensorBoard event files into the run directory")
    tensorboard_interval: float = option(
        0.02, "log per-evaluation scalars at most this often, in seconds (new bests are always logged)", min=0
    )
    progress: bool = option(True, "show a progress bar on a terminal")
    threads: int | Literal["auto"] = option(
        "auto",
        "CPU threads of torch's intra- and inter-op pools; auto: 1, or "
        "OMP_NUM_THREADS when set (see nasframe/common/threads.py)",
        min=1,
    )
    executor: Literal["local", "ray"] = option(
        "local",
        "where evaluations run: local (this process) or ray (Ray tasks, see docs/distributed.md); "
        "never changes results",
    )
    parallel: int = option(
        1,
        "evaluations kept in flight; strategies that propose ahead (random, evolution) then propose before "
        "earlier results are in, so this changes what they propose (same with either executor)",
        min=1,
    )
    tell_order: Literal["submission", "completion"] = option(
        "submission",
        "submission: results are told and logged in the order proposed (reproducible); completion: as they "
        "finish (more throughput with ray, not reproducible)",
    )
    address: str | None = option(None, "ray: address of an existing cluster (null: start one on this machine)")
    task_cpus: float = option(1.0, "ray: CPUs reserved for each evaluation", min=0)
    task_gpus: float = option(0.0, "ray: GPUs reserved for each evaluation (fractions share a GPU)", min=0)
    evaluation_timeout_s: float | None = option(
        None, "stop an evaluation after this many seconds and record it as failed (null: no limit)", min=0.001
    )


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a mapping (empty for an empty file); every problem is one ConfigError line."""
    from nasframe.common.loading import load_yaml as load

    data = load(path, "config file", ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {', '.join(SECTIONS)}")
    return data


def parse_set(item: str, sections: tuple[str, ...] = SECTIONS) -> tuple[str, str, Any]:
    """`section.key=value` -> (section, key, YAML-parsed value); `sections` are the allowed sections."""
    if "=" not in item:
        raise ConfigError(f"--set {cut(repr(item))}: expected section.key=value, e.g. strategy.lr=0.02")
    path, raw = item.split("=", 1)
    if "." not in path:
        example = "run.seed=1" if "run" in sections else f"{sections[0]}.epochs=1"
        raise ConfigError(f"--set {cut(repr(item))}: key needs a section ({', '.join(sections)}), e.g. {example}")
    section, key = path.strip().split(".", 1)
    _check_section(section, sections)
    from nasframe.common.loading import parse_value

    value = None
    if raw.strip():
        readable, value = parse_value(raw, f"--set {path.strip()}", ConfigError)
        if not readable:
            value = raw
    if raw.strip() and value is None and raw.strip().lower() not in ("null", "~", "none"):
        value = raw
    if isinstance(value, str) and value.lower() == "none":
        value = None
    return section, key.strip(), value


def _check_section(section: str, sections: tuple[str, ...] = SECTIONS) -> None:
    if section not in sections:
        close = difflib.get_close_matches(section, sections, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown config section {cut(repr(section))}{hint} sections: {', '.join(sections)}")


def set_option(options: dict[str, Any], key: str, value: Any) -> None:
    """Put a `--set` value into a section's options. A dotted key sets one entry of a mapping option and
    keeps its other entries (`strategy.sampler_options.n_startup_trials=5`)."""
    head, _, rest = key.partition(".")
    if not rest:
        options[key] = value
        return
    inner = options.get(head)
    if inner is not None and not isinstance(inner, dict):
        raise ConfigError(f"--set ...{cut(key, 60)}: {head!r} holds {cut(repr(inner), 40)}, not a mapping")
    inner = options[head] = dict(inner or {})
    set_option(inner, rest, value)


def merge_config(
    base: dict[str, Any] | None = None,
    *,
    names: dict[str, str | None] | None = None,
    sets: list[str] | None = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Combine a YAML mapping, component names from flags, `--set` items and run flags (in that order
    of increasing precedence, except --set which wins over everything)."""
    cfg: dict[str, Any] = copy.deepcopy(base or {})
    for section in cfg:
        if not isinstance(section, str):
            raise ConfigError(f"config section {section!r}: section names are text ({', '.join(SECTIONS)})")
        if section != "plugins":
            _check_section(section)
    for section in SECTIONS:
        value = cfg.get(section)
        if value is None:
            cfg[section] = {}
        elif isinstance(value, str) and section in COMPONENT_SECTIONS:
            cfg[section] = {"name": value}
        elif not isinstance(value, dict):
            raise ConfigError(f"section {section!r} must be a mapping, got {value!r:.80}")
        elif not all(isinstance(key, str) for key in value):
            bad = next(key for key in value if not isinstance(key, str))
            raise ConfigError(f"section {section!r}: option names are text, got {bad!r:.80}")
    for section, name in (names or {}).items():
        if name is not None:
            cfg[section]["name"] = name
    for key, value in (run or {}).items():
        if value is not None:
            cfg["run"][key] = value
    for item in sets or []:
        section, key, value = parse_set(item)
        set_option(cfg[section], key, value)
    plugins = cfg.get("plugins", [])
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError("plugins: expected a list of module names or .py paths")
    cfg["plugins"] = plugins
    return cfg


@dataclass
class ResolvedConfig:
    """Names and checked options of every part of a run."""

    names: dict[str, str]
    options: dict[str, Any]  # section -> options dataclass instance
    plugins: list[str]
    classes: dict[str, type] = field(default_factory=dict)  # component section -> class, looked up once

    @property
    def strategy_class(self) -> type[Strategy[Any]]:
        return self.classes["strategy"]

    @property
    def space_class(self) -> type[SearchSpace[Any]]:
        return self.classes["space"]

    @property
    def evaluator_class(self) -> type[Evaluator[Any]]:
        return self.classes["evaluator"]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.plugins:
            out["plugins"] = list(self.plugins)
        for section in SECTIONS:
            entry: dict[str, Any] = {}
            if section in self.names:
                entry["name"] = self.names[section]
            entry.update(options_to_dict(self.options[section]))
            out[section] = entry
        return out


def resolve(cfg: dict[str, Any]) -> ResolvedConfig:
    """Check every section against its component's Options (loading plugins first)."""
    from nasframe.common.plugins import Registry, load_plugin
    from nasframe.core.registry import evaluators, spaces, strategies

    plugins = [_absolute_if_path(p) for p in cfg.get("plugins", [])]
    for plugin in plugins:
        load_plugin(plugin)
    registries: dict[str, Registry[Any]] = {"strategy": strategies, "space": spaces, "evaluator": evaluators}
    names: dict[str, str] = {}
    options: dict[str, Any] = {}
    classes: dict[str, type] = {}
    for section in COMPONENT_SECTIONS:
        values = dict(cfg.get(section) or {})
        name = values.pop("name", None) or DEFAULT_NAMES[section]
        if not isinstance(name, str):
            raise ConfigError(f"{section}.name: expected a string, got {cut(repr(name))}")
        if len(name) > 100:
            raise ConfigError(f"{section}.name: {cut(repr(name))} is too long for a component name")
        cls = registries[section].get(name)
        names[section] = name
        classes[section] = cls
        options[section] = build_options(cls.Options, values, section)
    options["data"] = build_options(DataOptions, cfg.get("data"), "data")
    if len(options["data"].name) > 100:
        raise ConfigError(f"data.name: {cut(repr(options['data'].name))} is too long for a data set name")
    options["run"] = build_options(RunOptions, cfg.get("run"), "run")
    options["constraints"] = build_options(ConstraintOptions, cfg.get("constraints"), "constraints")
    return ResolvedConfig(names, options, plugins, classes)


def _absolute_if_path(spec: str) -> str:
    """File plugins are recorded with absolute paths so `resume` works from any folder."""
    import os

    if spec.endswith(".py") or os.sep in spec:
        return os.path.abspath(spec)
    return spec


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
