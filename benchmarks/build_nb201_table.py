"""Rebuild `spaces/data/nb201.npz` from the two NAS-Bench-201 CSV exports.

The package ships the tables pre-built (about 0.4 MB); this script documents how they were made and
checks that both CSVs list the same cells in the same order.

    .venv/bin/python benchmarks/build_nb201_table.py CSV_FOLDER spaces/data/nb201.npz

Inputs (provenance: docs/spaces/nb201.md): `nats_tss_200ep_accuracies.csv`
(NATS-Bench topology space, 200-epoch test accuracies) and `mini_nb201_12ep_accuracies.csv`
(12-epoch validation and test accuracies).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

COLUMNS_200 = {
    "cifar10_test_200": "CIFAR10TestAccuracy200Epochs",
    "cifar100_test_200": "CIFAR100TestAccuracy200Epochs",
    "imagenet16-120_test_200": "ImageNetTestAccuracy200Epochs",
}
COLUMNS_12 = {
    "cifar10_val_12": "cifar10-val",
    "cifar10_test_12": "cifar10-test",
    "cifar100_val_12": "cifar100-val",
    "cifar100_test_12": "cifar100-test",
    "imagenet16-120_val_12": "imagenet-val",
    "imagenet16-120_test_12": "imagenet-test",
}


def encode(cell: str) -> list[int]:
    """`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` -> six op codes in the string's edge order."""
    codes = []
    for node in cell.strip("|").split("|+|"):
        for source, edge in enumerate(node.split("|")):
            op, src = edge.split("~")
            if int(src) != source:
                raise ValueError(f"unexpected edge order in {cell}")
            codes.append(OPS.index(op))
    if len(codes) != 6:
        raise ValueError(f"expected 6 edges in {cell}")
    return codes


def main(src: str, out: str) -> None:
    with open(Path(src) / "nats_tss_200ep_accuracies.csv") as fh:
        long = list(csv.DictReader(fh))
    with open(Path(src) / "mini_nb201_12ep_accuracies.csv") as fh:
        short = list(csv.DictReader(fh))
    if len(long) != 15625 or len(short) != 15625:
        raise SystemExit(f"expected 15625 rows in each table, got {len(long)} and {len(short)}")
    for i, (a, b) in enumerate(zip(long, short)):
        if a["ArchitectureString"] != b["ArchitectureString"] or int(b["index"]) != i:
            raise SystemExit(f"row {i}: the two tables disagree on the cell")
    ops = np.array([encode(r["ArchitectureString"]) for r in long], dtype=np.uint8)
    if len({tuple(r) for r in ops.tolist()}) != 15625:
        raise SystemExit("cells are not unique")
    arrays: dict[str, np.ndarray] = {"ops": ops, "op_names": np.array(OPS)}
    for key, col in COLUMNS_200.items():
        arrays[key] = np.array([float(r[col]) for r in long], dtype=np.float64)
    for key, col in COLUMNS_12.items():
        arrays[key] = np.array([float(r[col]) for r in short], dtype=np.float64)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out}: {len(ops)} cells, columns {', '.join(k for k in arrays if k not in ('ops', 'op_names'))}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
