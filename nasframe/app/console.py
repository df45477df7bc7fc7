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


def interrupted(exc: KeyboardInterrupt, then: str) -> int:
    """Say that the command stopped on Ctrl-C (or a KeyboardInterrupt from a plugin) or on SIGTERM, and
    `then` how to continue; the exit code: 130, or 143 for SIGTERM."""
    from nasframe.common.errors import Terminated

    term = isinstance(exc, Terminated)
    say(f"{'terminated (SIGTERM)' if term else 'interrupted'}; {then}")
    return 143 if term else 130


def fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
