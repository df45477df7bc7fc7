"""Run-directory files: atomic writes, the in-use lock, and checkpoint save/load."""

from __future__ import annotations

import glob
import io
import json
import os
import socket
import sys
import tempfile
from collections import OrderedDict
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


def plain_file_mode() -> int:
    """The mode a plain `open` gives a new file: 0666 less the umask."""
    return 0o666 & ~_umask()


def _writer_tag() -> str:
    """This process, as named in its temporary files: `host-pid`."""
    return f"{socket.gethostname().replace('/', '_')}-{os.getpid()}"


def _writer_is_gone(tag: str) -> bool:
    """True when `tag` names a process of this machine that no longer runs."""
    host, _, pid = tag.rpartition("-")
    if host != socket.gethostname().replace("/", "_") or not pid.isdigit():
        return False  # another machine's (a shared file system) or not ours: left alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's)
    return False


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files that writers of `path` killed mid-write (SIGKILL: no cleanup ran) left
    beside it: only tagged ones (`atomic_write_bytes(..., tagged=True)`) whose process on this machine is
    gone, so a concurrent writer's file is never touched."""
    start = f".{path.name}."
    for entry in path.parent.glob(f"{glob.escape(start)}*.tmp"):
        tag = entry.name[len(start) : -len(".tmp")].rpartition(".")[0]
        if tag and _writer_is_gone(tag):
            entry.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, tagged: bool = False) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`.

    The file gets the mode a plain `open` would give it (0666 less the umask), not mkstemp's 0600,
    so colleagues on a shared machine read run files as the user's umask intends. `tagged`: the
    temporary file's name says which process wrote it, and those of writers killed before are removed
    first (for files written outside any folder nasframe owns, such as an export's `--out`).
    """
    path = Path(path)
    prefix = f".{path.name}."
    if tagged:
        remove_stale_temporaries(path)
        prefix += f"{_writer_tag()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        os.fchmod(fd, plain_file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, tagged: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), tagged=tagged)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, tagged: bool = False) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n", tagged=tagged)


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


#: values torch's weights-only reader always takes back
_PLAIN = (str, bytes, int, float, complex, bool, type(None))
#: containers it takes back (their contents are checked one by one)
_CONTAINERS = (dict, OrderedDict, list, tuple, set, frozenset)


def unsavable(value: Any) -> str | None:
    """Where in `value` there is something a checkpoint cannot hold, i.e. that torch's weights-only
    reader would refuse when the run resumes (a numpy value, an object of the component's own): e.g.
    "['best'] (numpy.float64)". None when all of it reads back.

    Containers, plain values and tensors are checked by type; anything else by saving and reading
    back that one value, so the answer is torch's own.
    """
    import torch  # here: a checkpoint's state holds tensors, so torch is loaded already

    stack: list[tuple[Any, str]] = [(value, "")]
    seen: set[int] = set()
    while stack:
        node, where = stack.pop()
        kind = type(node)
        if kind in _PLAIN or isinstance(node, (torch.Tensor, torch.Size, torch.dtype, torch.device)):
            continue
        if isinstance(node, (dict, list, tuple, set, frozenset)) and id(node) not in seen:
            seen.add(id(node))
            if isinstance(node, dict):
                stack.extend((v, f"{where}[{k!r:.40}]") for k, v in node.items())
                stack.extend((k, f"{where} key {k!r:.40}") for k in node if type(k) not in _PLAIN)
            else:
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
            if kind in _CONTAINERS:
                continue
        if not _reads_back(node):
            return f"{where or 'the state'} ({kind.__module__}.{kind.__qualname__})"
    return None


def _reads_back(value: Any) -> bool:
    import torch

    buf = io.BytesIO()
    try:
        torch.save(value, buf)
        buf.seek(0)
        torch.load(buf, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure to save or read back means a checkpoint cannot hold it
        return False
    return True


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
        import stat

        path = Path(run_dir) / LOCK
        try:  # without blocking: a FIFO in its place must not hang `show`
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return fh.read(200).decode("utf-8", "replace").strip() or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
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
