"""The registry of data sets (entry-point group `nasframe.datasets`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nasframe.common.plugins import Registry

if TYPE_CHECKING:
    from nasframe.data.base import Dataset

datasets: Registry[Dataset] = Registry("dataset", "nasframe.datasets")
register_dataset = datasets.register
