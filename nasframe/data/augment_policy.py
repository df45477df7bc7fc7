"""Which augmentation a run's training batches get: the `augment` option's values and their policy.

Apart from the batched tensor ops (`nasframe.data.augment`) so that the options that name a policy
load without torch (`nasframe list`, `nasframe --help`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nasframe.common.errors import ConfigError
from nasframe.data.base import DataSpec

#: values of the evaluators' `augment` option
AUGMENT_CHOICES = ("auto", "none", "flip", "crop", "crop_flip")


@dataclass(frozen=True)
class AugmentPolicy:
    """What the training batches get. Zero / False switches a step off."""

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0

    def describe(self) -> str:
        parts = [f"crop(pad {self.crop_padding})"] * bool(self.crop_padding) + ["flip"] * self.flip
        parts += [f"cutout {self.cutout}"] * bool(self.cutout)
        return "+".join(parts) or "none"


def choose_policy(name: str, spec: DataSpec, *, cutout: int = 0, streaming: bool = False) -> AugmentPolicy:
    """Resolve an `augment` option for a data set.

    `auto` gives crop (padding 1/8 of the side, 4 on 32x32) plus flip for colour images of at
    most 64x64 (CIFAR, synthetic) and nothing for grey images (digits and clothes are not
    mirror-symmetric in meaning, and 8x8 digits have no room to crop) or streaming sets, whose
    loader already crops and flips at full resolution.
    """
    if name not in AUGMENT_CHOICES:
        raise ConfigError(f"augment: {name!r} is not allowed; choose one of {', '.join(AUGMENT_CHOICES)}")
    if name == "auto":
        small_colour = spec.channels == 3 and max(spec.height, spec.width) <= 64 and not streaming
        name = "crop_flip" if small_colour else "none"
    padding = max(1, min(spec.height, spec.width) // 8) if "crop" in name else 0
    return AugmentPolicy(crop_padding=padding, flip="flip" in name, cutout=cutout)
