"""zero_cost: each proxy against a hand computation or an independent formula, then the evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options
from nasframe.core.registry import evaluators, spaces
from nasframe.data import DataOptions, DataSource
from nasframe.evaluators import proxies


def linear_net(*sizes: int, bias: bool = False, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, bias=bias), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


def softmax_regression(seed: int = 0) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """A 1-layer network (4 inputs, 3 classes, with bias) and a batch of 5 images, in float64."""
    torch.manual_seed(seed)
    layer = nn.Linear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2, 0])
    return layer, x, y


def closed_form_gradient(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities P (N, K) and dL/dW = (P - Y)^T X / N of the mean cross-entropy."""
    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(w.shape[0])[y]
    return p, (p - onehot).T @ x / x.shape[0]


# ---- synflow ------------------------------------------------------------------------------------------
def test_synflow_of_a_linear_chain_is_depth_times_the_all_ones_path_sum():
    """f(x) = W2 W1 x: R = 1^T |W2| |W1| 1 is linear in each |W_l|, so sum |W_l * dR/dW_l| = R per layer: 2R."""
    net = linear_net(4, 3, 2)
    w1, w2 = (np.abs(m.weight.detach().numpy()) for m in (net[0], net[2]))
    r = np.ones(2) @ w2 @ w1 @ np.ones(4)
    assert proxies.synflow(net, (4,)) == pytest.approx(2 * r, rel=1e-12)
    deeper = linear_net(5, 4, 3, 2, seed=1)  # three layers: 3R; the ReLUs pass positive values unchanged
    w = [np.abs(deeper[i].weight.detach().numpy()) for i in (0, 2, 4)]
    r3 = np.ones(2) @ w[2] @ w[1] @ w[0] @ np.ones(5)
    assert proxies.synflow(deeper, (5,)) == pytest.approx(3 * r3, rel=1e-12)


def test_synflow_bypasses_batchnorm_and_runs_in_float64():
    plain = linear_net(4, 3, 2, seed=3)
    expected = proxies.synflow(linear_net(4, 3, 2, seed=3), (4,))
    torch.manual_seed(3)
    with_bn = nn.Sequential(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with_bn[0].weight.data.copy_(plain[0].weight.data)
    with_bn[3].weight.data.copy_(plain[2].weight.data)
    with torch.no_grad():  # BN that would scale by 5 and shift by 7 if it ran
        with_bn[1].weight.fill_(5.0)
        with_bn[1].bias.fill_(7.0)
    assert proxies.synflow(with_bn, (4,)) == pytest.approx(expected, rel=1e-12)
    assert with_bn[0].weight.dtype == torch.float64


def test_synflow_overflows_float32_but_not_float64():
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Linear(64, 64, bias=False) for _ in range(30)])
    with torch.no_grad():
        for m in net:
            m.weight.uniform_(0.9, 1.1)  # R ~ 64^31: beyond float32 (3.4e38), well inside float64
    value = proxies.synflow(net, (64,))
    assert math.isfinite(value) and value > 1e50


# ---- gradient proxies against the softmax-regression closed form ------------------------------------
def test_grad_norm_snip_and_fisher_match_the_closed_form_gradient():
    layer, x, y = softmax_regression()
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    p, g = closed_form_gradient(w, b, x.numpy(), y.numpy())
    assert proxies.grad_norm(layer, x, y) == pytest.approx(np.linalg.norm(g), rel=1e-10)
    assert proxies.snip(layer, x, y) == pytest.approx(np.abs(w * g).sum(), rel=1e-10)
    # fisher: a = logits, dL/da = (P - Y) / N; per class k, 1/2 mean_n (a_nk dL/da_nk)^2, times fan-in 4
    a = x.numpy() @ w.T + b
    da = (p - np.eye(3)[y.numpy()]) / x.shape[0]
    expected = 4 * (0.5 * ((a * da) ** 2).mean(0)).sum()
    assert proxies.fisher(layer, x, y) == pytest.approx(expected, rel=1e-10)


