"""`nasframe compare`: several strategies x seeds at one budget, side by side.

Every (strategy, seed) is an ordinary run directory under one comparison folder
(`<out>/<label>/seed-<k>`), built with `Runner.create`, so each can be shown or resumed on its own.
Re-running the same comparison on the same `--out` skips finished runs and resumes unfinished
ones; the summary (summary.csv, summary.md, runs.csv), curves.png and the TensorBoard logs are
rebuilt from the run directories every time, so they always describe what is on disk.

For a tabular evaluator the analytic expectation of uniform random search is added as a reference:
with the table's search accuracies sorted, a_(1) <= ... <= a_(N), the expected best of n distinct
draws (random search de-duplicates, so draws are without replacement) is
    E[max] = sum_k a_(k) [C(k, n) - C(k-1, n)] / C(N, n).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from nasframe.compare_plot import mean_and_se
from nasframe.errors import ConfigError

# nasframe.config (and through it torch) is imported inside functions: `nasframe --help` stays fast.
SECTIONS = ("strategy", "space", "evaluator", "data", "run", "constraints")

#: keys of a compare YAML file besides the run sections
COMPARE_KEYS = ("strategies", "seeds", "budget", "out")
#: run options that compare sets itself, per run
OWNED_RUN_KEYS = ("seed", "max_evaluations", "out")
#: run options that may differ between the first and a later invocation (they do not change results)
IGNORED_RUN_KEYS = ("out", "progress", "tensorboard", "device", "checkpoint_every", "checkpoint_seconds",
                    "runs_root")
FRACTIONS = (0.25, 0.5, 1.0)
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ---- analytic reference -------------------------------------------------------------------------
def _max_rank_cdf(N: int, n_max: int, replace: bool) -> np.ndarray:
    """F[n-1, k] = P(the best of n draws has rank <= k), k = 0..N, for n = 1..n_max.

    Without replacement F(k) = C(k, n) / C(N, n), built by the recurrence
    F_n(k) = F_{n-1}(k) (k - n + 1) / (N - n + 1), which stays exact in floating point.
    """
    k = np.arange(N + 1, dtype=np.float64)
    out = np.empty((n_max, N + 1))
    f = np.ones(N + 1)
    for n in range(1, n_max + 1):
        if replace:
            f = (k / N) ** n
        elif n <= N:
            f = f * np.clip(k - n + 1, 0.0, None) / (N - n + 1)
        out[n - 1] = f
    return out


def expected_best_of_n(values: Sequence[float] | np.ndarray, n_max: int, *, replace: bool = False) -> np.ndarray:
    """E[max of n uniform draws] from `values`, for n = 1..n_max (array of length n_max).

    replace=False matches random search with dedup=True (distinct architectures):
    sum_k a_(k) [C(k,n) - C(k-1,n)] / C(N,n); replace=True: sum_k a_(k) [(k/N)^n - ((k-1)/N)^n].
    Without replacement and n >= N the best is the maximum itself.
    """
    a = np.sort(np.asarray(values, dtype=np.float64))
    F = _max_rank_cdf(len(a), n_max, replace)
    return np.diff(F, axis=1) @ a


def expected_pick(search: np.ndarray, judge: np.ndarray, n: int, *, replace: bool = False) -> tuple[float, float]:
    """(E[best search value], E[judge value of the architecture random search returns]) after n draws.

    Random search returns the first-drawn architecture with the highest search value; within a tie
    every tied architecture is equally likely to be that one, so a tie group counts with its mean
    judge value.
    """
    order = np.argsort(search, kind="stable")
    s, t = np.asarray(search, dtype=np.float64)[order], np.asarray(judge, dtype=np.float64)[order]
    F = _max_rank_cdf(len(s), n, replace)[n - 1]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    p_group = F[ends] - F[starts]  # P(best value == this group's value)
    mean_t = np.add.reduceat(t, starts) / (ends - starts)
    return float(p_group @ s[starts]), float(p_group @ mean_t)


# ---- the plan ------------------------------------------------------------------------------------
@dataclass
class StrategyEntry:
    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSpec:
    label: str
    seed: int
    path: Path
    cfg: dict[str, Any]


@dataclass
class Plan:
    """Everything a comparison runs: base config, strategies, seeds, budget, folder."""

    base: dict[str, Any]
    strategies: list[StrategyEntry]
    seeds: list[int]
    budget: int
    out: Path

    def runs(self) -> list[RunSpec]:
        """Seed-major order, so an interrupted comparison has every strategy at similar seed counts."""
        from nasframe.config import merge_config

        specs = []
        for seed in self.seeds:
            for entry in self.strategies:
                path = self.out / entry.label / f"seed-{seed}"
                cfg = merge_config(self.base, run={"seed": seed, "max_evaluations": self.budget, "out": str(path)})
                cfg["strategy"] = {"name": entry.name, **entry.options}
                specs.append(RunSpec(entry.label, seed, path, cfg))
        return specs


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
        try:
            seeds = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"seeds: {value!r} is not a list of integers") from None
        if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds: need distinct non-negative integers, got {seeds}")
        return seeds
    raise ConfigError(f"seeds: expected a count or a list of seeds, got {value!r}")


def parse_strategies(value: Any) -> list[StrategyEntry]:
    """`random,mdenas`, a list of names or {name, label, options...} mappings, or a mapping label -> options."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    entries: list[StrategyEntry] = []
    if isinstance(value, Mapping):
        for label, opts in value.items():
            if not isinstance(opts, (Mapping, type(None))):
                raise ConfigError(f"strategies.{label}: expected a mapping of strategy options, got {opts!r}")
            opts = dict(opts or {})
            entries.append(StrategyEntry(str(label), str(opts.pop("name", label)), opts))
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, str):
                entries.append(StrategyEntry(item, item))
            elif isinstance(item, Mapping) and "name" in item:
                opts = dict(item)
                name = str(opts.pop("name"))
                entries.append(StrategyEntry(str(opts.pop("label", name)), name, opts))
            else:
                raise ConfigError(f"strategies: each entry is a name or a mapping with 'name', got {item!r}")
    else:
        raise ConfigError(f"strategies: expected a list or a mapping of strategies, got {value!r}")
    if not entries:
        raise ConfigError("strategies: name at least one strategy, e.g. --strategies random,mdenas")
    labels = [e.label for e in entries]
    for label in labels:
        if not _LABEL.match(label):
            raise ConfigError(f"strategy label {label!r} must be letters, digits, '_', '.', '+' or '-'")
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"strategy label {dup[0]!r} appears twice; give each entry its own label in --config")
    return entries


