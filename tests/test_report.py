"""`nasframe report`: one self-contained HTML page per run or comparison folder, checked as HTML here
and in a real headless Chromium (skipped, with the reason, where Chromium is not installed): every
section shows, every inline figure decodes, nothing is fetched from outside the file, no console error."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from chromium import Chromium, find_chromium

from nasframe.app.cli import main

TINY = ["--set", "data.limit=200", "--set", "run.tensorboard=false", "--quiet"]
RUN_SECTIONS = ["answer", "search", "architecture", "strategy", "pareto", "work", "provenance"]
COMPARE_SECTIONS = ["summary", "figures", "pairs", "runs", "provenance"]


def _run(out: Path, *argv: str) -> Path:
    assert main(["run", *argv, *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """MDENAS with short_train on DARTS cells (probabilities, a drawn cell, a held-out figure), DARTS
    with a supernet on NAS-Bench-201 cells (alphas, supernet work), and a comparison written as SVG."""
    root = tmp_path_factory.mktemp("report")
    mdenas = _run(
        root / "mdenas",
        "--strategy",
        "mdenas",
        "--space",
        "darts",
        "--evaluator",
        "short_train",
        "--budget",
        "3",
        "--set",
        "space.C=4",
        "--set",
        "space.layers=2",
        "--set",
        "evaluator.epochs=0.2",
    )
    darts = _run(root / "darts", "--strategy", "darts", "--space", "nb201", "--evaluator", "supernet",
                 "--set", "space.C=4", "--set", "space.N=1", "--set", "strategy.epochs=2")  # fmt: skip
    compare = root / "compare"
    assert main(["compare", "--strategies", "random,mdenas", "--space", "nb201", "--evaluator", "tabular", "--seeds",
                 "2", "--budget", "6", "--out", str(compare), "--no-tensorboard", "--format", "svg"]) == 0  # fmt: skip
    return {"mdenas": mdenas, "darts": darts, "compare": compare}


class _Page(HTMLParser):
    """Sections (id -> text length), image sources, and every reference to something outside the page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, int] = {}
        self.images: list[str] = []
        self.outside: list[str] = []
        self.scripts = 0
        self._section: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id") or ""
            self.sections[self._section] = 0
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.images.append(a.get("src") or "")
        for key in ("src", "href"):
            value = a.get(key)
            if value and not value.startswith(("data:", "#")):
                self.outside.append(value)

    def handle_data(self, data: str) -> None:
        if self._section is not None:
            self.sections[self._section] += len(data.strip())


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_a_run_report_holds_every_section_inline(folders, cli, tmp_path):
    code, out, err = cli("report", folders["mdenas"], "--out", tmp_path / "r.html")
    assert code == 0, err and "wrote" in out
    page = parse(tmp_path / "r.html")
    assert list(page.sections) == RUN_SECTIONS and all(page.sections.values())
    assert page.outside == [] and page.scripts == 0
    assert all(src.startswith(("data:image/svg+xml;base64,", "data:image/png;base64,")) for src in page.images)
    text = (tmp_path / "r.html").read_text()
    best = json.loads((folders["mdenas"] / "best.json").read_text())
    val_acc = best["final"]["metrics"]["val_acc"]
    assert f"<td>val_acc</td><td>{val_acc:.4g}</td><td>%</td><td>search-val</td>" in text
    assert "<td>test_acc</td>" in text and "digits test split" in text  # the held-out figure
    assert "drawn by the darts space" in text  # the cell drawing
    assert "probabilities after the last evaluation" in text  # MDENAS' own state
    assert "No supernet work" in text and "no Pareto front" in text


def test_a_supernet_run_shows_its_work_and_the_alphas(folders, tmp_path):
    from nasframe.report import write_report

    text = write_report(folders["darts"], tmp_path / "d.html").read_text()
    assert "Each piece of supernet training" in text and "<th>phase</th><th>epochs</th><th>seconds</th>" in text
    assert "probabilities after the last evaluation" in text  # the softmaxed alphas
    assert "The largest entry of probabilities per decision (rows) after each evaluation" in text
    assert "cannot draw architectures" in text  # nb201 has no drawing: its decisions are listed


def test_a_pareto_front_in_best_json_is_drawn(folders, tmp_path):
    """The front is read from best.json's `pareto_front` (a list of points, or objectives and points)
    straight from the file, so the section needs no more of best.json than that key."""
    from nasframe.report.run_sections import _pareto
    from nasframe.search.rundir import RunDir

    run = tmp_path / "front"
    shutil.copytree(folders["mdenas"], run)
    best = json.loads((run / "best.json").read_text())
    best["pareto_front"] = {"objectives": ["latency_ms", "val_acc"], "points": [
        {"arch": {}, "metrics": {"latency_ms": 1.5, "val_acc": 80.0}},
        {"arch": {}, "metrics": {"latency_ms": 3.0, "val_acc": 90.0}}]}  # fmt: skip
    (run / "best.json").write_text(json.dumps(best))
    text = _pareto(RunDir(run)).html()
    assert "The run&#x27;s Pareto front: latency_ms against val_acc" in text and "data:image/svg+xml" in text
    assert "<td>1.5</td><td>80.0</td>" in text and "<td>3.0</td><td>90.0</td>" in text


def test_a_comparison_report_holds_the_table_figures_and_tests(folders, cli):
    code, out, err = cli("report", folders["compare"])
    assert code == 0, err
    path = folders["compare"] / "report.html"
    page = parse(path)
    assert list(page.sections) == COMPARE_SECTIONS and all(page.sections.values())
    assert page.outside == [] and page.scripts == 0
    assert len(page.images) == 2 and all(src.startswith("data:image/svg+xml;base64,") for src in page.images)
    text = path.read_text()
    assert "<td>random (expected)</td>" in text and "Figure 2 (regret.svg). Regret on the cifar10 table" in text
    assert "<th>strategy_a</th>" in text and "<td>random</td><td>mdenas</td>" in text


def test_report_input_errors_are_one_line(cli, tmp_path, folders):
    code, _, err = cli("report", tmp_path / "missing")
    assert code == 2 and err.count("\n") == 1 and "no such folder" in err
    code, _, err = cli("report", folders["mdenas"], "--out", tmp_path)
    assert code == 2 and "is a folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("report", tmp_path / "empty")
    assert code == 2 and err.count("\n") == 1


CHROMIUM = find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("kind", ["mdenas", "darts", "compare"])
def test_the_page_in_a_headless_chromium(folders, tmp_path, kind):
    """In a real browser: no console error, every section laid out and holding text, every figure decoded,
    and no request but the page itself and its inline data."""
    from nasframe.report import write_report

    path = write_report(folders[kind], tmp_path / f"{kind}.html")
    assert CHROMIUM is not None
    with Chromium(CHROMIUM, tmp_path / "profile") as browser:
        browser.open(path.as_uri())
        seen = browser.evaluate(
            "JSON.stringify({"
            "sections: [...document.querySelectorAll('section')].map(s => ({id: s.id, "
            "  height: s.getBoundingClientRect().height, text: s.innerText.trim().length})),"
            "images: [...document.images].map(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0),"
            "title: document.title})"
        )
        errors, requests = browser.errors(), browser.requests()
    page = json.loads(seen)
    wanted = COMPARE_SECTIONS if kind == "compare" else RUN_SECTIONS
    assert [s["id"] for s in page["sections"]] == wanted
    assert all(s["height"] > 20 and s["text"] > 10 for s in page["sections"]), page["sections"]
    assert page["images"] and all(page["images"]), page["images"]
    assert page["title"].startswith("nasframe report: ")
    assert errors == []
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
