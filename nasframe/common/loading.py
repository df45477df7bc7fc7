"""One validated path per kind of text or file nasframe reads from the user.

Configs, `--set` values, architecture files and texts, run-folder records and checkpoints all come
through here, so every way such input can be wrong ends in one `NasframeError` line naming the file
(or flag) and what is wrong, never a Python traceback:

- a file that is missing, a folder, unreadable, larger than a config or record can sensibly be, or
  not UTF-8 text;
- YAML or JSON that does not parse, including what the parsers report as other exceptions: an
  integer of more than 4300 digits (`ValueError`) or nesting deeper than Python's stack
  (`RecursionError`);
- a structure nested deeper than `MAX_DEPTH` or holding more than `MAX_ITEMS` values, counted with
  repetition, so that a YAML alias chain ("billion laughs") cannot make later walks over it hang;
- a torch file that torch cannot read with `weights_only=True`.

Each caller passes the error class of its kind (ConfigError for configs and flags, RunDirError for
run folders, InvalidArchitecture for architecture text), so the CLI's exit code 2 applies to all.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nasframe.common.errors import ConfigError, NasframeError, RunDirError

#: the largest config, architecture file or JSON record read as text (a config is a few kB; a
#: run's best.json with every export of a large space stays well under 1 MB)
MAX_TEXT_BYTES = 16 * 1024 * 1024
#: the deepest nesting of mappings and lists accepted in any user structure (configs need 3-4 levels)
MAX_DEPTH = 32
#: the most values (mapping entries and list items, counted through every alias) in one structure
MAX_ITEMS = 1_000_000
#: longest architecture text or `--set` value accepted on the command line
MAX_VALUE_CHARS = 1_000_000
#: the largest checkpoint or weights file read (a regular file is read up to its size; this bounds the rest)
MAX_TORCH_BYTES = 1 << 40


def _first_line(exc: BaseException) -> str:
    """A parser exception's message for one line; Python's advice on its integer limit becomes what
    it means for the user's file."""
    text = str(exc).strip()
    if "integer string conversion" in text:
        return "a number has more than 4300 digits"
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _kind_of(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _open_checked(p: Path, label: str, error: type[NasframeError], streams: bool, missing: str) -> tuple[int, bool]:
    """An open descriptor of `p` and whether it is a pipe; devices, sockets, folders (and pipes unless
    `streams`) refused in one line. Opened without blocking, so a FIFO nobody writes to cannot hang."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(missing) from None
    except OSError as exc:
        raise error(f"{label}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    mode = os.fstat(fd).st_mode
    pipe = stat.S_ISFIFO(mode)
    if stat.S_ISREG(mode) or (pipe and streams):
        os.set_blocking(fd, True)
        return fd, pipe
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise error(f"{label} is a folder, not a file")
    raise error(f"{label} is {_kind_of(mode)}, not a file; give a regular file")


def read_bytes(
    path: str | os.PathLike,
    what: str,
    error: type[NasframeError] = ConfigError,
    max_bytes: int = MAX_TEXT_BYTES,
    *,
    streams: bool = False,
) -> bytes:
    """The bytes of `path`, read with a limit: never more than `max_bytes`, whatever size the file
    system reports. A pipe (`--config <(...)`, a FIFO) is read up to the limit when `streams` allows
    it and refused otherwise; devices (`/dev/zero`, a terminal) and sockets are always refused."""
    p = Path(path)
    label = f"{what} {p}" if what else str(p)
    missing = f"{what} {str(p)!r} does not exist" if what else f"{p} does not exist"
    fd, pipe = _open_checked(p, label, error, streams, missing)
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                size = os.fstat(fd).st_size if not pipe else 0
                said = f"{size:,} bytes is" if size > max_bytes else f"more than {max_bytes:,} bytes is"
                raise error(f"{label}: {said} more than such a file can sensibly be ({max_bytes:,} at most)")
    except OSError as exc:
        raise error(f"{label}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(fd)
    if pipe and not total:
        raise error(f"{label}: the pipe gave no data (nothing wrote to it)")
    return b"".join(chunks)


def read_text(
    path: str | os.PathLike,
    what: str,
    error: type[NasframeError] = ConfigError,
    max_bytes: int = MAX_TEXT_BYTES,
    *,
    streams: bool = False,
) -> str:
    """The UTF-8 text of `path` (read with `read_bytes`'s limit); `what` names its kind in messages
    ("config file", "--arch-file"), or is empty where the path says enough (run-folder files)."""
    p = Path(path)
    label = f"{what} {p}" if what else str(p)
    data = read_bytes(p, what, error, max_bytes, streams=streams)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})") from None


def read_lines(
    path: str | os.PathLike, error: type[NasframeError] = RunDirError, max_line: int = MAX_TEXT_BYTES
) -> Iterator[tuple[int, str]]:
    """(number, line) of a text log (history.jsonl, work.jsonl), each line kept with its newline (the
    last one may lack it: cut by a kill). Only a regular file is read, and no line longer than
    `max_line` characters: a FIFO or a device in its place is one line, not a hang."""
    p = Path(path)
    fd, _ = _open_checked(p, str(p), error, False, f"{p} does not exist")
    with open(fd, encoding="utf-8", errors="replace", closefd=True) as fh:
        number = 0
        while True:
            try:
                line = fh.readline(max_line + 1)
            except OSError as exc:
                raise error(f"{p}: cannot be read ({exc.strerror or type(exc).__name__})") from None
            if not line:
                return
            number += 1
            if len(line) > max_line:
                raise error(f"{p} line {number}: longer than {max_line:,} characters; the file is damaged")
            yield number, line


def check_text_path(path: str | os.PathLike, what: str, error: type[NasframeError] = ConfigError) -> Path:
    """`path` when it is valid text. A name that is not valid UTF-8 (Python carries its bytes as
    surrogates) cannot be written into the records and logs that name it, so it is refused in one
    line before anything is written."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = os.fsencode(text[exc.start : exc.end])
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise error(
            f"{what} {shown}: the name is not valid UTF-8 (byte {raw[0]:#04x}); nasframe records paths as text: "
            f"use a UTF-8 name"
        ) from None
    return Path(text)


def names_file(text: str) -> bool:
    """Whether `text` names an existing file, for arguments that take a file or the text itself
    (`nasframe train --arch`). Never raises: text no path can be (longer than the system allows,
    holding a NUL byte, with a component too long for a file name) is not a file but text.
    """
    if not text or "\0" in text or len(os.fsencode(text)) > _MAX_PATH_BYTES:
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # ENAMETOOLONG (a name over 255 bytes), EACCES on a parent, ...
        return False


#: longer than any path the kernel accepts (PATH_MAX is 4096 on Linux, 1024 on macOS)
_MAX_PATH_BYTES = 4096


def check_structure(value: Any, where: str, error: type[NasframeError] = ConfigError) -> Any:
    """`value` unchanged when it nests at most MAX_DEPTH levels and holds at most MAX_ITEMS values.

    Walks iteratively (no recursion limit) and counts a value once per place it appears, which is
    what any later walk over it (checking, copying, printing) costs.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    items = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = list(node.keys()) + list(node.values())
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth >= MAX_DEPTH:
            raise error(f"{where}: nested more than {MAX_DEPTH} levels deep")
        items += len(children)
        if items > MAX_ITEMS:
            raise error(f"{where}: holds more than {MAX_ITEMS:,} values")
        stack.extend((child, depth + 1) for child in children)
    return value


def parse_yaml(text: str, where: str, error: type[NasframeError] = ConfigError) -> Any:
    """YAML text (safe loader) as plain data, checked with `check_structure`."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or _first_line(exc)
        raise error(f"{where}:{line} is not valid YAML ({problem})") from None
    except RecursionError:
        raise error(f"{where}: nested too deeply to read") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure on user text is invalid YAML:
        # an integer of more than 4300 digits (ValueError), PyYAML's own slips (`!!int` alone: IndexError)
        raise error(f"{where}: not valid YAML ({_first_line(exc)})") from None
    return check_structure(value, where, error)


def parse_json(text: str, where: str, error: type[NasframeError] = ConfigError) -> Any:
    """JSON text as plain data, checked with `check_structure`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise error(f"{where}: nested too deeply to read") from None
    except (ValueError, OverflowError) as exc:  # an integer of more than 4300 digits
        raise error(f"{where}: not valid JSON ({_first_line(exc)})") from None
    return check_structure(value, where, error)


def load_yaml(
    path: str | os.PathLike, what: str, error: type[NasframeError] = ConfigError, *, streams: bool = False
) -> Any:
    return parse_yaml(read_text(path, what, error, streams=streams), str(path), error)


def load_json(path: str | os.PathLike, what: str, error: type[NasframeError] = RunDirError) -> Any:
    return parse_json(read_text(path, what, error), str(path), error)


def parse_value(text: str, where: str, error: type[NasframeError] = ConfigError) -> tuple[bool, Any]:
    """A command-line value read as YAML: (True, value), or (False, None) when it is not YAML at
    all (the caller may then take it as a plain string). Too long or too deep is an error."""
    import yaml

    if len(text) > MAX_VALUE_CHARS:
        raise error(f"{where}: {len(text):,} characters is too long ({MAX_VALUE_CHARS:,} at most)")
    try:
        value = yaml.safe_load(text)
    except RecursionError:
        raise error(f"{where}: nested too deeply to read") from None
    except Exception:  # noqa: BLE001 - not YAML (see parse_yaml); the caller may take it as plain text
        return False, None
    return True, check_structure(value, where, error)


def load_torch(path: str | os.PathLike, what: str = "checkpoint", error: type[NasframeError] = RunDirError) -> Any:
    """A torch file read with `weights_only=True` (plain data and tensors only).

    torch's own message for an unreadable file is several lines and suggests `weights_only=False`:
    exactly the wrong advice for a damaged or foreign file, so only its kind is shown.
    """
    import torch

    p = Path(path)
    if not p.exists():
        raise error(f"{p}: no {what}")
    data = read_bytes(p, "", error, MAX_TORCH_BYTES)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise error(
            f"{p}: unreadable {what} ({type(exc).__name__}); the file is damaged or was not written by nasframe"
        ) from None
