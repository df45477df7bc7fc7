"""Device-side batching and augmentation: every rule checked on small hand-made tensors."""

from __future__ import annotations

import pytest
import torch

from nasframe.common.errors import ConfigError
from nasframe.data import DataOptions, DataSource, DataSpec
from nasframe.data.augment import AugmentPolicy, BatchTransform, choose_policy, cutout, random_crop, random_flip
from nasframe.data.batches import Batches


def _images(n=6, c=3, h=5, w=7) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.int64).remainder(251).add(1).to(torch.uint8).view(n, c, h, w)


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = _images()
    torch.manual_seed(0)
    out = random_crop(x, 2)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(x.shape[0]):  # each image must equal exactly one window of its padded copy
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 5, dx : dx + 7])
        ]
        assert hits, f"image {i} is not a window"
        shifts.add(hits[0])
    assert len(shifts) > 1  # offsets differ between images


def test_random_flip_mirrors_about_half_of_the_images():
    x = _images(n=200, h=2, w=3)
    torch.manual_seed(1)
    out = random_flip(x)
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(200)]
    kept = [torch.equal(out[i], x[i]) for i in range(200)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 70 < sum(flipped) < 130


def test_cutout_zeroes_one_clipped_square_per_image():
    x = torch.ones(50, 2, 9, 9)
    torch.manual_seed(2)
    out = cutout(x, 4)
    for i in range(50):
        holes = (out[i, 0] == 0).nonzero()
        assert torch.equal(out[i, 0] == 0, out[i, 1] == 0)  # same square on every channel
        rows, cols = holes[:, 0].unique(), holes[:, 1].unique()
        assert len(holes) == len(rows) * len(cols)  # a rectangle
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4  # at most 4x4, clipped at borders
    assert (out == 0).float().mean() > 0.1


def test_normalise_uses_the_data_set_mean_and_std():
    mean = torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)
    std = torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)
    t = BatchTransform(mean, std)
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 2, 1, 3)
    out = t.eval(x)
    assert torch.allclose(out[0, 0, 0], torch.tensor([-1.0, 1.0, -0.6]), atol=1e-6)
    assert torch.allclose(out[0, 1, 0], torch.tensor([-1.0, 3.0, -0.2]), atol=1e-6)


def test_train_transform_applies_the_policy_in_order():
    mean = torch.full((1, 3, 1, 1), 0.5)
    std = torch.full((1, 3, 1, 1), 0.5)
    x = torch.full((8, 3, 6, 6), 255, dtype=torch.uint8)
    out = BatchTransform(mean, std, AugmentPolicy(crop_padding=2)).train(x)
    # padding is black (uint8 0 -> -1 after normalising), image is white (+1)
    values = out.unique()
    assert len(values) == 2 and torch.allclose(values, torch.tensor([-1.0, 1.0]))
    cut = BatchTransform(mean, std, AugmentPolicy(cutout=2)).train(x)
    values = cut.unique()  # cutout after normalising: 0 is the mean colour
    assert len(values) == 2 and values[0] == 0 and torch.allclose(values[1], torch.tensor(1.0))


def test_auto_policy_per_data_set():
    cifar = DataSpec("cifar10", 3, 32, 32, 10)
    assert choose_policy("auto", cifar) == AugmentPolicy(crop_padding=4, flip=True)
    assert choose_policy("auto", DataSpec("digits", 1, 8, 8, 10)) == AugmentPolicy()
    assert choose_policy("auto", DataSpec("imagenet", 3, 224, 224, 1000), streaming=True) == AugmentPolicy()
    assert choose_policy("flip", cifar, cutout=16) == AugmentPolicy(flip=True, cutout=16)
    with pytest.raises(ConfigError, match="choose one of"):
        choose_policy("mixup", cifar)


def test_train_batches_cover_each_image_once_per_epoch():
    data = DataSource(DataOptions(name="synthetic", synthetic_size=40, synthetic_shape=[1, 2, 2]), seed=0)
    search = data.search()
    search.train_y = torch.arange(search.train_x.shape[0])  # make every sample identifiable
    batches = Batches(search)
    assert batches.n_train == 20 and batches.steps_per_epoch(6) == 3  # the last 2 are dropped
    torch.manual_seed(0)
    stream = batches.train(6)
    epoch1 = torch.cat([next(stream)[1] for _ in range(3)])
    epoch2 = torch.cat([next(stream)[1] for _ in range(3)])
    assert len(epoch1.unique()) == 18 and len(epoch2.unique()) == 18
    assert not torch.equal(epoch1, epoch2)  # reshuffled
    assert next(Batches(search).train(64))[1].shape == (20,)  # smaller than a batch: used whole
    val = list(batches.val(7))
    assert [len(y) for _, y in val] == [7, 7, 6]
    assert torch.equal(torch.cat([x for x, _ in val]), search.val_x)  # one pass, in order
