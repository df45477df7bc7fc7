"""Named training recipes for `nasframe train`: every hyperparameter of a from-scratch training, with its source.

A recipe is a `Recipe` (typed options with help text, checked like any component's options); the named ones
are defaults that `--set recipe.KEY=VALUE` overrides one by one. `SOURCES` says where each value of a named
recipe comes from, so the docs' table and `nasframe train --help` can quote it; values not in the reference
are marked as this project's choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nasframe.common.errors import ConfigError
from nasframe.common.options import build_options, option, options_to_dict
from nasframe.data.augment_policy import AUGMENT_CHOICES


@dataclass(frozen=True)
class Recipe:
    """How a network is trained from scratch: optimiser, schedule, regularisation and data augmentation."""

    epochs: int = option(5, "passes over the train set", min=1)
    batch_size: int = option(64, "training mini-batch size (the last incomplete batch of an epoch is dropped)", min=1)
    eval_batch_size: int = option(500, "batch size of the final test pass (no effect on the result)", min=1)
    lr: float = option(0.05, "peak SGD learning rate (reached after the warm-up)", min=0)
    lr_min: float = option(0.0, "learning rate at the end of the schedule", min=0)
    schedule: Literal["cosine", "linear"] = option(
        "cosine", "per-step decay from lr to lr_min after the warm-up: cosine or linear"
    )
    warmup_epochs: float = option(0.0, "linear warm-up from 0 to lr over this many epochs (0: none)", min=0)
    momentum: float = option(0.9, "SGD momentum", min=0, max=1)
    nesterov: bool = option(False, "Nesterov momentum")
    weight_decay: float = option(3e-4, "SGD weight decay (L2) on every parameter", min=0)
    grad_clip: float | None = option(5.0, "clip the gradient norm to this (null or 0: off)", min=0)
    label_smoothing: float = option(0.0, "cross-entropy label smoothing", min=0, max=1)
    augment: str = option(
        "auto",
        "train-batch augmentation: auto (crop+flip for small colour images, none otherwise), none, flip, crop, "
        "crop_flip",
        choices=AUGMENT_CHOICES,
    )
    cutout: int = option(0, "cutout square side in pixels (0: off)", min=0)
    drop_path_prob: float = option(
        0.0,
        "final drop-path probability, raised linearly from 0 over the epochs (spaces whose networks have "
        "drop-path only)",
        min=0,
        max=0.9,
    )
    auxiliary_weight: float = option(
        0.0, "weight of the auxiliary head's loss; > 0 adds the head (spaces whose networks have one only)", min=0
    )
    amp: bool = option(True, "CUDA only: bf16 autocast for forward and loss")
    channels_last: bool = option(True, "CUDA only: NHWC memory format for model and batches")
    seed: int = option(0, "seed of the initial weights, the batch order, augmentation and drop-path", min=0)

    def __post_init__(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise ConfigError("recipe.nesterov: Nesterov momentum needs recipe.momentum > 0")
        if self.lr_min > self.lr:
            raise ConfigError(f"recipe.lr_min: {self.lr_min} is above recipe.lr {self.lr}; the schedule decays")


#: recipe name -> (one-line description, the values that differ from Recipe's defaults)
_NAMED: dict[str, tuple[str, dict[str, Any]]] = {
    "quick": (
        "minutes on a CPU for digits or Fashion-MNIST: a smoke test of the whole path",
        {},
    ),
    "darts-cifar": (
        "DARTS' CIFAR-10 evaluation training (use --set space.C=36 --set space.layers=20 for the paper's network)",
        {
            "epochs": 600,
            "batch_size": 96,
            "lr": 0.025,
            "lr_min": 0.0,
            "schedule": "cosine",
            "momentum": 0.9,
            "weight_decay": 3e-4,
            "grad_clip": 5.0,
            "augment": "crop_flip",
            "cutout": 16,
            "drop_path_prob": 0.2,
            "auxiliary_weight": 0.4,
        },
    ),
    "imagenet-mobile": (
        "the retraining recipe of the SPOS/ABS ImageNet mobile networks (MBConv, ShuffleNet blocks)",
        {
            "epochs": 240,
            "batch_size": 1024,
            "lr": 0.5,
            "lr_min": 0.0,
            "schedule": "linear",
            "warmup_epochs": 0.0,
            "momentum": 0.9,
            "weight_decay": 4e-5,
            "grad_clip": 5.0,
            "label_smoothing": 0.1,
            "augment": "auto",
        },
    ),
}

_DARTS = "DARTS train.py (reference 4.6)"
_ABS = "ABS */training retrain recipe (reference 2.5)"
_SPOS = "SPOS retrain template (reference 3.5): batch 1024, 300k iterations, lr 0.5 linear, wd 4e-5, smoothing 0.1"

#: recipe name -> option -> where its value comes from (options not listed: this project's choice)
SOURCES: dict[str, dict[str, str]] = {
    "quick": {},
    "darts-cifar": {
        "epochs": _DARTS,
        "batch_size": _DARTS,
        "lr": _DARTS,
        "lr_min": _DARTS + " (cosine to 0)",
        "schedule": _DARTS,
        "momentum": _DARTS,
        "weight_decay": _DARTS,
        "grad_clip": _DARTS,
        "augment": "DARTS' CIFAR transforms: random crop (padding 4) and horizontal flip",
        "cutout": _DARTS,
        "drop_path_prob": _DARTS + " (raised linearly per epoch, as DARTS does)",
        "auxiliary_weight": _DARTS,
    },
    "imagenet-mobile": {
        "epochs": _ABS + "; SPOS' 300k iterations of 1024 are the same 240 epochs",
        "batch_size": _ABS + " and " + _SPOS,
        "lr": _ABS + " and " + _SPOS,
        "lr_min": _ABS + " (linear decay to 0)",
        "schedule": _ABS + " and " + _SPOS,
        "warmup_epochs": "neither SPOS' nor ABS' retrain recipe has a warm-up (NSE uses 2 epochs, NEAS 3)",
        "momentum": "SPOS' SGD momentum (reference 3.2)",
        "weight_decay": _ABS + " and " + _SPOS,
        "grad_clip": _ABS,
        "label_smoothing": _ABS + " and " + _SPOS,
        "augment": "auto: crop+flip on small colour sets (ImageNet itself streams and is not trained on yet)",
    },
}


def recipe_names() -> list[str]:
    return list(_NAMED)


def describe_recipe(name: str) -> str:
    return _named(name)[0]


def _named(name: str) -> tuple[str, dict[str, Any]]:
    if name not in _NAMED:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(_NAMED)}")
    return _NAMED[name]


def make_recipe(name: str, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """The named recipe with `overrides` (the `--set recipe.KEY=VALUE` items) applied and checked."""
    values = {**_named(name)[1], **dict(overrides or {})}
    return build_options(Recipe, values, "recipe")


def recipe_from_dict(values: Mapping[str, Any]) -> Recipe:
    """A recipe written to a training folder's model.json / train.json, read back and checked."""
    return build_options(Recipe, values, "recipe")


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return options_to_dict(recipe)


def recipe_table(name: str) -> list[tuple[str, Any, str]]:
    """(option, value, source) for every option of a named recipe, for documentation."""
    recipe = make_recipe(name)
    sources = SOURCES.get(name, {})
    return [
        (f.name, getattr(recipe, f.name), sources.get(f.name, "nasframe's choice")) for f in dataclasses.fields(recipe)
    ]
