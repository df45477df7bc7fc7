"""The documentation site's own pages: the home table names every built-in component, API sections
appear once in a page's table of contents, and long commands wrap instead of being cut off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GROUPS = {"spaces": "search spaces", "strategies": "strategies", "evaluators": "evaluators", "datasets": "data sets"}


def _home_table() -> dict[str, str]:
    """The 'What is built in' table of docs/index.md: kind -> its names cell."""
    rows = {}
    for line in (DOCS / "index.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in GROUPS.values():
            rows[cells[0]] = cells[1]
    return rows


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_the_home_table_names_every_built_in_component(group):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][f"nasframe.{group}"]
    named = set(re.findall(r"`([\w-]+)`", _home_table()[GROUPS[group]]))
    assert set(declared) <= named, f"docs/index.md omits {sorted(set(declared) - named)}"


def test_an_api_section_appears_once_in_the_table_of_contents():
    """A page's `## API` heading holds its modules one level below (heading_level 3); at the
    default level 2 each module heading sat beside `API` in the contents, the API listed twice."""
    for page in sorted(DOCS.rglob("*.md")):
        if page.parent.name == "api":
            continue  # the API reference pages have no heading of their own above the modules
        text = page.read_text()
        if "\n## API\n" not in text:
            continue
        after = text.split("\n## API\n", 1)[1]
        for match in re.finditer(r"^::: (\S+)\n(?P<options>(?:    .*\n)*)", after, re.M):
            assert "heading_level: 3" in match.group("options"), f"{page.relative_to(ROOT)}: {match.group(1)}"


def test_long_commands_wrap_on_the_site():
    import yaml

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)  # no !!python tags resolved
    sheets = config.get("extra_css", [])
    assert sheets and all((DOCS / s).is_file() for s in sheets)
    css = " ".join((DOCS / s).read_text() for s in sheets)
    assert re.search(r"pre > code\s*\{[^}]*white-space:\s*pre-wrap", css)
