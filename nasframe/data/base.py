"""Data interfaces: DataSpec (shape only), Dataset (a loader), DataSource (split, device, cache)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nasframe.common.options import option

if TYPE_CHECKING:  # torch is imported where tensors are made, so the options and specs load without it
    import torch


@dataclass(frozen=True)
class DataSpec:
    """What a network needs to know about a data set, known without loading it."""

    name: str
    channels: int
    height: int
    width: int
    num_classes: int
    #: the label of each class index, as a deployed network's outputs are read (None: unnamed, the
    #: indices stand for themselves); not part of the shape, so not compared
    class_names: tuple[str, ...] | None = field(default=None, compare=False)

    def names(self) -> list[str]:
        """A label for every class index: the data set's names, else the indices as text."""
        if self.class_names is not None and len(self.class_names) == self.num_classes:
            return list(self.class_names)
        return [str(k) for k in range(self.num_classes)]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


@dataclass(frozen=True)
class DataOptions:
    """The `data:` section of a run."""

    name: str = option("digits", "data set: digits, fashion_mnist, cifar10, cifar100, imagenet, synthetic")
    root: str | None = option(None, "folder holding the data set files (default: the loader's own search)")
    search_split: float = option(
        0.5, "fraction of the train set used to train during search; the rest is search-val", min=0.05, max=0.95
    )
    limit: int | None = option(None, "use only this many train images (seeded subset), for quick runs", min=2)
    download: bool = option(False, "download when the files are missing and the machine is online")
    workers: int = option(8, "streaming data sets only (imagenet): DataLoader worker processes", min=0, max=1024)
    synthetic_shape: list[int] = option(default_factory=lambda: [3, 32, 32], help="synthetic only: image shape C,H,W")
    synthetic_size: int = option(1024, "synthetic only: number of train images", min=2)
    synthetic_classes: int = option(10, "synthetic only: number of classes", min=2)


@dataclass
class RawData:
    """A whole data set as uint8 images (N, C, H, W) and int64 labels, plus normalisation stats."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class SearchData:
    """Search-train and search-val tensors, already on the device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    mean: torch.Tensor  # (1, C, 1, 1) on the device, for normalising uint8 batches
    std: torch.Tensor
    spec: DataSpec


@dataclass
class HeldOutData:
    """A data set's own test split on the device: never part of the search, for held-out figures only."""

    x: torch.Tensor  # uint8 images (N, C, H, W), normalised as the search's images are
    y: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.x.shape[0])


class Dataset(ABC):
    """A data set loader. Register with `@register_dataset(name)`.

    Streaming sets (too large for the device) implement `train_size` and `open_search` instead
    of `load`; `DataSource` applies the same seeded split to them.
    """

    #: True for data sets too large to hold on the device (they stream from disk)
    streaming: ClassVar[bool] = False

    def __init__(self, options: DataOptions):
        self.options = options

    @abstractmethod
    def spec(self) -> DataSpec:
        """Input shape and number of classes, without reading the files."""

    @abstractmethod
    def load(self) -> RawData:
        """Read the whole data set (raise DataError with the fix when files are missing)."""

    def train_size(self) -> int:
        """Streaming sets only: number of train images (the split is drawn over these indices)."""
        raise NotImplementedError

    def open_search(self, train_idx: torch.Tensor, val_idx: torch.Tensor, device: torch.device) -> Any:
        """Streaming sets only: a `nasframe.data.batches.StreamingData` over the two index sets."""
        raise NotImplementedError


class DataSource:
    """Lazy handle on the run's data: the spec is cheap, tensors load on first use."""

    def __init__(self, options: DataOptions, seed: int, device: torch.device | str = "cpu"):
        import torch

        from nasframe.data.registry import datasets

        self.options = options
        self.seed = seed
        self.device = torch.device(device)
        self.dataset: Dataset = datasets.create(options.name, options)
        self._search: SearchData | None = None
        self._test: HeldOutData | None = None
        self._raw_test: tuple[torch.Tensor, torch.Tensor] | None = None  # kept from the search's load
        self.split_record: dict | None = None

    @property
    def spec(self) -> DataSpec:
        return self.dataset.spec()

    def search(self) -> SearchData | Any:
        """The seeded search split, cached, on the device (a StreamingData for streaming sets)."""
        if self._search is None and self.dataset.streaming:
            train_idx, val_idx = self._split(self.dataset.train_size())
            self._search = self.dataset.open_search(train_idx, val_idx, self.device)
        if self._search is None:
            import torch

            raw = self.dataset.load()
            if raw.test_x is not None and raw.test_y is not None:
                self._raw_test = (raw.test_x, raw.test_y)
            train_idx, val_idx = self._split(raw.train_x.shape[0])
            dev = self.device
            c = raw.train_x.shape[1]
            self._search = SearchData(
                train_x=raw.train_x[train_idx].to(dev),
                train_y=raw.train_y[train_idx].to(dev),
                val_x=raw.train_x[val_idx].to(dev),
                val_y=raw.train_y[val_idx].to(dev),
                mean=torch.tensor(raw.mean, dtype=torch.float32, device=dev).view(1, c, 1, 1),
                std=torch.tensor(raw.std, dtype=torch.float32, device=dev).view(1, c, 1, 1),
                spec=self.spec,
            )
        return self._search

    def test(self) -> HeldOutData | None:
        """The data set's own test split on the device, cached; None for a set without one or one that
        streams from disk. The search never reads it: only held-out figures after a search do."""
        if self.dataset.streaming:
            return None
        if self._test is None:
            self.search()  # loads the files once, keeping the test split aside
            if self._raw_test is None:
                return None
            x, y = self._raw_test
            self._test = HeldOutData(x.to(self.device), y.to(self.device))
            self._raw_test = None
        return self._test

    def _split(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Seeded search-train / search-val indices over `n` train images; records the split."""
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=gen)
        if self.options.limit is not None and self.options.limit < n:
            order = order[: self.options.limit]
        n_train = max(1, int(round(len(order) * self.options.search_split)))
        train_idx, val_idx = order[:n_train], order[n_train:]
        digest = hashlib.sha1(order.numpy().tobytes()).hexdigest()[:16]
        self.split_record = {
            "dataset": self.options.name,
            "seed": self.seed,
            "train": int(len(train_idx)),
            "val": int(len(val_idx)),
            "order_sha1": digest,
        }
        return train_idx, val_idx
