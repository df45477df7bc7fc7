"""Typed component options: dataclasses whose fields carry help text and allowed ranges.

Every component declares `Options = SomeDataclass`. Configs and `--set` overrides are checked
against it here, so that a wrong key, type or value fails with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from nasframe.common.errors import ConfigError


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple | None = None,
    default_factory: Any = dataclasses.MISSING,
    nonfinite: bool = False,
) -> Any:
    """A dataclass field with a one-line help text and optional bounds (inclusive).

    Numbers must be finite (NaN and infinities are refused, also inside lists and mappings) unless
    `nonfinite=True` says that this option gives them a meaning.
    """
    meta = {"help": help, "min": min, "max": max, "choices": choices, "nonfinite": nonfinite}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """For components without options."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
#: the largest integer an option takes: the 64-bit integers torch, numpy and the OS calls take
INT_LIMIT = 2**63 - 1
#: the largest float an option takes: float32's, as torch computes with most of them in float32
FLOAT_LIMIT = 3.4028234663852886e38
#: longer number texts are not read as numbers (Python refuses int() of more than 4300 digits)
_MAX_NUMBER_CHARS = 400


def _number(text: str) -> Any:
    """A number written as text: YAML 1.1 reads `1e-3` and `330e6` as strings, and counts read well
    with a suffix (`330M`). Anything else comes back unchanged (and is then rejected)."""
    t = text.strip().replace("_", "")
    scale = 1.0
    if t[-1:] in _SUFFIX:
        t, scale = t[:-1], _SUFFIX[t[-1]]
    if len(t) > _MAX_NUMBER_CHARS:
        return text
    try:
        value = float(t) * scale
    except ValueError:
        return text
    if value.is_integer() and scale == 1.0 and all(c.isdigit() or c in "+-" for c in t):
        return int(t)
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def _coerce(value: Any, tp: Any, key: str, finite: bool = True) -> Any:
    """Return `value` converted to `tp`, or raise ConfigError naming `key`; with `finite`, NaN and
    infinities are refused wherever they appear."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return _check_finite(value, key) if finite else value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, key, finite)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        raise ConfigError(f"{key}: {_short(value)} is not allowed; choose one of {', '.join(map(str, allowed))}")
    if origin in (list, tuple):
        return _coerce_sequence(value, tp, key, finite)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {_short(value)}")
        return _check_finite(dict(value), key) if finite else dict(value)
    if tp in (bool, int, float, str):
        return _coerce_scalar(value, tp, key, finite)
    return value


def _short(value: Any) -> str:
    """repr of a user value, cut to fit a one-line message."""
    return cut(repr(value))


def cut(text: str, limit: int = 80) -> str:
    """`text` as it is when short, else its start and "..." (user text quoted in a one-line message)."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _check_finite(value: Any, key: str) -> Any:
    """`value` unchanged unless a float somewhere in it is NaN or infinite."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{key}: {node!r} is not a finite number (use null for 'no limit')")
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return value


def _coerce_union(value: Any, tp: Any, key: str, finite: bool = True) -> Any:
    """The first member of the union that takes `value` (None only where the union allows it)."""
    members = typing.get_args(tp)
    if value is None and type(None) in members:
        return None
    for member in members:
        if member is type(None):
            continue
        try:
            return _coerce(value, member, key, finite)
        except _Definite:
            raise
        except ConfigError as exc:
            if "not a finite number" in str(exc):
                raise
            continue
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_short(value)}")


def _coerce_sequence(value: Any, tp: Any, key: str, finite: bool = True) -> list[Any] | tuple[Any, ...]:
    """A list (or tuple) of the item type; a string is read as comma-separated items."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_short(value)}")
    item_types = [a for a in typing.get_args(tp) if a is not Ellipsis]
    if item_types:
        items = [_coerce(v, item_types[0], f"{key}[{i}]", finite) for i, v in enumerate(value)]
    else:
        items = list(_check_finite(value, key) if finite else value)
    return tuple(items) if typing.get_origin(tp) is tuple else items


