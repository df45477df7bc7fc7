"""ImageNet (or any ImageFolder tree of photos) streamed from disk at 224x224.

1.28 million JPEGs do not fit on a GPU as uint8, so this set streams: DataLoader workers decode,
crop and flip on the CPU and hand over uint8 batches in pinned memory; normalisation happens on
the device like for every other set. Layout: `data.root/train/<class>/<image>` (torchvision's
ImageFolder; `data.root/<class>/<image>` works too). The search split is drawn over the train
folder; `data.root/val` is never read during search.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasframe.common.errors import DataError
from nasframe.data.base import Dataset, DataSpec, RawData
from nasframe.data.registry import register_dataset

if TYPE_CHECKING:
    import torch

    from nasframe.data.batches import StreamingData

IMAGE_SIZE = 224
RESIZE = 256  # validation: resize the short side, then centre-crop IMAGE_SIZE
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


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
        from nasframe.data.imagenet_stream import ImageFolderStream  # torch's DataLoader, only when searching

        return ImageFolderStream(self.samples(), train_idx, val_idx, self.spec(), device, self.options.workers)

    def load(self) -> RawData:
        raise DataError("imagenet streams from disk and cannot be loaded whole; use DataSource.search()")
