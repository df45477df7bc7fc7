"""Data set loaders on small files in each format's real layout, written by the tests."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nasframe.common.errors import DataError
from nasframe.data import DataOptions, DataSource
from nasframe.data.registry import datasets


# ---- Fashion-MNIST -----------------------------------------------------------------------------
def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fashion(folder: Path, n_train: int, n_test: int, gz: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if gz:
            with gzip.open(folder / (name + ".gz"), "wb") as fh:
                fh.write(data)
        else:
            (folder / name).write_bytes(data)
    return arrays


def test_fashion_mnist_matches_torchvision_on_its_layout(tmp_path, monkeypatch):
    from torchvision.datasets import FashionMNIST

    import nasframe.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "SYSTEM_DIR", str(tmp_path / "absent"))
    arrays = _write_fashion(tmp_path / "FashionMNIST" / "raw", 12, 5, gz=False)
    raw = datasets.create("fashion_mnist", DataOptions(name="fashion_mnist", root=str(tmp_path))).load()
    tv = FashionMNIST(str(tmp_path), train=True)
    assert raw.train_x.shape == (12, 1, 28, 28) and raw.train_x.dtype == torch.uint8
    assert torch.equal(raw.train_x[:, 0], tv.data)
    assert torch.equal(raw.train_y, tv.targets)
    assert torch.equal(raw.test_y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    # mean/std are the train images' own statistics in the 0..1 scale
    assert raw.mean[0] == pytest.approx(arrays["train-images-idx3-ubyte"].mean() / 255, rel=1e-5)


def test_fashion_mnist_reads_gzip_files_in_the_debian_folder(tmp_path, monkeypatch):
    import nasframe.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "SYSTEM_DIR", str(tmp_path / "debian"))
    arrays = _write_fashion(tmp_path / "debian", 7, 3, gz=True)
    raw = datasets.create("fashion_mnist", DataOptions(name="fashion_mnist")).load()
    assert torch.equal(raw.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8)))
    assert raw.test_x.shape == (3, 1, 28, 28)


def test_fashion_mnist_missing_says_where_and_how(tmp_path, monkeypatch):
    import nasframe.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "SYSTEM_DIR", str(tmp_path / "nowhere"))
    loader = datasets.create("fashion_mnist", DataOptions(name="fashion_mnist", root=str(tmp_path)))
    with pytest.raises(DataError) as err:
        loader.load()
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path / "nowhere") in msg
    assert "\n" not in msg


def test_fashion_mnist_truncated_file_is_a_data_error(tmp_path, monkeypatch):
    import nasframe.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "SYSTEM_DIR", str(tmp_path / "absent"))
    _write_fashion(tmp_path, 4, 2, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        datasets.create("fashion_mnist", DataOptions(name="fashion_mnist", root=str(tmp_path))).load()


@pytest.mark.skipif(
    not os.path.isfile("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_from_the_debian_package():
    raw = datasets.create("fashion_mnist", DataOptions(name="fashion_mnist")).load()
    assert raw.train_x.shape == (60000, 1, 28, 28) and raw.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(raw.train_y).tolist() == [6000] * 10  # the set is balanced
    assert raw.mean[0] == pytest.approx(0.2860, abs=1e-4) and raw.std[0] == pytest.approx(0.3530, abs=1e-4)


# ---- CIFAR -----------------------------------------------------------------------------------
def _write_cifar10(root: Path, per_batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's cifar-10-batches-py layout: five train batches, a test batch and the meta file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        entry = {"batch_label": name, "labels": y, "data": x, "filenames": [f"{i}.png" for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        if name != "test_batch":
            xs.append(x)
            ys += y
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return np.concatenate(xs), np.array(ys)


def test_cifar10_matches_torchvision_loader(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    x, y = _write_cifar10(tmp_path)
    raw = datasets.create("cifar10", DataOptions(name="cifar10", root=str(tmp_path))).load()
    assert raw.train_x.shape == (20, 3, 32, 32) and raw.train_x.dtype == torch.uint8
    assert raw.test_x.shape == (4, 3, 32, 32)
    assert torch.equal(raw.train_y, torch.from_numpy(y))
    # torchvision's own reader on the same files (md5 list patched: these are not the real files)
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", None] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", None]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": None})
    tv = CIFAR10(str(tmp_path), train=True)
    assert np.array_equal(raw.train_x.permute(0, 2, 3, 1).numpy(), tv.data)  # torchvision keeps HWC
    assert raw.train_y.tolist() == tv.targets


def test_cifar100_reads_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (6, 3072)).astype(np.uint8)
    fine = [0, 99, 5, 17, 42, 63]
    for name in ("train", "test"):
        entry = {"data": x, "fine_labels": fine, "coarse_labels": [0] * 6, "filenames": ["a"] * 6}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    data = DataSource(DataOptions(name="cifar100", root=str(tmp_path)), seed=0)
    assert data.spec.num_classes == 100 and data.spec.input_shape == (3, 32, 32)
    raw = data.dataset.load()
    assert raw.train_y.tolist() == fine
    assert torch.equal(raw.train_x[1, 2], torch.from_numpy(x[1, 2048:].reshape(32, 32)))  # blue plane


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar_reader_refuses_code_in_the_pickle(tmp_path, monkeypatch):
    _write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": _Exploit(), "labels": []}, protocol=2))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="refusing to load"):
        datasets.create("cifar10", DataOptions(name="cifar10", root=str(tmp_path))).load()
    assert not (tmp_path / "pwned").exists()


def test_cifar_missing_files(tmp_path):
    with pytest.raises(DataError, match="data.download=true"):
        datasets.create("cifar10", DataOptions(name="cifar10", root=str(tmp_path))).load()
    with pytest.raises(DataError, match="needs data.root"):
        datasets.create("cifar100", DataOptions(name="cifar100")).load()


# ---- ImageNet (ImageFolder, streaming) --------------------------------------------------------
def _write_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 5) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    for c in classes:
        (root / "train" / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (30 + i, 40, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(root / "train" / c / f"{i}.png")


def test_imagenet_streams_an_image_folder(tmp_path):
    from nasframe.data.batches import Batches, StreamingData

    _write_image_folder(tmp_path)
    opts = DataOptions(name="imagenet", root=str(tmp_path), workers=1)
    data = DataSource(opts, seed=0)
    assert data.dataset.streaming and data.spec.input_shape == (3, 224, 224) and data.spec.num_classes == 2
    search = data.search()
    assert isinstance(search, StreamingData)
    assert (search.n_train, search.n_val) == (5, 5) and data.split_record["train"] == 5
    batches = Batches(search)
    x, y = next(batches.train(4))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.uint8 and set(y.tolist()) <= {0, 1}
    seen = [y for _, y in batches.val(3)]
    assert [len(b) for b in seen] == [3, 2]  # one pass, last batch kept


def test_imagenet_without_root_or_classes(tmp_path):
    # the spec alone (for `nasframe inspect`) needs no files: ImageNet-1k's shape and classes
    assert DataSource(DataOptions(name="imagenet"), seed=0).spec.num_classes == 1000
    with pytest.raises(DataError, match="needs data.root"):
        DataSource(DataOptions(name="imagenet"), seed=0).dataset.samples()
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        DataSource(DataOptions(name="imagenet", root=str(tmp_path)), seed=0).dataset.spec()
