"""Augmentation and normalisation of whole uint8 batches on the device.

Small data sets live on the device as uint8, so the per-image CPU transforms of a DataLoader
are replaced by a few batched tensor ops: random crop with zero padding, horizontal flip and
cutout, as DARTS trains CIFAR. Crop and flip run on uint8 (4x less memory traffic); cutout
runs after normalisation so that, as in DARTS, the square becomes 0 (the mean colour).
All random draws take an explicit generator (None: the device's global one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasframe.data.augment_policy import AUGMENT_CHOICES, AugmentPolicy, choose_policy

__all__ = [
    "AUGMENT_CHOICES",
    "AugmentPolicy",
    "BatchTransform",
    "choose_policy",
    "cutout",
    "random_crop",
    "random_flip",
]


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad every image by `padding` zeros and cut a random window of the original size from each."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n, 1), device=x.device, generator=generator)
    rows = offsets[0] + torch.arange(h, device=x.device)  # (n, h)
    cols = offsets[1] + torch.arange(w, device=x.device)  # (n, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def cutout(x: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one `length` x `length` square per image, centred uniformly (clipped at the border).

    Rows [cy - length//2, cy + length//2) as in DARTS' Cutout, so odd lengths cover length-1.
    """
    n, _, h, w = x.shape
    half = length // 2
    cy = torch.randint(0, h, (n, 1), device=x.device, generator=generator)
    cx = torch.randint(0, w, (n, 1), device=x.device, generator=generator)
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_rows = (ys >= cy - half) & (ys < cy + half)  # (n, h)
    in_cols = (xs >= cx - half) & (xs < cx + half)  # (n, w)
    hole = in_rows.view(n, 1, h, 1) & in_cols.view(n, 1, 1, w)
    return x.masked_fill(hole, 0.0)


class BatchTransform:
    """uint8 batches in, normalised float32 batches out, on the batch's device.

    Args:
        mean: (1, C, 1, 1) tensor of channel means in the 0..1 pixel scale.
        std: (1, C, 1, 1) tensor of channel standard deviations in the same scale.
        channels_last: return NHWC-strided batches (faster convolutions on CUDA).
    """

    def __init__(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        policy: AugmentPolicy = AugmentPolicy(),
        channels_last: bool = False,
    ):
        self.policy = policy
        self.channels_last = channels_last
        # (x / 255 - mean) / std == x * scale + shift: one fused op
        self.scale = (1.0 / (255.0 * std)).float()
        self.shift = (-mean / std).float()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addcmul(self.shift, x.float(), self.scale)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def train(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.policy
        if p.crop_padding:
            x = random_crop(x, p.crop_padding, generator)
        if p.flip:
            x = random_flip(x, generator)
        out = self.normalise(x)
        if p.cutout:
            out = cutout(out, p.cutout, generator)
        return out

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalise(x)