def make_plan(config: dict[str, Any] | None = None, *, strategies: str | None = None, seeds: str | int | None = None,
              budget: int | None = None, out: str | None = None, names: dict[str, str | None] | None = None,
              sets: Sequence[str] = (), data: str | None = None, plugins: Sequence[str] = ()) -> Plan:
    """Combine a compare YAML mapping with command-line values (which win) into a Plan.

    `--set LABEL.key=value` sets an option of one strategy (LABEL as in --strategies); other
    `--set` items apply to every run. Component names are checked here, before anything runs.
    """
    from nasframe.config import merge_config, parse_set, resolve

    raw = dict(config or {})
    for key in raw:
        if key not in SECTIONS and key not in COMPARE_KEYS and key != "plugins":
            raise ConfigError(f"unknown compare key {key!r}; allowed: {', '.join(COMPARE_KEYS + SECTIONS)}, plugins")
    entries = parse_strategies(strategies if strategies is not None else raw.pop("strategies", None) or [])
    raw.pop("strategies", None)
    seed_list = parse_seeds(seeds if seeds is not None else raw.pop("seeds", 5))
    raw.pop("seeds", None)
    budget = budget if budget is not None else raw.pop("budget", None)
    raw.pop("budget", None)
    if budget is None:
        raise ConfigError("compare needs a budget: --budget N (evaluations per run)")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"budget: expected a positive number of evaluations, got {budget!r}")
    out_dir = out or raw.pop("out", None)
    raw.pop("out", None)
    if raw.get("strategy"):
        raise ConfigError("a compare config lists its strategies under 'strategies:', not 'strategy:'")
    raw.pop("strategy", None)

    labels = {e.label: e for e in entries}
    common: list[str] = []
    for item in sets:
        path = item.split("=", 1)[0]
        head = path.split(".", 1)[0].strip()
        if "." in path and head in labels and head not in SECTIONS:
            _, key, value = parse_set("strategy." + item.split(".", 1)[1])
            labels[head].options[key] = value
        else:
            common.append(item)
    base = merge_config(raw, names=names or {}, sets=common)
    if data:
        base["data"]["name"] = data
    base["plugins"] = list(base.get("plugins", [])) + [p for p in plugins if p not in base.get("plugins", [])]
    for key in OWNED_RUN_KEYS:
        if key in base["run"]:
            flag = {"seed": "--seeds", "max_evaluations": "--budget", "out": "--out"}[key]
            raise ConfigError(f"run.{key} is set per run by compare; use {flag} instead")
    if base["strategy"]:
        raise ConfigError("set strategy options per strategy: --set LABEL.key=value or 'strategies:' in --config")
    # Per-run progress bars and event files would dominate a tabular comparison (seconds -> tens of seconds);
    # the comparison logs its own curves. Either can be turned back on with --set run.tensorboard=true.
    base["run"].setdefault("progress", False)
    base["run"].setdefault("tensorboard", False)
    if out_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        runs_root = base["run"].get("runs_root", "runs")
        out_dir = str(Path(runs_root) / f"compare-{stamp}-{base['space'].get('name', 'darts')}")
    plan = Plan(base, entries, seed_list, int(budget), Path(out_dir))
    for spec in plan.runs()[: len(entries)]:
        resolve(spec.cfg)  # unknown names and options fail now, not after half the runs
    return plan


