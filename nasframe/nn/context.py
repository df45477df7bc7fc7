"""How a model space constructs the user's module: once as a supernet, once per architecture as a plain module.

`ModelSpace` calls the user's factory inside `building(frame)`. Every mutable created meanwhile reads
the frame: in "supernet" mode it becomes a module holding every choice (and registers its label); in
"frozen" mode it becomes the plain layer of the frame's architecture (`choice` returns the chosen value,
`LayerChoice` the chosen candidate, `Repeat` an `nn.Sequential` of the chosen depth, `Conv2d` a
`torch.nn.Conv2d` of the chosen shape). A mutable created outside any frame is refused: it has nowhere
to take its value from.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nasframe.core.space import Choice
from nasframe.nn.values import Categorical, ModelSpaceError, check_values

if TYPE_CHECKING:
    import torch


@dataclass
class Shared:
    """What a supernet and its mutables share at run time (a plain object, never a module): the mixing
    weights of the current `forward_mixed` call (None: single path) and the masks computed from them
    during that call (one per distinct width or kernel choice, however many layers use it)."""

    mixed: Mapping[str, torch.Tensor] | None = None
    masks: dict[Any, torch.Tensor] = field(default_factory=dict)


@dataclass
class Frame:
    """One construction of the user's module."""

    mode: Literal["supernet", "frozen"]
    #: frozen mode: the architecture being built
    arch: Mapping[str, Choice] | None = None
    #: labels declared so far, with their values, in first-use order (the space's decisions)
    labels: dict[str, tuple[Choice, ...]] = field(default_factory=dict)
    #: labels the space already knows (a later construction must declare the same ones)
    expected: Mapping[str, tuple[Choice, ...]] | None = None
    shared: Shared = field(default_factory=Shared)

    def declare(self, label: str, values: Any, what: str) -> tuple[Choice, ...]:
        """Register `label` with `values` (checked); one label used twice must have the same values."""
        vals = check_values(label, values, what)
        known = self.labels.get(label)
        if known is not None and known != vals:
            raise ModelSpaceError(
                f"label {label!r} is used with values {list(known)} and {list(vals)}: one label is one decision; "
                f"give the second a label of its own, or the same values"
            )
        if self.expected is not None:
            before = self.expected.get(label)
            if before is None or before != vals:
                raise ModelSpaceError(
                    f"{what} {label!r} was not among the space's decisions when its supernet was first built: "
                    f"the decisions of a model space must not depend on the data set or on other choices"
                )
        self.labels[label] = vals
        return vals

    def chosen(self, label: str) -> Choice:
        assert self.arch is not None  # frozen mode
        if label not in self.arch:
            raise ModelSpaceError(f"the architecture has no decision {label!r}")
        return self.arch[label]


_frame: contextvars.ContextVar[Frame | None] = contextvars.ContextVar("nasframe_nn_frame", default=None)


@contextlib.contextmanager
def building(frame: Frame) -> Iterator[Frame]:
    """Construct inside `frame` (frames nest: the innermost wins)."""
    token = _frame.set(frame)
    try:
        yield frame
    finally:
        _frame.reset(token)


def current_frame(what: str) -> Frame:
    """The frame a mutable is being created in, or a one-line error saying how to use it."""
    frame = _frame.get()
    if frame is None:
        raise ModelSpaceError(
            f"{what} is used outside a model space: register the module with nasframe.model_space(name, "
            f"MyModel) and let the space build it (space.build(arch, data), space.build_supernet(data))"
        )
    return frame


def choice(label: str, values: Any) -> Any:
    """A categorical decision named `label` over `values` (at least two; str, int, float or bool), usable as
    a constructor argument: a width, a kernel size, an expansion ratio, a depth.

    The same label used again means the same decision (widths tied across layers). Inside a supernet it is
    a `Categorical` placeholder; inside the network of one architecture, the chosen value itself.
    """
    frame = current_frame(f"nasframe.nn.choice({label!r})")
    vals = frame.declare(label, values, "choice")
    if frame.mode == "frozen":
        return frame.chosen(label)
    return Categorical(label, vals)