def test_grasp_matches_the_closed_form_hessian_vector_product():
    """For softmax regression H = 1/N sum_n (diag(p_n) - p_n p_n^T) (x) x_n x_n^T, so H g, as a matrix,
    is 1/N sum_n ((diag(p_n) - p_n p_n^T) G x_n) x_n^T."""
    layer, x, y = softmax_regression(seed=1)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    xs = x.numpy()
    p, g = closed_form_gradient(w, b, xs, y.numpy())
    hg = sum(np.outer((np.diag(pn) - np.outer(pn, pn)) @ g @ xn, xn) for pn, xn in zip(p, xs)) / xs.shape[0]
    assert proxies.grasp(layer, x, y) == pytest.approx(-(w * hg).sum(), rel=1e-10)


def test_grasp_matches_an_explicit_hessian_on_a_two_layer_net():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2, bias=False)).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    w1, w2 = net[0].weight.detach().clone(), net[2].weight.detach().clone()

    def loss(flat: torch.Tensor) -> torch.Tensor:
        a, c = flat[:12].view(4, 3), flat[12:].view(2, 4)
        return nn.functional.cross_entropy(torch.tanh(x @ a.T) @ c.T, y)

    theta = torch.cat([w1.flatten(), w2.flatten()])
    hessian = torch.autograd.functional.hessian(loss, theta)
    grad = torch.autograd.functional.jacobian(loss, theta)
    expected = float(-(theta * (hessian @ grad)).sum())
    assert proxies.grasp(net, x, y) == pytest.approx(expected, rel=1e-10)


# ---- jacov and naswot ----------------------------------------------------------------------------------
def test_jacov_of_hand_made_jacobians():
    k = proxies.JACOV_EPS

    def term(v: float) -> float:
        return math.log(v + k) + 1 / (v + k)

    # rows (1, 2, 3) and (1, 3, 2): deviations (-1, 0, 1) and (-1, 1, 0), correlation 1/2 -> eigenvalues 3/2, 1/2
    assert proxies.jacov_from_jacobian(np.array([[1.0, 2, 3], [1, 3, 2]])) == pytest.approx(-(term(1.5) + term(0.5)))
    # opposite rows: correlation -1 -> eigenvalues 2 and 0 (the 0 costs 1/k: far lower score)
    assert proxies.jacov_from_jacobian(np.array([[1.0, 2, 3], [3, 2, 1]])) == pytest.approx(-(term(2.0) + term(0.0)))
    assert math.isnan(proxies.jacov_from_jacobian(np.array([[1.0, 1, 1], [1, 2, 3]])))  # a constant row


def test_jacov_of_a_network_uses_each_images_input_gradient():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    rows = [torch.autograd.functional.jacobian(lambda v: net(v).sum(), xi) for xi in x]
    expected = proxies.jacov_from_jacobian(torch.stack(rows).numpy())
    assert proxies.jacov(net, x) == pytest.approx(expected, rel=1e-10)


def test_naswot_of_a_hand_made_code_matrix():
    codes = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1]])
    # K_ij = units on which images i and j agree: [[3, 1, 2], [1, 3, 0], [2, 0, 3]], det = 27 - 3 - 12 = 12
    assert proxies.naswot_from_codes(codes) == pytest.approx(math.log(12))
    assert proxies.naswot_from_codes(torch.tensor([[1, 0], [1, 0]])) == -math.inf  # same code twice


def test_naswot_reads_every_rectifiers_input_also_in_place():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 5), nn.ReLU())
    x = torch.randn(6, 3)
    h1 = net[0](x)
    h2 = net[2](torch.relu(h1))
    codes = torch.cat([h1 > 0, h2 > 0], dim=1)
    assert proxies.naswot(net, x) == pytest.approx(proxies.naswot_from_codes(codes), rel=1e-12)
    with pytest.raises(ValueError, match="rectifier"):
        proxies.naswot(nn.Linear(3, 2), x)


# ---- the evaluator ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_digits():
    return DataSource(DataOptions(name="digits", limit=300), seed=0)