# ---- running ---------------------------------------------------------------------------------
def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in cfg.items() if k in SECTIONS}
    for key in IGNORED_RUN_KEYS:
        out["run"].pop(key, None)
    return out


def _check_same_config(spec: RunSpec) -> None:
    """A run directory left by an earlier invocation must have been made with the same settings."""
    from nasframe.config import load_yaml, resolve

    stored = _comparable(load_yaml(spec.path / "config.yaml"))
    wanted = _comparable(resolve(spec.cfg).to_dict())
    for section in SECTIONS:
        a, b = stored.get(section, {}), wanted.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                raise ConfigError(f"{spec.path} was run with {section}.{key}={a.get(key)!r} but this comparison "
                                  f"asks for {b.get(key)!r}; use another --out or remove that run directory")


def run_one(spec: RunSpec) -> str:
    """Create, resume or skip one run; returns what happened ('done', 'resumed' or 'ran')."""
    from nasframe.runner import Runner

    if (spec.path / "config.yaml").is_file():
        _check_same_config(spec)
        if (spec.path / "best.json").is_file():
            return "done"
        Runner.resume(spec.path, quiet=True).run()
        return "resumed"
    Runner.create(spec.cfg, quiet=True).run()
    return "ran"


@dataclass
class RunRecord:
    """What the summary needs from one finished run directory."""

    label: str
    seed: int
    path: Path
    curve: np.ndarray  # best-so-far search accuracy after 1..budget evaluations (carried past an early stop)
    evaluations: int
    final: float | None
    final_metric: str | None
    cost_epochs: float
    cost_seconds: float
    wall_seconds: float
    stopped_because: str


