"""What a training is: the `TrainPlan` (network, recipe, data) made from a run's answer or a given
architecture, stored as train.json, and the network it builds."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nasframe.common.errors import ConfigError, NotSupported, RunDirError
from nasframe.common.options import build_options, options_to_dict
from nasframe.data import DataOptions, DataSpec
from nasframe.training.recipes import Recipe, make_recipe, recipe_from_dict, recipe_to_dict

if TYPE_CHECKING:
    from nasframe.core.space import Arch, SearchSpace

TRAIN_JSON = "train.json"
MODEL_JSON = "model.json"
WEIGHTS = "model.safetensors"
TENSORBOARD = "tensorboard"
#: version of the training folder's files; bump when an older reader would misread them
FORMAT = 1
#: the sections `--set` takes in `nasframe train`
TRAIN_SECTIONS = ("recipe", "space", "data")


@dataclass
class TrainPlan:
    """Everything that defines a training: the network (space, options, architecture), recipe and data."""

    space: str
    space_options: dict[str, Any]
    arch: dict[str, Any]
    arch_source: str
    recipe_name: str
    recipe: dict[str, Any]
    data: dict[str, Any]
    plugins: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> TrainPlan:
        if not isinstance(d, Mapping):
            raise RunDirError(f"{where}: not a JSON mapping")
        if d.get("format") != FORMAT:
            raise RunDirError(f"{where}: training format {d.get('format')!r}, this nasframe reads format {FORMAT}")
        values: dict[str, Any] = {}
        for name, kind in (
            ("space", str),
            ("space_options", dict),
            ("arch", dict),
            ("arch_source", str),
            ("recipe_name", str),
            ("recipe", dict),
            ("data", dict),
            ("plugins", list),
        ):
            if not isinstance(d.get(name), kind):
                raise RunDirError(f"{where}: field {name!r} is missing or not a {kind.__name__}")
            values[name] = d[name]
        return cls(**values)

    @property
    def recipe_options(self) -> Recipe:
        return recipe_from_dict(self.recipe)

    @property
    def data_options(self) -> DataOptions:
        return build_options(DataOptions, self.data, "data")


def split_sets(sets: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`--set section.key=value` items of `nasframe train` by section (recipe, space, data)."""
    from nasframe.search.config import parse_set

    out: dict[str, dict[str, Any]] = {s: {} for s in TRAIN_SECTIONS}
    for item in sets:
        section, key, value = parse_set(item, sections=TRAIN_SECTIONS)
        out[section][key] = value
    return out


def plan_training(
    run_dir: str | Path | None = None,
    *,
    space: str | None = None,
    arch: str | Mapping[str, Any] | None = None,
    recipe: str = "quick",
    data: str | None = None,
    sets: Sequence[str] = (),
    plugins: Sequence[str] = (),
) -> TrainPlan:
    """The plan for training a run's answer (`run_dir`) or a given architecture (`space` and `arch`: a name,
    a JSON mapping, the space's text form, or a file such as a run's best.json).

    From a run, the space options and data set are the run's; the run's `data.limit` is dropped (a search
    often limits its data for speed; the trained network should see the whole train set): set it again with
    `--set data.limit=N`.
    """
    from nasframe.common.plugins import load_plugin
    from nasframe.core.registry import spaces

    by_section = split_sets(sets)
    for plugin in plugins:
        load_plugin(plugin)
    if run_dir is not None:
        if space is not None or arch is not None:
            raise ConfigError("train: give either a run directory or --space with --arch, not both")
        space_name, space_values, chosen, source, data_values, run_plugins = _from_run(Path(run_dir))  # loads them
        plugins, space_values = [*run_plugins, *plugins], {**space_values, **by_section["space"]}
    else:
        if space is None or arch is None:
            raise ConfigError("train: give a run directory, or --space NAME with --arch NAME|FILE")
        space_name, data_values = space, {}
        space_values, chosen, source = _given_arch(space, arch, by_section["space"])
    cls = spaces.get(space_name)
    if data is not None:
        data_values["name"] = data
    data_values.update(by_section["data"])
    recipe_options = make_recipe(recipe, by_section["recipe"])
    space_values.update(_regularisers(cls, space_name, recipe, recipe_options))
    space_options = build_options(cls.Options, space_values, "space")
    return TrainPlan(
        space=space_name,
        space_options=options_to_dict(space_options),
        arch=cls(space_options).validate(dict(chosen)).to_dict(),
        arch_source=source,
        recipe_name=recipe,
        recipe=recipe_to_dict(recipe_options),
        data=options_to_dict(build_options(DataOptions, data_values, "data")),
        plugins=list(plugins),
    )


