"""ImageNet's streaming half: DataLoader workers decode, crop and flip photos into uint8 batches.

Separate from `nasframe.data.imagenet` (the data set's names, spec and file listing) so that
`nasframe list` and `nasframe inspect` load the data set without torch's DataLoader; a search
opens this on its first batch (`ImageNet.open_search`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from nasframe.data.base import DataSpec
from nasframe.data.batches import StreamingData
from nasframe.data.imagenet import IMAGE_SIZE, MEAN, RESIZE, STD


class _Subset(TorchDataset):
    """Some of an ImageFolder's samples with one transform (picklable for worker processes)."""

    def __init__(self, samples: list[tuple[str, int]], indices: torch.Tensor, transform: Any):
        self.samples = samples
        self.indices = indices.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[self.indices[i]]
        return self.transform(default_loader(path)), label


class ImageFolderStream(StreamingData):
    """Search-train (random-resized crop + flip) and search-val (resize + centre crop) loaders."""

    def __init__(
        self,
        samples: list[tuple[str, int]],
        train_idx: torch.Tensor,
        val_idx: torch.Tensor,
        spec: DataSpec,
        device: torch.device,
        workers: int,
    ):
        from torchvision import transforms as T

        self.spec = spec
        self.device = torch.device(device)
        self.workers = workers
        self.n_train, self.n_val = len(train_idx), len(val_idx)
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)
        train_tf = T.Compose([T.RandomResizedCrop(IMAGE_SIZE), T.RandomHorizontalFlip(), T.PILToTensor()])
        val_tf = T.Compose([T.Resize(RESIZE), T.CenterCrop(IMAGE_SIZE), T.PILToTensor()])
        self.parts = {"train": _Subset(samples, train_idx, train_tf), "val": _Subset(samples, val_idx, val_tf)}
        self._loaders: dict[tuple, DataLoader] = {}

    def host_batches(
        self, part: str, batch_size: int, *, shuffle: bool, drop_last: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        subset = self.parts[part]
        drop_last = drop_last and len(subset) >= batch_size  # never an empty epoch
        key = (part, batch_size, shuffle, drop_last)
        if key not in self._loaders:
            # workers persist between passes; the sampler draws its seed from torch's global RNG
            self._loaders[key] = DataLoader(
                subset,
                batch_size=batch_size,
                shuffle=shuffle,
                drop_last=drop_last,
                num_workers=self.workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0,
            )
        yield from self._loaders[key]
