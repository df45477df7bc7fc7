"""Random tensors of a given shape: for speed benchmarks only (nothing to learn)."""

from __future__ import annotations

from nasframe.data.base import Dataset, DataSpec, RawData
from nasframe.data.registry import register_dataset


@register_dataset("synthetic")
class Synthetic(Dataset):
    """Random uint8 images and labels of `synthetic_shape`, for throughput measurements."""

    def spec(self) -> DataSpec:
        c, h, w = self.options.synthetic_shape
        return DataSpec("synthetic", c, h, w, self.options.synthetic_classes)

    def load(self) -> RawData:
        import torch  # here: `nasframe list` loads this module without torch

        spec = self.spec()
        gen = torch.Generator().manual_seed(0)
        n = self.options.synthetic_size
        x = torch.randint(0, 256, (n, *spec.input_shape), dtype=torch.uint8, generator=gen)
        y = torch.randint(0, spec.num_classes, (n,), generator=gen)
        return RawData(x, y, None, None, (0.5,) * spec.channels, (0.29,) * spec.channels)
