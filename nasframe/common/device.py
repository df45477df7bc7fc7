"""Which torch device a run uses: `auto`, `cpu` or `cuda`, checked once where the run is built."""

from __future__ import annotations

import torch

from nasframe.common import distributed
from nasframe.common.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """The device `name` means on this machine; under torchrun, CUDA is this process's cuda:LOCAL_RANK.

    `auto` takes CUDA when a device is visible, else the CPU; `cuda` without a device is a ConfigError.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device=cuda but no CUDA device is available; use auto or cpu")
    return distributed.place(torch.device(name))
