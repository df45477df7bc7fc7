"""Mini-batches of the search split, the same way for device-resident and streaming data sets.

Small sets are uint8 tensors on the device already (`SearchData`): an epoch is a device-side
`randperm` cut into index slices, so no DataLoader, no worker processes, no host copies.
Streaming sets (`StreamingData`, e.g. ImageNet) bring uint8 batches from DataLoader workers in
pinned memory and copy them without blocking. Either way the evaluator sees uint8 batches on
the device and normalises / augments them with `nasframe.data.augment.BatchTransform`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import torch

from nasframe.data.base import DataSpec, SearchData


class StreamingData(ABC):
    """Search-train and search-val of a data set read from disk as the batches are needed."""

    spec: DataSpec
    mean: torch.Tensor  # (1, C, 1, 1) on the device
    std: torch.Tensor
    n_train: int
    n_val: int
    device: torch.device

    @abstractmethod
    def host_batches(
        self, part: str, batch_size: int, *, shuffle: bool, drop_last: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over `part` ("train" or "val") as uint8 CPU (pinned) batches; shuffled by the
        global torch generator when `shuffle`."""


class Batches:
    """Endless shuffled train batches and one-pass val batches of a search split.

    Training drops the last incomplete batch of each pass (a batch of one would break BatchNorm),
    except that a set smaller than one batch is used whole.
    """

    def __init__(self, data: SearchData | StreamingData):
        self.data = data
        self.streaming = isinstance(data, StreamingData)
        if isinstance(data, StreamingData):
            self.n_train, self.n_val = data.n_train, data.n_val
            self.device = data.device
        else:
            self.n_train, self.n_val = int(data.train_x.shape[0]), int(data.val_x.shape[0])
            self.device = data.train_x.device

    @property
    def spec(self) -> DataSpec:
        return self.data.spec

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, self.n_train // batch_size)

    def train(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (x_uint8, y) batches on the device, reshuffled at each pass over search-train."""
        return self.stream("train", batch_size, generator)

    def stream(
        self, split: str, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless shuffled batches of `split` ("train" or "val"): search-val batches of this kind are
        what bilevel search (DARTS) trains its architecture weights on."""
        if isinstance(self.data, StreamingData):
            while True:
                for x, y in self.data.host_batches(split, batch_size, shuffle=True, drop_last=True):
                    yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if split == "train":
            x_all, y_all, n = self.data.train_x, self.data.train_y, self.n_train
        else:
            x_all, y_all, n = self.data.val_x, self.data.val_y, self.n_val
        size = min(batch_size, n)
        steps = max(1, n // batch_size)
        while True:
            order = torch.randperm(n, device=self.device, generator=generator)
            for i in range(steps):
                idx = order[i * size : (i + 1) * size]
                yield x_all[idx], y_all[idx]

    def val(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Search-val once, in a fixed order, as (x_uint8, y) batches on the device."""
        if isinstance(self.data, StreamingData):
            for x, y in self.data.host_batches("val", batch_size, shuffle=False, drop_last=False):
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        for start in range(0, self.n_val, batch_size):
            yield self.data.val_x[start : start + batch_size], self.data.val_y[start : start + batch_size]
