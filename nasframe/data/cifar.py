"""CIFAR-10 and CIFAR-100 from torchvision's folders (`cifar-10-batches-py`, `cifar-100-python`).

Those files are Python pickles. Rather than let torchvision unpickle them (which can run any
code a tampered file holds), they are read with a restricted unpickler that resolves only the
handful of numpy globals an array needs; anything else in the stream is refused. This keeps the
project rule "no pickle of user files" without an exception. torchvision is used only to
download (its md5-checked archive) when `data.download` is true.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nasframe.common.errors import DataError
from nasframe.data.base import Dataset, DataSpec, RawData
from nasframe.data.registry import register_dataset

if TYPE_CHECKING:  # imported where tensors are made: `nasframe list` loads this module without torch
    import torch


def _numpy_global(module: str, name: str) -> Any:
    try:  # numpy >= 2 moved these under numpy._core; pickles name either location
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    table = {
        ("multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numeric", "_frombuffer"): numeric._frombuffer,  # type: ignore[attr-defined]
    }
    return table[(module.rsplit(".", 1)[-1], name)]


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and nothing else."""

    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
    }
    _NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module in self._NUMPY_CORE and name in ("_reconstruct", "_frombuffer"):
            return _numpy_global(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays and lists")


def read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR batch file as a dict with str keys (the files were written by Python 2)."""
    try:
        data = path.read_bytes()
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError) as exc:
        raise DataError(f"cannot read CIFAR batch {path}: {exc}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR batch (expected a dict, got {type(obj).__name__})")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


#: CIFAR-10's labels 0..9 (batches.meta `label_names`)
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: CIFAR-100's fine labels 0..99 (meta `fine_label_names`: alphabetical)
CIFAR100_NAMES = tuple(
    """
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
    camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
    dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
    leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange
    orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit
    raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel
    streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip
    turtle wardrobe whale willow_tree wolf woman worm
    """.split()
)


class _Cifar(Dataset):
    """Shared reader; subclasses give the folder, file names, label key and class count."""

    folder: ClassVar[str]
    train_files: ClassVar[tuple[str, ...]]
    test_files: ClassVar[tuple[str, ...]]
    label_key: ClassVar[str]
    num_classes: ClassVar[int]
    #: the label of each class index (the `label_names` / `fine_label_names` of the files' meta)
    class_names: ClassVar[tuple[str, ...]]
    torchvision_class: ClassVar[str]
    #: per-channel statistics of the 50,000 train images (the values DARTS' code uses)
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]

    def spec(self) -> DataSpec:
        name = self.registered_name  # type: ignore[attr-defined]
        return DataSpec(name, 3, 32, 32, self.num_classes, class_names=self.class_names)

    def base_dir(self) -> Path:
        if not self.options.root:
            raise DataError(
                f"{self.registered_name} needs data.root: the folder holding "  # type: ignore[attr-defined]
                f"{self.folder}/ (or set data.download=true to fetch it there)"
            )
        return Path(self.options.root).expanduser() / self.folder

    def _missing(self) -> list[str]:
        base = self.base_dir()
        return [f for f in self.train_files + self.test_files if not (base / f).is_file()]

    def load(self) -> RawData:
        missing = self._missing()
        if missing and self.options.download:
            self._download()
            missing = self._missing()
        if missing:
            raise DataError(
                f"{self.registered_name}: {self.base_dir() / missing[0]} not found ({len(missing)} of "  # type: ignore[attr-defined]
                f"{len(self.train_files + self.test_files)} files missing); set data.download=true to fetch "
                f"torchvision's copy into data.root"
            )
        train_x, train_y = self._read(self.train_files)
        test_x, test_y = self._read(self.test_files)
        return RawData(train_x, train_y, test_x, test_y, self.mean, self.std)

    def _read(self, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        xs, ys = [], []
        for name in names:
            path = self.base_dir() / name
            batch = read_batch(path)
            if "data" not in batch or self.label_key not in batch:
                raise DataError(f"{path} lacks the 'data' or '{self.label_key}' entry of a CIFAR batch")
            x = np.asarray(batch["data"], dtype=np.uint8)
            y = np.asarray(batch[self.label_key], dtype=np.int64)
            if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (x.shape[0],):
                raise DataError(f"{path}: expected data (N, 3072) and N labels, got {x.shape} and {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{path}: labels outside 0..{self.num_classes - 1}")
            xs.append(x)
            ys.append(y)
        # rows are channel-major 32x32 planes (R, then G, then B): exactly (N, 3, 32, 32)
        images = torch.from_numpy(np.concatenate(xs).reshape(-1, 3, 32, 32))
        return images, torch.from_numpy(np.concatenate(ys))

    def _download(self) -> None:
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(tvd, self.torchvision_class)
        root = Path(self.options.root).expanduser() if self.options.root else None
        if root is None:
            raise DataError("data.download=true needs data.root: the folder to download into")
        try:  # downloads the md5-checked archive and extracts it; nothing is unpickled here
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
        except (OSError, RuntimeError) as exc:
            raise DataError(f"downloading {self.torchvision_class} into {root} failed: {exc}") from None


@register_dataset("cifar10")
class Cifar10(_Cifar):
    """CIFAR-10: 50,000 train and 10,000 test 32x32 colour images, 10 classes."""

    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    label_key = "labels"
    num_classes = 10
    class_names = CIFAR10_NAMES
    torchvision_class = "CIFAR10"
    mean = (0.49139968, 0.48215827, 0.44653124)
    std = (0.24703233, 0.24348505, 0.26158768)


@register_dataset("cifar100")
class Cifar100(_Cifar):
    """CIFAR-100: 50,000 train and 10,000 test 32x32 colour images, 100 fine classes."""

    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
    num_classes = 100
    class_names = CIFAR100_NAMES
    torchvision_class = "CIFAR100"
    mean = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
    std = (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)
