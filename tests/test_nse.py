"""NSE (reference algorithms-2.md section 11): the checks NS1-NS9, the sampling window around the
chosen `mac_drift`, the multi-branch space, importance learning on a real supernet, the strategy's
rounds, and a run on digits that resumes exactly after kill -9."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.common.options import build_options
from nasframe.core.capabilities import AlphaOptimizer, ImportanceSettings
from nasframe.core.evaluator import Result
from nasframe.core.multibranch import arch_of, branches_of
from nasframe.core.registry import evaluators, spaces
from nasframe.core.requests import ScoreShared, TrainImportance, request_from_state
from nasframe.core.space import Arch
from nasframe.data import DataOptions, DataSource
from nasframe.evaluators.supernet.branch_importance import (
    clean_space,
    cost_penalty,
    estimator_weights,
    expected_cost,
    gate_strings,
    importance,
    string_probability,
    two_samples,
)
from nasframe.spaces.nse_net import cell_output, straight_through
from nasframe.strategies.nse import Nse
from nasframe.strategies.nse_rules import (
    front_union,
    pareto_efficient,
    sample_candidates,
    total_rounds,
    update_space,
)
from nasframe.testing import InMemoryRun, ScriptedSharedWeights, ToySpace

TINY_SPACE = {
    "alloc_plan": "NR",
    "alloc_space": [1, 0, 0, 0, 0],
    "channel_dist": [4, 4, 8, 8, 8],
    "cell_plan": "multi_branch",
    "small_input": True,
    "last_channels": 16,
}


def nse_space(**options):
    cls = spaces.get("nse")
    return cls(build_options(cls.Options, {**TINY_SPACE, **options}, "space"))


def strategy(space, seed=0, **options):
    return Nse(space, build_options(Nse.Options, options, "strategy"), seed=seed)


# ---- NS1, NS2: rounds and the refill ---------------------------------------------------------------
def test_rounds_of_the_released_configs():
    """NS1: (N - 1) // (K - 1): NSE-27 6, the second space 17 (capped at 3 by max_rounds), GPU 3."""
    assert (total_rounds(27, 5), total_rounds(72, 5), total_rounds(19, 6)) == (6, 17, 3)
    cls = spaces.get("nse")
    nse27 = cls()
    assert strategy(nse27).rounds == 6
    second = cls(build_options(cls.Options, {"cell_plan": "multi_mac_group"}, "space"))
    assert strategy(second).rounds == 17 and strategy(second, max_rounds=3).rounds == 3
    gpu = cls(build_options(cls.Options, {"cell_plan": "multi_branch", "alloc_plan": "NR",
                                          "alloc_space": [1, 3, 3, 7, 3],
                                          "channel_dist": [16, 32, 64, 128, 256]}, "space"))  # fmt: skip
    assert strategy(gpu, k=6).rounds == 3


def test_update_space_keeps_the_front_ops_and_refills_from_the_queue():
    """NS2."""
    assert update_space([3, 7], [10, 2, 5, 8], 5) == ([3, 7, 10, 2, 5], [8])
    assert update_space([1, 2, 3, 4, 5, 6], [10, 2], 5) == ([1, 2, 3, 4, 5, 6], [10, 2])


def test_the_first_subsets_are_a_permutation_split_at_k():
    s = strategy(nse_space(), seed=3, k=4)
    for sub, queue in zip(s.sub_space, s.pending):
        assert len(sub) == 4 and sorted(sub + queue) == list(range(19))


# ---- NS3: probabilities and the two samples --------------------------------------------------------
def test_importance_is_one_half_at_zero_and_gate_strings_weigh_as_the_reference():
    """NS3: p = 0.5 at alpha 0; a residual 2-op cell has 4 strings of 0.25; a non-residual one 3 strings,
    each drawn first a third of the time after normalisation."""
    assert importance(torch.zeros(4)).tolist() == [0.5] * 4
    p = importance(torch.zeros(2, dtype=torch.float64))
    residual = gate_strings(2, True)
    assert residual == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [float(string_probability(p, s)) for s in residual] == [0.25] * 4
    plain = gate_strings(2, False)
    weights = torch.stack([string_probability(p, s) for s in plain])
    assert plain == [(0, 1), (1, 0), (1, 1)] and (weights / weights.sum()).tolist() == pytest.approx([1 / 3] * 3)
    torch.manual_seed(0)
    firsts = {s: 0 for s in plain}
    for _ in range(3000):
        s, u = two_samples([4, 9], p, residual=False, enumerate_up_to=5)
        assert s != u and s in plain and u in plain
        firsts[s] += 1
    assert all(abs(n / 3000 - 1 / 3) < 0.04 for n in firsts.values())


