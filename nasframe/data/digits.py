"""scikit-learn's 8x8 handwritten digits (1,797 real images): the offline default data set."""

from __future__ import annotations

import numpy as np
import torch

from nasframe.data.base import Dataset, DataSpec, RawData
from nasframe.registry import register_dataset


@register_dataset("digits")
class Digits(Dataset):
    """8x8 grey handwritten digits shipped inside scikit-learn; no test split of its own."""

    def spec(self) -> DataSpec:
        return DataSpec("digits", 1, 8, 8, 10)

    def load(self) -> RawData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        # pixel values are 0..16; scale to the 0..255 uint8 range every loader returns
        images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        x = torch.from_numpy(images).unsqueeze(1).contiguous()
        y = torch.from_numpy(bunch.target.astype(np.int64))
        mean = float(x.float().mean() / 255.0)
        std = float(x.float().std() / 255.0)
        return RawData(x, y, None, None, (mean,), (std,))
