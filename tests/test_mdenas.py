"""MDENAS: the update rules on the reference's worked examples (M1-M4), sampling, bookkeeping,
stopping, results and checkpoints. Toy spaces only; the search tests are in test_mdenas_search.py."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from nasframe.common.errors import ConfigError
from nasframe.core.evaluator import Result
from nasframe.core.space import Arch, Decision, SearchSpace
from nasframe.strategies.mdenas import Mdenas, MdenasOptions, entropies, pairwise_counts, update_probabilities


class Grid(SearchSpace):
    """Decisions d0.. with the given numbers of choices c0, c1, ..."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = list(sizes)

    def define_decisions(self):
        return [Decision(f"d{i}", tuple(f"c{k}" for k in range(n))) for i, n in enumerate(self.sizes)]

    def build(self, arch, data):
        raise NotImplementedError


def ok(acc: float) -> Result:
    return Result(metrics={"val_acc": acc})


M2_EPOCHS = np.array([[3, 1, 2, 2]])
M2_ACC = np.array([[0.5, 0.7, 0.6, 0.4]])


# ---- M1 ----------------------------------------------------------------------------------------
def test_m1_uniform_28_by_8_on_the_darts_space():
    from nasframe.spaces.darts import DartsSpace

    st = Mdenas(DartsSpace(), seed=0)
    assert st.probs.shape == (28, 8)
    assert np.all(st.probs == 1 / 8)
    assert np.allclose(st.probs.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert list(st.final_weights()) == [d.name for d in DartsSpace().decisions]
    assert math.isclose(st.metrics()["mean_entropy"], math.log(8), rel_tol=1e-12)


def test_m1_ragged_decisions_are_uniform_over_their_own_choices():
    st = Mdenas(Grid([2, 4, 3]), seed=0)
    assert st.probs.tolist() == [[0.5, 0.5, 0, 0], [0.25] * 4, [1 / 3, 1 / 3, 1 / 3, 0]]
    assert [len(w) for w in st.final_weights().values()] == [2, 4, 3]


# ---- M2: rule A ----------------------------------------------------------------------------------
def test_m2_paper_rule_worked_example():
    assert pairwise_counts(M2_EPOCHS, M2_ACC).tolist() == [[-2, 3, 0, -1]]
    p = update_probabilities(np.full((1, 4), 0.25), M2_EPOCHS, M2_ACC, 0.01, "A")
    assert np.allclose(p, [[0.23, 0.28, 0.25, 0.24]], rtol=0, atol=1e-12)
    assert math.isclose(p.sum(), 1.0, rel_tol=0, abs_tol=1e-12)


def test_rule_a_shifts_negative_entries_by_the_minimum_and_renormalises():
    # p + lr * counts = [-0.01, 0.52, 0.25, 0.24]; shift by 0.01 -> [0, .53, .26, .25] / 1.04
    p = update_probabilities(np.array([[0.01, 0.49, 0.25, 0.25]]), M2_EPOCHS, M2_ACC, 0.01, "A")
    assert np.allclose(p, [[0.0, 0.53 / 1.04, 0.26 / 1.04, 0.25 / 1.04]], rtol=0, atol=1e-12)
    assert p.min() == 0.0 and math.isclose(p.sum(), 1.0, abs_tol=1e-12)


# ---- M3: rule B ----------------------------------------------------------------------------------
def test_m3_xnas_rule_worked_example_and_epoch_tie():
    p = update_probabilities(np.full((1, 4), 0.25), M2_EPOCHS, M2_ACC, 0.01, "B")
    # differs from rule A only through the epoch tie of ops 2 and 3 (non-strict comparison)
    assert np.allclose(p, [[0.23, 0.28, 0.26, 0.23]], rtol=0, atol=1e-12)
    assert math.isclose(p.sum(), 1.0, abs_tol=1e-12)


def test_m3_xnas_rule_clips_transfers_so_nothing_goes_negative():
    p = update_probabilities(np.array([[0.005, 0.495, 0.25, 0.25]]), M2_EPOCHS, M2_ACC, 0.01, "B")
    assert np.allclose(p, [[0.0, 0.52, 0.25, 0.23]], rtol=0, atol=1e-12)
    assert p.min() >= 0.0 and math.isclose(p.sum(), 1.0, abs_tol=1e-12)


# ---- M4: antisymmetry (property test) ------------------------------------------------------------
def test_m4_rule_a_counts_sum_to_zero_for_any_history():
    rng = np.random.default_rng(0)
    for _ in range(400):
        d, n = int(rng.integers(1, 30)), int(rng.integers(2, 9))
        epochs = rng.integers(0, 4, size=(d, n))  # small ranges: many ties in epochs and accuracy
        acc = rng.integers(0, 5, size=(d, n)) / 4.0
        counts = pairwise_counts(epochs, acc)
        assert np.all(counts.sum(axis=1) == 0)
        assert np.all(np.abs(counts) <= n - 1)
        p = rng.dirichlet(np.ones(n), size=d)
        for rule in ("A", "B"):
            new = update_probabilities(p, epochs, acc, float(rng.uniform(0.001, 0.2)), rule)
            assert new.min() >= 0.0
            assert np.allclose(new.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_updates_are_pure_and_checked():
    p, e, a = np.full((2, 4), 0.25), np.tile(M2_EPOCHS, (2, 1)), np.tile(M2_ACC, (2, 1))
    copies = (p.copy(), e.copy(), a.copy())
    for rule in ("A", "B"):
        update_probabilities(p, e, a, 0.05, rule)
    assert all(np.array_equal(x, y) for x, y in zip((p, e, a), copies))
    with pytest.raises(ValueError, match="unknown MDENAS rule 'C'"):
        update_probabilities(p, e, a, 0.01, "C")
    with pytest.raises(ValueError, match="share one"):
        update_probabilities(p, e[:1], a, 0.01)


def test_padding_takes_no_part_and_matches_the_unpadded_row():
    epochs, acc = np.array([[1, 3, 0, 0]]), np.array([[0.9, 0.2, 0.0, 0.0]])
    mask = np.array([[True, True, False, False]])
    for rule in ("A", "B"):
        padded = update_probabilities(np.array([[0.3, 0.7, 0.0, 0.0]]), epochs, acc, 0.1, rule, mask)
        alone = update_probabilities(np.array([[0.3, 0.7]]), epochs[:, :2], acc[:, :2], 0.1, rule)
        assert np.allclose(padded[:, :2], alone, rtol=0, atol=1e-15) and np.all(padded[:, 2:] == 0)
        assert np.allclose(alone, [[0.4, 0.6]], rtol=0, atol=1e-12)


def test_unsampled_ops_are_neutral():
    # ops 0 and 2 never trained (H_e = H_a = 0): they neither gain nor cost anyone anything
    counts = pairwise_counts(np.array([[0, 2, 0, 1]]), np.array([[0.0, 0.5, 0.0, 0.7]]))
    assert counts.tolist() == [[0, -1, 0, 1]]
    p = update_probabilities(
        np.full((1, 4), 0.25), np.array([[0, 2, 0, 1]]), np.array([[0.0, 0.5, 0.0, 0.7]]), 0.01, "B"
    )
    assert np.allclose(p, [[0.25, 0.24, 0.25, 0.26]], rtol=0, atol=1e-12)


def test_entropy():
    assert np.allclose(entropies(np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])), [math.log(2), 0.0])