def test_two_samples_of_deterministic_and_large_cells():
    p = torch.full((7,), 0.5, dtype=torch.float64)
    assert two_samples([], p[:0], residual=True, enumerate_up_to=5) is None
    assert two_samples([3], p[:1], residual=False, enumerate_up_to=5) is None
    assert set(two_samples([3], p[:1], residual=True, enumerate_up_to=5)) == {(0,), (1,)}
    torch.manual_seed(1)
    for _ in range(50):  # more than enumerate_up_to ops: Bernoulli draws with rejection
        s, u = two_samples(list(range(7)), p, residual=False, enumerate_up_to=5)
        assert s != u and any(s) and any(u) and len(s) == 7


# ---- NS4: the estimator and the cost penalty -------------------------------------------------------
def test_estimator_weights_expected_cost_and_penalty():
    """NS4: P_S 0.3, P_U 0.1 -> q (0.75, 0.25); E[MACs] = 0.75 mac_S + 0.25 mac_U; the MAC loss with
    alpha 1e-5, beta 2, target 300 is 0.025 at 350M and at 250M."""
    q_s, q_u = estimator_weights(torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64))
    assert (float(q_s), float(q_u)) == pytest.approx((0.75, 0.25), abs=1e-15)
    assert float(expected_cost(q_s, q_u, 100.0, 200.0)) == pytest.approx(125.0)
    settings = ImportanceSettings(1.0, cost_target=300.0, cost_alpha=1e-5, cost_beta=2)
    for cost in (350.0, 250.0):
        assert float(cost_penalty(torch.tensor(cost, dtype=torch.float64), settings)) == pytest.approx(0.025)


def test_straight_through_forward_is_the_selected_output_and_the_gradient_reaches_q():
    torch.manual_seed(0)
    y_s, y_u, w = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    q_s = torch.tensor(0.75, requires_grad=True)
    q_u = torch.tensor(0.25, requires_grad=True)
    y = straight_through(y_s, y_u, q_s, q_u)
    assert torch.equal(y, y_s)  # bit for bit
    (w * y).sum().backward()
    assert float(q_s.grad) == pytest.approx(float((w * y_s).sum()), rel=1e-5)
    assert float(q_u.grad) == pytest.approx(float((w * y_u).sum()), rel=1e-5)


def test_two_sample_forward_of_the_supernet_equals_the_selected_network():
    space = nse_space()
    spec = DataSource(DataOptions(name="digits"), seed=0).spec
    torch.manual_seed(0)
    net = space.build_supernet(spec).eval()
    selected = [[0, 4], [2], [9, 11], [1], [3]]
    unselected = [[], [5], [9], [1, 2], [3, 6]]
    x = torch.randn(3, *spec.input_shape)
    net.set_branches(selected)
    plain = net(x)
    q = [(torch.tensor(0.6, requires_grad=True), torch.tensor(0.4, requires_grad=True)) for _ in selected]
    weights = [q[0], None, q[2], q[3], q[4]]
    out = net.forward_two_sample(x, selected, unselected, weights)
    assert torch.equal(out, plain)
    out.sum().backward()
    assert q[0][0].grad is not None and math.isfinite(float(q[0][0].grad)) and q[1][0].grad is None


# ---- NS5: the multi-branch cell -----------------------------------------------------------------------
class Times(nn.Module):
    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * x


def test_cell_output_is_the_mean_of_branches_with_the_input_in_residual_cells():
    """NS5: a residual cell with b1, b2 gives (b1 + b2 + x) / 3; a stride-2 cell with one branch gives b1."""
    x = torch.randn(2, 3, 4, 4)
    assert torch.allclose(cell_output(x, [Times(2.0), Times(3.0)], residual=True), (2 * x + 3 * x + x) / 3)
    assert torch.equal(cell_output(x, [Times(2.0)], residual=False), 2 * x)
    assert torch.allclose(cell_output(x, [Times(2.0), Times(4.0)], residual=False), 3 * x)
    assert torch.equal(cell_output(x, [], residual=True), x)


