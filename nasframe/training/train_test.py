"""The train and test sets of a training, on the device (the test set never takes part in training)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nasframe.common.errors import NotSupported
from nasframe.data import DataOptions, DataSpec

#: share of the train set held out as the test set for data sets that have no test split of their own (digits)
HELD_OUT_TEST = 0.2


@dataclass
class TrainTestData:
    """The train and test sets as uint8 image tensors on the device, with the normalisation statistics."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor  # (1, C, 1, 1)
    std: torch.Tensor
    spec: DataSpec
    split: dict[str, Any]


def load_train_test(options: DataOptions, device: torch.device) -> TrainTestData:
    """The data set's own train/test split; a set without one (digits) gives a fixed, seeded
    `HELD_OUT_TEST` share of its images as the test set. `data.limit` takes a seeded subset of the train part."""
    from nasframe.data.registry import datasets

    dataset = datasets.create(options.name, options)
    if dataset.streaming:
        raise NotSupported(
            f"train: {options.name} streams from disk; training reads whole in-memory sets only "
            "(digits, fashion_mnist, cifar10, cifar100, synthetic)"
        )
    raw = dataset.load()
    gen = torch.Generator().manual_seed(0)
    train_x, train_y = raw.train_x, raw.train_y
    if raw.test_x is not None and raw.test_y is not None:
        test_x, test_y, test_source = raw.test_x, raw.test_y, "the data set's test split"
    else:
        order = torch.randperm(train_x.shape[0], generator=gen)
        n_test = max(1, int(round(train_x.shape[0] * HELD_OUT_TEST)))
        test_idx, train_idx = order[:n_test], order[n_test:]
        test_x, test_y = train_x[test_idx], train_y[test_idx]
        train_x, train_y = train_x[train_idx], train_y[train_idx]
        test_source = f"a fixed {HELD_OUT_TEST:.0%} of the train images (the data set has no test split)"
    if options.limit is not None and options.limit < train_x.shape[0]:
        keep = torch.randperm(train_x.shape[0], generator=gen)[: options.limit]
        train_x, train_y = train_x[keep], train_y[keep]
    c = train_x.shape[1]
    return TrainTestData(
        train_x=train_x.to(device),
        train_y=train_y.to(device),
        test_x=test_x.to(device),
        test_y=test_y.to(device),
        mean=torch.tensor(raw.mean, dtype=torch.float32, device=device).view(1, c, 1, 1),
        std=torch.tensor(raw.std, dtype=torch.float32, device=device).view(1, c, 1, 1),
        spec=dataset.spec(),
        split={"train": int(train_x.shape[0]), "test": int(test_x.shape[0]), "test_source": test_source},
    )
