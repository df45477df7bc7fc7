"""One self-contained HTML page: sections, tables, preformatted text and figures inline.

Everything the page needs is inside the file: the style sheet is a `<style>` element, every figure
is a matplotlib figure embedded as a base64 `data:` image (SVG; PNG for a space's own drawing), and
there is no script at all, so the page opens from disk with no server and no network, and a
browser has nothing to fetch and nothing to run. All text from run folders is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 1rem 2rem 4rem; color: #1b1f23; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.25rem; border-bottom: 1px solid #d0d7de;
     padding-bottom: 0.2rem; margin-top: 2.2rem; } h3 { font-size: 1.05rem; }
.subtitle { color: #57606a; margin-top: 0; } nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } summary { cursor: pointer; color: #0969da; }
pre { background: #f6f8fa; padding: 0.6rem; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere;
      font-size: 0.82rem; }
figure { margin: 1rem 0; } figure img { width: 100%; max-width: 64rem; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: 0.88rem; max-width: 60rem; }
.headline { font-size: 1.35rem; font-weight: 600; } .note { color: #57606a; font-style: italic; }
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def figure_html(fig: Figure, caption: str, *, fmt: str = "svg") -> str:
    """`fig` as an inline image with its caption; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=fmt, bbox_inches="tight", dpi=110, metadata=_no_date(fmt))
    finally:
        plt.close(fig)
    return image_html(buffer.getvalue(), "image/svg+xml" if fmt == "svg" else "image/png", caption)


def image_html(data: bytes, mime: str, caption: str) -> str:
    """Image bytes as an inline `data:` image with its caption."""
    encoded = base64.b64encode(data).decode("ascii")
    alt = escape(caption.split(". ")[0])
    return (
        f'<figure><img alt="{alt}" src="data:{mime};base64,{encoded}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def table_html(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def pre_html(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def paragraph(text: str, css: str = "") -> str:
    return f'<p class="{css}">{escape(text)}</p>' if css else f"<p>{escape(text)}</p>"


def _no_date(fmt: str) -> dict[str, Any] | None:
    return {"Date": None} if fmt == "svg" else None


@dataclass
class Section:
    """One `<section>` of the page, with the id the table of contents links to."""

    id: str
    title: str
    parts: list[str] = field(default_factory=list)  # HTML fragments, already escaped

    def add(self, fragment: str) -> Section:
        self.parts.append(fragment)
        return self

    def html(self) -> str:
        return f'<section id="{escape(self.id)}"><h2>{escape(self.title)}</h2>{"".join(self.parts)}</section>'


def page_html(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole page: a heading, links to the sections, the sections."""
    nav = "".join(f'<a href="#{escape(s.id)}">{escape(s.title)}</a>' for s in sections)
    body = "".join(s.html() for s in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="subtitle">{escape(subtitle)}</p><nav>{nav}</nav>{body}</body></html>\n'
    )