# ---- NS6: pruning -------------------------------------------------------------------------------------------
def test_clean_space_keeps_protected_ops_and_two_op_non_residual_cells():
    """NS6: alpha -1.9 stays, -2.1 goes unless protected; a non-residual cell with 2 ops is never reduced."""
    alpha = torch.zeros(4, 6)
    alpha[0, :3] = torch.tensor([-1.9, -2.1, -2.1])
    alpha[1, :2] = -5.0
    alpha[2, :3] = torch.tensor([-3.0, -2.5, -4.0])
    active = [[0, 1, 2], [0, 1], [0, 1, 2], [3, 4]]
    kept = clean_space(active, alpha, [[2], [], [], []], [True, False, False, True], -2.0)
    assert kept[0] == [0, 2]
    assert kept[1] == [0, 1]
    assert kept[2] == [1]  # every op would go: the highest alpha stays (a guard the released code lacks)
    assert kept[3] == [3, 4]


# ---- NS7: the Pareto filter ----------------------------------------------------------------------------
def test_pareto_filter_of_the_reference_rows():
    """NS7."""
    rows = np.array([(300, -70), (310, -72), (320, -71), (290, -69), (300, -69)], dtype=float)
    assert pareto_efficient(rows).tolist() == [True, True, False, True, False]
    assert pareto_efficient(np.array([(1.0, -5.0), (1.0, -5.0)])).tolist() == [True, False]
    assert front_union([[[0], [2, 3]], [[1], [3]]], 2) == [[0, 1], [2, 3]]


# ---- the sampling window around mac_drift (absent from the released configs) -------------------------
def scripted_draws(costs: list[float], duplicate: dict[int, int] | None = None):
    """A draw function yielding one-cell architectures [[i]] in order (some repeated) and their costs."""
    pool = [[[i]] for i in range(len(costs))]
    for i, j in (duplicate or {}).items():
        pool[i] = pool[j]
    order = iter(pool)
    return (lambda rng: next(order)), (lambda b: costs[b[0][0]])


def test_sampling_window_is_open_and_the_extra_band_sits_below_it():
    """The window (mean - drift, mean + drift) is filled first, then the band (mean - drift - extra,
    mean - drift]; duplicates and anything outside the current target are skipped; max_draws stops both."""
    draw, cost = scripted_draws([310.0, 309.9, 290.0, 280.0, 295.0, 295.0, 300.0, 289.0], {5: 4})
    main, extra, draws = sample_candidates(np.random.default_rng(0), draw, cost, 3, 300.0, 10.0, 0, 10.0, 100)
    assert [b[0][0] for b in main] == [1, 4, 6] and extra == [] and draws == 7  # 290 is not in the window
    draw, cost = scripted_draws([300.0, 290.0, 280.0, 300.5, 289.99, 270.0])
    main, extra, draws = sample_candidates(np.random.default_rng(0), draw, cost, 1, 300.0, 10.0, 2, 10.0, 100)
    assert [b[0][0] for b in main] == [0] and [b[0][0] for b in extra] == [1, 4] and draws == 5
    draw, cost = scripted_draws([300.0, 310.0, 320.0, 330.0])
    main, extra, draws = sample_candidates(np.random.default_rng(0), draw, cost, 3, 300.0, 10.0, 1, 10.0, 3)
    assert len(main) == 1 and extra == [] and draws == 3  # out of draws: fewer candidates
    assert Nse.Options().drift == 10.0  # the chosen mac_drift


def test_sampling_stops_when_both_quotas_are_full():
    main, extra, draws = sample_candidates(
        np.random.default_rng(0), lambda rng: [[int(rng.integers(10**9))]], lambda b: 300.0, 4, 300.0, 10.0, 0, 10.0,
        10**6,
    )  # fmt: skip
    assert len(main) == 4 and extra == [] and draws == 4


