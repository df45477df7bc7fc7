"""Every command and Python example in README.md, CONTRIBUTING.md and docs/ runs as written.

Each fenced block of a page becomes one test, run in order in one temporary folder per page (so a
later block can use what an earlier one wrote), on the CPU:

- `bash` blocks: every command starting with `nasframe` (or `.venv/bin/nasframe`) runs through
  nasframe's own `main` in this process, and every `python benchmarks/...` command runs as a
  subprocess of this interpreter. Set-up commands (venv, pip, apt-get, pytest, mkdocs, ...) are
  not run; any other program fails the test, so nothing untested slips into the docs.
- `console` blocks: `$ ` lines are commands as above; the lines after them are output that must
  appear, in order, in what the command printed (whitespace collapsed; `...` matches anything).
- `python` blocks are executed; `yaml`/`toml` blocks are parsed. Other blocks (`text`, none)
  show output and are not run.

An HTML comment on the line above a block adjusts its test (`;` separates several):

    <!-- test: append --budget 1 -->      append these arguments to each command (shrink long runs)
    <!-- test: file NAME -->             write the block to NAME in the page's folder instead
    <!-- test: exit 2 -->                the commands must exit with this code
    <!-- test: needs PATH -->            skip unless PATH exists (data files a machine may lack)
    <!-- test: skip (reason) -->         never run; only for data that is not available
    <!-- test: slow -->                  mark the test slow (it still runs)
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
# what the pages' commands may refer to by relative path
LINKED = ("configs", "benchmarks")

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*test:(?P<body>.*?)-->\s*$")
NASFRAME = {"nasframe", ".venv/bin/nasframe"}
PYTHON = {"python", "python3", ".venv/bin/python"}
#: programs the pages show but this test does not run, and why
NOT_RUN = {
    "pip": "installs packages",
    ".venv/bin/pip": "installs packages",
    "apt-get": "installs system packages",
    "source": "shell set-up",
    "mkdocs": "builds these docs; .ci/run does",
    ".venv/bin/mkdocs": "builds these docs",
    "tensorboard": "a viewer",
    "git": "version control",
    "ruff": "the linter",
    ".venv/bin/ruff": "the linter",
}


@dataclass
class Command:
    argv: list[str]
    expected: list[str] = field(default_factory=list)  # console output lines


@dataclass
class Block:
    page: str
    line: int
    lang: str
    text: str
    directives: dict[str, str]
    commands: list[Command] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


ERRORS: list[str] = []  # malformed directives or unknown programs, reported by one test


def parse_directives(line: str, where: str) -> dict[str, str]:
    match = DIRECTIVE.match(line)
    if not match:
        return {}
    found: dict[str, str] = {}
    for part in (p.strip() for p in match.group("body").split(";")):
        word, _, rest = part.partition(" ")
        rest = rest.strip()
        if word == "skip" and not re.fullmatch(r"\(.+\)", rest):
            ERRORS.append(f"{where}: 'skip' needs a reason in parentheses")
        elif word in ("append", "file", "exit", "needs") and not rest:
            ERRORS.append(f"{where}: {word!r} needs a value")
        elif word not in ("skip", "append", "file", "exit", "needs", "slow"):
            ERRORS.append(f"{where}: unknown test directive {word!r}")
        found[word] = rest
    return found


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined."""
    out, current = [], ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
        else:
            out.append(current + raw)
            current = ""
    if current:
        out.append(current)
    return out


