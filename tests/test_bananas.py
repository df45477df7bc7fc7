"""bananas: the path and one-hot encodings, the ensemble's gradients against torch's autograd, the
acquisition functions, the candidate rule, and resume after kill -9 to the identical end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options
from nasframe.core.evaluator import Cost, Result
from nasframe.core.registry import spaces, strategies
from nasframe.strategies.bananas_encoding import ArchEncoder
from nasframe.strategies.bananas_predictor import EnsembleMLP, PredictorSettings
from nasframe.testing import ToySpace

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def make(space, seed=0, **options):
    cls = strategies.get("bananas")
    return cls(space, build_options(cls.Options, options, "strategy"), seed=seed)


def test_path_encoding_of_the_resnet_cell_sets_its_four_paths():
    space = spaces.get("nb201")()
    enc = ArchEncoder(space, "auto")
    assert enc.kind == "path" and enc.size == 5 + 25 + 125
    row = enc.encode([space.from_string(RESNET)])[0]
    # routes 0-3, 0-1-3, 0-2-3, 0-1-2-3 read off the cell string by hand
    paths = [("skip_connect",), ("nor_conv_3x3", "none"), ("none", "skip_connect"),
             ("nor_conv_3x3", "nor_conv_3x3", "skip_connect")]  # fmt: skip
    assert sorted(np.flatnonzero(row)) == sorted(enc.index[p] for p in paths)
    short = ArchEncoder(space, "path", max_length=2)  # the released code's truncation on nb201
    assert short.size == 30 and short.encode([space.from_string(RESNET)]).sum() == 3


def test_truncated_paths_cannot_tell_apart_cells_whose_two_step_routes_swap():
    space = spaces.get("nb201")()
    a = space.from_string("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|")
    b = space.from_string("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    # routes 0-1-3 and 0-2-3 carry (1x1, 3x3) and (3x3, pool) in a, swapped in b; 0-1-2-3 differs
    assert np.array_equal(*ArchEncoder(space, "path", max_length=2).encode([a, b]))
    assert not np.array_equal(*ArchEncoder(space, "path").encode([a, b]))


def test_one_hot_encoding_and_a_path_request_on_a_space_without_paths():
    space = ToySpace(decisions=3, choices=4)
    enc = ArchEncoder(space, "auto")
    assert enc.kind == "onehot" and enc.size == 12
    row = enc.encode([space.sample(np.random.default_rng(0))])[0]
    assert row.sum() == 3 and all(row[4 * i : 4 * i + 4].sum() == 1 for i in range(3))
    with pytest.raises(ConfigError, match="path needs a space that lists its cells' paths"):
        ArchEncoder(space, "path")


def test_ensemble_gradients_equal_torch_autograd():
    rng = np.random.default_rng(0)
    settings = PredictorSettings(members=3, layers=3, width=6)
    model = EnsembleMLP(7, settings, rng)
    x = rng.random((3, 5, 7))
    y = rng.random((3, 5)) * 10
    losses = model.loss_and_gradients(x, y)
    weights = [torch.tensor(w, requires_grad=True) for w in model.weights]
    biases = [torch.tensor(b, requires_grad=True) for b in model.biases]
    h = torch.tensor(x)
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w + b
        if i < len(weights) - 1:
            h = torch.relu(h)
    per_member = (h[..., 0] - torch.tensor(y)).abs().mean(dim=1)
    per_member.sum().backward()
    assert np.allclose(losses, per_member.detach().numpy())
    for mine, ref in zip(model._gw + model._gb, weights + biases):
        assert np.allclose(mine, ref.grad.numpy(), atol=1e-10)


def test_adam_step_is_kerass_update():
    rng = np.random.default_rng(1)
    model = EnsembleMLP(3, PredictorSettings(members=1, layers=1, width=2, lr=0.01), rng)
    before = model.params.copy()
    g = rng.standard_normal(model.params.shape)
    model.grads[...] = g
    model.adam_step()
    m, v = 0.1 * g, 0.01 * g * g  # first step: (1 - beta) x gradient
    lr_t = 0.01 * np.sqrt(1 - 0.99) / (1 - 0.9)
    assert np.allclose(model.params, before - lr_t * m / (np.sqrt(v) + 1e-7))


def test_the_ensemble_learns_a_linear_target():
    rng = np.random.default_rng(2)
    x = (rng.random((60, 10)) < 0.3).astype(float)
    y = 80.0 + x @ np.arange(10.0)
    model = EnsembleMLP(10, PredictorSettings(members=3, layers=2, width=20, epochs=300, batch_size=16), rng)
    error = model.fit(x, y, rng)
    assert error < 1.0 < np.abs(y - y.mean()).mean()  # far better than predicting the mean


def test_acquisition_orders_by_hand_worked_scores():
    s = make(ToySpace(), seed=0, acquisition="mean")
    predictions = np.array([[1.0, 5.0, 3.0], [3.0, 5.0, 1.0]])  # means 2, 5, 2; stds 1, 0, 1
    assert list(s.acquisition_order(predictions)) == [1, 0, 2]
    s = make(ToySpace(), seed=0, acquisition="ucb")
    wide = np.array([[0.0, 4.0], [4.0, 4.0]])  # means 2, 4; stds 2, 0 -> ucb 3, 4
    assert list(s.acquisition_order(wide)) == [1, 0]
    its = make(ToySpace(), seed=0, acquisition="its")
    certain = np.array([[1.0, 9.0, 4.0]] * 5)  # no spread: the Thompson draws are the means
    assert list(its.acquisition_order(certain)) == [1, 2, 0]


def test_candidates_mutate_the_best_first_and_are_new_and_distinct():
    space = spaces.get("nb201")()
    s = make(space, seed=3)
    assert s.mutation_prob == pytest.approx(0.25)  # 1 / (6 edges - 2), the code's rate
    rng = np.random.default_rng(0)
    ranked = [space.sample(rng) for _ in range(5)]
    s.proposed.update(a.key() for a in ranked)
    cands = s.candidates(ranked)
    assert len(cands) >= 100 and len({a.key() for a in cands}) == len(cands)  # the code stops between parents
    assert not {a.key() for a in cands} & s.proposed
    from_best = [a for a in cands if sum(a[k] != ranked[0][k] for k in a) <= 2]
    assert len(from_best) > 50  # most are one or two edits from the best architecture
    changed = [sum(m[k] != ranked[0][k] for k in m) for m in s.mutations(ranked[0], 4000)]
    assert np.mean(changed) == pytest.approx(6 * 0.25, abs=0.05)


def test_a_search_round_trains_on_successes_and_proposes_unseen_batches():
    space = ToySpace(decisions=4, choices=3)
    s = make(space, seed=1, initial=5, batch=3, candidates=10, layers=2, width=8, epochs=10)
    starts = s.ask()
    assert len(starts) == 5
    for i, a in enumerate(starts):
        s.tell(a, Result.failed("scripted") if i == 0 else Result(metrics={"val_acc": float(i)}, cost=Cost()))
    batch = s.ask()
    assert len(batch) == 3 and s.phase == "predictor" and s.train_error is not None
    assert not {a.key() for a in batch} & {a.key() for a in starts}


@pytest.mark.slow
def test_kill_9_in_the_predictor_phase_resumes_to_the_identical_result(tmp_path, core_toy):
    from conftest import kill_then_resume, run_outcome, run_to_the_end

    argv = ["--plugin", core_toy, "--strategy", "bananas", "--space", "core_toy", "--evaluator", "core_toy_eval",
            "--set", "strategy.initial=4", "--set", "strategy.batch=3", "--set", "strategy.epochs=10",
            "--set", "strategy.layers=3", "--budget", "16", "--seed", "2", "--quiet",
            "--set", "run.checkpoint_every=2", "--set", "run.tensorboard=false"]  # fmt: skip
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume([*argv, "--set", "evaluator.sleep=0.15"], tmp_path / "killed", after_lines=8)
    assert run_outcome(tmp_path / "killed") == run_outcome(tmp_path / "full")
