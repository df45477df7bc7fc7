"""Values a model space decides: `choice(label, values)`, and arithmetic on choices.

While a model space builds its supernet, `choice` returns a `Choice`: a placeholder that takes one
of its values per architecture. Layers accept it wherever they accept a number (a width, a kernel
size, a depth), and arithmetic (`+ - * // % /`, unary minus, `round`) on choices gives an `Expr`,
so `round(c_in * expand)` or `k // 2` stay decided by the same labels. Anything that would need one
value now (`if width > 8`, `int(width)`, `range(depth)`) fails with a one-line error saying what to
use instead. While a model space builds the network of one architecture, `choice` returns the chosen
value itself, so the same code builds a plain module.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from nasframe.common.errors import ConfigError
from nasframe.core.space import Choice


class ModelSpaceError(ConfigError):
    """A model space's definition is wrong: a label, a choice's values, a mutable used out of place, or
    widths that do not fit together."""


class Value:
    """Something that takes one value per architecture: a `Choice`, or arithmetic on choices (`Expr`)."""

    __hash__ = object.__hash__  # identity: comparisons are refused (`_no_single_value`), hashing is not

    def choices(self) -> list[Categorical]:
        """The choices this value depends on, each label once, in first-use order."""
        raise NotImplementedError

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.label for c in self.choices())

    def evaluate(self, arch: Mapping[str, Choice]) -> Any:
        """The value under `arch` (a mapping label -> chosen value)."""
        raise NotImplementedError

    def table(self) -> list[tuple[tuple[Choice, ...], Any]]:
        """(values of `labels`, result) for every combination of the labels' values, the first label
        varying slowest (the order `torch.outer` of their mixing weights, flattened, follows)."""
        cs = self.choices()
        return [
            (combo, self.evaluate(dict(zip((c.label for c in cs), combo))))
            for combo in itertools.product(*(c.values for c in cs))
        ]

    def results(self) -> list[Any]:
        """Every value this can take, without repeats, in first-seen order."""
        return list(dict.fromkeys(r for _, r in self.table()))

    # ---- arithmetic gives expressions -------------------------------------------------------------
    def _op(self, fn: Callable[..., Any], *args: Any, name: str) -> Expr:
        return Expr(fn, (self, *args), name)

    def __add__(self, o: Any) -> Expr:
        return self._op(operator.add, o, name="+")

    def __radd__(self, o: Any) -> Expr:
        return Expr(operator.add, (o, self), "+")

    def __sub__(self, o: Any) -> Expr:
        return self._op(operator.sub, o, name="-")

    def __rsub__(self, o: Any) -> Expr:
        return Expr(operator.sub, (o, self), "-")

    def __mul__(self, o: Any) -> Expr:
        return self._op(operator.mul, o, name="*")

    def __rmul__(self, o: Any) -> Expr:
        return Expr(operator.mul, (o, self), "*")

    def __floordiv__(self, o: Any) -> Expr:
        return self._op(operator.floordiv, o, name="//")

    def __rfloordiv__(self, o: Any) -> Expr:
        return Expr(operator.floordiv, (o, self), "//")

    def __truediv__(self, o: Any) -> Expr:
        return self._op(operator.truediv, o, name="/")

    def __rtruediv__(self, o: Any) -> Expr:
        return Expr(operator.truediv, (o, self), "/")

    def __mod__(self, o: Any) -> Expr:
        return self._op(operator.mod, o, name="%")

    def __neg__(self) -> Expr:
        return Expr(operator.neg, (self,), "-")

    def __round__(self, ndigits: int | None = None) -> Expr:
        return Expr(round, (self,) if ndigits is None else (self, ndigits), "round")

    # ---- what needs a single value is refused ---------------------------------------------------------
    def _no_single_value(self, what: str) -> NoReturn:
        raise ModelSpaceError(
            f"{self!r} has no single value while a model space builds its supernet ({what}): pass it to a "
            f"nasframe.nn layer (Conv2d, BatchNorm2d, Linear), combine it with + - * // % / and round(), or "
            f"branch with LayerChoice / Repeat"
        )

    def __bool__(self) -> bool:
        self._no_single_value("used as a truth value")

    def __index__(self) -> int:
        self._no_single_value("used as an index or a range")

    def __int__(self) -> int:
        self._no_single_value("converted with int()")

    def __float__(self) -> float:
        self._no_single_value("converted with float()")

    def __eq__(self, o: object) -> bool:
        self._no_single_value("compared with ==")

    def __ne__(self, o: object) -> bool:
        self._no_single_value("compared with !=")

    def __lt__(self, o: Any) -> bool:
        self._no_single_value("compared with <")

    def __le__(self, o: Any) -> bool:
        self._no_single_value("compared with <=")

    def __gt__(self, o: Any) -> bool:
        self._no_single_value("compared with >")

    def __ge__(self, o: Any) -> bool:
        self._no_single_value("compared with >=")


class Categorical(Value):
    """One decision: a label and its values (what `choice(label, values)` returns while a supernet is built)."""

    def __init__(self, label: str, values: tuple[Choice, ...]):
        self.label = label
        self.values = values

    def choices(self) -> list[Categorical]:
        return [self]

    def evaluate(self, arch: Mapping[str, Choice]) -> Any:
        return arch[self.label]

    def __repr__(self) -> str:
        return f"choice({self.label!r}, {list(self.values)})"


class Expr(Value):
    """Arithmetic on choices (and constants), evaluated per architecture."""

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any], name: str):
        self.fn = fn
        self.args = tuple(args)
        self.name = name

    def choices(self) -> list[Categorical]:
        seen: dict[str, Categorical] = {}
        for a in self.args:
            if isinstance(a, Value):
                for c in a.choices():
                    seen.setdefault(c.label, c)
        return list(seen.values())

    def evaluate(self, arch: Mapping[str, Choice]) -> Any:
        return self.fn(*(a.evaluate(arch) if isinstance(a, Value) else a for a in self.args))

    def __repr__(self) -> str:
        if self.name == "round":
            return f"round({', '.join(map(repr, self.args))})"
        if len(self.args) == 1:
            return f"{self.name}({self.args[0]!r})"
        return f"({self.args[0]!r} {self.name} {self.args[1]!r})"


def value_of(x: Any, arch: Mapping[str, Choice]) -> Any:
    """`x` under `arch`: a `Value` evaluated, anything else as it is."""
    return x.evaluate(arch) if isinstance(x, Value) else x


def possible(x: Any) -> list[Any]:
    """Every value `x` can take (a constant: itself)."""
    return x.results() if isinstance(x, Value) else [x]


def same_everywhere(a: Any, b: Any) -> bool:
    """Whether `a` and `b` agree under every combination of the labels either depends on (two constants:
    whether they are equal)."""
    if a is b:
        return True
    cs: dict[str, Categorical] = {}
    for x in (a, b):
        if isinstance(x, Value):
            for c in x.choices():
                cs.setdefault(c.label, c)
    for combo in itertools.product(*(c.values for c in cs.values())):
        arch = dict(zip(cs, combo))
        if value_of(a, arch) != value_of(b, arch):
            return False
    return True


def positive_ints(x: Any, what: str, where: str, minimum: int = 1) -> list[int]:
    """Every value of `x` (a width, a kernel size, a depth), checked to be integers >= `minimum`."""
    found = possible(x)
    for v in found:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            shown = repr(x) if isinstance(x, Value) else repr(v)
            raise ModelSpaceError(
                f"{where}: {what} {shown} takes the value {v!r}; it must be an integer >= {minimum}"
                + (" (round() an expression that can give fractions)" if isinstance(v, float) else "")
            )
    return found


def check_values(label: Any, values: Any, what: str) -> tuple[Choice, ...]:
    """A choice's label and values, checked: a non-empty string label; at least two distinct values, each a
    str, int, float or bool (what an architecture holds and a JSON file stores)."""
    if not isinstance(label, str) or not label:
        raise ModelSpaceError(f"{what}: the label must be a non-empty string, got {label!r}")
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (Sequence, range)):
        raise ModelSpaceError(f"{what} {label!r}: values must be a list, got {type(values).__name__}")
    vals = tuple(values)
    for v in vals:
        try:
            hash(v)
        except TypeError:
            raise ModelSpaceError(
                f"{what} {label!r}: value {v!r} is unhashable; values must be str, int, float or bool"
            ) from None
        if not isinstance(v, (str, int, float, bool)):
            raise ModelSpaceError(
                f"{what} {label!r}: value {v!r} is a {type(v).__name__}; values must be str, int, float or bool"
            )
        if isinstance(v, float) and not math.isfinite(v):
            raise ModelSpaceError(f"{what} {label!r}: value {v!r} is not a finite number")
    if len(vals) < 2:
        shown = "no values" if not vals else f"one value ({vals[0]!r})"
        raise ModelSpaceError(
            f"{what} {label!r} has {shown}: a choice needs at least two values (use a fixed setting instead)"
        )
    seen: set[tuple[type, Any]] = set()
    for v in vals:
        key = (bool if isinstance(v, bool) else type(v), v)
        if key in seen:
            raise ModelSpaceError(f"{what} {label!r}: value {v!r} appears twice in {list(vals)}")
        seen.add(key)
    return vals