def split_commands(line: str, where: str) -> list[list[str]]:
    """`a && b # note` -> [[a...], [b...]], keeping only what this test runs."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        ERRORS.append(f"{where}: cannot parse {line!r}: {exc}")
        return []
    parts, current = [], []
    for tok in tokens + ["&&"]:
        if tok == "&&":
            if current:
                parts.append(current)
            current = []
        else:
            current.append(tok)
    runnable = []
    for argv in parts:
        prog = argv[0]
        if prog in NASFRAME or (prog in PYTHON and len(argv) > 1 and argv[1].startswith("benchmarks/")):
            runnable.append(argv)
        elif prog in PYTHON and argv[1:3] in (["-m", "venv"], ["-m", "pytest"]):
            continue  # the set-up and test commands themselves
        elif prog not in NOT_RUN:
            ERRORS.append(
                f"{where}: {prog!r} is neither run by this test nor listed as set-up; "
                f"run it or add it to NOT_RUN with a reason"
            )
    return runnable


def parse_page(path: Path) -> list[Block]:
    page = str(path.relative_to(ROOT))
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang, start = match.group("indent"), match.group("lang"), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        where = f"{page}:{start + 1}"
        block = Block(page, start + 1, lang, "\n".join(body) + "\n", parse_directives(prev, where))
        if lang == "bash" and "file" not in block.directives:
            for line in logical_lines(block.text):
                block.commands += [Command(argv) for argv in split_commands(line, where)]
        elif lang == "console":
            for line in logical_lines(block.text):
                if line.startswith("$ "):
                    block.commands += [Command(argv) for argv in split_commands(line[2:], where)]
                elif line.strip() and block.commands:
                    block.commands[-1].expected.append(line)
        if lang in ("bash", "console", "python", "yaml", "toml") or "file" in block.directives:
            blocks.append(block)
    return blocks


BLOCKS = [b for p in PAGES if p.exists() for b in parse_page(p)]


def params() -> list:
    out = []
    for b in BLOCKS:
        marks = []
        if "skip" in b.directives:
            marks.append(pytest.mark.skip(reason=b.directives["skip"].strip("()")))
        if "slow" in b.directives:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(b, id=b.id, marks=marks))
    return out


@pytest.fixture(scope="module")
def page_dirs(tmp_path_factory):
    dirs: dict[str, Path] = {}

    def get(page: str) -> Path:
        if page not in dirs:
            d = tmp_path_factory.mktemp(re.sub(r"\W+", "-", page))
            for name in LINKED:
                (d / name).symlink_to(ROOT / name)
            dirs[page] = d
        return dirs[page]

    return get


@pytest.fixture
def installed_only():
    """The registries as a fresh `nasframe` process sees them: installed components only.

    Other test files register toy components in this process (e.g. an evaluator with weight
    sharing), which would change what `nasframe list` or an error message prints. Afterwards the
    built-ins loaded meanwhile are kept (their modules are imported once) and whatever a page's
    own plugin registered is dropped.
    """
    from nasframe.core.registry import evaluators, spaces, strategies
    from nasframe.data.registry import datasets

    saved = []
    for registry in (strategies, spaces, evaluators, datasets):
        installed = set(registry._entry_points())
        saved.append((registry, registry._items, installed))
        registry._items = {n: c for n, c in registry._items.items() if n in installed}
    plugins_before = {m for m in sys.modules if m.startswith("nasframe_plugin_")}
    yield
    for registry, items, installed in saved:
        items.update({n: c for n, c in registry._items.items() if n in installed and n not in items})
        registry._items = items
    # a page's plugin file imported here is forgotten with what it registered, so the page's next block that
    # names it with --plugin imports (and registers) it again, as a new `nasframe` process would
    for name in [m for m in sys.modules if m.startswith("nasframe_plugin_") and m not in plugins_before]:
        del sys.modules[name]


def run_nasframe(argv: list[str], cwd: Path, monkeypatch) -> tuple[int, str]:
    """`nasframe ...` through the CLI's own main, on the CPU."""
    from nasframe.app.cli import main

    args = argv[1:]
    if args and args[0] in ("run", "resume"):
        args += ["--device", "cpu"]
    elif args and args[0] == "compare":
        args += ["--set", "run.device=cpu"]
    out = io.StringIO()
    monkeypatch.chdir(cwd)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(args)
    return code, out.getvalue()


