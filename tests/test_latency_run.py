"""Latency in runs: `constraints.max_latency_ms` (never exceeded by a scored architecture), latency_ms and its
source in history.jsonl and best.json, multi-objective fronts on latency, SPOS' bins and NSE's penalty on a
latency table, the refusals (a table for another space or device, latency bins without a table) and runs
without latency writing exactly what they wrote before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from latency_fakes import DIGITS, TINY_MOBILENET, fake_table, make_space, write_fake_table

from nasframe.common.latency import LatencySettings
from nasframe.common.options import build_options
from nasframe.core.costs import ArchCosts
from nasframe.core.latency import LatencyCosts, random_archs
from nasframe.core.latency_table import TablePredictor
from nasframe.core.multibranch import arch_of, branches_of
from nasframe.strategies.nse import Nse

TINY_SETS = [x for k, v in TINY_MOBILENET.items() for x in ("--set", f"space.{k}={json.dumps(v)}")]
ZERO_COST = ["--evaluator", "zero_cost", "--set", "evaluator.proxy=synflow", "--set", "evaluator.model_stats=false"]
QUIET = ["--quiet", "--set", "run.tensorboard=false", "--data", "digits"]


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


@pytest.fixture
def table(tmp_path) -> tuple[Path, TablePredictor, float]:
    """A made-up table of the tiny MobileNet on digits, its predictor, and a limit half the space meets."""
    space = make_space("mobilenet", **TINY_MOBILENET)
    path = write_fake_table(tmp_path / "table.json", space, DIGITS)
    predictor = TablePredictor(fake_table(space, DIGITS), space, DIGITS)
    limit = float(np.median([predictor.predict_ms(a) for a in random_archs(space, 60, seed=9)]))
    return path, predictor, limit


@pytest.mark.parametrize("strategy", [["random"], ["evolution", "--set", "strategy.population=4"]])
def test_a_latency_limit_is_never_exceeded_by_a_scored_architecture(cli, tmp_path, table, strategy):
    path, predictor, limit = table
    out = tmp_path / "run"
    code, _, err = cli(
        "run", "--strategy", *strategy, "--space", "mobilenet", *TINY_SETS, *ZERO_COST, *QUIET, "--budget", "12",
        "--set", f"latency.table={path}", "--set", f"constraints.max_latency_ms={limit}", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    records = history(out)
    assert len(records) == 12
    space = make_space("mobilenet", **TINY_MOBILENET)
    for rec in records:
        assert rec["latency_source"] == "table"
        assert rec["latency_ms"] == pytest.approx(predictor.predict_ms(space.validate(rec["arch"])), rel=1e-12)
        assert rec["latency_ms"] <= limit
    best = json.loads((out / "best.json").read_text())
    assert best["infeasible"] > 0  # the limit did reject architectures: half the space is over it
    assert best["final"]["latency_ms"] <= limit and best["final"]["latency_source"] == "table"
    assert best["latency"]["source"] == "table" and best["latency"]["table"] == str(path)
    assert "pareto" not in best  # one objective: no front


def test_multi_objective_evolution_on_latency_returns_a_front_under_the_limit(cli, tmp_path, table):
    path, predictor, limit = table
    out = tmp_path / "run"
    code, stdout, err = cli(
        "run", "--strategy", "evolution", "--space", "mobilenet", *TINY_SETS, *ZERO_COST, *QUIET, "--budget", "14",
        "--set", "strategy.population=4", "--set", "strategy.objectives=[val_acc,latency_ms]",
        "--set", f"latency.table={path}", "--set", f"constraints.max_latency_ms={limit}", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    best = json.loads((out / "best.json").read_text())
    records = history(out)
    assert best["objectives"] == ["val_acc", "latency_ms"] and best["pareto"]
    for member in best["pareto"]:
        rec = records[member["index"]]
        assert rec["arch"] == member["arch"] and member["latency_ms"] == rec["latency_ms"] <= limit
        assert member["val_acc"] == rec["metrics"]["val_acc"] and member["latency_source"] == "table"
    accs = [m["val_acc"] for m in best["pareto"]]
    lats = [m["latency_ms"] for m in best["pareto"]]
    assert accs == sorted(accs, reverse=True) and lats == sorted(lats, reverse=True)  # a front: both fall
    assert best["final"]["arch"] == best["pareto"][0]["arch"]  # the stated rule: the most accurate member
    assert "Pareto front over val_acc, latency_ms" in stdout
    code, shown, _ = cli("show", out)
    assert code == 0 and "Pareto front over val_acc, latency_ms" in shown and "latency:" in shown
    code, inspected, _ = cli("inspect", "--space", "mobilenet", *TINY_SETS, "--arch-file", out / "best.json")
    assert code == 0 and f"latency: {best['final']['latency_ms']:.3f} ms, recorded by the run (table)" in inspected


def test_measured_latency_when_there_is_no_table(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli(
        "run", "--strategy", "random", "--space", "mobilenet", *TINY_SETS, *ZERO_COST, *QUIET, "--budget", "4",
        "--set", "constraints.max_latency_ms=1000", "--set", "latency.clock=cpu", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    for rec in history(out):
        assert rec["latency_source"] == "measured" and 0 < rec["latency_ms"] <= 1000
    best = json.loads((out / "best.json").read_text())
    assert best["latency"]["source"] == "measured" and best["latency"]["clock"] == "cpu"
    assert best["final"]["latency_source"] == "measured"


def test_a_run_without_latency_writes_no_latency_fields(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("run", "--strategy", "random", "--space", "nb201", "--evaluator", "tabular", *QUIET,
                       "--budget", "5", "--out", out)  # fmt: skip
    assert code == 0, err
    for rec in history(out):
        assert "latency_ms" not in rec and "latency_source" not in rec
    best = json.loads((out / "best.json").read_text())
    assert not {"latency", "objectives", "pareto"} & set(best)
    assert not {"latency_ms", "latency_source"} & set(best["final"])
    assert "\nlatency:" not in (out / "config.yaml").read_text()  # the section is written only when set


@pytest.mark.parametrize(
    "sets, message",
    [
        (["--space", "shufflenet"], "was built for space 'mobilenet', not 'shufflenet'"),
        (["--space", "mobilenet", "--set", "space.small_input=true"], "was built with space.width_mult=0.25"),
        (["--space", "mobilenet", *TINY_SETS, "--set", "latency.device=cuda"], "measured with device 'cpu'; device"),
        (["--space", "mobilenet", *TINY_SETS, "--set", "latency.data=cifar10"], "was measured at input 1x8x8"),
    ],
)
def test_a_table_for_another_space_device_or_input_is_one_line_exit_2(cli, tmp_path, table, sets, message):
    path, _, _ = table
    out = tmp_path / "run"
    code, stdout, err = cli("run", "--strategy", "random", *sets, *ZERO_COST, *QUIET, "--budget", "2",
                            "--set", f"latency.table={path}", "--out", out)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert not out.exists()


def test_a_damaged_table_in_a_run_is_one_line_exit_2(cli, tmp_path, table):
    path, _, _ = table
    path.write_text(path.read_text()[:-40])
    code, _, err = cli("run", "--strategy", "random", "--space", "mobilenet", *TINY_SETS, *ZERO_COST, *QUIET,
                       "--set", f"latency.table={path}", "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"latency table {path}" in err


def test_latency_bins_and_nse_latency_need_a_table(cli, tmp_path):
    code, _, err = cli("run", "--strategy", "spos", "--space", "mobilenet", *TINY_SETS, "--evaluator", "supernet",
                       *QUIET, "--set", "strategy.path_sampling=flops_bins", "--set", "strategy.bins_metric=latency_ms",
                       "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and "strategy.bins_metric=latency_ms needs a latency table (latency.table)" in err
    assert not (tmp_path / "run").exists()


def test_unknown_latency_runtime_in_a_run_is_one_line(cli, tmp_path):
    code, _, err = cli("run", "--strategy", "random", "--space", "mobilenet", *QUIET, "--set", "latency.runtime=tvm",
                       "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and "latency.runtime: 'tvm' is not allowed; choose one of auto, torch, onnxruntime" in err


SPOS_TINY = [
    "--set", "strategy.supernet_epochs=0.5", "--set", "strategy.population=4", "--set", "strategy.parents=2",
    "--set", "strategy.mutations=1", "--set", "strategy.crossovers=1", "--set", "strategy.generations=1",
    "--set", "strategy.bn_batches=1", "--set", "strategy.bn_batch_size=32", "--set", "evaluator.batch_size=32",
    "--set", "data.limit=160",
]  # fmt: skip


@pytest.mark.slow
def test_spos_under_a_latency_limit_with_latency_bins_and_two_objectives(cli, tmp_path, table):
    path, predictor, limit = table
    space = make_space("mobilenet", **TINY_MOBILENET)
    lats = sorted(predictor.predict_ms(a) for a in random_archs(space, 60, seed=2))
    edges = f"[{lats[5]},{lats[30]},{lats[55]}]"
    out = tmp_path / "run"
    code, _, err = cli(
        "run", "--strategy", "spos", "--space", "mobilenet", *TINY_SETS, "--evaluator", "supernet", *QUIET,
        *SPOS_TINY, "--set", "strategy.path_sampling=flops_bins", "--set", "strategy.bins_metric=latency_ms",
        "--set", f"strategy.flops_bins={edges}", "--set", "strategy.objectives=[val_acc,latency_ms]",
        "--set", f"latency.table={path}", "--set", f"constraints.max_latency_ms={limit}", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    records = history(out)
    assert records and all(r["latency_ms"] <= limit and r["latency_source"] == "table" for r in records)
    best = json.loads((out / "best.json").read_text())
    assert best["pareto"] and all(m["latency_ms"] <= limit for m in best["pareto"])
    assert best["final"]["arch"] == best["pareto"][0]["arch"]


def test_nse_latency_rows_reproduce_the_table_prediction():
    cls_opts = {"alloc_plan": "NR", "alloc_space": [1, 0, 0, 0, 0], "channel_dist": [4, 4, 8, 8, 8],
                "cell_plan": "multi_branch", "small_input": True, "last_channels": 16}  # fmt: skip
    space = make_space("nse", **cls_opts)
    table = fake_table(space, DIGITS, correction={"slope": 1.25, "intercept": 0.3})
    latency = LatencyCosts(space, DIGITS, LatencySettings(), table, "t.json")
    s = Nse(space, build_options(Nse.Options, {"cost_metric": "latency_ms", "cost_target": 5}, "strategy"), seed=0)
    s.bind_costs(ArchCosts(space, DIGITS, latency))
    cells = space.branch_cells()
    for arch in random_archs(space, 10, seed=1):
        assert s.cost_of(branches_of(cells, arch)) == pytest.approx(latency.latency_ms(arch), rel=1e-9)
    request = s.ask()[0]
    base, rows = request.settings.cost_table
    everything = arch_of(cells, [list(range(len(c.gates))) for c in cells])
    assert base + sum(map(sum, rows)) == pytest.approx(latency.latency_ms(everything), rel=1e-9)
    assert request.settings.cost_metric == "latency_ms"