def read_run(spec: RunSpec, budget: int) -> RunRecord:
    best = json.loads((spec.path / "best.json").read_text())
    curve = np.full(budget, np.nan)
    n = 0
    with open(spec.path / "history.jsonl") as fh:
        for line in fh:
            if n >= budget:
                break
            value = json.loads(line).get("best_val_acc")
            curve[n] = np.nan if value is None else value
            n += 1
    if 0 < n < budget:
        curve[n:] = curve[n - 1]  # nothing better can appear after the run stopped
    final, metric = None, None
    fin = best.get("final") or {}
    held = fin.get("held_out") or {}
    if isinstance(held.get("test_acc"), (int, float)):
        final, metric = float(held["test_acc"]), "test_acc"
    elif isinstance((fin.get("metrics") or {}).get("val_acc"), (int, float)):
        final, metric = float(fin["metrics"]["val_acc"]), "val_acc"
    cost = best.get("cost") or {}
    return RunRecord(spec.label, spec.seed, spec.path, curve, int(best.get("evaluations", n)), final, metric,
                     float(cost.get("epochs", 0.0)), float(cost.get("seconds", 0.0)),
                     float(cost.get("wall_seconds", 0.0)), str(best.get("stopped_because", "")))


# ---- summary -------------------------------------------------------------------------------------
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


@dataclass
class Reference:
    """Analytic expectation of uniform random search (tabular evaluators only)."""

    curve: np.ndarray  # E[best-so-far search accuracy] after 1..budget evaluations
    final: float  # E[held-out accuracy of the returned architecture] at the full budget
    final_metric: str


def analytic_reference(plan: Plan) -> Reference | None:
    """Expected random search from the evaluator's table, or None when it has no table."""
    from nasframe.config import resolve
    from nasframe.evaluator import TabularBenchmark
    from nasframe.registry import evaluators, spaces

    cfg = resolve(plan.runs()[0].cfg)
    ev_cls = evaluators.get(cfg.names["evaluator"])
    if not issubclass(ev_cls, TabularBenchmark):
        return None
    space = spaces.get(cfg.names["space"])(cfg.options["space"])
    evaluator = ev_cls(space, cfg.options["evaluator"])
    search, judge = evaluator.all_accuracies("val_acc"), evaluator.all_accuracies("test_acc")
    curve = expected_best_of_n(search, plan.budget)
    _, final = expected_pick(search, judge, plan.budget)
    return Reference(curve, final, "test_acc")


def summarize(plan: Plan, records: list[RunRecord], ref: Reference | None) -> list[dict[str, Any]]:
    """One row per strategy (plus the analytic random-search row when there is one)."""
    rows = []
    points = [max(1, math.ceil(f * plan.budget)) for f in FRACTIONS]
    for entry in plan.strategies:
        recs = [r for r in records if r.label == entry.label]
        if not recs:
            continue
        metrics = sorted({r.final_metric for r in recs if r.final_metric})
        row: dict[str, Any] = {"strategy": entry.label, "runs": len(recs),
                               "final_metric": "/".join(metrics) or "none"}
        row["final_mean"], row["final_std"] = _mean_std([r.final for r in recs])
        for f, p in zip(FRACTIONS, points):
            row[f"best_val_{int(f * 100)}_mean"], row[f"best_val_{int(f * 100)}_std"] = \
                _mean_std([r.curve[p - 1] for r in recs])
        row["evaluations_mean"] = float(np.mean([r.evaluations for r in recs]))
        row["cost_epochs_mean"], row["cost_epochs_std"] = _mean_std([r.cost_epochs for r in recs])
        row["wall_seconds_mean"], row["wall_seconds_std"] = _mean_std([r.wall_seconds for r in recs])
        row["stopped_early"] = sum(r.evaluations < plan.budget for r in recs)
        row["no_final"] = sum(r.final is None for r in recs)
        rows.append(row)
    if ref is not None:
        row = {"strategy": "random (expected)", "runs": "", "final_metric": ref.final_metric,
               "final_mean": ref.final, "final_std": math.nan}
        for f, p in zip(FRACTIONS, points):
            row[f"best_val_{int(f * 100)}_mean"] = float(ref.curve[p - 1])
            row[f"best_val_{int(f * 100)}_std"] = math.nan
        row.update({"evaluations_mean": float(plan.budget), "cost_epochs_mean": math.nan,
                    "cost_epochs_std": math.nan, "wall_seconds_mean": math.nan, "wall_seconds_std": math.nan,
                    "stopped_early": "", "no_final": ""})
        rows.append(row)
    return rows