def _coerce_scalar(value: Any, tp: type, key: str, finite: bool = True) -> Any:
    """bool, int, float or str; numbers may come as text (`1e-3`, `330M`); floats must be finite
    unless `finite` is False."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {_short(value)}")
    if tp is str:
        if isinstance(value, str):
            return _checked_text(value, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {_short(value)}")
    if isinstance(value, str):
        value = _number(value)
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > INT_LIMIT:
                raise _Definite(f"{key}: {_short(value)} is beyond the 64-bit integers nasframe's code takes")
            return value
        raise ConfigError(f"{key}: expected an integer, got {_short(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if finite and not math.isfinite(value):
            raise ConfigError(f"{key}: {_short(value)} is not a finite number (use null for 'no limit')")
        if math.isfinite(value) and abs(value) > FLOAT_LIMIT:
            raise _Definite(f"{key}: {_short(value)} is beyond the float32 range torch computes in (3.4e38)")
        return float(value)
    raise ConfigError(f"{key}: expected a number, got {_short(value)}")


class _Definite(ConfigError):
    """A refusal that holds whichever member of a union the value is read as (a number beyond what
    the code takes, text that is not text): `_coerce_union` lets it through rather than trying on."""


def _checked_text(value: str, key: str) -> str:
    """`value` unless it holds half of a UTF-16 surrogate pair (a file name that is not UTF-8, whose
    bytes Python carries as surrogates, or YAML's `"\\udcff"`): such text cannot be written to the
    run's files."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        what = f"UTF-8 (byte {code - 0xDC00:#04x})" if 0xDC80 <= code <= 0xDCFF else "text (a lone surrogate)"
        raise _Definite(f"{key}: {_short(value)} is not valid {what}") from None
    return value


def _check_range(value: Any, meta: Mapping, key: str) -> None:
    if value is None:
        return
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {_short(value)} is not allowed; choose one of {', '.join(map(str, choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo:
            raise ConfigError(f"{key}: {_short(value)} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{key}: {_short(value)} is above the maximum {hi}")


def closest_name(key: str, names: Sequence[str]) -> str | None:
    """The name `key` was most likely meant to be: the closest spelling (difflib), else the one name
    that `key` begins or is a word of (`epoch` -> `epochs_per_eval`; the words are split at `_`)."""
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return close[0]
    lowered = key.lower()
    if len(lowered) < 3:
        return None
    hits = [n for n in names if n.lower().startswith(lowered) or lowered in n.lower().split("_")]
    return hits[0] if len(hits) == 1 else None


def build_options(cls: type, values: Mapping[str, Any] | None, section: str) -> Any:
    """Build the options dataclass `cls` from a mapping, checking keys, types and ranges.

    An explicit None (YAML `null`) sets the option to None where its type allows it; unset CLI
    flags never reach here (`merge_config` drops them).
    """
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ConfigError(f"{section}: option names are text, got {_short(key)}")
        if key not in fields:
            close = closest_name(key, list(fields))
            hint = f"; did you mean {section}.{close}?" if close else ""
            allowed = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(f"unknown option {section}.{cut(key)}{hint} allowed: {allowed}")
        full = f"{section}.{key}"
        coerced = _coerce(value, hints[key], full, finite=not fields[key].metadata.get("nonfinite", False))
        _check_range(coerced, fields[key].metadata, full)
        kwargs[key] = coerced
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}: {exc}") from None


def options_to_dict(opts: Any) -> dict[str, Any]:
    """Plain-data view of an options dataclass (tuples become lists) for YAML/JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(opts, f.name)) for f in dataclasses.fields(opts)}


def describe_options(cls: type) -> list[str]:
    """One line per option: name, type, default and help, for `nasframe list`."""
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        bounds = []
        if f.metadata.get("min") is not None:
            bounds.append(f">= {f.metadata['min']}")
        if f.metadata.get("max") is not None:
            bounds.append(f"<= {f.metadata['max']}")
        if f.metadata.get("choices"):
            bounds.append("one of " + ", ".join(map(str, f.metadata["choices"])))
        extra = f" [{'; '.join(bounds)}]" if bounds else ""
        help_text = f.metadata.get("help", "")
        lines.append(f"{f.name} ({_type_name(hints[f.name])}, default {default!r}){extra}: {help_text}")
    return lines
