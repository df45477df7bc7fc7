"""Who owns an output folder: the marker a command writes first, and the checks made before it writes.

Every folder nasframe writes into (a search run, a training, a comparison) holds `nasframe.json`,
written before anything else: the folder's kind, the format of its files and the identity of what it
holds (a hash of the settings that decide its results, `identity_of`). A command writes only into an
empty folder or one of its own kind and identity; anything else is refused in one line naming what
was found, before anything is written, renamed or deleted. A command that fails on its first start
removes only what it added (`FolderClaim.undo`).

Folders made before the marker existed are recognised by their files (`recognise`): a search run by
`config.yaml` and `run.json`, a training by `train.json`, a comparison by its summary or its
`<label>/seed-<k>` runs. The command that continues one (`resume`, `train --resume`, `compare` again)
adopts it: it writes the marker with `adopted: true`, and the records written before stay accepted
without an identity of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasframe.common.errors import FolderError, RunDirError

MARKER = "nasframe.json"
SEARCH_RUN, TRAINING, COMPARISON = "search run", "training", "comparison"
#: each kind in a sentence
_WORDS = {SEARCH_RUN: "a run", TRAINING: "a training", COMPARISON: "a comparison"}
#: files that show a folder made before markers existed, by kind (every file of one entry present)
_SIGNS: dict[str, tuple[tuple[str, ...], ...]] = {
    SEARCH_RUN: (("config.yaml", "run.json"),),
    TRAINING: (("train.json",),),
    COMPARISON: (("summary.csv",), ("runs.csv",)),
}
#: how many found names a refusal lists
_SHOWN = 4


def identity_of(value: Any) -> str:
    """A short, stable hash of plain data (mapping order does not matter): 16 hex digits of SHA-256."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class Owner:
    """What a folder holds: its kind, the format of its files, the identity of its contents."""

    kind: str
    format: int
    identity: str
    #: the marker was written by a later command into a folder made before markers existed
    adopted: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "format": self.format, "identity": self.identity}
        if self.adopted:
            d["adopted"] = True
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Owner:
        if not isinstance(d, dict):
            raise RunDirError(f"{where}: damaged (not a mapping)")
        kind, fmt, identity = d.get("kind"), d.get("format"), d.get("identity")
        if kind not in _WORDS or type(fmt) is not int or not isinstance(identity, str) or len(identity) > 64:
            raise RunDirError(f"{where}: damaged (it needs kind, format and identity)")
        return cls(kind, fmt, identity, d.get("adopted") is True)

    @property
    def words(self) -> str:
        return _WORDS[self.kind]


def read_owner(folder: str | os.PathLike) -> Owner | None:
    """The folder's marker, or None when it has none; a damaged marker is one RunDirError."""
    from nasframe.common.loading import load_json

    path = Path(folder) / MARKER
    if not os.path.lexists(path):
        return None
    try:
        data = load_json(path, "", RunDirError)
    except RunDirError as exc:
        detail = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path} ")
        raise RunDirError(f"{path}: damaged ({detail}); it records who owns the folder") from None
    return Owner.from_dict(data, str(path))


def recognise(folder: str | os.PathLike) -> str | None:
    """The kind of a nasframe folder made before markers existed, from its files (None: not one)."""
    path = Path(folder)
    for kind, signs in _SIGNS.items():
        if any(all((path / name).exists() for name in names) for names in signs):
            return kind
    if any(path.glob("*/seed-*/config.yaml")):
        return COMPARISON
    return None


