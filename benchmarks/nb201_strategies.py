"""Black-box strategies on NAS-Bench-201: the table of docs/benchmarks-nb201-strategies.md.

    python benchmarks/nb201_strategies.py                       # the page's tables (50 seeds, 3 data sets)
    python benchmarks/nb201_strategies.py --seeds 5 --budgets 20,50 --datasets cifar10   # a quick look

Every run is an ordinary `nasframe compare` run (the tabular evaluator: the 12-epoch validation accuracy
steers, the 200-epoch test accuracy of the returned architecture is the judge), made with the same
`make_plan` / `run_one` as the command, in `--workers` processes. Strategies whose proposals do not
depend on the budget run once at the largest budget, and their answer at a smaller budget N is the
architecture that run returns after N evaluations: the first maximum of the search accuracy over its
first N evaluations (what the runner returns for a run stopped at N; `--check` verifies this on a few
seeds by running them at the smallest budget). MDENAS, whose schedule is its budget, runs at each budget.

Per (data set, budget, strategy) it prints the mean ± standard error over seeds of the returned
architecture's 200-epoch test accuracy, its median and worst, the share of seeds that returned the
table's best architecture, and the two-sided Mann-Whitney U p-value against optuna's TPE
(`scipy.stats.mannwhitneyu`). A second table compares multi-fidelity schedules under one epoch budget
(`--mf-epochs`); see the page for why that one uses the oracle setting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("cifar10", "cifar100", "imagenet16-120")
#: label -> (registered name, options); budget-independent strategies run once at the largest budget
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "evolution": ("evolution", {}),
    "local_search": ("local_search", {}),
    "local_search-first": ("local_search", {"move": "first"}),
    "bananas": ("bananas", {}),
    "bananas-code": ("bananas", {"layers": 10, "epochs": 150, "batch_size": 32}),
    "optuna": ("optuna", {}),
    "mdenas-best": ("mdenas", {"final": "best_evaluated"}),
}
DEFAULT_STRATEGIES = ("random", "evolution", "local_search", "local_search-first", "bananas", "optuna", "mdenas-best")
#: strategies whose run depends on its budget (MDENAS spreads its schedule over `epochs` = the budget)
PER_BUDGET = {"mdenas-best"}
REFERENCE = "optuna"
#: multi-fidelity entries: label -> (name, strategy options, evaluator options)
MULTI_FIDELITY: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "random (12 ep)": ("random", {}, {}),
    "local_search (12 ep)": ("local_search", {}, {}),
    "random (200 ep, oracle)": ("random", {}, {"fidelity": 200}),
    "successive_halving 12->200 (oracle)": ("successive_halving", {"rungs": [12, 200], "eta": 16}, {"fidelity": 200}),
    "hyperband 12->200 (oracle)": ("hyperband", {"rungs": [12, 200], "eta": 16}, {"fidelity": 200}),
}


# ---- running ---------------------------------------------------------------------------------------------------
def _run(spec: Any) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    from nasframe.compare.execution import run_one

    run_one(spec)


def plan_runs(out: Path, dataset: str, label: str, seeds: Sequence[int], budget: int, extra: Sequence[str] = ()):
    """The compare plan of one (data set, strategy) at `budget` evaluations."""
    from nasframe.compare.plan import make_plan

    name, options = STRATEGIES[label]
    if label in PER_BUDGET and name == "mdenas":
        options = {**options, "epochs": budget}
    config = {"strategies": {label: {"name": name, **options}}, "seeds": list(seeds)}
    return make_plan(
        config,
        budget=budget,
        out=str(out / dataset / f"{label}-{budget}"),
        names={"space": "nb201", "evaluator": "tabular"},
        sets=[f"evaluator.dataset={dataset}", "run.tensorboard=false", "run.progress=false", *extra],
    ).runs()


def run_all(specs: list[Any], workers: int) -> None:
    if workers <= 1:
        for spec in specs:
            _run(spec)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_run, specs, chunksize=4))


# ---- reading ---------------------------------------------------------------------------------------------------
def answers(run_dir: Path, budgets: Sequence[int], table_test: np.ndarray, row_of: Any) -> dict[int, float]:
    """Held-out test accuracy of the architecture the run returns after each budget (first maximum)."""
    from nasframe.core.space import Arch
    from nasframe.search.rundir import RunDir

    out: dict[int, float] = {}
    best: tuple[float, dict] | None = None
    records = list(RunDir(run_dir).evaluations())
    for n, rec in enumerate(records, 1):
        acc = rec.metrics.get("val_acc") if rec.status == "ok" else None
        if acc is not None and (best is None or acc > best[0]):
            best = (acc, rec.arch)
        if n in budgets and best is not None:
            out[n] = float(table_test[row_of[Arch(list(best[1].items()))]])
    return out


def final_answer(run_dir: Path) -> tuple[float, float]:
    """(held-out test accuracy of the run's answer, epochs spent) from best.json."""
    from nasframe.search.rundir import RunDir

    result = RunDir(run_dir).read_result()
    assert result.final is not None
    return float(result.final.held_out["test_acc"]), float(result.cost["epochs"])


# ---- summaries -------------------------------------------------------------------------------------------------
def summary_row(
    label: str, values: Sequence[float], optimum: float, best_val: float, reference: Sequence[float] | None
) -> str:
    """One table row: mean ± s.e., median, worst, the shares of seeds that returned the table's best test
    accuracy and the cell of best search accuracy (by their test accuracies), Mann-Whitney p against TPE."""
    from scipy.stats import mannwhitneyu

    v = np.asarray(values)
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    hit = 100.0 * float(np.mean(np.isclose(v, optimum)))
    top = 100.0 * float(np.mean(np.isclose(v, best_val)))
    p = "-"
    if reference is not None and label != REFERENCE:
        p = f"{mannwhitneyu(v, np.asarray(reference), alternative='two-sided').pvalue:.2g}"
    stats = f"{v.mean():.2f} ± {se:.2f} | {np.median(v):.2f} | {v.min():.2f}"
    return f"| {label} | {stats} | {hit:.0f} % | {top:.0f} % | {p} |"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=50, help="seeds 0..N-1 (default 50)")
    p.add_argument("--budgets", default="100,200,500", help="evaluations, comma-separated (default 100,200,500)")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default all three)")
    p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES), help=f"labels: {', '.join(STRATEGIES)}")
    p.add_argument(
        "--mf-epochs", type=float, default=40000.0, help="epoch budget of the multi-fidelity table (0: skip)"
    )
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--check", type=int, default=2, help="seeds re-run at the smallest budget to check the prefix rule")
    p.add_argument("--out", help="folder for the run directories (default: a temporary folder, removed)")
    p.add_argument("--json", help="also write every value to this JSON file")
    args = p.parse_args(argv)
    budgets = sorted(int(b) for b in args.budgets.split(","))
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    labels = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [x for x in labels if x not in STRATEGIES] + [d for d in datasets if d not in DATASETS]
    if unknown:
        print(f"error: unknown {unknown[0]!r}; strategies: {', '.join(STRATEGIES)}; data sets: {', '.join(DATASETS)}")
        return 2
    seeds = list(range(args.seeds))
    tmp = tempfile.TemporaryDirectory(prefix="nb201-strategies-") if args.out is None else None
    out = Path(args.out) if args.out else Path(tmp.name)  # type: ignore[union-attr]
    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    from nasframe.spaces.nb201 import load_table

    table = load_table()
    jobs: dict[tuple[str, str, int], list[Any]] = {}
    for dataset in datasets:
        for label in labels:
            for budget in budgets if label in PER_BUDGET else [budgets[-1]]:
                jobs[(dataset, label, budget)] = plan_runs(out, dataset, label, seeds, budget)
    checks = {
        (datasets[0], label): plan_runs(out / "check", datasets[0], label, seeds[: args.check], budgets[0])
        for label in labels
        if label not in PER_BUDGET and args.check
    }
    run_all([s for specs in [*jobs.values(), *checks.values()] for s in specs], args.workers)

    results: dict[str, Any] = {"budgets": budgets, "seeds": len(seeds), "main": {}, "multi_fidelity": {}}
    for (dataset, label), specs in checks.items():
        test = table.column(dataset, "test", 200)
        for spec in specs:
            prefix = answers(jobs[(dataset, label, budgets[-1])][spec.seed].path, budgets, test, table.row_of)
            direct, _ = final_answer(spec.path)
            if prefix[budgets[0]] != direct:
                print(f"error: {label} seed {spec.seed}: the prefix rule gives {prefix[budgets[0]]}, a run stopped at "
                      f"{budgets[0]} returned {direct}")  # fmt: skip
                return 1
    for dataset in datasets:
        test = table.column(dataset, "test", 200)
        optimum = float(test.max())
        best_val = float(test[int(np.argmax(table.column(dataset, "val", 12)))])
        for budget in budgets:
            values: dict[str, list[float]] = {}
            for label in labels:
                specs = jobs[(dataset, label, budget if label in PER_BUDGET else budgets[-1])]
                values[label] = [answers(s.path, [budget], test, table.row_of)[budget] for s in specs]
            results["main"][f"{dataset}@{budget}"] = values
            print(f"\n### {dataset}, {budget} evaluations ({len(seeds)} seeds; optimum {optimum:.2f}, best-val cell "
                  f"{best_val:.2f})\n")  # fmt: skip
            print("| strategy | test acc. (mean ± s.e.) | median | worst | optimum found | best-val cell found | "
                  "Mann-Whitney p vs TPE |")  # fmt: skip
            print("|---|---:|---:|---:|---:|---:|---:|")
            reference = values.get(REFERENCE)
            for label in labels:
                print(summary_row(label, values[label], optimum, best_val, reference))

    if args.mf_epochs > 0:
        from nasframe.compare.plan import make_plan

        specs_by: dict[tuple[str, str], list[Any]] = {}
        for dataset in datasets:
            for label, (name, options, ev_options) in MULTI_FIDELITY.items():
                sets = [f"evaluator.dataset={dataset}", f"run.max_epochs={args.mf_epochs:g}", "run.tensorboard=false"]
                sets += [f"evaluator.{k}={v}" for k, v in ev_options.items()]
                folder = out / "mf" / dataset / label.split(" ")[0] / ("oracle" if ev_options else "12")
                config = {"strategies": {label.split(" ")[0]: {"name": name, **options}}, "seeds": list(seeds)}
                specs_by[(dataset, label)] = make_plan(
                    config, budget=10**6, out=str(folder),
                    names={"space": "nb201", "evaluator": "tabular"}, sets=sets,
                ).runs()  # fmt: skip
        run_all([s for specs in specs_by.values() for s in specs], args.workers)
        for dataset in datasets:
            test = table.column(dataset, "test", 200)
            optimum = float(test.max())
            best_val = float(test[int(np.argmax(table.column(dataset, "val", 12)))])
            print(f"\n### {dataset}: multi-fidelity, {args.mf_epochs:g} epochs per run ({len(seeds)} seeds)\n")
            print("| strategy | test acc. (mean ± s.e.) | median | worst | optimum found | best-val cell found | "
                  "epochs spent (mean) |")  # fmt: skip
            print("|---|---:|---:|---:|---:|---:|---:|")
            for label in MULTI_FIDELITY:
                found = [final_answer(s.path) for s in specs_by[(dataset, label)]]
                accs = [a for a, _ in found]
                results["multi_fidelity"][f"{dataset}/{label}"] = found
                row = summary_row(label, accs, optimum, best_val, None).rsplit("|", 2)[0]
                print(f"{row}| {np.mean([e for _, e in found]):.0f} |")

    seconds = time.perf_counter() - started
    print(
        f"\n{seconds:.0f} s with {args.workers} worker processes on {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), load average {load:.1f} at the start; "
        f"python {platform.python_version()}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