# ---- NS8: the released final networks ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, params, macs",
    [
        ("NSENet", 4_564_000, 330_953_544),
        ("NSENet-27", 4_570_464, 326_325_200),
        ("NSENet-GPU", 15_742_296, 1_471_130_624),
    ],
)
def test_inspect_reproduces_the_released_counts(cli, name, params, macs):
    """NS8 (Conv2d and Linear multiply-accumulates at 224 x 224, as the reference computed them)."""
    code, out, err = cli("inspect", "--space", "nse", "--arch", name, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert (info["name"], info["params"], info["macs"]) == (name, params, macs)


def test_costs_of_the_supernet_add_up_to_the_stand_alone_counts():
    from nasframe.common.model_stats import count_macs, count_parameters

    space = nse_space()
    spec = DataSource(DataOptions(name="digits"), seed=0).spec
    costs = space.build_supernet(spec).branch_costs()
    rng = np.random.default_rng(0)
    for _ in range(3):
        arch = space.sample(rng)
        net = space.build(arch, spec)
        assert costs.of(branches_of(space.branch_cells(), arch)) == (
            count_macs(net, spec.input_shape),
            count_parameters(net),
        )


# ---- the space ----------------------------------------------------------------------------------------------
def test_cells_that_change_shape_need_a_branch_and_sampling_respects_it():
    space = nse_space()
    cells = space.branch_cells()
    assert [c.residual for c in cells] == [True, False, False, False, False]
    empty_r = [[], [], [1], [1], [1]]
    with pytest.raises(InvalidArchitecture, match="cell01 changes width or stride"):
        space.validate(arch_of(cells, empty_r))
    ok = space.validate(arch_of(cells, [[], [0], [1], [1], [1]]))  # an empty N cell is the identity
    assert branches_of(cells, ok)[0] == []
    rng = np.random.default_rng(0)
    small = space.restrict({g: [0] for g in cells[1].gates[1:]})  # cell01 keeps only op 0
    for _ in range(30):
        assert branches_of(cells, small.sample(rng))[1] == [0]


def test_the_released_notation_parses_and_named_nets_need_their_layout():
    space = spaces.get("nse")()
    with pytest.raises(InvalidArchitecture, match="--set space.cell_plan=multi_mac_group"):
        space.parse_arch("NSENet")
    cls = spaces.get("nse")
    opts = cls.options_for_arch("NSENet-27")
    nse27 = cls(build_options(cls.Options, opts, "space"))
    text = "[[0],[6],[3],[0],[16],[3],[9],[11,17],[9,2],[12],[1,6],[9,12],[9],[17,14],[21],[3],[13],[19,3,14]]"
    assert nse27.parse_arch(text) == nse27.parse_arch("NSENet-27")
    assert nse27.export(nse27.parse_arch("NSENet-27"))["cells"][7] == [11, 17]
    with pytest.raises(InvalidArchitecture, match="not an index of the 27-op pool"):
        nse27.parse_arch(text.replace("[21]", "[27]"))


def test_a_supernet_path_computes_exactly_the_stand_alone_network():
    space = nse_space()
    spec = DataSource(DataOptions(name="digits"), seed=0).spec
    arch = space.from_branches([[0, 13], [2, 9], [5], [1, 3, 4], [18]])
    torch.manual_seed(0)
    supernet = space.build_supernet(spec).eval()
    net = space.build(arch, spec).eval()
    branches = branches_of(space.branch_cells(), arch)
    source = dict(supernet.state_dict())
    mapped = {}
    for name in net.state_dict():
        if name.startswith("cells."):
            _, c, _, k, rest = name.split(".", 4)
            mapped[name] = source[f"cells.{c}.{branches[int(c)][int(k)]}.{rest}"]
        else:
            mapped[name] = source[name]
    net.load_state_dict(mapped)
    supernet.set_path(arch)
    x = torch.randn(4, *spec.input_shape)
    assert torch.allclose(supernet(x), net(x), atol=1e-6)
    prefixes = ("stem.", "last_conv.", "fc.") + tuple(f"cells.{c}.{j}." for c, on in enumerate(branches) for j in on)
    expected = [n for n, _ in supernet.named_parameters() if n.startswith(prefixes)]
    assert supernet.path_parameter_names(arch) == expected


# ---- importance learning on a real supernet (NS9 and the penalty's direction) --------------------------------------
def tiny_evaluator():
    space = nse_space()
    cls = evaluators.get("supernet")
    options = build_options(cls.Options, {"batch_size": 16, "lr": 0.05, "lr_min": 0.0, "nesterov": True}, "evaluator")
    ev = cls(space, options, data=DataSource(DataOptions(name="digits", limit=96), seed=0), device="cpu")
    return space, ev


def importance_state(active, protected=None, fresh=True):
    return {
        "active": active,
        "protected": protected or [[] for _ in active],
        "alphas": torch.zeros(len(active), 19),
        "adam": None,
        "iteration": 0,
        "fresh": fresh,
    }


def test_a_cost_penalty_lowers_importance_and_prunes_unprotected_ops():
    space, ev = tiny_evaluator()
    torch.manual_seed(0)
    active = [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9, 10], [11, 12]]
    settings = ImportanceSettings(1.0, arch_every=1, drop_threshold=-0.05, cost_target=0.0, cost_alpha=50.0,
                                  warmup_epochs=0.0)  # fmt: skip
    report = ev.train_importance(6, importance_state(active, protected=[[1], [], [], [], []]), settings,
                                 AlphaOptimizer(0.05, (0.0, 0.999), 0.0))  # fmt: skip
    state = report.state
    alphas = state["alphas"]
    assert float(alphas[0, [0, 1, 2]].mean()) < 0  # every op costs: the penalty pushes all of them down
    assert 1 in state["active"][0] and len(state["active"][0]) < 3  # pruned, but the protected op stays
    assert state["active"][2] == [6, 7]  # a non-residual cell with two ops is never reduced
    assert state["iteration"] == 6 and state["fresh"] is False
    assert report.metrics["expected_cost_millions"] > 0 and math.isfinite(report.metrics["arch_val_loss"])
    assert float(alphas[:, 13:].abs().sum()) == 0.0  # ops never active get no gradient