def tiny_space(name: str):
    options = {
        "nb201": {"C": 2, "N": 1},
        "darts": {"C": 4, "layers": 3, "auxiliary": True, "drop_path_prob": 0.2},
        "mobilenet": {"small_input": True, "width_mult": 0.25},
        "shufflenet": {"small_input": True, "stem_width": 4, "widths": [8, 16, 24, 32],
                       "stage_repeats": [2, 1, 2, 1], "last_width": 32},
    }[name]  # fmt: skip
    cls = spaces.get(name)
    return cls(build_options(cls.Options, options, "space"))


def make(space, data, **opts):
    cls = evaluators.get("zero_cost")
    return cls(space, build_options(cls.Options, opts, "evaluator"), data=data, device="cpu")


@pytest.mark.parametrize("name", ["nb201", "darts", "mobilenet", "shufflenet"])
def test_every_space_with_build_gets_scores(name, small_digits):
    space = tiny_space(name)
    arch = space.sample(np.random.default_rng(1))
    for proxy in ("synflow", "snip", "params"):
        torch.manual_seed(0)
        r = make(space, small_digits, proxy=proxy).evaluate(arch)
        assert r.ok, r.reason
        assert r.metrics["val_acc"] == r.metrics[proxy] and math.isfinite(r.metrics[proxy])
        assert r.params is not None and r.params > 0 and r.macs is not None and r.macs > 0
        assert r.cost.epochs == 0.0 and r.cost.seconds > 0
    assert r.metrics["params"] == r.params


def test_every_proxy_runs_on_nb201(small_digits):
    space = tiny_space("nb201")
    arch = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    )
    from nasframe.evaluators.zero_cost import PROXIES

    for proxy in PROXIES:
        torch.manual_seed(0)
        r = make(space, small_digits, proxy=proxy).evaluate(arch)
        assert r.ok and math.isfinite(r.metrics[proxy]), (proxy, r.reason)


def test_same_seed_same_score_other_seed_differs(small_digits):
    space = tiny_space("nb201")
    arch = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    )
    for proxy in ("synflow", "grad_norm", "naswot"):
        ev = make(space, small_digits, proxy=proxy)
        scores = []
        for seed in (5, 5, 6):
            torch.manual_seed(seed)
            scores.append(ev.evaluate(arch).metrics[proxy])
        assert scores[0] == scores[1], proxy
        assert scores[0] != scores[2], proxy


def test_data_proxies_see_one_batch_fixed_by_the_data_seed(small_digits):
    from nasframe.evaluators.zero_cost import batch_of

    x1, y1 = batch_of(small_digits, 16, 0)
    torch.manual_seed(123)  # the global generator does not choose the batch
    x2, y2 = batch_of(small_digits, 16, 0)
    x3, _ = batch_of(small_digits, 16, 1)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert x1.shape == (16, 1, 8, 8) and abs(float(x1.mean())) < 0.5  # normalised, not raw 0..16 pixels


def test_a_cell_that_ignores_its_input_fails_jacov_with_a_reason(small_digits):
    space = tiny_space("nb201")
    arch = space.from_string("|none~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|nor_conv_3x3~1|none~2|")
    torch.manual_seed(0)
    r = make(space, small_digits, proxy="jacov").evaluate(arch)
    assert r.status == "failed" and "input" in r.reason


def test_bad_proxy_is_a_one_line_config_error(cli, small_digits):
    cls = evaluators.get("zero_cost")
    with pytest.raises(ConfigError, match="proxy: 'synflo' is not allowed; choose one of synflow, grad_norm"):
        build_options(cls.Options, {"proxy": "synflo"}, "evaluator")
    with pytest.raises(ConfigError, match="choose one of"):
        cls(tiny_space("nb201"), cls.Options(proxy="nope"), data=small_digits)
    code, _, err = cli("run", "--strategy", "random", "--space", "nb201", "--evaluator", "zero_cost",
                       "--set", "evaluator.proxy=nope", "--quiet")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope" in err
