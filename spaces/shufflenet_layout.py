"""The ShuffleNetV2 space's plain description, apart from its networks: the choices, the blocks'
slots and the layout (`nasframe.spaces.shufflenet_blocks` builds the networks from them).

Separate from the networks so that the space's module loads without torch (`nasframe list`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the candidate ops, in the order of SPOS's choice indices 0..3
CHOICES = ("shuffle3x3", "shuffle5x5", "shuffle7x7", "xception")


@dataclass(frozen=True)
class Slot:
    """One choice block: its decision name, channels, stride and kind.

    A `project` block (the first of a stage) feeds its whole input to both a projection branch
    and the main branch and concatenates them; any other block splits its input in two halves,
    passes one through and feeds the other to the main branch.
    """

    name: str
    cin: int
    cout: int
    stride: int
    project: bool

    @property
    def main_in(self) -> int:
        return self.cin if self.project else self.cin // 2

    @property
    def main_out(self) -> int:
        """The main branch makes up what the kept (or projected) channels leave to `cout`."""
        return self.cout - (self.cin if self.project else self.cin // 2)

    @property
    def mid(self) -> int:
        return self.cout // 2


@dataclass(frozen=True)
class ShuffleLayout:
    """Everything but the choices: stem, per-stage widths, repeats and strides, conv_last width."""

    stem: int
    widths: tuple[int, ...]
    repeats: tuple[int, ...]
    strides: tuple[int, ...]
    last: int
    stem_stride: int = 2

    def slots(self) -> list[Slot]:
        """`stage<i>.block<j>` (stages from 1), in network order; block 0 of a stage projects."""
        out, cin = [], self.stem
        for i, (width, count, stride) in enumerate(zip(self.widths, self.repeats, self.strides), start=1):
            for j in range(count):
                out.append(Slot(f"stage{i}.block{j}", cin, width, stride if j == 0 else 1, project=j == 0))
                cin = width
        return out