def test_a_fresh_round_redraws_the_weights_and_starts_a_new_optimizer():
    """NS9: nothing of the weights carries over from one round to the next."""
    space, ev = tiny_evaluator()
    torch.manual_seed(0)
    settings = ImportanceSettings(1.0, warmup_epochs=0.0)
    adam = AlphaOptimizer(5e-3, (0.0, 0.999), 0.0)
    first = [[0], [1], [2], [3], [4]]
    ev.train_importance(2, importance_state(first), settings, adam)
    trained = {n: p.detach().clone() for n, p in ev.supernet.named_parameters() if n.startswith("cells.1.1.")}
    assert any(ev.optimizer.state.get(p) for n, p in ev.supernet.named_parameters() if n.startswith("cells.1.1."))
    ev.train_importance(2, importance_state([[5], [6], [7], [8], [9]]), settings, adam)
    for n, p in ev.supernet.named_parameters():
        if n.startswith("cells.1.1."):
            assert not ev.optimizer.state.get(p)  # a new SGD: no momentum left from round one
            if p.dim() == 4:
                assert not torch.equal(p.detach(), trained[n])  # the conv weights were drawn again
            elif n.endswith(".1.weight"):
                assert torch.equal(p.detach(), torch.ones_like(p))  # BatchNorm weight back to 1


def test_importance_settings_are_checked():
    with pytest.raises(ConfigError, match="balance_rate"):
        ImportanceSettings(1.0, balance_rate=1.0)
    with pytest.raises(ConfigError, match="cost_beta"):
        ImportanceSettings(1.0, cost_beta=1.5)


# ---- the strategy's rounds ---------------------------------------------------------------------------------------
def test_rounds_score_the_window_then_keep_the_front_and_refill():
    space = nse_space()
    s = strategy(space, seed=1, k=3, epochs=1, samples=5, extra_samples=1, cost_target=60, drift=30, extra_drift=15,
                 max_rounds=2, bn_batches=0, max_draws=20_000)  # fmt: skip
    cells = space.branch_cells()

    def judge(arch: Arch, index: int) -> Result:  # more branches score higher: a real trade-off with cost
        return Result(metrics={"val_acc": float(sum(len(b) for b in branches_of(cells, arch)))})

    run = InMemoryRun(s, ScriptedSharedWeights(space), judge=judge)
    first_sub = [list(x) for x in s.sub_space]
    run.round()  # round 1: training, then the candidates are drawn
    assert s.stage == "score" and [k for _, k in s.candidates] == ["new"] * 5 + ["extra"]
    run.round()  # scoring
    queue = [list(q) for q in s.pending]
    extras = [b for b, k in s.candidates if k == "extra"]
    run.round()  # the front is kept, round 2 trains
    front1 = [[list(c) for c in b] for b in s.front]
    assert front1 and not any(b in extras for b in front1)  # the extra samples never stay on the front
    run.round()  # round 2's scoring: its candidates, then the first front again
    assert run.round() is None and s.done
    requests = [r for r, _ in run.work]
    assert [type(r) for r in requests] == [TrainImportance, TrainImportance]
    assert request_from_state(requests[1].to_state()) == requests[1]
    assert requests[0].state["active"] == first_sub
    second = requests[1].state
    assert second["fresh"] and float(second["alphas"].abs().sum()) == 0.0  # NS9: alpha back to zero
    union = front_union(front1, len(cells))
    assert second["protected"] == union
    assert second["active"] == [update_space(u, q, 3)[0] for u, q in zip(union, queue)]
    rescored = [a for a, _ in run.evaluations[-len(front1) :]]
    assert rescored == [arch_of(cells, b) for b in front1]
    assert s.final() in [arch_of(cells, b) for b in s.front]
    costs, scores = [s.cost_of(b) for b in s.front], s.front_scores
    for i in range(len(costs)):  # no front member is beaten by another by more than the 1e-10 tie-break
        for j in range(len(costs)):
            assert i == j or not (costs[j] <= costs[i] and scores[j] > scores[i] + 1e-9)