# ---- the strategy --------------------------------------------------------------------------------
def test_sampling_follows_the_distributions_and_never_picks_zero():
    st = Mdenas(Grid([4, 4, 2]), seed=3)
    st.probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    draws = [st.ask()[0] for _ in range(4000)]
    freq = np.bincount([int(a["d0"][1:]) for a in draws], minlength=4) / len(draws)
    assert np.allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.025)
    assert {a["d1"] for a in draws} == {"c2"} and {a["d2"] for a in draws} == {"c1"}


def test_same_seed_same_proposals():
    a, b, c = (Mdenas(Grid([8] * 5), seed=s) for s in (1, 1, 2))
    seq = [[x.ask()[0] for _ in range(5)] for x in (a, b, c)]
    assert seq[0] == seq[1] != seq[2]


def test_tell_records_epochs_latest_or_mean_accuracy_and_updates():
    for record, expected in (("latest", 30.0), ("mean", 20.0)):
        st = Mdenas(Grid([3, 3]), MdenasOptions(lr=0.1, accuracy_record=record), seed=0)
        st.tell(Arch({"d0": "c0", "d1": "c1"}), ok(10.0))
        st.tell(Arch({"d0": "c0", "d1": "c2"}), ok(30.0))
        assert st.epoch_counts.tolist() == [[2, 0, 0], [0, 1, 1]]
        assert st.accuracies[0].tolist() == [expected, 0.0, 0.0]
        assert st.accuracies[1].tolist() == [0.0, 10.0, 30.0]
        # d1: c2 beat c1 at equal epochs -> no count under rule A; d0: c0 alone -> nothing
        assert np.allclose(st.probs, 1 / 3)
    st.tell(Arch({"d0": "c1", "d1": "c2"}), ok(50.0))
    # d1 now: c2 trained more (2 > 1) yet better -> nothing; d0: c1 (1 epoch, 50) beat c0 (2 epochs)
    assert np.allclose(st.probs[0], [1 / 3 - 0.1, 1 / 3 + 0.1, 1 / 3]) and np.allclose(st.probs[1], 1 / 3)


def test_failed_result_costs_an_epoch_and_changes_nothing_else():
    st = Mdenas(Grid([3, 3]), MdenasOptions(epochs=2), seed=0)
    st.tell(Arch({"d0": "c0", "d1": "c1"}), Result.failed("diverged"))
    assert st.epoch == 1 and st.failed == 1 and not st.epoch_counts.any() and np.allclose(st.probs, 1 / 3)
    assert st.final() is None and not st.done
    st.tell(Arch({"d0": "c0", "d1": "c1"}), ok(float("nan")))
    assert st.failed == 2 and st.done


