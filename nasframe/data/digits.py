"""scikit-learn's 8x8 handwritten digits (1,797 real images): the offline default data set, with a
fixed held-out test split of its own."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from nasframe.data.base import Dataset, DataSpec, RawData
from nasframe.data.registry import register_dataset

#: share of the 1,797 images held out as digits' test split (scikit-learn ships none): 359 images
#: drawn by a fixed seed, never part of a search, and the test set `nasframe train` reports on
TEST_SHARE = 0.2


@register_dataset("digits")
class Digits(Dataset):
    """8x8 grey handwritten digits shipped inside scikit-learn: 1,438 train and 359 test images
    (a fixed, seeded split; the search splits the train part only)."""

    def spec(self) -> DataSpec:
        return DataSpec("digits", 1, 8, 8, 10, class_names=tuple(str(d) for d in range(10)))

    def load(self) -> RawData:
        import torch  # here: `nasframe list` loads this module without torch

        pixels, labels = _read_digits()
        # pixel values are 0..16; scale to the 0..255 uint8 range every loader returns
        images = np.clip(np.rint(pixels.reshape(-1, 8, 8) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        x = torch.from_numpy(images).unsqueeze(1).contiguous()
        y = torch.from_numpy(labels.astype(np.int64))
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
        n_test = int(round(x.shape[0] * TEST_SHARE))
        test, train = order[:n_test], order[n_test:]
        mean = float(x[train].float().mean() / 255.0)  # of the train images only: the test set stays unseen
        std = float(x[train].float().std() / 255.0)
        return RawData(x[train], y[train], x[test], y[test], (mean,), (std,))


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels (1797, 64) float64, labels (1797,)) from scikit-learn's own digits.csv.gz.

    The file is read directly, as `sklearn.datasets.load_digits` reads it, because importing
    `sklearn.datasets` takes seconds (scipy and the rest of the package come with it): 3 s of
    the main job's start on a busy 2-core machine, against 0.06 s for the file. Where the file
    is not where scikit-learn keeps it, `load_digits` is the fallback.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path) as f:
                table = np.loadtxt(f, delimiter=",")
            return table[:, :-1], table[:, -1]
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target