def test_the_strategy_needs_a_multi_branch_space():
    with pytest.raises(ConfigError, match="multi-branch space"):
        Nse(ToySpace(), seed=0)


def test_previous_front_loses_exact_ties_to_new_architectures():
    space = nse_space()
    s = strategy(space, seed=0, k=3, samples=1, extra_samples=0, bn_batches=0)
    cells = space.branch_cells()
    old, new = [[0], [1], [1], [1], [1]], [[2], [1], [1], [1], [1]]
    from nasframe.core.multibranch import BranchCosts

    flat = tuple(tuple(1e6 for _ in range(19)) for _ in cells)
    s.costs = BranchCosts(0.0, 0.0, flat, flat)
    s.stage, s.round = "score", 1
    s.candidates, s.scores = [(new, "new"), (old, "previous")], [50.0, 50.0]
    s._close_round()
    assert s.front == [new]
    assert isinstance(s.final_evaluation(arch_of(cells, new)), ScoreShared)


# ---- a run on digits, and kill -9 ------------------------------------------------------------------------------------
TINY = [
    "--strategy", "nse", "--space", "nse", "--evaluator", "supernet", "--quiet", "--seed", "3",
    "--set", "data.limit=240", "--set", "evaluator.batch_size=32", "--set", "run.tensorboard=false",
    "--set", "run.max_evaluations=null",
    *[x for k, v in TINY_SPACE.items() for x in ("--set", f"space.{k}={json.dumps(v).replace(' ', '')}")],
    "--set", "strategy.k=3", "--set", "strategy.epochs=1", "--set", "strategy.max_rounds=2",
    "--set", "strategy.warmup_epochs=0.5", "--set", "strategy.samples=3", "--set", "strategy.extra_samples=1",
    "--set", "strategy.cost_target=0.13", "--set", "strategy.drift=0.06", "--set", "strategy.extra_drift=0.03",
    "--set", "strategy.cost_alpha=1",
    "--set", "strategy.bn_batches=2", "--set", "strategy.bn_momentum=null",
]  # fmt: skip


@pytest.mark.slow
def test_nse_runs_end_to_end_on_digits(cli, tmp_path):
    out = tmp_path / "r"
    code, _, err = cli("run", *TINY, "--out", out)
    assert code == 0, err
    work = [json.loads(x) for x in (out / "work.jsonl").read_text().splitlines()]
    assert [w["kind"] for w in work] == ["train_importance", "train_importance"]
    assert all(math.isfinite(w["metrics"]["arch_val_loss"]) for w in work)
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert history and all(h["status"] == "ok" for h in history)
    best = json.loads((out / "best.json").read_text())
    assert best["stopped_because"] == "strategy_done"


KILL_ARGV = [*TINY, "--set", "run.work_chunk_epochs=0.5", "--set", "run.checkpoint_every=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference run the killed ones must reproduce (shared by the kill tests)."""
    from conftest import run_outcome, run_to_the_end

    out = tmp_path_factory.mktemp("nse") / "full"
    run_to_the_end(KILL_ARGV, out)
    return run_outcome(out)


@pytest.mark.slow
def test_kill_9_during_importance_training_resumes_to_the_identical_result(tmp_path, uninterrupted):
    from conftest import kill_then_resume, run_outcome

    kill_then_resume(KILL_ARGV, tmp_path / "r", after_lines=3, log="work.jsonl")  # in round 2's training
    assert run_outcome(tmp_path / "r") == uninterrupted


@pytest.mark.slow
def test_kill_9_during_scoring_resumes_to_the_identical_result(tmp_path, uninterrupted):
    from conftest import kill_then_resume, run_outcome

    # inside round 1's scoring (4 candidates: 3 in the window, 1 below it)
    kill_then_resume(KILL_ARGV, tmp_path / "r", after_lines=2, before_lines=4)
    assert run_outcome(tmp_path / "r") == uninterrupted
