"""What the commands print: notes on stderr (rank 0 alone under torchrun), numbers in a short form."""

from __future__ import annotations

import os
import sys
from typing import Any


def say(msg: str) -> None:
    if is_writer():
        print(msg, file=sys.stderr, flush=True)


def is_writer() -> bool:
    """Under torchrun, rank 0 alone prints results and notes (every process still prints its errors)."""
    if "nasframe.common.distributed" not in sys.modules:  # nothing joined a process group: torchrun's RANK decides
        return os.environ.get("RANK", "0").strip() in ("", "0")
    from nasframe.common import distributed

    return distributed.is_writer()


def fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
