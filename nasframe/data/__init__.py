"""Data sets for search: a registry of loaders, a seeded search split, tensors on the device.

A data set loader returns the whole train and test sets as uint8 image tensors (N, C, H, W)
and int64 labels. `DataSource` splits the train set into search-train and search-val with a
seeded permutation (the test set never takes part in the search) and keeps small sets on the
device, so evaluators need no DataLoader workers.
"""

from nasframe.data.base import DataOptions, Dataset, DataSource, DataSpec, HeldOutData, RawData, SearchData

__all__ = ["DataOptions", "DataSource", "DataSpec", "Dataset", "HeldOutData", "RawData", "SearchData"]
