"""How the comparison's figures are written: the file formats, the paper-column style, the captions.

Every figure of `nasframe compare` is drawn for a two-column paper: `WIDTH_IN` inches wide (the text
width; each panel about one column), its text at `FONT_PT` points, so that at its printed size the
labels match the paper's own captions. A figure carries no explanatory title: what it shows is said
in its caption, which `summary.md` holds under "Figures" beside the image. PDF and SVG keep the text
as text (TrueType in PDF, real text elements in SVG).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the formats `nasframe compare --format` writes
FORMATS = ("png", "pdf", "svg")
#: a two-column paper's text width, in inches: a figure* spanning both columns (one panel per column)
WIDTH_IN = 7.0
#: the figures' text size in points (a paper's captions are 8-9 pt)
FONT_PT = 8.0
#: PNG resolution: sharp when printed at WIDTH_IN
PNG_DPI = 200


@dataclass(frozen=True)
class FigureCaption:
    """One written figure and the words that explain it (summary.md's Figures section)."""

    file: str  # the file name inside the comparison folder
    caption: str


def paper_style() -> Any:
    """matplotlib settings of every comparison figure, a mapping for `matplotlib.rc_context` (typed Any:
    matplotlib's stubs want literal keys)."""
    return {
        "font.size": FONT_PT,
        "axes.titlesize": FONT_PT,
        "axes.labelsize": FONT_PT,
        "xtick.labelsize": FONT_PT - 1,
        "ytick.labelsize": FONT_PT - 1,
        "legend.fontsize": FONT_PT - 1,
        "legend.title_fontsize": FONT_PT - 1,
        "axes.linewidth": 0.6,
        "lines.linewidth": 1.2,
        "pdf.fonttype": 42,
        "svg.fonttype": "none",
    }


def check_format(fmt: str) -> str:
    """`fmt` when it is one of FORMATS, else a one-line ConfigError naming the allowed ones."""
    from nasframe.common.errors import ConfigError

    if fmt not in FORMATS:
        raise ConfigError(f"figure format {fmt!r} is not allowed; choose one of {', '.join(FORMATS)}")
    return fmt


def save_figure(fig: Figure, folder: Path, stem: str, fmt: str) -> Path:
    """Write `fig` as `folder/stem.fmt` (atomically: a temporary file, then a rename) and close it."""
    import matplotlib.pyplot as plt

    path = folder / f"{stem}.{check_format(fmt)}"
    tmp = folder / f".{stem}.tmp.{fmt}"
    try:
        fig.savefig(tmp, format=fmt, dpi=PNG_DPI, bbox_inches="tight", metadata=_no_date(fmt))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return path


def _no_date(fmt: str) -> dict[str, Any] | None:
    """No creation date in PDF/SVG, so that the same comparison writes the same bytes."""
    return {"CreationDate": None} if fmt == "pdf" else {"Date": None} if fmt == "svg" else None
