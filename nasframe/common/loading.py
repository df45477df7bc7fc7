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


def _first_line(exc: BaseException) -> str:
    """A parser exception's message for one line; Python's advice on its integer limit becomes what
    it means for the user's file."""
    text = str(exc).strip()
    if "integer string conversion" in text:
        return "a number has more than 4300 digits"
    return text.splitlines()[0][:160] if text else type(exc).__name__


def read_text(
    path: str | os.PathLike, what: str, error: type[NasframeError] = ConfigError, max_bytes: int = MAX_TEXT_BYTES
) -> str:
    """The UTF-8 text of `path`; `what` names its kind in messages ("config file", "--arch-file"),
    or is empty where the path says enough (run-folder files)."""
    p = Path(path)
    label = f"{what} {p}" if what else str(p)
    try:
        if not p.exists():
            raise error(f"{what} {str(p)!r} does not exist" if what else f"{p} does not exist")
        if p.is_dir():
            raise error(f"{label} is a folder, not a file")
        size = p.stat().st_size
        if size > max_bytes:
            raise error(f"{label}: {size:,} bytes is more than such a file can sensibly be ({max_bytes:,} at most)")
        data = p.read_bytes()
    except OSError as exc:
        raise error(f"{label}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})") from None


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


def load_yaml(path: str | os.PathLike, what: str, error: type[NasframeError] = ConfigError) -> Any:
    return parse_yaml(read_text(path, what, error), str(path), error)


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
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{p}: no {what}") from None
    except OSError as exc:
        raise error(f"{p}: {what} cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise error(
            f"{p}: unreadable {what} ({type(exc).__name__}); the file is damaged or was not written by nasframe"
        ) from None
