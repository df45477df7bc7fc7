"""The conformance kit (`nasframe.testing`) over every built-in strategy, space and evaluator."""

from __future__ import annotations

from nasframe.testing import EvaluatorConformance, SpaceConformance, StrategyConformance

SMALL_STRATEGY_OPTIONS = {
    "spos": {
        "supernet_epochs": 1,
        "population": 4,
        "parents": 2,
        "mutations": 1,
        "crossovers": 1,
        "generations": 3,
        "bn_batches": 0,
    },
    "abs": {"warmup_epochs": 1, "epochs_between_steps": 0.5, "samples_per_operator": 3, "target_size": 40},
    "evolution": {"population": 4},
}


class TestRandom(StrategyConformance):
    strategy = "random"


class TestMdenas(StrategyConformance):
    strategy = "mdenas"


class TestEvolution(StrategyConformance):
    strategy, options = "evolution", SMALL_STRATEGY_OPTIONS["evolution"]


class TestSpos(StrategyConformance):
    strategy, options = "spos", SMALL_STRATEGY_OPTIONS["spos"]


class TestDarts(StrategyConformance):
    strategy, options = "darts", {"epochs": 4, "score_bn_batches": 0}


class TestCream(StrategyConformance):
    strategy, options = "cream", {"epochs": 4, "warmup_epochs": 1, "board_size": 3, "score_bn_batches": 0}


class TestSetn(StrategyConformance):
    strategy, options = "setn", {"epochs": 3, "candidates": 6}


class TestAbs(StrategyConformance):
    strategy, options = "abs", SMALL_STRATEGY_OPTIONS["abs"]
    rounds = 20


class TestAbsWithSposBase(StrategyConformance):
    strategy = "abs"
    options = {**SMALL_STRATEGY_OPTIONS["abs"], "base": "spos", "base_options": SMALL_STRATEGY_OPTIONS["spos"]}
    rounds = 20


#: a tiny multi-branch space for NSE (five cells of the GPU space's 19 ops)
TINY_NSE = {
    "alloc_plan": "NR",
    "alloc_space": [1, 0, 0, 0, 0],
    "channel_dist": [4, 4, 4, 4, 4],
    "cell_plan": "multi_branch",
    "small_input": True,
    "last_channels": 8,
}


class TestNse(StrategyConformance):
    strategy = "nse"
    # the scripted evaluator's op j costs j + 1 million MACs: a window the sampler reaches
    options = {"k": 3, "epochs": 1, "samples": 4, "extra_samples": 0, "cost_target": 75, "drift": 60}
    rounds = 8

    def make_space(self):
        from nasframe.common.options import build_options
        from nasframe.core.registry import spaces

        cls = spaces.get("nse")
        return cls(build_options(cls.Options, TINY_NSE, "space"))


class TestLocalSearch(StrategyConformance):
    strategy = "local_search"


class TestLocalSearchFirstImprovement(StrategyConformance):
    strategy, options = "local_search", {"move": "first"}


class TestBananas(StrategyConformance):
    strategy = "bananas"
    options = {"initial": 4, "batch": 3, "candidates": 12, "layers": 2, "width": 8, "epochs": 5}
    rounds = 8


class TestOptuna(StrategyConformance):
    strategy = "optuna"


class TestOptunaWithoutDedup(StrategyConformance):
    strategy, options = "optuna", {"dedup": False, "sampler_options": {"n_startup_trials": 3}}


class TestSuccessiveHalving(StrategyConformance):
    strategy = "successive_halving"


class TestHyperband(StrategyConformance):
    strategy = "hyperband"
    rounds = 20


class TestDartsSpace(SpaceConformance):
    space = "darts"
    options = {"C": 4, "layers": 3, "supernet_C": 4, "supernet_layers": 3}


class TestMobilenetSpace(SpaceConformance):
    space = "mobilenet"
    options = {"small_input": True, "width_mult": 0.25}


class TestShufflenetSpace(SpaceConformance):
    space = "shufflenet"
    options = {
        "small_input": True,
        "widths": [8, 16, 24, 32],
        "stem_width": 4,
        "last_width": 32,
        "stage_repeats": [1, 1, 2, 1],
    }


class TestNseSpace(SpaceConformance):
    space, options = "nse", TINY_NSE


class TestNb201Space(SpaceConformance):
    space = "nb201"


class TestShortTrain(EvaluatorConformance):
    evaluator = "short_train"
    space, space_options = "darts", {"C": 4, "layers": 2}
    options = {"epochs": 0.2, "batch_size": 32}


class TestSupernet(EvaluatorConformance):
    evaluator = "supernet"
    space, space_options = "darts", {"supernet_C": 4, "supernet_layers": 2}
    options = {"steps": 2, "batch_size": 32}


class TestTabular(EvaluatorConformance):
    evaluator = "tabular"


class TestZeroCost(EvaluatorConformance):
    evaluator = "zero_cost"
    space, space_options = "darts", {"C": 4, "layers": 2}
    options = {"proxy": "synflow"}  # a score far above 100: val_acc_is_percent = False is what lets it pass


def test_every_installed_component_is_covered():
    from nasframe.core.registry import evaluators, spaces, strategies

    covered = {c.strategy for c in StrategyConformance.__subclasses__()}
    assert set(strategies.installed()) <= covered
    assert set(spaces.installed()) <= {c.space for c in SpaceConformance.__subclasses__()}
    assert set(evaluators.installed()) <= {c.evaluator for c in EvaluatorConformance.__subclasses__()}


NEAS_TINY = {
    "stage_layers": [2, 1],
    "widths": [8, 16],
    "strides": [1, 2],
    "stem_width": 8,
    "last_width": 16,
    "head_width": 16,
    "small_input": True,
    "ops": ["k3e4", "k5e4", "k3e6"],
}


class TestNeas(StrategyConformance):
    strategy = "neas"
    options = {
        "warmup_epochs": 1,
        "epochs_between_steps": 0.5,
        "samples_per_step": 2,
        "final_epochs": 0.5,
        "evolution": {"population": 4, "parents": 2, "mutations": 1, "crossovers": 1, "generations": 2},
    }
    rounds = 20

    def make_space(self):
        from nasframe.common.options import build_options
        from nasframe.core.registry import spaces

        cls = spaces.get("neas")
        return cls(build_options(cls.Options, NEAS_TINY, "space"))


class TestNeasSpace(SpaceConformance):
    space, options = "neas", NEAS_TINY
