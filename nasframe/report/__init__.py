"""`nasframe report`: one self-contained HTML page about a run folder or a comparison folder.

The page holds everything inline (figures as base64 `data:` images, the style sheet in the page,
no script), so it opens from disk, offline, and can be mailed or archived as one file. For a run:
the answer with its numbers, units, split and held-out figures; the search curve; the architecture
drawn by its space; the strategy's own state over time; a Pareto front when best.json holds one;
the supernet work; the provenance. For a comparison: the summary table, the figures with their
captions, the pairwise tests, every run and the settings.

One module per job: `page` (HTML, inline figures), `run_figures` (a run's figures), `run_sections`
and `compare_sections` (what each kind of folder shows). The layer sits above `compare` and
`training` and below `app`.
"""

from __future__ import annotations

from pathlib import Path

from nasframe.common.errors import RunDirError

#: the page's default name inside the folder
REPORT_HTML = "report.html"


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the run or comparison in `folder` to `out` (default `folder/report.html`),
    atomically; returns the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunDirError(f"{folder}: no such folder")
    path = Path(out) if out is not None else folder / REPORT_HTML
    if path.is_dir():
        raise RunDirError(f"report: --out {path} is a folder; give a file name such as {path / REPORT_HTML}")
    if not path.parent.is_dir():
        raise RunDirError(f"report: the folder of --out {path} does not exist")
    # the figures' libraries load only now, so a wrong folder is refused in a fraction of a second
    from nasframe.common.checkpoint import atomic_write_bytes
    from nasframe.report.compare_sections import compare_sections, is_comparison
    from nasframe.report.page import page_html
    from nasframe.report.run_sections import run_sections

    title, subtitle, sections = compare_sections(folder) if is_comparison(folder) else run_sections(folder)
    atomic_write_bytes(path, page_html(title, subtitle, sections).encode("utf-8"))
    return path


__all__ = ["REPORT_HTML", "write_report"]
