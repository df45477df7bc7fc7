"""Options and config: typed checks, one-line errors naming the key, --set parsing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options, describe_options, option
from nasframe.search.config import merge_config, parse_set, resolve


@dataclass(frozen=True)
class Opts:
    lr: float = option(0.01, "learning rate", min=0.0, max=1.0)
    epochs: int = option(3, "epochs", min=1)
    mode: Literal["a", "b"] = option("a", "mode")
    tags: list[str] = option(default_factory=list, help="tags")
    limit: int | None = option(None, "optional limit", min=1)


def test_build_options_converts_and_checks():
    o = build_options(Opts, {"lr": 1, "epochs": 2.0, "mode": "b", "tags": "x, y", "limit": None}, "strategy")
    assert o == Opts(lr=1.0, epochs=2, mode="b", tags=["x", "y"], limit=None)
    assert isinstance(o.lr, float)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lrr": 0.1}, "unknown option strategy.lrr; did you mean strategy.lr?"),
        ({"lr": "fast"}, "strategy.lr: expected a number, got 'fast'"),
        ({"lr": 2.0}, "strategy.lr: 2.0 is above the maximum 1.0"),
        ({"epochs": 0}, "strategy.epochs: 0 is below the minimum 1"),
        ({"epochs": 1.5}, "strategy.epochs: expected an integer, got 1.5"),
        ({"mode": "c"}, "strategy.mode: 'c' is not allowed; choose one of a, b"),
        ({"limit": 0}, "strategy.limit: 0 is below the minimum 1"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(values, message):
    with pytest.raises(ConfigError) as err:
        build_options(Opts, values, "strategy")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "key, names, meant",
    [
        ("epoch", ["dataset", "epochs_per_eval", "fidelity"], "epochs_per_eval"),  # tabular's options
        ("epoch", ["epochs", "lr"], "epochs"),  # short_train's
        ("eval", ["dataset", "epochs_per_eval", "fidelity"], "epochs_per_eval"),  # a word of the name
        ("lr", ["dataset", "epochs_per_eval", "fidelity"], None),
        ("ep", ["epochs_a", "epochs_b"], None),  # too short to say
        ("epo", ["epochs_per_a", "epochs_per_b"], None),  # ambiguous: no guess
    ],
)
def test_did_you_mean_also_finds_the_name_a_key_begins(key, names, meant):
    from nasframe.common.options import closest_name

    assert closest_name(key, names) == meant


def test_the_tabular_evaluator_suggests_its_epochs_option(cli):
    code, _, err = cli("run", "--space", "nb201", "--evaluator", "tabular", "--set", "evaluator.epoch=2")
    assert code == 2 and "unknown option evaluator.epoch; did you mean evaluator.epochs_per_eval?" in err


def test_describe_options_lists_type_default_and_help():
    lines = describe_options(Opts)
    assert lines[0] == "lr (float, default 0.01) [>= 0.0; <= 1.0]: learning rate"
    assert any(line.startswith("limit (int | null, default None)") for line in lines)


def test_parse_set_reads_yaml_values():
    assert parse_set("strategy.lr=0.02") == ("strategy", "lr", 0.02)
    assert parse_set("run.tensorboard=false") == ("run", "tensorboard", False)
    assert parse_set("space.widths=[1, 2]") == ("space", "widths", [1, 2])
    assert parse_set("run.max_evaluations=null") == ("run", "max_evaluations", None)
    assert parse_set("data.root=/tmp/x") == ("data", "root", "/tmp/x")
    with pytest.raises(ConfigError, match="unknown config section 'strategyy'; did you mean 'strategy'"):
        parse_set("strategyy.lr=1")
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_set("strategy.lr")


def test_set_overrides_config_file_values(core_toy):
    base = {
        "strategy": {"name": "random", "dedup": False},
        "space": "core_toy",
        "evaluator": {"name": "core_toy_eval"},
        "run": {"seed": 3},
    }
    cfg = merge_config(base, sets=["strategy.dedup=true", "run.seed=5"], run={"max_evaluations": 7})
    resolved = resolve(cfg)
    assert resolved.names == {"strategy": "random", "space": "core_toy", "evaluator": "core_toy_eval"}
    assert resolved.options["strategy"].dedup is True
    assert resolved.options["run"].seed == 5
    assert resolved.options["run"].max_evaluations == 7
    as_dict = resolved.to_dict()
    assert as_dict["space"] == {"name": "core_toy", "decisions": 4, "choices": 3}


def test_unknown_top_level_section_fails():
    with pytest.raises(ConfigError, match="unknown config section 'runn'"):
        merge_config({"runn": {}})
