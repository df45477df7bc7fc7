"""ImageNet (or any ImageFolder tree of photos) streamed from disk at 224x224.

1.28 million JPEGs do not fit on a GPU as uint8, so this set streams: DataLoader workers decode,
crop and flip on the CPU and hand over uint8 batches in pinned memory; normalisation happens on
the device like for every other set. Layout: `data.root/train/<class>/<image>` (torchvision's
ImageFolder; `data.root/<class>/<image>` works too). The search split is drawn over the train
folder; `data.root/val` is never read during search.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from nasframe.common.errors import DataError
from nasframe.data.base import Dataset, DataSpec, RawData
from nasframe.data.batches import StreamingData
from nasframe.data.registry import register_dataset

IMAGE_SIZE = 224
RESIZE = 256  # validation: resize the short side, then centre-crop IMAGE_SIZE
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


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


@register_dataset("imagenet")
class ImageNet(Dataset):
    """ImageNet-1k (or any ImageFolder tree) from `data.root`, streamed at 224x224."""

    streaming = True

    def __init__(self, options: Any):
        super().__init__(options)
        self._classes: list[str] | None = None
        self._samples: list[tuple[str, int]] | None = None

    def train_dir(self) -> Path:
        if not self.options.root:
            raise DataError(
                "imagenet needs data.root: a folder holding train/<class>/<image> (torchvision ImageFolder layout)"
            )
        root = Path(self.options.root).expanduser()
        if not root.is_dir():
            raise DataError(f"imagenet: data.root {root} does not exist")
        return root / "train" if (root / "train").is_dir() else root

    def classes(self) -> list[str]:
        """Class folder names, sorted (ImageFolder's label order); a directory listing, no images read."""
        if self._classes is None:
            train = self.train_dir()
            names = sorted(e.name for e in os.scandir(train) if e.is_dir())
            if not names:
                raise DataError(f"imagenet: no class folders in {train}; expected {train}/<class>/<image>")
            self._classes = names
        return self._classes

    def spec(self) -> DataSpec:
        # Without files (e.g. `nasframe inspect`), quote ImageNet-1k's 1000 classes, as papers do.
        if not self.options.root:
            return DataSpec("imagenet", 3, IMAGE_SIZE, IMAGE_SIZE, 1000)
        names = tuple(self.classes())  # the class folders (WordNet ids, n01440764, ...), ImageFolder's order
        return DataSpec("imagenet", 3, IMAGE_SIZE, IMAGE_SIZE, len(names), class_names=names)

    def samples(self) -> list[tuple[str, int]]:
        if self._samples is None:
            from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

            train = self.train_dir()
            index = {c: i for i, c in enumerate(self.classes())}
            try:
                self._samples = make_dataset(str(train), index, extensions=IMG_EXTENSIONS)
            except FileNotFoundError as exc:
                raise DataError(f"imagenet: {exc}") from None
        return self._samples

    def train_size(self) -> int:
        return len(self.samples())

    def open_search(self, train_idx: torch.Tensor, val_idx: torch.Tensor, device: torch.device) -> StreamingData:
        return ImageFolderStream(self.samples(), train_idx, val_idx, self.spec(), device, self.options.workers)

    def load(self) -> RawData:
        raise DataError("imagenet streams from disk and cannot be loaded whole; use DataSource.search()")