def _given_arch(
    space: str, arch: str | Mapping[str, Any], sets: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Space options, the architecture and where it came from, for `--space` with `--arch`."""
    from nasframe.core.registry import spaces

    text, source = _arch_text(arch)
    given = spaces.get(space)
    # a named architecture (any spelling of it) may need options of its own (e.g. its layout), beneath the
    # user's --set values
    name = given.published_name(text) or text
    space_values = dict(given.options_for_arch(name) or {}) if isinstance(arch, str) else {}
    space_values.update(sets)
    chosen = given(build_options(given.Options, space_values, "space")).parse_arch(text).to_dict()
    return space_values, chosen, source


def _from_run(run_dir: Path) -> tuple[str, dict[str, Any], dict[str, Any], str, dict[str, Any], list[str]]:
    from nasframe.search.answer import answer_of
    from nasframe.search.config import merge_config, resolve
    from nasframe.search.rundir import RunDir

    files = RunDir(run_dir)
    files.require_run()
    if not files.is_finished():
        raise RunDirError(f"{run_dir}: the run has not finished (no best.json); resume it first")
    config = resolve(merge_config(files.read_config()))
    chosen, where = answer_of(files.read_result())
    data_values = options_to_dict(config.options["data"])
    data_values.pop("limit", None)
    return (
        config.names["space"],
        options_to_dict(config.options["space"]),
        dict(chosen),
        f"{run_dir / 'best.json'}: {where}",
        data_values,
        list(config.plugins),
    )


def _arch_text(arch: str | Mapping[str, Any]) -> tuple[str, str]:
    """The architecture's text and a note of where it came from (a file's path, or 'given')."""
    if isinstance(arch, Mapping):
        return json.dumps(dict(arch)), "given mapping"
    from nasframe.common.loading import names_file

    if names_file(arch):
        from nasframe.search.answer import arch_text_from_file

        text, where = arch_text_from_file(arch)
        return text, where or arch
    return arch, f"--arch {arch}" if len(arch) <= 80 else "--arch (text)"


def _regularisers(cls: type[SearchSpace], space_name: str, recipe_name: str, recipe: Recipe) -> dict[str, Any]:
    """The space options that give the recipe's auxiliary head and drop-path, or a one-line refusal where the
    space's networks have neither (they are declared in `SearchSpace.training_extras`)."""
    extras = cls.training_extras
    values: dict[str, Any] = {}
    for wanted, extra, key in (
        (recipe.drop_path_prob > 0, "drop_path", "drop_path_prob"),
        (recipe.auxiliary_weight > 0, "auxiliary", "auxiliary_weight"),
    ):
        if wanted and extra not in extras:
            raise NotSupported(
                f"recipe {recipe_name}: space {space_name}'s networks have no {extra.replace('_', '-')}; "
                f"set --set recipe.{key}=0 to train without it"
            )
    if "auxiliary" in extras:
        values.update(auxiliary=recipe.auxiliary_weight > 0, auxiliary_weight=recipe.auxiliary_weight)
    if "drop_path" in extras:
        values["drop_path_prob"] = 0.0  # raised per epoch by the trainer
    return values


def build_space(plan: TrainPlan) -> SearchSpace:
    from nasframe.common.plugins import load_plugin
    from nasframe.core.registry import spaces

    for plugin in plan.plugins:
        load_plugin(plugin)
    cls = spaces.get(plan.space)
    return cls(build_options(cls.Options, plan.space_options, "space"))


def data_spec(plan: TrainPlan) -> DataSpec:
    from nasframe.data.registry import datasets

    return datasets.create(plan.data_options.name, plan.data_options).spec()


def build_model(plan: TrainPlan) -> tuple[nn.Module, Arch, DataSpec]:
    """The plan's network with fresh weights drawn from the recipe seed (the same weights every time)."""
    space = build_space(plan)
    arch = space.validate(plan.arch)
    spec = data_spec(plan)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.recipe_options.seed)
        model = space.build(arch, spec)
    return model, arch, spec


def training_identity(plan: TrainPlan) -> str:
    """A training's identity: a hash of what decides its weights (network, recipe with its seed, data),
    not of where things are (the data set's folder, the plugins' paths, where the architecture came from)."""
    from nasframe.common.ownership import identity_of

    settings = plan.to_dict()
    for key in ("arch_source", "plugins"):
        settings.pop(key, None)
    settings["data"] = {k: v for k, v in plan.data.items() if k not in ("root", "workers", "download")}
    return identity_of(settings)


def read_plan(folder: Path) -> TrainPlan:
    path = folder / TRAIN_JSON
    if not path.is_file():
        raise RunDirError(f"{folder}: no {TRAIN_JSON}; is this a nasframe training folder?")
    from nasframe.common.loading import load_json

    return TrainPlan.from_dict(load_json(path, "", RunDirError), str(path))