def _is_scratch(folder: Path, name: str) -> bool:
    """nasframe's own passing files: the temporary file of a marker being written (a kill can leave
    one), and a run lock (`.lock`, empty or holding "pid N") taken before the marker was written."""
    if name.startswith(f".{MARKER}.") and name.endswith(".tmp"):
        return True
    if name != ".lock":  # nasframe.common.checkpoint.LOCK (that module imports torch)
        return False
    try:
        fd = os.open(folder / name, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    with open(fd, "rb") as fh:
        text = fh.read(64) if stat.S_ISREG(os.fstat(fd).st_mode) else b"?"
    return re.fullmatch(rb"(pid \d+)?", text) is not None


def contents(folder: Path) -> list[str]:
    """The names in `folder`, without nasframe's own passing files."""
    return sorted(name for name in os.listdir(folder) if not _is_scratch(folder, name))


def _listing(names: list[str]) -> str:
    shown = [n for n in names[:_SHOWN]]
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(shown) + more


def _refusal(folder: Path, wanted: Owner, found: Owner | None, kind: str | None, names: list[str]) -> str:
    if kind is None:
        return (
            f"{folder} holds files nasframe did not write ({_listing(names)}); {wanted.words} is written only into "
            f"an empty folder or one nasframe made for it: give another --out"
        )
    if kind != wanted.kind:
        evidence = MARKER if found is not None else _listing(names)
        return (
            f"{folder} holds {_WORDS[kind]} ({evidence}); {wanted.words} is written only into an empty folder or "
            f"one of its own: give another --out"
        )
    if found is None:
        return f"{folder} already holds {_WORDS[kind]} (made by an earlier nasframe); give another --out"
    return (
        f"{folder} already holds {_WORDS[kind]} with other settings (identity {found.identity}; this one's is "
        f"{wanted.identity}); give another --out"
    )


def check_folder(folder: str | os.PathLike, wanted: Owner, *, adopt: bool = False) -> Owner | None:
    """Raise a one-line FolderError unless `folder` is missing, empty, marked with `wanted`'s kind and
    identity, or (with `adopt`) an unmarked folder of `wanted`'s kind. Writes nothing; returns the
    marker found (None when there is none)."""
    path = Path(folder)
    if not path.exists():
        return None
    if not path.is_dir():
        raise FolderError(f"{path} is a file, not a folder; give a new folder for {wanted.words}")
    found = read_owner(path)
    names = contents(path)
    if found is not None:
        if found.kind == wanted.kind and found.identity == wanted.identity:
            return found
        raise FolderError(_refusal(path, wanted, found, found.kind, names))
    if not names:
        return None
    kind = recognise(path)
    if adopt and kind == wanted.kind:
        return None
    raise FolderError(_refusal(path, wanted, None, kind, names))


@dataclass
class FolderClaim:
    """An output folder a command took: what was in it before, and whether this command made it and its
    marker, so that a failed first start can leave it as it found it."""

    folder: Path
    owner: Owner
    made_folder: bool
    found: frozenset[str]
    wrote_marker: bool

    def undo(self, names: Iterable[str]) -> None:
        """Remove those of `names` (files or folders) that were not there before the claim, then the
        marker if this claim wrote it. Anything else in the folder is left alone."""
        for name in names:
            if name in self.found:
                continue
            path = self.folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if self.wrote_marker:
            (self.folder / MARKER).unlink(missing_ok=True)

    def remove_folder_if_made(self) -> None:
        """The folder itself, when this claim made it and nothing is left in it."""
        if self.made_folder:
            try:
                self.folder.rmdir()
            except OSError:
                pass


def claim_folder(folder: str | os.PathLike, wanted: Owner, *, adopt: bool = False) -> FolderClaim:
    """Make `folder` if needed and write its marker first (see `check_folder` for what is refused).

    The marker is created exclusively, so of two commands claiming one empty folder at once, the
    second sees the first one's marker and is refused unless it is of the same kind and identity.
    """
    path = Path(folder)
    made = False
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        made = True
    found = check_folder(path, wanted, adopt=adopt)
    names = frozenset(contents(path))
    if found is not None:
        return FolderClaim(path, found, made, names, wrote_marker=False)
    marker = Owner(wanted.kind, wanted.format, wanted.identity, adopted=bool(names) and adopt)
    if not _create_exclusively(path / MARKER, json.dumps(marker.to_dict(), indent=2) + "\n"):
        return FolderClaim(path, check_folder(path, wanted) or wanted, made, names, wrote_marker=False)
    return FolderClaim(path, marker, made, names, wrote_marker=True)


def _create_exclusively(path: Path, text: str) -> bool:
    """Write `path` complete or not at all, unless it exists (then False): a temporary file, then a
    hard link (which fails on an existing name; `os.replace` would not)."""
    from nasframe.common.checkpoint import plain_file_mode

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, plain_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: an exclusive create (not atomic, but rare)
            try:
                with open(path, "x", encoding="utf-8") as out:
                    out.write(text)
            except FileExistsError:
                return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)
