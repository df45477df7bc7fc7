"""DARTS: the architecture gradient (first order by hand, second order against autograd's exact one),
the bilevel request, weights and alphas trained by their own optimizers only, runs on the darts,
mobilenet and nb201 spaces, and exact resume after kill -9 (reference section 4.5)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from nasframe.common.options import build_options
from nasframe.core.capabilities import AlphaOptimizer
from nasframe.core.registry import evaluators, spaces
from nasframe.core.requests import ScoreShared, TrainMixed
from nasframe.data import DataOptions, DataSource
from nasframe.evaluators.supernet.differentiable import MixedForward, _loss, _plain_settings, first_order, second_order
from nasframe.strategies.darts import Darts


class TwoScales(nn.Module):
    """One decision with two choices, h = x (choice a) or 2x (choice b), then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 4, bias=False)

    def forward_mixed(self, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        p = weights["d"]
        return self.head(p[0] * x + p[1] * (2 * x))


def softmax_weights(alphas):
    return {n: torch.softmax(a, dim=-1) for n, a in alphas.items()}


def test_first_order_gradient_equals_the_hand_computation():
    torch.manual_seed(0)
    net = TwoScales().double()
    model = MixedForward(net)
    alpha = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1])
    grads, loss = first_order(model, {"d": alpha}, softmax_weights, (x, y))
    # by hand: z_b = (p0 + 2 p1) W x_b; dL/dz_b = (softmax(z_b) - onehot(y_b)) / B; dz_b/dp_i = c_i W x_b;
    # dp/dalpha = diag(p) - p p^T
    W, a = net.head.weight.detach().numpy(), alpha.detach().numpy()
    p = np.exp(a) / np.exp(a).sum()
    c = np.array([1.0, 2.0])
    u = x.numpy() @ W.T  # W x_b for every b
    z = (p @ c) * u
    s = np.exp(z - z.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    dz = (s - np.eye(4)[y.numpy()]) / len(y)
    dl_dp = np.array([(dz * (ci * u)).sum() for ci in c])
    expected = (np.diag(p) - np.outer(p, p)) @ dl_dp
    assert np.allclose(grads["d"].numpy(), expected, atol=1e-12)
    ce = -np.log(s[np.arange(len(y)), y.numpy()]).mean()
    assert loss == pytest.approx(ce, abs=1e-12)


def darts_supernet_double():
    cls = spaces.get("darts")
    space = cls(build_options(cls.Options, {"supernet_C": 4, "supernet_layers": 3}, "space"))
    spec = DataSource(DataOptions(name="digits"), seed=0).spec
    torch.manual_seed(0)
    return space, space.build_supernet(spec).double()


class Smooth(nn.Module):
    """Two decisions of three tanh layers each: smooth, so DARTS' finite difference is accurate."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.ModuleList(nn.Linear(6, 6) for _ in range(3))
        self.b = nn.ModuleList(nn.Linear(6, 6) for _ in range(3))
        self.head = nn.Linear(6, 4)

    def forward_mixed(self, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        for name, ops in (("d0", self.a), ("d1", self.b)):
            x = sum(weights[name][i] * torch.tanh(op(x)) for i, op in enumerate(ops))
        return self.head(x)


def exact_second_order(model, alphas, train, val, xi, momentum, wd, buffers, decay_1d=True):
    """d/dalpha L_val(w'(alpha), alpha), w'(alpha) = w - xi (m buf + grad_w L_train(w, alpha) + wd w), by
    autograd's double backward (`decay_1d` False: wd 0 on 1-D parameters)."""
    named = list(model.named_parameters())
    w = [p.detach() for _, p in named]
    w_leaf = [x.clone().requires_grad_(True) for x in w]
    model.weights = softmax_weights(alphas)
    train_loss = _loss(model, *train, _plain_settings(), params={n: x for (n, _), x in zip(named, w_leaf)})
    g = torch.autograd.grad(train_loss, w_leaf, create_graph=True, allow_unused=True)
    g = [torch.zeros_like(x) if gi is None else gi for x, gi in zip(w, g)]
    decay = [wd if decay_1d or x.dim() > 1 else 0.0 for x in w]
    unrolled = {n: x - xi * (momentum * buffers[n] + gi + d * x) for (n, _), x, gi, d in zip(named, w, g, decay)}
    model.weights = softmax_weights(alphas)
    val_loss = _loss(model, *val, _plain_settings(), params=unrolled)
    exact = torch.autograd.grad(val_loss, list(alphas.values()), allow_unused=True)
    return torch.cat([torch.zeros_like(a) if e is None else e for a, e in zip(alphas.values(), exact)])


def second_order_case(model, names, size, x_shape, classes):
    rng = torch.Generator().manual_seed(1)
    alphas = {n: (0.3 * torch.randn(size, generator=rng, dtype=torch.float64)).requires_grad_(True) for n in names}
    train = (
        torch.randn(8, *x_shape, generator=rng, dtype=torch.float64),
        torch.randint(0, classes, (8,), generator=rng),
    )
    val = (torch.randn(8, *x_shape, generator=rng, dtype=torch.float64), torch.randint(0, classes, (8,), generator=rng))
    buffers = {n: 0.1 * torch.randn(p.shape, generator=rng, dtype=torch.float64) for n, p in model.named_parameters()}
    return alphas, train, val, buffers


@pytest.mark.parametrize("xi", [0.025, 0.5])
def test_second_order_gradient_equals_the_exact_one_within_the_finite_difference_error(xi):
    """On a smooth network DARTS' central difference (eps = 0.01 / |d|) matches autograd's double backward
    to O(eps^2); the first-order gradient does not (the implicit term matters)."""
    torch.manual_seed(0)
    model = MixedForward(Smooth().double())
    alphas, train, val, buffers = second_order_case(model, ["d0", "d1"], 3, (6,), 4)
    approx, _ = second_order(model, alphas, softmax_weights, train, val, xi, 0.9, 3e-4, buffers)
    exact = exact_second_order(model, alphas, train, val, xi, 0.9, 3e-4, buffers)
    a = torch.cat([approx[n] for n in alphas])
    assert (a - exact).norm() / exact.norm() < 1e-4
    first, _ = first_order(model, alphas, softmax_weights, val)
    f = torch.cat([first[n] for n in alphas])
    assert (f - exact).norm() / exact.norm() > 100 * (a - exact).norm() / exact.norm()


def test_second_order_without_decay_on_1d_parameters_unrolls_the_step_the_weights_then_take():
    """With `decay_1d` off (evaluator.decay_1d=false) the unrolled step exempts biases from the weight decay,
    as the weight step does: the gradient then equals the exact one for that step (relative 1e-4), which
    differs from the all-decay one by far more at wd 0.5."""
    torch.manual_seed(0)
    model = MixedForward(Smooth().double())
    alphas, train, val, buffers = second_order_case(model, ["d0", "d1"], 3, (6,), 4)
    approx, _ = second_order(model, alphas, softmax_weights, train, val, 0.5, 0.9, 0.5, buffers, decay_1d=False)
    exact = exact_second_order(model, alphas, train, val, 0.5, 0.9, 0.5, buffers, decay_1d=False)
    every = exact_second_order(model, alphas, train, val, 0.5, 0.9, 0.5, buffers)
    a = torch.cat([approx[n] for n in alphas])
    assert (a - exact).norm() / exact.norm() < 1e-4
    assert (every - exact).norm() / exact.norm() > 100 * (a - exact).norm() / exact.norm()


def test_second_order_on_the_darts_supernet_converges_to_the_exact_gradient():
    """On the DARTS supernet (ReLU, max pooling) the same formula converges to the exact gradient as the
    difference step shrinks; with DARTS' own step (0.01 / |d|) this tiny net is still far from it, as measured."""
    space, net = darts_supernet_double()
    model = MixedForward(net)
    alphas, train, val, buffers = second_order_case(model, [d.name for d in space.decisions], 8, (1, 8, 8), 10)
    exact = exact_second_order(model, alphas, train, val, 0.025, 0.9, 3e-4, buffers)

    def error(scale: float) -> float:
        approx, _ = second_order(model, alphas, softmax_weights, train, val, 0.025, 0.9, 3e-4, buffers, scale)
        return float((torch.cat([approx[n] for n in alphas]) - exact).norm() / exact.norm())

    assert error(1e-6) < 1e-6
    assert error(0.01) > 0.1  # measured 0.73 here: see docs/strategies/darts.md


def reference_unrolled_step(model, alphas, train, val, xi, momentum, wd, buffers):
    """DARTS' second-order architecture gradient as quark0/darts runs it (cnn/architect.py at a00cad0):
    `_compute_unrolled_model` takes L_train on the shared model, `_construct_model_from_theta` loads the
    shared state_dict (running statistics included) into a new network at w', `_backward_step_unrolled`
    takes L_val on that copy, and `_hessian_vector_product` shifts the shared weights in place by +R v,
    -2R v, +R v with R = 0.01 / |v|."""
    params = list(model.parameters())
    a = list(alphas.values())
    model.weights = {k: v.detach() for k, v in softmax_weights(alphas).items()}
    g = torch.autograd.grad(_loss(model, *train, _plain_settings()), params, allow_unused=True)
    g = [torch.zeros_like(p) if gi is None else gi for p, gi in zip(params, g)]
    moment = [momentum * buffers[n] for n, _ in model.named_parameters()]
    theta = [p.detach() - xi * (m + gi + wd * p.detach()) for p, m, gi in zip(params, moment, g)]
    model.weights = {}
    unrolled = copy.deepcopy(model)
    with torch.no_grad():
        for p, t in zip(unrolled.parameters(), theta):
            p.copy_(t)
    a_copy = [x.detach().clone().requires_grad_(True) for x in a]
    unrolled.weights = softmax_weights(dict(zip(alphas, a_copy)))
    val_loss = _loss(unrolled, *val, _plain_settings())
    grads = torch.autograd.grad(val_loss, a_copy + list(unrolled.parameters()), allow_unused=True)
    d_alpha = [torch.zeros_like(x) if gi is None else gi for x, gi in zip(a, grads[: len(a)])]
    vector = [torch.zeros_like(p) if gi is None else gi for p, gi in zip(params, grads[len(a) :])]
    r = 0.01 / torch.cat([v.reshape(-1) for v in vector]).norm()
    shifted = []
    for step in (r, -2 * r):
        with torch.no_grad():
            for p, v in zip(params, vector):
                p.add_(step * v)
        model.weights = softmax_weights(alphas)
        gs = torch.autograd.grad(_loss(model, *train, _plain_settings()), a, allow_unused=True)
        shifted.append([torch.zeros_like(x) if gi is None else gi for x, gi in zip(a, gs)])
    with torch.no_grad():
        for p, v in zip(params, vector):
            p.add_(r * v)
    model.weights = {}
    return {n: da - xi * (gp - gn) / (2 * r) for n, da, gp, gn in zip(alphas, d_alpha, *shifted)}


def test_second_order_batchnorm_statistics_equal_the_references_run_on_an_unrolled_copy():
    """After one second-order step the shared BatchNorm running statistics equal those of the reference's
    procedure (they take in the train batch at w, w+ and w-; the val batch at w' only reaches the unrolled
    copy), and so does the architecture gradient, to round-off in float64. Taking L_val on the shared
    model instead moved these statistics by up to 0.12 after three steps."""
    space, net = darts_supernet_double()
    model = MixedForward(net)
    alphas, train, val, buffers = second_order_case(model, [d.name for d in space.decisions], 8, (1, 8, 8), 10)
    reference = copy.deepcopy(model)
    before = {n: b.clone() for n, b in model.named_buffers()}
    ours, _ = second_order(model, alphas, softmax_weights, train, val, 0.025, 0.9, 3e-4, buffers)
    expected = reference_unrolled_step(reference, alphas, train, val, 0.025, 0.9, 3e-4, buffers)
    stats = [n for n in before if n.endswith("running_mean") or n.endswith("running_var")]
    assert stats and all(not torch.equal(model.get_buffer(n), before[n]) for n in stats)
    for name, buffer in reference.named_buffers():
        assert torch.allclose(model.get_buffer(name), buffer, rtol=0, atol=1e-12), name
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-15)
    for name in alphas:
        assert torch.allclose(ours[name], expected[name], rtol=1e-9, atol=1e-12), name


# ---- the strategy -----------------------------------------------------------------------------------
def make_darts(space, seed=0, **options) -> Darts:
    return Darts(space, build_options(Darts.Options, options, "strategy"), seed=seed)


def test_alphas_start_small_and_each_epoch_is_one_bilevel_request_then_one_score():
    space = spaces.get("nb201")()
    s = make_darts(space, epochs=2, order=2)
    assert set(s.weights.alphas) == {d.name for d in space.decisions}
    assert all(a.shape == (5,) and a.abs().max() < 5e-3 for a in s.weights.alphas.values())  # 1e-3 x N(0, 1)
    first = s.ask()
    assert len(first) == 1 and isinstance(first[0], TrainMixed)
    req = first[0]
    assert req.epochs == 1.0 and req.order == 2 and req.optimizer == AlphaOptimizer(3e-4, (0.5, 0.999), 1e-3)
    assert req.state["choices"]["1<-0"] == list(space.decision("1<-0").choices) and req.paths is None


def supernet_evaluator(space, **options):
    ev_cls = evaluators.get("supernet")
    data = DataSource(DataOptions(name="digits", limit=200), seed=0)
    return ev_cls(space, build_options(ev_cls.Options, {"batch_size": 16, **options}, "evaluator"), data=data)


def test_weight_steps_never_change_alphas_and_alpha_steps_never_change_weights():
    """SE4 for the bilevel request: with the weights' learning rate 0, only the alphas move; with the
    alphas' learning rate 0, only the weights move."""
    cls = spaces.get("darts")
    space = cls(build_options(cls.Options, {"supernet_C": 4, "supernet_layers": 3}, "space"))
    s = make_darts(space)
    state = s.ask()[0].state
    for frozen in ("weights", "alphas"):
        ev = supernet_evaluator(space, lr=0.0 if frozen == "weights" else 0.05, lr_min=0.0, weight_decay=0.0)
        torch.manual_seed(0)
        ev._build()
        before = {k: v.detach().clone() for k, v in ev.supernet.named_parameters()}
        opt = AlphaOptimizer(lr=0.0 if frozen == "alphas" else 0.01)
        report = ev.train_mixed(3, state, 1, opt, None)
        after = dict(ev.supernet.named_parameters())
        weights_moved = any(not torch.equal(v, after[k]) for k, v in before.items())
        alphas_moved = any(not torch.equal(report.state["alphas"][n], state["alphas"][n]) for n in state["alphas"])
        assert (weights_moved, alphas_moved) == ((False, True) if frozen == "weights" else (True, False))


TINY = [
    "--set",
    "strategy.epochs=2",
    "--set",
    "evaluator.batch_size=32",
    "--set",
    "data.limit=240",
    "--set",
    "strategy.score_bn_batches=2",
    "--set",
    "run.tensorboard=false",
]
SPACE_SETS = {
    "darts": ["--set", "space.supernet_C=4", "--set", "space.supernet_layers=2"],
    "nb201": ["--set", "space.C=4", "--set", "space.N=1"],
    "mobilenet": [
        "--set",
        "space.small_input=true",
        "--set",
        "space.width_mult=0.25",
        "--set",
        "space.layout=fairnas",
        "--set",
        "space.allow_zero=false",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("space", sorted(SPACE_SETS))
@pytest.mark.parametrize("order", [1, 2])
def test_darts_runs_end_to_end(cli, tmp_path, space, order):
    out = tmp_path / f"{space}-{order}"
    code, _, err = cli(
        "run",
        "--strategy",
        "darts",
        "--space",
        space,
        "--evaluator",
        "supernet",
        "--quiet",
        "--out",
        out,
        "--set",
        f"strategy.order={order}",
        *TINY,
        *SPACE_SETS[space],
    )
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    work = [json.loads(x) for x in (out / "work.jsonl").read_text().splitlines()]
    assert [w["kind"] for w in work] == ["train_mixed"] * 2 and len(lines) == 2  # an epoch, then its score
    assert all(ln["cost"]["epochs"] == 0.0 for ln in lines)
    best = json.loads((out / "best.json").read_text())
    assert best["stopped_because"] == "strategy_done" and best["final"]["source"] == "strategy"
    probs = lines[-1]["strategy"]["probabilities"]
    assert all(abs(sum(p) - 1) < 1e-5 for p in probs)
    if space == "darts":  # the answer is the DARTS genotype derived from softmax(alpha)
        assert best["final"]["answer"] == "export.derived_arch"
        assert best["final"]["export"]["derived_genotype"].startswith("Genotype(normal=[")


@pytest.mark.slow
def test_kill_9_during_bilevel_training_resumes_to_the_identical_result(tmp_path):

    from conftest import kill_then_resume, run_outcome, run_to_the_end

    argv = [
        "--strategy",
        "darts",
        "--space",
        "darts",
        "--evaluator",
        "supernet",
        "--quiet",
        "--seed",
        "3",
        "--set",
        "strategy.order=2",
        "--set",
        "strategy.epochs=3",
        "--set",
        "run.work_chunk_epochs=0.25",
        *TINY[2:],
        *SPACE_SETS["darts"],
    ]
    run_to_the_end(argv, tmp_path / "full")
    kill_then_resume(argv, tmp_path / "killed", after_lines=3, log="work.jsonl")

    assert run_outcome(tmp_path / "full") == run_outcome(tmp_path / "killed")


def test_state_round_trip_and_final_weights(tmp_path):
    space = spaces.get("nb201")()
    s = make_darts(space, epochs=3)
    request = s.ask()[0]
    alphas = {n: a + torch.arange(5.0) for n, a in request.state["alphas"].items()}  # prefer avg_pool_3x3 (last)
    from nasframe.core.evaluator import Cost, WorkReport

    s.tell_work(request, WorkReport(Cost(0, 1), {"train_loss": 1.0}, state={**request.state, "alphas": alphas}))
    assert isinstance(s.ask()[0], ScoreShared) and s.most_likely()["1<-0"] == "avg_pool_3x3"
    torch.save(s.state_dict(), tmp_path / "s.pt")
    again = make_darts(space, epochs=3)
    again.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert again.final() == s.final() and again.final_weights() == s.final_weights()
    assert all(abs(sum(w) - 1) < 1e-6 for w in s.final_weights().values())