CSV_FIELDS = ("strategy", "runs", "final_metric", "final_mean", "final_std",
              "best_val_25_mean", "best_val_25_std", "best_val_50_mean", "best_val_50_std",
              "best_val_100_mean", "best_val_100_std", "evaluations_mean", "cost_epochs_mean", "cost_epochs_std",
              "wall_seconds_mean", "wall_seconds_std", "stopped_early", "no_final")


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return v


def write_summary_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in rows:
            w.writerow({k: _csv_value(row.get(k, "")) for k in CSV_FIELDS})


def write_runs_csv(path: Path, records: list[RunRecord], budget: int) -> None:
    points = [max(1, math.ceil(f * budget)) for f in FRACTIONS]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["strategy", "seed", "run_dir", "evaluations", "stopped_because", "final_metric", "final",
                    *[f"best_val_{int(f * 100)}" for f in FRACTIONS], "cost_epochs", "cost_seconds", "wall_seconds"])
        for r in records:
            w.writerow([r.label, r.seed, str(r.path), r.evaluations, r.stopped_because, r.final_metric or "",
                        _csv_value(r.final), *[_csv_value(float(r.curve[p - 1])) for p in points],
                        _csv_value(r.cost_epochs), _csv_value(r.cost_seconds), _csv_value(r.wall_seconds)])


