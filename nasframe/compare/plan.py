"""What a comparison runs: a compare config plus command-line values become a `Plan`.

The plan is checked as a whole before anything runs: every listed strategy name (with a
did-you-mean for a misspelling), every option of the first seed's runs, and the run keys compare
sets itself. A mistake in the last strategy of the list must not surface after the first one ran.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasframe.common.errors import ConfigError

if TYPE_CHECKING:
    from nasframe.search.config import ResolvedConfig

# nasframe.search.config (and through it torch) is imported inside functions: `nasframe --help` stays fast.
SECTIONS = ("strategy", "space", "evaluator", "data", "run", "constraints")
#: keys of a compare YAML file besides the run sections
COMPARE_KEYS = ("strategies", "seeds", "budget", "out")
#: run options that compare sets itself, per run, and the flag that sets each
OWNED_RUN_KEYS = {"seed": "--seeds", "max_evaluations": "--budget", "out": "--out"}
DEFAULT_SEEDS = 5
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class StrategyEntry:
    """One compared strategy: its label (folder and table row), registered name and options."""

    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    #: this strategy's own evaluations per run (`budget:` in its entry), else the comparison's budget
    budget: int | None = None


@dataclass
class RunSpec:
    """One (strategy, seed) run: where it lives and the config it is created with."""

    label: str
    seed: int
    path: Path
    cfg: dict[str, Any]

    @property
    def budget(self) -> int:
        """Evaluations this run is given (run.max_evaluations)."""
        return int(self.cfg["run"]["max_evaluations"])


@dataclass
class Plan:
    """Everything a comparison runs: base config, strategies, seeds, budget, folder."""

    base: dict[str, Any]
    strategies: list[StrategyEntry]
    seeds: list[int]
    budget: int
    out: Path

    def budget_of(self, label: str) -> int:
        """Evaluations per run of the strategy labelled `label` (its own budget, else the comparison's)."""
        entry = next(e for e in self.strategies if e.label == label)
        return entry.budget if entry.budget is not None else self.budget

    @property
    def mixed_budgets(self) -> bool:
        """True when some strategy runs with another budget than the others."""
        return len({self.budget_of(e.label) for e in self.strategies}) > 1

    def runs(self) -> list[RunSpec]:
        """Seed-major order, so an interrupted comparison has every strategy at similar seed counts."""
        from nasframe.search.config import merge_config

        specs = []
        for seed in self.seeds:
            for entry in self.strategies:
                path = self.out / entry.label / f"seed-{seed}"
                budget = self.budget_of(entry.label)
                cfg = merge_config(self.base, run={"seed": seed, "max_evaluations": budget, "out": str(path)})
                cfg["strategy"] = {"name": entry.name, **entry.options}
                specs.append(RunSpec(entry.label, seed, path, cfg))
        return specs

    def resolved(self) -> ResolvedConfig:
        """The checked config of the first run (space, evaluator and data are the same for all)."""
        from nasframe.search.config import resolve

        return resolve(self.runs()[0].cfg)


# ---- parsing ---------------------------------------------------------------------------------
def parse_seeds(value: Any) -> list[int]:
    """`10` -> seeds 0..9; `0,3,7` or a list -> exactly those."""
    if isinstance(value, bool):
        raise ConfigError(f"seeds: expected a count or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"seeds: need at least one seed, got {value}")
        return list(range(value))
    if isinstance(value, str):
        text = value.strip()
        if "," not in text:
            try:
                return parse_seeds(int(text))
            except ValueError:
                raise ConfigError(f"--seeds {value!r}: give a count (10) or a comma list (0,3,7)") from None
        value = [v for v in text.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return _seed_list(value)
    raise ConfigError(f"seeds: expected a count or a list of seeds, got {value!r}")


def _seed_list(values: Sequence[Any]) -> list[int]:
    try:
        seeds = [int(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"seeds: {values!r} is not a list of integers") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: need distinct non-negative integers, got {seeds}")
    return seeds


def parse_strategies(value: Any) -> list[StrategyEntry]:
    """`random,mdenas`, a list of names or {name, label, options...} mappings, or a mapping label -> options."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Mapping):
        entries = [_entry_from_label(str(label), opts) for label, opts in value.items()]
    elif isinstance(value, (list, tuple)):
        entries = [_entry_from_item(item) for item in value]
    else:
        raise ConfigError(f"strategies: expected a list or a mapping of strategies, got {value!r}")
    if not entries:
        raise ConfigError("strategies: name at least one strategy, e.g. --strategies random,mdenas")
    _check_labels([e.label for e in entries])
    return entries


def _entry_from_label(label: str, opts: Any) -> StrategyEntry:
    """`label: {name: ..., budget: ..., option: value}` (name defaults to the label)."""
    if not isinstance(opts, (Mapping, type(None))):
        raise ConfigError(f"strategies.{label}: expected a mapping of strategy options, got {opts!r}")
    options = dict(opts or {})
    budget = _entry_budget(label, options.pop("budget", None))
    return StrategyEntry(label, str(options.pop("name", label)), options, budget)


def _entry_from_item(item: Any) -> StrategyEntry:
    """A list item: a strategy name, or a mapping with `name` (and optionally `label`)."""
    if isinstance(item, str):
        return StrategyEntry(item, item)
    if isinstance(item, Mapping) and "name" in item:
        options = dict(item)
        name = str(options.pop("name"))
        label = str(options.pop("label", name))
        return StrategyEntry(label, name, options, _entry_budget(label, options.pop("budget", None)))
    raise ConfigError(f"strategies: each entry is a name or a mapping with 'name', got {item!r}")


def _entry_budget(label: str, budget: Any) -> int | None:
    """A strategy entry's own `budget:` (evaluations per run), checked like --budget."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"strategies.{label}.budget: expected a positive number of evaluations, got {budget!r}")
    return budget


def _check_labels(labels: list[str]) -> None:
    for label in labels:
        if not _LABEL.match(label):
            raise ConfigError(f"strategy label {label!r} must be letters, digits, '_', '.', '+' or '-'")
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ConfigError(f"strategy label {twice[0]!r} appears twice; give each entry its own label in --config")


def check_strategy_names(entries: Sequence[StrategyEntry], plugins: Sequence[str]) -> None:
    """Every listed strategy must be registered (after the config's plugins are loaded); a misspelt
    name fails with the registry's did-you-mean, whichever position it has in the list."""
    from nasframe.common.plugins import load_plugin
    from nasframe.core.registry import strategies

    for plugin in plugins:
        load_plugin(plugin)
    for entry in entries:
        strategies.get(entry.name)


# ---- the plan --------------------------------------------------------------------------------
def make_plan(
    config: dict[str, Any] | None = None,
    *,
    strategies: str | None = None,
    seeds: str | int | None = None,
    budget: int | None = None,
    out: str | None = None,
    names: dict[str, str | None] | None = None,
    sets: Sequence[str] = (),
    data: str | None = None,
    plugins: Sequence[str] = (),
) -> Plan:
    """Combine a compare YAML mapping with command-line values (which win) into a Plan.

    `--set LABEL.key=value` sets an option of one strategy (LABEL as in --strategies); other
    `--set` items apply to every run. Component names are checked here, before anything runs.
    """
    raw = dict(config or {})
    _check_compare_keys(raw)
    entries = parse_strategies(_take(raw, "strategies", strategies, None) or [])
    seed_list = parse_seeds(_take(raw, "seeds", seeds, DEFAULT_SEEDS))
    run_budget = _check_budget(_take(raw, "budget", budget, None))
    out_dir = _take(raw, "out", out, None)
    if raw.pop("strategy", None):
        raise ConfigError("a compare config lists its strategies under 'strategies:', not 'strategy:'")
    common = _apply_strategy_sets(entries, sets)
    base = _base_config(raw, names or {}, common, data, plugins)
    check_strategy_names(entries, base["plugins"])
    folder = Path(out_dir) if out_dir is not None else _default_folder(base)
    plan = Plan(base, entries, seed_list, run_budget, folder)
    _check_runs(plan)
    return plan


def _check_compare_keys(raw: Mapping[str, Any]) -> None:
    for key in raw:
        if key not in SECTIONS and key not in COMPARE_KEYS and key != "plugins":
            raise ConfigError(f"unknown compare key {key!r}; allowed: {', '.join(COMPARE_KEYS + SECTIONS)}, plugins")


def _take(raw: dict[str, Any], key: str, flag_value: Any, default: Any) -> Any:
    """The command-line value when given, else the config's (removed from `raw` either way), else default."""
    from_config = raw.pop(key, None)
    if flag_value is not None:
        return flag_value
    return from_config if from_config is not None else default


def _check_budget(budget: Any) -> int:
    if budget is None:
        raise ConfigError("compare needs a budget: --budget N (evaluations per run)")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"budget: expected a positive number of evaluations, got {budget!r}")
    return budget


def _apply_strategy_sets(entries: list[StrategyEntry], sets: Sequence[str]) -> list[str]:
    """Put `LABEL.key=value` items into that strategy's options (`LABEL.budget=N`: its own budget);
    return the items for every run."""
    from nasframe.search.config import parse_set, set_option

    by_label = {e.label: e for e in entries}
    common: list[str] = []
    for item in sets:
        path = item.split("=", 1)[0]
        head = path.split(".", 1)[0].strip()
        if "." in path and head in by_label and head not in SECTIONS:
            _, key, value = parse_set("strategy." + item.split(".", 1)[1])
            if key == "budget":
                by_label[head].budget = _entry_budget(head, value)
            else:
                set_option(by_label[head].options, key, value)
        else:
            common.append(item)
    return common


def _base_config(
    raw: dict[str, Any], names: dict[str, str | None], sets: list[str], data: str | None, plugins: Sequence[str]
) -> dict[str, Any]:
    """The run sections every run shares; compare's own run keys and strategy options are refused here."""
    from nasframe.search.config import merge_config

    base = merge_config(raw, names=names, sets=sets)
    if data:
        base["data"]["name"] = data
    base["plugins"] = list(base["plugins"]) + [p for p in plugins if p not in base["plugins"]]
    for key, flag in OWNED_RUN_KEYS.items():
        if key in base["run"]:
            raise ConfigError(f"run.{key} is set per run by compare; use {flag} instead")
    if base["strategy"]:
        raise ConfigError("set strategy options per strategy: --set LABEL.key=value or 'strategies:' in --config")
    # Per-run progress bars and event files would dominate a tabular comparison (seconds -> tens of seconds);
    # the comparison logs its own curves. Either can be turned back on with --set run.tensorboard=true.
    base["run"].setdefault("progress", False)
    base["run"].setdefault("tensorboard", False)
    return base


def _default_folder(base: dict[str, Any]) -> Path:
    """runs/compare-<time>-<space> (run.runs_root may move it)."""
    from nasframe.search.config import DEFAULT_NAMES, RunOptions

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_root = base["run"].get("runs_root", RunOptions.runs_root)
    return Path(runs_root) / f"compare-{stamp}-{base['space'].get('name', DEFAULT_NAMES['space'])}"


def _check_runs(plan: Plan) -> None:
    """Resolve the first seed's run of every strategy: unknown options fail now, not after half the runs."""
    from nasframe.search.config import resolve

    for spec in plan.runs()[: len(plan.strategies)]:
        resolve(spec.cfg)
