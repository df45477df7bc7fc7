"""Few-shot supernets (reference algorithms.md section 6): the gradient-matching distance (G1), the
min-within partition (G2), splitting (G3) with inherited weights and momentum, routing, the
checkpoint, and runs under single-path and differentiable strategies, with exact resume after
kill -9."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options
from nasframe.core.registry import evaluators, spaces
from nasframe.data import DataOptions, DataSource
from nasframe.evaluators.supernet.fewshot import (
    FewShotSupernet,
    _loss_of_logits,
    gradient_distances,
    partition_min_within,
)


def tiny(options: dict | None = None):
    space_cls = spaces.get("nb201")
    space = space_cls(build_options(space_cls.Options, {"C": 4, "N": 1}, "space"))
    ev_cls = evaluators.get("supernet")
    opts = {"batch_size": 16, "few_shot": "gradient", "split_epochs": [1.0], "split_batches": 2, **(options or {})}
    data = DataSource(DataOptions(name="digits", limit=96), seed=0)
    return space, ev_cls(space, build_options(ev_cls.Options, opts, "evaluator"), data=data, device="cpu")


def test_partition_of_the_reference_example():
    """G2: the split is {0,1} | {2,3}, within-group sum 0.30, cross-group sum 3.45."""
    d = np.array([[0, 0.1, 0.9, 0.8], [0.1, 0, 0.85, 0.9], [0.9, 0.85, 0, 0.2], [0.8, 0.9, 0.2, 0]])
    groups, within, cross = partition_min_within(d)
    assert sorted(map(sorted, groups)) == [[0, 1], [2, 3]]
    assert within == pytest.approx(0.30) and cross == pytest.approx(3.45)


def test_partition_sizes_follow_gm_nas():
    """5 choices: groups of 2 and 3 (NAS-Bench-201); 2 choices: one each; 3 choices: one and two."""
    rng = np.random.default_rng(0)
    for k, sizes in ((5, [2, 3]), (2, [1, 1]), (3, [1, 2]), (6, [2, 4])):
        a = rng.random((k, k))
        d = a + a.T
        np.fill_diagonal(d, 0)
        groups, within, cross = partition_min_within(d)
        assert sorted(map(len, groups)) == sizes or (k == 6 and sorted(map(len, groups)) in ([2, 4], [3, 3]))
        assert sorted(i for g in groups for i in g) == list(range(k))
        assert within + cross == pytest.approx(np.triu(d, 1).sum())
        # no other admissible partition has a smaller within-group sum (brute force)
        import itertools

        def w(g, d=d):
            return sum(d[i, j] for i, j in itertools.combinations(g, 2))

        smallest = 2 if k >= 4 else 1
        best = min(
            w(s) + w([i for i in range(k) if i not in s])
            for size in range(smallest, k // 2 + 1)
            for s in itertools.combinations(range(k), size)
        )
        assert within == pytest.approx(best)


def test_gradient_distances_are_symmetric_with_a_zero_diagonal():
    """G1 on the NAS-Bench-201 supernet: D symmetric, zero diagonal (1e-6), entries in [0, 2]; the
    measurement leaves weights and BatchNorm statistics as they were."""
    space, ev = tiny()
    torch.manual_seed(0)
    ev._build()
    net = ev.supernet
    assert isinstance(net, FewShotSupernet)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batches, transform = ev._data()
    stream = ((transform.train(x, None), y) for x, y in batches.stream("train", 16, None))
    decision = space.decisions[3]
    d = gradient_distances(net, 0, decision, stream, 3, np.random.default_rng(0), _loss_of_logits)
    assert d.shape == (5, 5)
    assert np.allclose(d, d.T, atol=1e-6) and np.allclose(np.diag(d), 0, atol=1e-6)
    assert (d >= -1e-6).all() and (d <= 2 + 1e-6).all() and d.max() > 0.01
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_split_masks_inherited_weights_and_momentum():
    """G3: each child's mask is exactly its group on the split decision, other decisions unchanged,
    the groups partition the choices; children start with the parent's weights and momentum."""
    space, ev = tiny()
    torch.manual_seed(0)
    ev._build()
    arch = space.sample(np.random.default_rng(1))
    ev.supernet.set_path(arch)
    ev._train(2, lambda i: ev.path_params(arch), lambda: ev.path_params(arch))  # momentum buffers exist now
    parent = {k: v.clone() for k, v in ev.supernet.state_dict().items()}
    old_state = {n: ev.optimizer.state[p]["momentum_buffer"].clone() for n, p in ev._params.items()
                 if "momentum_buffer" in ev.optimizer.state.get(p, {})}  # fmt: skip
    net = ev.supernet
    source = net.split(0, "2<-1", [["none", "skip_connect"], ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]])
    ev._inherit(source)
    assert net.masks == [
        {"2<-1": ("none", "skip_connect")},
        {"2<-1": ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")},
    ]
    for name, value in net.state_dict().items():
        assert torch.equal(value, parent[source(name)])
    assert net.shots[0].cells[0].edges[0].ops[2][1].weight is not net.shots[1].cells[0].edges[0].ops[2][1].weight
    moved = {n: ev.optimizer.state[p]["momentum_buffer"] for n, p in ev._params.items()
             if "momentum_buffer" in ev.optimizer.state.get(p, {})}  # fmt: skip
    assert {source(n) for n in moved} == set(old_state)
    assert all(torch.equal(buf, old_state[source(n)]) for n, buf in moved.items())
    # routing: each architecture goes to the one child that owns its choice; names carry the child
    for arch in (space.sample(np.random.default_rng(i)) for i in range(20)):
        shot = 0 if arch["2<-1"] in ("none", "skip_connect") else 1
        assert net.shot_of(arch) == shot
        assert all(n.startswith(f"shots.{shot}.") for n in net.path_parameter_names(arch))


def test_children_compute_what_the_parent_computed_and_then_diverge():
    space, ev = tiny()
    torch.manual_seed(0)
    ev._build()
    net = ev.supernet
    net.eval()
    x = torch.randn(2, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    archs = [space.sample(np.random.default_rng(i)) for i in range(6)]
    before = []
    for a in archs:
        net.set_path(a)
        before.append(net(x))
    ev._inherit(
        net.split(0, "1<-0", [["none"], ["skip_connect"], ["nor_conv_1x1"], ["nor_conv_3x3"], ["avg_pool_3x3"]])
    )
    assert len(net.masks) == 5
    for a, y in zip(archs, before):
        net.set_path(a)
        assert torch.equal(net(x), y)


@pytest.mark.slow
def test_the_evaluator_splits_at_the_scheduled_epoch_and_the_checkpoint_keeps_it():
    space, ev = tiny({"split_epochs": [1.0, 2.0], "few_shot": "exhaustive", "split_decisions": ["3<-2", "1<-0"]})
    torch.manual_seed(0)
    spe = ev.steps_per_epoch()
    rng = np.random.default_rng(0)
    report = ev.train_paths(spe, lambda: space.sample(rng))
    assert report.metrics["sub_supernets"] == 1.0 and not report.notes  # the split is due after epoch 1
    report = ev.train_paths(1, lambda: space.sample(rng))
    assert report.metrics["sub_supernets"] == 5.0 and len(report.notes) == 1 and "3<-2" in report.notes[0]
    assert [m["3<-2"] for m in ev.supernet.masks] == [(c,) for c in space.decisions[5].choices]
    report = ev.train_paths(spe, lambda: space.sample(rng))
    assert report.metrics["sub_supernets"] == 25.0 and len(report.notes) == 5  # every child split on 1<-0
    saved = ev.state_dict()
    _, again = tiny({"split_epochs": [1.0, 2.0], "few_shot": "exhaustive", "split_decisions": ["3<-2", "1<-0"]})
    again.load_state_dict(saved)
    assert again.supernet.masks == ev.supernet.masks and again.splits == ev.splits
    restored = again.supernet.state_dict()
    assert all(torch.equal(v, restored[k]) for k, v in ev.supernet.state_dict().items())
    _, plain = tiny({"few_shot": "none", "split_epochs": []})
    with pytest.raises(ConfigError, match="few-shot"):
        plain.load_state_dict(saved)


def test_masked_mixed_forward_renormalises_over_the_owned_choices():
    space, ev = tiny()
    torch.manual_seed(0)
    ev._build()
    net = ev.supernet
    ev._inherit(net.split(0, "1<-0", [["none", "skip_connect"], ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]]))
    net.eval()
    x = torch.randn(2, 1, 8, 8)
    uniform = {d.name: torch.full((5,), 0.2) for d in space.decisions}
    net.mixed_shot = 1
    got = net.forward_mixed(x, uniform)
    expected = dict(uniform)
    expected["1<-0"] = torch.tensor([0.0, 0.0, 1 / 3, 1 / 3, 1 / 3])
    assert torch.allclose(got, net.shots[1].forward_mixed(x, expected), atol=1e-6)


def test_options_are_checked_in_one_line():
    ev_cls = evaluators.get("supernet")
    with pytest.raises(ConfigError, match="needs evaluator.split_epochs"):
        build_options(ev_cls.Options, {"few_shot": "gradient"}, "evaluator")
    with pytest.raises(ConfigError, match="needs evaluator.few_shot"):
        build_options(ev_cls.Options, {"split_epochs": [2]}, "evaluator")
    with pytest.raises(ConfigError):
        build_options(ev_cls.Options, {"few_shot": "halves", "split_epochs": [2]}, "evaluator")


TINY = [
    "--space", "nb201", "--evaluator", "supernet", "--quiet", "--set", "space.C=4", "--set", "space.N=1",
    "--set", "data.limit=240", "--set", "evaluator.batch_size=32", "--set", "run.tensorboard=false",
    "--set", "evaluator.few_shot=gradient", "--set", "evaluator.split_batches=2",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["mdenas", "darts"])
def test_strategies_run_on_a_few_shot_supernet_without_knowing(cli, tmp_path, strategy):
    """The split is the evaluator's: MDENAS (evaluations train paths) and DARTS (mixed steps) run
    unchanged, and the split shows in the logs."""
    out = tmp_path / strategy
    extra = ["--set", "strategy.epochs=3"] if strategy == "darts" else ["--budget", "5"]
    code, _, err = cli(
        "run", "--strategy", strategy, *TINY, "--set", "evaluator.split_epochs=[1]", *extra, "--out", out
    )
    assert code == 0, err
    log = (out / ("work.jsonl" if strategy == "darts" else "history.jsonl")).read_text().splitlines()
    notes = [n for line in log for n in json.loads(line).get("notes", [])]
    assert len(notes) == 1 and "split on" in notes[0] and "2 sub-supernets" in notes[0]


@pytest.mark.slow
def test_kill_9_around_a_split_resumes_to_the_identical_result(tmp_path):
    from conftest import kill_then_resume, run_outcome, run_to_the_end

    argv = [
        "--strategy", "spos", *TINY, "--seed", "2", "--set", "evaluator.split_epochs=[1, 2]",
        "--set", "strategy.supernet_epochs=3", "--set", "run.work_chunk_epochs=0.5",
        "--set", "strategy.population=3", "--set", "strategy.parents=2", "--set", "strategy.mutations=1",
        "--set", "strategy.crossovers=1", "--set", "strategy.generations=1", "--budget", "5",
        "--set", "strategy.bn_batches=2", "--set", "strategy.bn_batch_size=32",
    ]  # fmt: skip
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume(argv, tmp_path / "killed", after_lines=3, log="work.jsonl", before_lines=1)
    full = run_outcome(tmp_path / "full")
    assert run_outcome(tmp_path / "killed") == full
    assert sum(len(w.get("notes", [])) for w in full[1]) == 3  # 1 split, then each of the 2 children


def test_an_evaluation_across_a_split_trains_and_scores_its_own_path():
    """Gradient matching sets many paths; the evaluation that triggered the split goes on with its own."""
    space, ev = tiny({"epochs": 2.0})
    torch.manual_seed(0)
    arch = space.parse_arch(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    result = ev.evaluate(arch)
    net = ev.supernet
    assert result.ok and len(net.masks) == 2 and len(result.notes) == 1
    assert net.current_path == arch and net._current == net.shot_of(arch)
    assert np.isfinite(result.metrics["val_loss"])


def test_split_decisions_and_schedule_are_checked():
    with pytest.raises(ConfigError, match="unknown decision"):
        tiny({"split_decisions": ["9<-0"]})
    with pytest.raises(ConfigError, match="empty list"):
        tiny({"split_decisions": []})
    space, ev = tiny({"few_shot": "exhaustive", "split_epochs": [1.0]})
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ev.train_paths(ev.steps_per_epoch() + 1, lambda: space.sample(rng))
    saved = ev.state_dict()
    _, other = tiny({"few_shot": "exhaustive", "split_epochs": [2.0]})
    with pytest.raises(ConfigError, match="split_epochs"):
        other.load_state_dict(saved)
