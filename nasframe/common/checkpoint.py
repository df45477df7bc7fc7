"""Run-directory files: atomic writes, the in-use lock, and checkpoint save/load."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from nasframe.common.errors import RunDirError

CHECKPOINT = "checkpoint.pt"
#: the checkpoint before the newest (see `save_checkpoint`)
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
LOCK = ".lock"


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`.

    The file gets the mode a plain `open` would give it (0666 less the umask), not mkstemp's 0600,
    so colleagues on a shared machine read run files as the user's umask intends.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy and torch values can only come from a process that imported them: look, do not import
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if np is not None and isinstance(obj, np.generic):
        return obj.item()
    if (np is not None and isinstance(obj, np.ndarray)) or (torch is not None and isinstance(obj, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise with torch.save into memory, then write atomically: a kill never leaves half a file.

    The checkpoint it replaces stays as `checkpoint.prev.pt` (a hard link, so no copy and no extra
    space): if the newest one is ever damaged afterwards, resume can fall back to the one before.
    A full disk fails the write before anything is replaced, so both stay as they were.
    """
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    path = Path(run_dir) / CHECKPOINT
    _keep_previous(path, Path(run_dir) / PREVIOUS_CHECKPOINT)
    atomic_write_bytes(path, buf.getvalue())


def _keep_previous(path: Path, previous: Path) -> None:
    """Make `previous` the file `path` is now (atomically); skipped where hard links are not offered."""
    if not path.is_file():
        return
    tmp = previous.with_name(f".{previous.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.link(path, tmp)
        os.replace(tmp, previous)
    except OSError:  # no hard links on this file system: keep only the newest checkpoint
        tmp.unlink(missing_ok=True)


def load_checkpoint(run_dir: str | os.PathLike, name: str = CHECKPOINT) -> Any:
    """A checkpoint's plain data (torch's weights-only reader); a damaged file is one RunDirError."""
    from nasframe.common.loading import load_torch

    path = Path(run_dir) / name
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no {name}; is this a nasframe run directory?")
    return load_torch(path, "checkpoint", RunDirError)


class RunLock:
    """An exclusive advisory lock on a run directory, held for the life of a run.

    The OS releases it when the process dies (even by kill -9), so a crashed run can be resumed
    at once while a live one cannot be written into by a second process. The file holds the owner's
    pid (`nasframe show` reports a live run with it) and is removed when the run ends.
    """

    @staticmethod
    def holder(run_dir: str | os.PathLike) -> str | None:
        """'pid N' of the process working in `run_dir` now, or None when nobody holds the lock."""
        import fcntl

        path = Path(run_dir) / LOCK
        try:
            fh = open(path)
        except OSError:
            return None
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return fh.read().strip() or "another process"
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return None

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK
        self._fh: Any = None

    def acquire(self) -> RunLock:
        import fcntl

        while True:
            fh = open(self.path, "a+")
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                owner = fh.read().strip() or "another process"
                fh.close()
                raise RunDirError(
                    f"run directory {self.path.parent} is in use by {owner}; wait for it or pick another --out"
                ) from None
            # the previous holder removes the file when it ends: a lock on a removed file is no lock
            try:
                same = os.stat(self.path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            fh.close()
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Remove the lock file, then unlock (in that order, see `acquire`)."""
        if self._fh is not None:
            import fcntl

            self.path.unlink(missing_ok=True)
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