def run_script(argv: list[str], cwd: Path) -> tuple[int, str]:
    """`python benchmarks/x.py ...` with this interpreter, CUDA hidden."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def normalise(line: str) -> str:
    return " ".join(line.split())


def check_output(expected: list[str], printed: str, where: str) -> None:
    """Each expected line matches a whole printed line, in order; `...` matches any text."""
    lines = [normalise(x) for x in printed.splitlines()]
    pos = 0
    for want in (normalise(x) for x in expected):
        if want == "...":
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("...")))
        while pos < len(lines) and not pattern.fullmatch(lines[pos]):
            pos += 1
        assert pos < len(lines), f"{where}: expected output line not found (in order): {want!r}\n{printed}"
        pos += 1


def run_python(code: str, cwd: Path, where: str, monkeypatch) -> None:
    """Execute a page's Python block as a module of its own, in the page's folder."""
    module = types.ModuleType("docs_example")
    monkeypatch.setitem(sys.modules, "docs_example", module)
    monkeypatch.chdir(cwd)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, where, "exec"), module.__dict__)


@pytest.mark.parametrize("block", params())
def test_docs_example(block: Block, page_dirs, monkeypatch, installed_only):
    d = block.directives
    if "needs" in d and not Path(d["needs"]).exists():
        pytest.skip(f"needs {d['needs']}")
    cwd = page_dirs(block.page)
    # the page's files up to this block, as a reader who followed it has them: a slow block can need a
    # file block that the slow tier deselects, a fast one a file that a deselected block rewrote
    for earlier in BLOCKS[: BLOCKS.index(block) + 1]:
        if earlier.page == block.page and "file" in earlier.directives:
            (cwd / earlier.directives["file"]).write_text(earlier.text)
    if block.lang == "python":
        if "file" in d:
            compile(block.text, block.id, "exec")  # the commands that load it run it
        else:
            run_python(block.text, cwd, block.id, monkeypatch)
        return
    if block.lang == "yaml":
        yaml.safe_load(block.text)
        return
    if block.lang == "toml":
        tomllib.loads(block.text)
        return
    if "file" in d:
        return
    if not block.commands and block.lang == "bash":
        return  # only set-up commands (checked by test_docs_commands_are_known)
    assert block.commands, f"{block.id}: a console block without a `$ nasframe` or `$ python benchmarks/` line"
    want_code = int(d.get("exit", "0"))
    for cmd in block.commands:
        argv = cmd.argv + shlex.split(d.get("append", ""))
        for flag in ("--out",):
            if flag in argv and Path(argv[argv.index(flag) + 1]).is_absolute():
                pytest.fail(f"{block.id}: {flag} {argv[argv.index(flag) + 1]} is absolute; use a relative path")
        if argv[0] in NASFRAME:
            code, printed = run_nasframe(argv, cwd, monkeypatch)
        else:
            code, printed = run_script(argv, cwd)
        shown = shlex.join(argv)
        assert code == want_code, f"{block.id}: `{shown}` exited {code}, expected {want_code}\n{printed[-3000:]}"
        check_output(cmd.expected, printed, block.id)


def test_docs_commands_are_known():
    """Directives are well formed and every program shown is either run here or listed as set-up."""
    assert not ERRORS, "\n".join(ERRORS)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    readme = [b for b in BLOCKS if b.page == "README.md"]
    main_job, tests = readme[0].text.strip(), readme[1].text.strip()
    assert main_job.startswith("python3 -m venv .venv") and " run --strategy mdenas" in main_job
    # the arguments benchmarks/suite_time.py times by default: every core, the slow tier left to CI
    readme_args = ["-q", "-p", "no:cacheprovider", "-n", "auto", "-m", "not slow"]
    suite_time = (ROOT / "benchmarks" / "suite_time.py").read_text()
    assert f"README_ARGS = {readme_args!r}".replace("'", '"') in suite_time
    assert tests.startswith("python3 -m venv .venv") and tests.endswith("-m pytest " + shlex.join(readme_args))
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, ".ci/run must run exactly the README's test command"
    # ... under `set -e`, so a failure, or no test at all (pytest's exit code 5), fails CI; then the slow tier
    assert ci.index("set -euo pipefail") < ci.index(tests)
    slow = ".venv/bin/python -m pytest " + shlex.join(readme_args[:-1] + ["slow"])
    assert ci.index(tests) < ci.index(slow) < next(i for i, line in enumerate(ci) if "mkdocs build --strict" in line)


def test_the_venv_nasframe_script_is_this_cli():
    """The pages call `nasframe` / `.venv/bin/nasframe`; the examples above run its `main` in-process."""
    script = Path(sys.executable).parent / "nasframe"
    if not script.exists():
        pytest.skip(f"no nasframe script next to {sys.executable}")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    from nasframe.common.version import __version__

    assert proc.returncode == 0 and __version__ in proc.stdout + proc.stderr, proc.stderr
