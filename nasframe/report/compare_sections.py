"""The sections of a comparison folder's report: the summary table and what it means, the figures with
their captions, the pairwise tests, every run, and the settings the runs were made with; read from the
files `nasframe compare` wrote (summary.md, summary.csv, pairs.csv, runs.csv, the figures)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from nasframe.common.errors import RunDirError
from nasframe.report.page import Section, escape, image_html, paragraph, pre_html, table_html

#: the files that make a folder a comparison folder
COMPARE_FILES = ("summary.md", "summary.csv", "runs.csv", "pairs.csv")
_MIME = {".svg": "image/svg+xml", ".png": "image/png"}
_FIGURE = re.compile(r"^\*\*Figure (\d+)\*\* \(`([^`]+)`\)\. (.*)$")


def is_comparison(folder: Path) -> bool:
    return all((folder / name).is_file() for name in COMPARE_FILES)


def compare_sections(folder: Path) -> tuple[str, str, list[Section]]:
    """(title, subtitle, sections) of the report of the comparison in `folder`."""
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    lines = summary.splitlines()
    heading = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("# ") else f"Comparison {folder}"
    runs = _read_csv(folder / "runs.csv")
    subtitle = f"comparison {folder}: {len(runs)} runs"
    sections = [
        _summary(lines),
        _figures(folder, lines),
        _pairs(folder, lines),
        _runs(runs),
        _provenance(folder, runs),
    ]
    return f"nasframe report: {heading}", subtitle, sections


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: cannot be read as a comparison's table ({exc})") from None


def _summary(lines: list[str]) -> Section:
    """The paragraph that says what the columns mean, the table, and the notes, from summary.md."""
    section = Section("summary", "Summary")
    table = [line for line in _until(lines, "## ") if line.startswith("|")]
    prose = [line for line in _until(lines, "## ")[1:] if line.strip() and not line.startswith("|")]
    for line in prose:
        section.add(paragraph(line.replace("`", "")))
    if len(table) >= 2:
        head = _cells(table[0])
        section.add(table_html(head, [_cells(row) for row in table[2:]]))
    return section


def _until(lines: list[str], prefix: str) -> list[str]:
    """The lines before the first one starting with `prefix`."""
    out = []
    for line in lines:
        if line.startswith(prefix):
            break
        out.append(line)
    return out


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _after(lines: list[str], heading: str) -> list[str]:
    """The lines of summary.md's section `heading` (up to the next `## `)."""
    if heading not in lines:
        return []
    return _until(lines[lines.index(heading) + 1 :], "## ")


def _figures(folder: Path, lines: list[str]) -> Section:
    section = Section("figures", "Figures")
    captions = [m for m in (_FIGURE.match(line) for line in _after(lines, "## Figures")) if m]
    if not captions:
        return section.add(paragraph("The comparison was run without figures (--no-plot).", "note"))
    for match in captions:
        name, caption = match.group(2), match.group(3)
        path = folder / name
        label = f"Figure {match.group(1)} ({name}). {caption}"
        if path.suffix in _MIME and path.is_file():
            section.add(image_html(path.read_bytes(), _MIME[path.suffix], label))
        else:
            section.add(paragraph(f"{label} [{name} is not shown here: a page shows SVG and PNG; run compare "
                                  "with --format svg or png]", "note"))  # fmt: skip
    return section


def _pairs(folder: Path, lines: list[str]) -> Section:
    section = Section("pairs", "Pairwise tests")
    pairs = _read_csv(folder / "pairs.csv")
    if not pairs:
        return section.add(paragraph("One strategy only: no pair to test.", "note"))
    prose = [line for line in _after(lines, "## Pairwise tests") if line.strip() and not line.startswith("- ")]
    for line in prose:
        section.add(paragraph(line.replace("`", "")))
    head = list(pairs[0])
    return section.add(table_html(head, [[row[k] for k in head] for row in pairs]))


def _runs(runs: list[dict[str, str]]) -> Section:
    section = Section("runs", "Every run")
    if not runs:
        return section.add(paragraph("No runs.", "note"))
    head = list(runs[0])
    section.add(paragraph("One row per run (runs.csv); each run folder is an ordinary run: nasframe report RUN_DIR."))
    table = table_html(head, [[r[k] for k in head] for r in runs])
    return section.add(f"<details><summary>{len(runs)} runs</summary>{table}</details>")


def _provenance(folder: Path, runs: list[dict[str, str]]) -> Section:
    """The settings of the first run (the runs differ in strategy and seed only): its config.yaml, found
    where the comparison keeps it (<folder>/<strategy>/seed-<k>) or where runs.csv says."""
    section = Section("provenance", "Provenance")
    section.add(paragraph(f"Folder: {folder}. The runs share their settings but the strategy and the seed."))
    if not runs:
        return section
    row = runs[0]
    places = [folder / row.get("strategy", "") / f"seed-{row.get('seed', '')}", Path(row.get("run_dir", ""))]
    config = next((p / "config.yaml" for p in places if (p / "config.yaml").is_file()), None)
    if config is None:
        return section.add(paragraph("The first run's config.yaml is not where runs.csv says.", "note"))
    return section.add(f"<h3>The first run's {escape(config)}</h3>" + pre_html(config.read_text(encoding="utf-8")))
