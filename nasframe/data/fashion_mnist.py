"""Fashion-MNIST (70,000 28x28 grey images of clothing, 10 classes) read from its IDX files.

The IDX format is four tiny headers and raw bytes, so the files are read directly (plain or
gzip) rather than through torchvision's class, whose folder layout (`FashionMNIST/raw/`,
uncompressed) differs from what Debian's `dataset-fashion-mnist` package installs
(`/usr/share/datasets/fashion-mnist/*.gz`). torchvision is used only to download.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from nasframe.common.errors import DataError
from nasframe.data.base import Dataset, DataSpec, RawData
from nasframe.data.registry import register_dataset

#: where Debian's `dataset-fashion-mnist` package puts the gzip IDX files
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
#: IDX type code 0x08 is unsigned byte, the only one these files use
_UBYTE = 0x08


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (plain or .gz) as a uint8 array of the shape its header declares."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, file has {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


#: the labels 0..9 as Zalando's Fashion-MNIST names them
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@register_dataset("fashion_mnist")
class FashionMNIST(Dataset):
    """Zalando's Fashion-MNIST: 60,000 train and 10,000 test 28x28 grey images, 10 classes."""

    def spec(self) -> DataSpec:
        return DataSpec("fashion_mnist", 1, 28, 28, 10, class_names=CLASS_NAMES)

    def candidate_dirs(self) -> list[Path]:
        """Folders searched in order: torchvision's layout under `data.root`, the root itself, Debian's."""
        dirs = []
        if self.options.root:
            root = Path(self.options.root).expanduser()
            dirs += [root / "FashionMNIST" / "raw", root / "fashion-mnist", root]
        dirs.append(Path(SYSTEM_DIR))
        return dirs

    def _locate(self) -> dict[str, Path] | None:
        for folder in self.candidate_dirs():
            found = {key: _find(folder, stem) for key, stem in FILES.items()}
            if all(found.values()):
                return found  # type: ignore[return-value]
        return None

    def load(self) -> RawData:
        files = self._locate()
        if files is None and self.options.download:
            self._download()
            files = self._locate()
        if files is None:
            looked = ", ".join(str(d) for d in self.candidate_dirs())
            raise DataError(
                f"Fashion-MNIST IDX files ({FILES['train_x']}[.gz] and 3 more) not found in {looked}; "
                f"install them with `apt-get install dataset-fashion-mnist`, "
                f"or set data.root and data.download=true"
            )
        import torch  # here: `nasframe list` loads this module without torch

        arrays = {key: read_idx(path) for key, path in files.items()}
        for part in ("train", "test"):
            x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
            if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
                raise DataError(f"Fashion-MNIST {part} files disagree: images {x.shape}, labels {y.shape}")
        train_x = torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1)
        train_y = torch.from_numpy(arrays["train_y"].astype(np.int64))
        test_x = torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1)
        test_y = torch.from_numpy(arrays["test_y"].astype(np.int64))
        # statistics of the train images, as normalisation constants are usually quoted
        flat = train_x.float().div_(255.0)
        return RawData(train_x, train_y, test_x, test_y, (float(flat.mean()),), (float(flat.std()),))

    def _download(self) -> None:
        if not self.options.root:
            raise DataError("data.download=true needs data.root: the folder to download Fashion-MNIST into")
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

        try:  # torchvision checks each file's md5; only its raw folder is used afterwards
            TorchvisionFashionMNIST(self.options.root, train=True, download=True)
        except (OSError, RuntimeError) as exc:
            raise DataError(f"downloading Fashion-MNIST into {self.options.root} failed: {exc}") from None
