"""ABS through the runner and the CLI: capability check, history/best.json, exact resume, the real
DARTS supernet end to end on digits, and the angle-vector properties of the spaces' supernets (A2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nasframe.common.options import build_options
from nasframe.core.registry import evaluators, spaces
from nasframe.data import DataOptions, DataSource, DataSpec
from nasframe.testing import InMemoryRun

FAKES = str(Path(__file__).resolve().parent / "plugins" / "abs_fakes.py")


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


# ---- wiring --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("evaluator", ["short_train", "core_toy_eval"])
def test_abs_refuses_an_evaluator_without_weight_sharing(cli, core_toy, tmp_path, evaluator):
    space = "darts" if evaluator == "short_train" else "core_toy"
    code, _, err = cli(
        "run",
        "--plugin",
        core_toy,
        "--strategy",
        "abs",
        "--space",
        space,
        "--evaluator",
        evaluator,
        "--quiet",
        "--out",
        tmp_path / "r",
    )
    assert code == 2 and err.count("\n") == 1
    assert f"strategy 'abs' needs an evaluator with angle metric; '{evaluator}' has none" in err
    assert "supernet" in err  # the message names an evaluator that offers it
    assert not (tmp_path / "r").exists()


def toy_run(out: Path, budget: int, *extra: str) -> list[str]:
    return [
        "run",
        "--plugin",
        FAKES,
        "--strategy",
        "abs",
        "--space",
        "abs_toy",
        "--evaluator",
        "abs_fake_ws",
        "--quiet",
        "--out",
        str(out),
        "--budget",
        str(budget),
        "--set",
        "space.decisions=5",
        "--set",
        "space.choices=4",
        "--set",
        "space.zero_on=[1,3]",
        "--set",
        "strategy.target_size=30",
        "--set",
        "strategy.drop_per_step=2",
        "--set",
        "strategy.samples_per_operator=6",
        "--set",
        "strategy.warmup_epochs=2",
        "--set",
        "strategy.reset_base_after=3",
        "--set",
        "run.tensorboard=false",
        *extra,
    ]


def test_runner_logs_steps_and_returns_an_arch_of_the_shrunk_space(cli, tmp_path):
    code, _, err = cli(*toy_run(tmp_path / "r", 12))
    assert code == 0, err
    lines = history(tmp_path / "r")
    steps = [ln["strategy"] for ln in lines if "abs_dropped" in ln["strategy"]]
    assert len(steps) >= 2 and [s["abs_steps"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(s["abs_dropped_count"] == 2 for s in steps)
    # sizes logged per step shrink, and the last one is the first under the target of 30
    sizes = [10 ** s["abs_log10_size"] for s in steps]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] <= 30 + 1e-6 < sizes[-2]
    remaining = steps[-1]["abs_remaining"]
    assert [len(v) for v in remaining.values()] == steps[-1]["abs_remaining_counts"]
    later = lines[len(steps) :]
    assert later and all(ln["arch"][k] in remaining[k] for ln in later for k in remaining)  # the base's proposals
    best = json.loads((tmp_path / "r" / "best.json").read_text())
    final = best["final"]["arch"]
    assert all(final[k] in v for k, v in remaining.items())
    # the supernet training between evaluations is on the budget: warm-up 2 + 5 (default) per later step,
    # plus the fake's 1 per evaluation
    assert steps[-1]["abs_supernet_epochs"] == 2 + 5 * (len(steps) - 1)
    assert best["cost"]["epochs"] == pytest.approx(2 + 5 * (len(steps) - 1) + len(lines))


def test_resumed_run_matches_the_uninterrupted_one(cli, tmp_path):
    assert cli(*toy_run(tmp_path / "straight", 10))[0] == 0
    assert cli(*toy_run(tmp_path / "cut", 2))[0] == 0  # stops in the middle of shrinking
    code, _, err = cli("resume", tmp_path / "cut", "--budget", "10", "--quiet")
    assert code == 0, err

    def strip(lines):
        return [{k: v for k, v in ln.items() if k not in ("time", "cost")} for ln in lines]

    assert strip(history(tmp_path / "cut")) == strip(history(tmp_path / "straight"))


# ---- the angle vectors of the real supernets (A2) ---------------------------------------------------------
def test_identity_block_adds_no_elements():
    cls = spaces.get("mobilenet")
    space = cls(build_options(cls.Options, {"small_input": True, "width_mult": 0.25}, "space"))
    net = space.build_supernet(DataSpec("digits", 1, 8, 8, 10))
    params = dict(net.named_parameters())
    arch = space.sample(np.random.default_rng(0)).replace(**{"stage2.block1": "k5e6"})

    def elements(a):
        return sum(params[t].numel() if isinstance(t, str) else t.numel() for t in net.angle_terms(a))

    with_block, without = net.angle_terms(arch), net.angle_terms(arch.replace(**{"stage2.block1": "zero"}))
    block = [t for t in with_block if isinstance(t, str) and t.startswith("blocks.stage2_block1.")]
    assert block and [t for t in with_block if t not in block] == without
    assert elements(arch) - elements(arch.replace(**{"stage2.block1": "zero"})) == sum(params[t].numel() for t in block)


@pytest.fixture(scope="module")
def digits():
    return DataSource(DataOptions(name="digits"), seed=0)


def test_pooling_edge_adds_c_times_9_elements_of_one_ninth_to_both_vectors(digits):
    cls = spaces.get("darts")
    space = cls(build_options(cls.Options, {"supernet_C": 4, "supernet_layers": 3}, "space"))
    ev_cls = evaluators.get("supernet")
    ev = ev_cls(space, build_options(ev_cls.Options, {"batch_size": 32}, "evaluator"), data=digits, device="cpu")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ev.train_paths(
        max(1, round(0.1 * ev.steps_per_epoch())), lambda: space.sample(rng)
    )  # move the weights away from the base
    pool_edge = "normal.3<-1"
    arch = space.validate({d.name: "sep_conv_3x3" for d in space.decisions}).replace(**{pool_edge: "max_pool_3x3"})
    v0, v1 = ev.path_vectors(arch)
    assert v0.shape == v1.shape and not torch.equal(v0, v1)
    params = dict(ev.supernet.named_parameters())
    offset, pools = 0, 0
    for term in ev.supernet.angle_terms(arch):
        n = params[term].numel() if isinstance(term, str) else term.numel()
        if not isinstance(term, str):
            pools += 1
            assert n == 4 * 9  # C = 4 channels in the (only) normal cell, 3x3 each
            assert torch.all(v0[offset : offset + n] == 1 / 9) and torch.all(v1[offset : offset + n] == 1 / 9)
        offset += n
    assert offset == v0.numel()
    # the edge 1 -> 3 lies on two of the 16 paths ([1,3,4,5], [1,3,5]); one normal cell at 3 layers
    assert pools == 2
    skip = arch.replace(**{pool_edge: "skip_connect"})
    assert ev.path_vectors(skip)[0].numel() == v0.numel() - 2 * 4 * 9  # skip adds nothing


def test_frozen_operator_of_a_real_supernet_is_dropped_first(digits):
    """An op whose weights never move (frozen at initialisation) scores lowest in its decision."""
    from nasframe.common.plugins import load_plugin
    from nasframe.strategies.abs_shrinking import AbsShrinking

    load_plugin(str(Path(__file__).resolve().parent / "plugins" / "supernet_toy.py"))
    space = spaces.get("supernet_toy")()  # 3 layers of conv3x3 / conv5x5 / avg_pool / identity
    ev_cls = evaluators.get("supernet")
    ev = ev_cls(
        space, build_options(ev_cls.Options, {"batch_size": 32, "lr": 0.05}, "evaluator"), data=digits, device="cpu"
    )
    torch.manual_seed(0)
    ev.save_base_weights()  # builds the supernet
    frozen = {n: p for n, p in ev.supernet.named_parameters() if n.startswith("layers.1.conv5x5.")}
    before = {n: p.detach().clone() for n, p in frozen.items()}
    for p in frozen.values():
        p.requires_grad_(False)
    options = {
        "schedule": "per_decision",
        "min_choices": 3,
        "samples_per_operator": 16,
        "warmup_epochs": 15,
        "target_size": 1,
    }
    abs_ = AbsShrinking(space, build_options(AbsShrinking.Options, options, "strategy"), seed=0)
    InMemoryRun(abs_, ev).evaluate_rounds(1)
    assert all(torch.equal(p, before[n]) for n, p in frozen.items())  # it really never moved
    assert abs_.steps[0]["dropped"]["layer1"] == ["conv5x5"]
    scores = dict(abs_.steps[0]["scores"]["layer1"])
    assert scores["conv5x5"] < min(v for k, v in scores.items() if k != "conv5x5")


# ---- end to end on the real supernet ---------------------------------------------------------------------
def test_darts_supernet_end_to_end_on_digits(cli, tmp_path):
    """6 steps shrink every DARTS edge to 2 ops; MDENAS then searches the shrunk space and the
    derived genotype uses only kept operators."""
    out = tmp_path / "run"
    code, _, err = cli(
        "run",
        "--strategy",
        "abs",
        "--space",
        "darts",
        "--evaluator",
        "supernet",
        "--data",
        "digits",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out,
        "--budget",
        "8",
        "--set",
        "space.supernet_C=4",
        "--set",
        "space.supernet_layers=3",
        "--set",
        "evaluator.steps=2",
        "--set",
        "evaluator.batch_size=32",
        "--set",
        "strategy.base=mdenas",
        "--set",
        "strategy.samples_per_operator=2",
        "--set",
        "strategy.warmup_epochs=0.2",
        "--set",
        "strategy.epochs_between_steps=0.1",
        "--set",
        "strategy.reset_base=false",
        "--set",
        "run.tensorboard=false",
    )
    assert code == 0, err
    lines = history(out)
    steps = [ln["strategy"] for ln in lines if "abs_dropped" in ln["strategy"]]
    assert [s["abs_dropped_count"] for s in steps] == [28] * 6
    # each step's proposal is scored with the shared weights: it trains nothing
    assert all(ln["cost"]["epochs"] == 0.0 and ln["phase"].startswith("abs step") for ln in lines[:6])
    remaining = steps[-1]["abs_remaining"]
    assert len(remaining) == 28 and all(len(v) == 2 for v in remaining.values())
    assert all("probabilities" in ln["strategy"] for ln in lines[6:])  # MDENAS took over
    best = json.loads((out / "best.json").read_text())
    final = best["final"]
    assert all(final["arch"][k] in v for k, v in remaining.items())
    derived = final["export"]["derived_arch"]  # the DARTS rule on MDENAS' probabilities: a genotype
    live = {k: v for k, v in derived.items() if v != "none"}
    assert len(live) == 16 and all(v in remaining[k] for k, v in live.items())
    assert final["export"]["derived_genotype"].startswith("Genotype(normal=[")