def test_done_after_epochs_or_below_the_entropy_threshold():
    st = Mdenas(Grid([2, 2]), MdenasOptions(epochs=3, entropy_threshold=0.2), seed=0)
    assert not st.done
    st.probs = np.array([[0.99, 0.01], [0.5, 0.5]])
    assert not st.done  # one decision still uncertain
    st.probs = np.array([[0.99, 0.01], [0.02, 0.98]])
    assert st.done
    st2 = Mdenas(Grid([2]), MdenasOptions(epochs=3), seed=0)
    for _ in range(3):
        assert not st2.done
        st2.tell(st2.ask()[0], ok(1.0))
    assert st2.done


def test_final_is_the_argmax_and_weights_follow_the_choices():
    st = Mdenas(Grid([3, 2]), seed=0)
    st.tell(Arch({"d0": "c0", "d1": "c0"}), ok(1.0))
    st.probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.4, 0.0]])
    assert st.final() == Arch({"d0": "c1", "d1": "c0"})
    assert st.final_weights() == {"d0": [0.2, 0.5, 0.3], "d1": [0.6, 0.4]}


def test_final_weights_give_the_darts_genotype_by_the_darts_rule():
    """M5 through the space's export: 'none' is ignored, top-2 inputs per node by max non-none p."""
    from nasframe.spaces.darts import DartsSpace
    from nasframe.spaces.darts_genotype import PRIMITIVES

    space = DartsSpace()
    st = Mdenas(space, seed=0)
    st.tell(st.ask()[0], ok(1.0))
    rng = np.random.default_rng(5)
    st.probs = rng.dirichlet(np.ones(8), size=28)
    none = PRIMITIVES.index("none")
    st.probs[:, none] = 0.9  # 'none' would win every argmax; the DARTS rule must skip it
    weights = st.final_weights()
    export = space.export(st.final(), weights)
    derived = export["derived_arch"]
    for cell in ("normal", "reduce"):
        for node in range(2, 6):
            edges = [f"{cell}.{node}<-{k}" for k in range(node)]
            strength = {e: max(w for op, w in zip(PRIMITIVES, weights[e]) if op != "none") for e in edges}
            keep = sorted(edges, key=strength.get, reverse=True)[:2]
            for e in edges:
                if e in keep:
                    best = max((w, op) for op, w in zip(PRIMITIVES, weights[e]) if op != "none")[1]
                    assert derived[e] == best
                else:
                    assert derived[e] == "none"
    assert export["derived_genotype"].startswith("Genotype(normal=[")


def test_metrics_are_small_and_typed_for_the_runner():
    st = Mdenas(Grid([4, 4, 4]), seed=0)
    st.tell(st.ask()[0], ok(5.0))
    m = st.metrics()
    assert m["probabilities"].shape == (3, 4) and m["epoch_counts"].sum() == 3
    assert m["entropy"].shape == (3,) and isinstance(m["mean_entropy"], float) and m["epoch"] == 1
    assert math.isclose(m["mean_entropy"], float(m["entropy"].mean()))
    m["probabilities"][:] = 0  # a copy: logging code cannot corrupt the strategy
    assert st.probs.sum() == pytest.approx(3.0)


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("rule,record", [("A", "latest"), ("B", "mean")])
def test_state_dict_round_trip_mid_run_continues_identically(rule, record):
    opts = MdenasOptions(lr=0.03, rule=rule, accuracy_record=record, epochs=100)
    space = Grid([5, 3, 4, 2])

    def score(arch):  # a fixed scoring: the sum of the chosen choice indices
        return float(sum(int(v[1:]) for v in arch.values()))

    a = Mdenas(space, opts, seed=11)
    for _ in range(20):
        arch = a.ask()[0]
        a.tell(arch, ok(score(arch)) if _ % 7 else Result.failed("x"))
    b = Mdenas(space, opts, seed=999)
    b.load_state_dict(_roundtrip(a.state_dict()))
    for _ in range(30):
        xa, xb = a.ask()[0], b.ask()[0]
        assert xa == xb
        a.tell(xa, ok(score(xa)))
        b.tell(xb, ok(score(xb)))
    assert np.array_equal(a.probs, b.probs) and np.array_equal(a.epoch_counts, b.epoch_counts)
    assert np.array_equal(a.accuracies, b.accuracies) and (a.epoch, a.failed) == (b.epoch, b.failed) == (50, 3)
    assert a.final() == b.final()


def test_loading_a_checkpoint_of_another_space_fails_in_one_line():
    state = Mdenas(Grid([3, 3]), seed=0).state_dict()
    with pytest.raises(ConfigError, match="checkpoint was saved for a space with other decisions"):
        Mdenas(Grid([3, 4]), seed=0).load_state_dict(state)