def _pm(mean: Any, std: Any, digits: int = 2) -> str:
    if not isinstance(mean, float) or not math.isfinite(mean):
        return "-"
    if not isinstance(std, float) or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(plan: Plan, rows: list[dict[str, Any]]) -> str:
    points = [max(1, math.ceil(f * plan.budget)) for f in FRACTIONS]
    metric = next((r["final_metric"] for r in rows if r.get("runs") != ""), "final")
    head = ["strategy", "runs", f"final {metric}",
            *[f"best val_acc @{int(f * 100)}% ({p})" for f, p in zip(FRACTIONS, points)],
            "evaluations", "cost (epochs)", "wall (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [r["strategy"], str(r["runs"]), _pm(r["final_mean"], r["final_std"]),
                 *[_pm(r[f"best_val_{int(f * 100)}_mean"], r[f"best_val_{int(f * 100)}_std"]) for f in FRACTIONS],
                 f"{r['evaluations_mean']:g}",
                 _pm(r["cost_epochs_mean"], r["cost_epochs_std"], 0 if abs(r["cost_epochs_mean"]) >= 100 else 2),
                 _pm(r["wall_seconds_mean"], r["wall_seconds_std"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary_md(path: Path, plan: Plan, rows: list[dict[str, Any]], ref: Reference | None) -> None:
    cfg = plan.runs()[0].cfg
    space, evaluator = cfg["space"].get("name", "darts"), cfg["evaluator"].get("name", "short_train")
    ev_opts = ", ".join(f"{k}={v}" for k, v in cfg["evaluator"].items() if k != "name")
    text = [f"# Comparison: {', '.join(e.label for e in plan.strategies)} on {space} / {evaluator}"
            + (f" ({ev_opts})" if ev_opts else ""), "",
            f"{len(plan.seeds)} seeds ({_seed_text(plan.seeds)}), budget {plan.budget} evaluations per run. "
            "Mean ± standard deviation over seeds. `final` is the held-out accuracy of the architecture each "
            "strategy returned (`best.json` final.held_out.test_acc; its val_acc where no held-out metric exists); "
            "`best val_acc @x%` is the best search accuracy seen after that share of the budget.", "",
            markdown_table(plan, rows), ""]
    if ref is not None:
        text += ["`random (expected)` is the analytic expectation of uniform random search without repeats "
                 "(random's dedup=True): E[best of n] = sum_k a_(k) [C(k,n) - C(k-1,n)] / C(N,n) over the "
                 "table's sorted search accuracies, and the expected held-out accuracy of the architecture it "
                 "returns.", ""]
    early = [r for r in rows if r.get("stopped_early")]
    for r in early:
        text.append(f"Note: {r['stopped_early']} of {r['runs']} {r['strategy']} runs stopped before the budget "
                    f"(mean {r['evaluations_mean']:g} evaluations; see runs.csv); their curves are carried flat.")
    for r in rows:
        if r.get("no_final"):
            text.append(f"Note: {r['no_final']} of {r['runs']} {r['strategy']} runs returned an architecture that was "
                        "never evaluated, and the evaluator has no held-out metric: no final accuracy for them.")
    path.write_text("\n".join(text).rstrip() + "\n")


def _seed_text(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}..{seeds[-1]}"
    return ", ".join(map(str, seeds))


def curves_by_label(plan: Plan, records: list[RunRecord]) -> dict[str, np.ndarray]:
    """label -> array (runs, budget) of best-so-far search accuracy."""
    return {e.label: np.stack([r.curve for r in records if r.label == e.label])
            for e in plan.strategies if any(r.label == e.label for r in records)}


def log_tensorboard(out: Path, curves: dict[str, np.ndarray], ref: Reference | None,
                    records: list[RunRecord]) -> None:
    """One SummaryWriter: mean best-so-far per strategy (and the reference) on one chart."""
    from torch.utils.tensorboard import SummaryWriter

    tb_dir = out / "tensorboard"
    if tb_dir.exists():
        shutil.rmtree(tb_dir)  # rebuilt from the runs each time
    writer = SummaryWriter(str(tb_dir))
    try:
        tags = []
        for label, c in curves.items():
            mean, se = mean_and_se(c)
            tag = f"compare/best_val_acc/{label}"
            tags.append(tag)
            for i in range(c.shape[1]):
                if np.isfinite(mean[i]):
                    writer.add_scalar(tag, float(mean[i]), i + 1)
                    if np.isfinite(se[i]):
                        writer.add_scalar(f"compare/best_val_acc_se/{label}", float(se[i]), i + 1)
            finals = np.array([r.final for r in records if r.label == label and r.final is not None])
            if finals.size:
                writer.add_scalar(f"compare/final/{label}", float(finals.mean()), 0)
                writer.add_histogram(f"compare/final_per_seed/{label}", finals, 0)
        if ref is not None:
            tag = "compare/best_val_acc/random_expected"
            tags.append(tag)
            for i, v in enumerate(ref.curve):
                writer.add_scalar(tag, float(v), i + 1)
        writer.add_custom_scalars({"compare": {"best-so-far val_acc": ["Multiline", tags]}})
    finally:
        writer.close()


@dataclass
class Comparison:
    """Result of `run_comparison`: the rows of the summary and where the files are."""

    plan: Plan
    records: list[RunRecord]
    rows: list[dict[str, Any]]
    table: str
    seconds: float
    actions: dict[str, int]


def run_comparison(plan: Plan, *, tensorboard: bool = True, plot: bool = True,
                   say: Callable[[str], None] | None = None) -> Comparison:
    """Run (or resume, or skip) every strategy x seed, then write the summary, curves and logs."""
    say = say or (lambda msg: None)
    t0 = time.perf_counter()
    plan.out.mkdir(parents=True, exist_ok=True)
    specs = plan.runs()
    actions = {"ran": 0, "resumed": 0, "done": 0}
    records: list[RunRecord] = []
    for i, spec in enumerate(specs, 1):
        t = time.perf_counter()
        action = run_one(spec)
        actions[action] += 1
        rec = read_run(spec, plan.budget)
        records.append(rec)
        final = f"{rec.final_metric} {rec.final:.2f}" if rec.final is not None else "no final architecture"
        verb = {"ran": "", "resumed": " (resumed)", "done": " (already done)"}[action]
        say(f"[{i}/{len(specs)}] {spec.label} seed {spec.seed}: {rec.evaluations} evaluations, {final}"
            f"{verb} in {time.perf_counter() - t:.2f} s")
    ref = analytic_reference(plan)
    rows = summarize(plan, records, ref)
    write_summary_csv(plan.out / "summary.csv", rows)
    write_runs_csv(plan.out / "runs.csv", records, plan.budget)
    write_summary_md(plan.out / "summary.md", plan, rows, ref)
    curves = curves_by_label(plan, records)
    if plot:
        from nasframe.compare_plot import plot_comparison

        plot_comparison(plan.out / "curves.png", curves, records, ref, title=_title(plan))
    if tensorboard:
        log_tensorboard(plan.out, curves, ref, records)
    return Comparison(plan, records, rows, markdown_table(plan, rows), time.perf_counter() - t0, actions)


def _title(plan: Plan) -> str:
    cfg = plan.runs()[0].cfg
    ev = cfg["evaluator"]
    extra = ", ".join(f"{k}={v}" for k, v in ev.items() if k != "name")
    return (f"{cfg['space'].get('name', 'darts')} / {ev.get('name', 'short_train')}"
            + (f" ({extra})" if extra else "") + f": {len(plan.seeds)} seeds, budget {plan.budget}")


# ---- command line ----------------------------------------------------------------------------
class CompareCommand:
    """Run several strategies x seeds at the same budget and summarise them side by side."""

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--strategies", metavar="A,B,...", help="comma-separated strategy names (or 'strategies:' "
                       "in --config, which may give each its own options and label)")
        p.add_argument("--space", help="search space; default darts")
        p.add_argument("--evaluator", help="evaluator; default short_train")
        p.add_argument("--data", metavar="NAME", help="data set (digits, cifar10, ...); default digits")
        p.add_argument("--seeds", metavar="N|A,B,...", help="number of seeds (0..N-1) or a list; default 5")
        p.add_argument("--budget", type=int, metavar="N", help="evaluations per run (run.max_evaluations)")
        p.add_argument("--out", metavar="DIR", help="comparison folder; re-running on it skips finished runs "
                       "and resumes unfinished ones (default runs/compare-<time>-<space>)")
        p.add_argument("--config", metavar="FILE", help="YAML with strategies, seeds, budget, out and the "
                       "space/evaluator/data/run sections")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="option for every run (e.g. evaluator.dataset=cifar100), or LABEL.KEY=VALUE for one "
                            "strategy (e.g. mdenas.epochs=200); repeatable")
        p.add_argument("--no-tensorboard", action="store_true", help="skip the comparison's TensorBoard logs")
        p.add_argument("--no-plot", action="store_true", help="skip curves.png")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from nasframe.config import load_yaml

        config = load_yaml(args.config) if args.config else {}
        plan = make_plan(config, strategies=args.strategies, seeds=args.seeds, budget=args.budget, out=args.out,
                         names={"space": args.space, "evaluator": args.evaluator}, sets=args.set,
                         data=args.data, plugins=getattr(args, "plugin", []))
        say = _stderr
        say(f"comparison folder: {plan.out} ({len(plan.strategies)} strategies x {len(plan.seeds)} seeds, "
            f"budget {plan.budget})")
        try:
            result = run_comparison(plan, tensorboard=not args.no_tensorboard, plot=not args.no_plot, say=say)
        except KeyboardInterrupt:
            say(f"interrupted; run the same command again (with --out {plan.out}) to continue")
            return 130
        print(result.table)
        files = ["summary.csv", "summary.md", "runs.csv"] + ([] if args.no_plot else ["curves.png"])
        print(f"\n{sum(result.actions.values())} runs ({result.actions['ran']} new, {result.actions['resumed']} "
              f"resumed, {result.actions['done']} already done) in {result.seconds:.1f} s; "
              f"files in {plan.out}: {', '.join(files)}" + ("" if args.no_tensorboard else ", tensorboard/"))
        return 0


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
