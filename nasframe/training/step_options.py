"""How the evaluators train: their shared options, the settings of one SGD step, and the switches
around it (mixed precision, deterministic kernels, device generators)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasframe.common.options import option
from nasframe.data.augment_policy import AUGMENT_CHOICES

if TYPE_CHECKING:  # imported where used: the options load without torch (`nasframe list`)
    import torch
    from torch import nn


@dataclass(frozen=True)
class TrainingOptions:
    """Options every SGD-training evaluator shares (defaults and help: training a network from scratch).

    Subclasses redeclare a field to change its default or help; a redeclared field keeps its place
    in the listing.
    """

    epochs: float = option(
        2.0, "epochs over search-train per candidate (a budget's epochs or steps override it)", min=0.001
    )
    batch_size: int = option(64, "training mini-batch size", min=1)
    eval_batch_size: int = option(512, "validation batch size (no effect on the result)", min=1)
    lr: float = option(0.1, "initial SGD learning rate, annealed to 0 by a per-step cosine", min=0)
    momentum: float = option(0.9, "SGD momentum", min=0, max=1)
    weight_decay: float = option(3e-4, "SGD weight decay (L2) on the parameters being trained", min=0)
    decay_1d: bool = option(
        True,
        "weight decay on 1-D parameters too (biases, BatchNorm scales and shifts); false: only on weights of two "
        "or more dimensions, as Cream's trainer (timm's filter_bias_and_bn) does",
    )
    grad_clip: float | None = option(5.0, "clip the gradient norm to this (null or 0: off)", min=0)
    auxiliary_weight: float = option(
        0.4,
        "weight of the auxiliary head's loss when the model returns "
        "(logits, aux) in train mode and has no `auxiliary_weight` of its "
        "own",
        min=0,
    )
    label_smoothing: float = option(0.0, "cross-entropy label smoothing", min=0, max=1)
    bn_recalibration_batches: int = option(
        10,
        "before validating, re-estimate BatchNorm statistics from this "
        "many train batches (a few epochs leave them stale; 0: off)",
        min=0,
    )
    augment: str = option(
        "auto",
        "train-batch augmentation on the device; auto: crop+flip for small colour images, none otherwise",
        choices=AUGMENT_CHOICES,
    )
    cutout: int = option(0, "cutout square side in pixels after augmentation (0: off; DARTS uses 16)", min=0)
    amp: bool = option(True, "CUDA only: bf16 autocast for forward and loss")
    channels_last: bool = option(
        True,
        "NHWC memory format for model and batches (CUDA: tensor cores; CPU: oneDNN's "
        "depthwise and pooling kernels skip a layout conversion per call)",
    )
    model_stats: bool = option(True, "count parameters and MACs of each candidate (MACs cost one traced forward pass)")
    deterministic: bool | None = option(None, "torch deterministic algorithms (null: on for CPU, off for CUDA)")
    check_every: int = option(50, "steps between NaN/inf checks of the loss (each check is one host sync)", min=1)


@dataclass(frozen=True)
class StepSettings:
    """How one optimisation step is computed (taken from an evaluator's options)."""

    grad_clip: float | None = 5.0
    auxiliary_weight: float = 0.4
    #: False: the optimizer's weight decay reaches only parameters of two or more dimensions
    decay_1d: bool = True
    label_smoothing: float = 0.0
    amp: bool = False  # bf16 autocast; only ever switched on for CUDA
    check_every: int = 50


def resolve_deterministic(options: TrainingOptions, device: torch.device) -> bool:
    """`deterministic: null` means on for the CPU (reproducible tests) and off for CUDA (speed)."""
    return options.deterministic if options.deterministic is not None else device.type != "cuda"


def step_settings(options: TrainingOptions, model: nn.Module, device: torch.device) -> StepSettings:
    """The step settings for `model`; a model's own `auxiliary_weight` wins over the option."""
    return StepSettings(
        grad_clip=options.grad_clip,
        auxiliary_weight=getattr(model, "auxiliary_weight", options.auxiliary_weight),
        decay_1d=options.decay_1d,
        label_smoothing=options.label_smoothing,
        amp=options.amp and device.type == "cuda",
        check_every=options.check_every,
    )


def device_generator(device: torch.device) -> torch.Generator | None:
    """The generator for shuffling and augmentation on `device`.

    On the CPU it is the global generator (None), which the runner seeds before each evaluation.
    On CUDA it is a fresh generator seeded from one draw of that same global CPU generator, so
    GPU data order is reproducible, and resumable, from the CPU RNG state the runner checkpoints.
    """
    if device.type == "cpu":
        return None
    import torch

    seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Switch torch's deterministic algorithms on for the block (and cuDNN autotuning off).

    torch's companion setting `fill_uninitialized_memory` is switched off for the block: it is a
    debugging aid that writes NaN into every new tensor (about 2,000 extra fills per DARTS
    training step on digits, within a few per cent of the step's time on a CPU) and changes no
    result of a correct kernel.
    """
    import torch

    det: Any = torch.utils.deterministic  # fill_uninitialized_memory is missing from torch's type stubs
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        det.fill_uninitialized_memory,
    )
    change = saved[:2] != (enabled, True)
    if change:
        _set_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    det.fill_uninitialized_memory = False
    try:
        yield
    finally:
        if change:
            _set_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        det.fill_uninitialized_memory = saved[4]


def _set_deterministic_algorithms(enabled: bool, *, warn_only: bool) -> None:
    """`torch.use_deterministic_algorithms`, without its import of torch._inductor where that is not loaded.

    The public function imports torch._inductor only to copy the flag into the compiler's config:
    2.5-4 s at a run's first evaluation on a 2-core machine, for a compiler nothing has loaded.
    Once torch._inductor is loaded (torch.compile ran or is about to), the public function is used.
    """
    import torch

    if "torch._inductor" in sys.modules:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    else:
        torch._C._set_deterministic_algorithms(enabled, warn_only=warn_only)
