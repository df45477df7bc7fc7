"""Property-based tests: every generated input either works or fails with one nasframe error line.

Generated inputs: config YAML (structured and fragment soup, and raw bytes), `--set` items,
architecture texts of every built-in space (mutations of valid genotype, cell, list and JSON forms,
and free text), damage to a finished run folder (cut, flipped, replaced or removed files, garbage
lines, records repeated or out of order, files of another run), checkpoints of the wrong structure,
the contents of an output folder (nasframe's file names and others, any bytes, markers of any kind
and identity), faults inside plugins (an exception, `sys.exit`, an interrupt or a wrong answer from
any method of a strategy, space or evaluator) and streams where a file is expected (pipes, FIFOs
nobody writes to, devices, folders). The property: the call returns, or raises a `NasframeError`;
through the CLI, exit 0, or exit 2 whose last stderr line is one `nasframe: error: ...` line (130
after an interrupt), and never a traceback; a folder that is not the command's own is left exactly
as it was; a run stopped by a plugin fault, resumed without it, ends as if it never had it; nothing
blocks.

Profiles: `ci` (the default: a few dozen seeded examples per property, well under a minute) and
`sweep` (NASFRAME_HYPOTHESIS_PROFILE=sweep, thousands; benchmarks/fault_injection.py runs it). With
NASFRAME_PROPERTY_LOG=FILE every example appends "<property> <outcome>" to FILE, which the sweep
counts for docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CORE_TOY

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nasframe.app.cli import main  # noqa: E402
from nasframe.common.errors import NasframeError  # noqa: E402
from nasframe.search.config import SECTIONS, load_yaml, merge_config, parse_set, resolve  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "sweep",
    max_examples=int(os.environ.get("NASFRAME_HYPOTHESIS_EXAMPLES", "1000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("NASFRAME_HYPOTHESIS_PROFILE", "ci"))

TOY = ["--plugin", CORE_TOY, "--strategy", "random", "--space", "core_toy", "--evaluator", "core_toy_eval"]
QUIET = ["--quiet", "--set", "run.tensorboard=false"]


# ---- how an outcome is judged and counted ------------------------------------------------------------------------
def _log(prop: str, outcome: str) -> None:
    path = os.environ.get("NASFRAME_PROPERTY_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{prop} {outcome}\n")


def call(prop: str, fn, *args):
    """`fn(*args)`: its value, or None after a NasframeError (counted); anything else propagates."""
    try:
        value = fn(*args)
    except NasframeError as exc:
        assert "\n" not in str(exc), f"a multi-line error: {exc!r}"
        _log(prop, "error")
        return None
    _log(prop, "worked")
    return value


def cli(prop: str, *argv: object) -> tuple[int, str]:
    """`nasframe ARGV` in this process: exit 0, or exit 2 with one error line last; returns (code, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    text = err.getvalue()
    assert "Traceback" not in text, text
    assert code in (0, 2), (code, text)
    if code == 2:
        last = text.rstrip("\n").splitlines()[-1]
        assert last.startswith("nasframe: error: ") and len(last) < 2000, text
    _log(prop, "worked" if code == 0 else "exit2")
    return code, text


@pytest.fixture(scope="module")
def scratch():
    """A folder for the examples of one module (hypothesis examples cannot use tmp_path)."""
    folder = Path(tempfile.mkdtemp(prefix="nasframe-properties-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _fresh(scratch: Path, name: str) -> Path:
    path = scratch / name
    shutil.rmtree(path, ignore_errors=True)
    return path


# ---- generated values --------------------------------------------------------------------------------------------
def _option_keys() -> dict[str, list[str]]:
    import dataclasses

    from nasframe.common.plugins import load_plugin
    from nasframe.core.registry import evaluators, spaces, strategies
    from nasframe.data import DataOptions
    from nasframe.search.config import RunOptions
    from nasframe.search.constraints import ConstraintOptions

    load_plugin(CORE_TOY)
    names = {
        "strategy": [f.name for f in dataclasses.fields(strategies.get("random").Options)],
        "space": [f.name for f in dataclasses.fields(spaces.get("core_toy").Options)],
        "evaluator": [f.name for f in dataclasses.fields(evaluators.get("core_toy_eval").Options)],
        "run": [f.name for f in dataclasses.fields(RunOptions)],
        "data": [f.name for f in dataclasses.fields(DataOptions) if f.name not in ("download", "root")],
        "constraints": [f.name for f in dataclasses.fields(ConstraintOptions)],
    }
    return names


KEYS = _option_keys()
# numbers stay small: a legitimately huge size (a million-way toy space) is slow, not wrong
small_ints = st.integers(min_value=-3, max_value=40)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.5, 1e-3, -0.0, 1e308])
scalars = st.none() | st.booleans() | small_ints | floats | st.text(max_size=12) | st.sampled_from(["auto", "1e-3"])
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
section_names = st.sampled_from([*SECTIONS, "strategy", "run", "rnu", "plugins_", ""])


@st.composite
def structured_config(draw) -> dict:
    """A config mapping: real sections and option names mostly, any values."""
    cfg = {}
    for section in draw(st.lists(section_names | small_ints, max_size=5)):
        known = KEYS.get(section, ["name"])
        keys = draw(st.lists(st.sampled_from(known) | st.text(max_size=8) | small_ints | st.none(), max_size=4))
        body = {k: draw(values) for k in keys}
        cfg[section] = draw(st.sampled_from([body, body, None, "random", 3, [1]]))
    return cfg


# fragments of YAML, including the ones that once broke it: huge integers, NaN, deep nesting, aliases, tags
FRAGMENTS = [
    "strategy:", "space:", "evaluator:", "data:", "run:", "constraints:", "\n", "  ", "- ", ": ", ", ",
    "name: random", "seed: ", "max_evaluations: ", "threads: ", "lr: ", "noise: ", "fail_on: ", "max_macs: ",
    "9" * 5000, "1: ", "? [a]\n: ",
    ".nan", ".inf", "-.inf", "1e999", "330M", "0x1F", "0o17", "1_000", "true", "null", "~",
    "[", "]", "{", "}", "&a ", "*a", "&b [*a, *a, *a, *a, *a, *a, *a, *a, *a]", "!!python/object:os.system", "!!binary",
    "!!int", "'", '"', "\\", "#", "%YAML 1.1\n", "---\n", "...\n", "\t", "\x00", "\ufeff", "\u2028", "é", "²",
    "[" * 200, "{a: " * 60,
]  # fmt: skip
fragment_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=24).map("".join)


# ---- configs -----------------------------------------------------------------------------------------------------
def _resolve_file(path: Path) -> None:
    resolve(merge_config(load_yaml(path)))


@given(doc=structured_config())
def test_a_structured_config_resolves_or_is_one_error(scratch, doc):
    path = scratch / "structured.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    call("config-structured", _resolve_file, path)


@given(text=fragment_text)
def test_config_text_resolves_or_is_one_error(scratch, text):
    path = scratch / "fragments.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    call("config-text", _resolve_file, path)


@given(data=st.binary(max_size=200))
def test_config_bytes_resolve_or_are_one_error(scratch, data):
    path = scratch / "bytes.yaml"
    path.write_bytes(data)
    call("config-bytes", _resolve_file, path)


@settings(max_examples=max(5, settings.default.max_examples // 4))
@given(doc=structured_config() | fragment_text)
def test_the_cli_runs_or_exits_2_on_any_config(scratch, doc):
    path = scratch / "cli.yaml"
    path.write_text(
        doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False), encoding="utf-8", errors="surrogatepass"
    )
    out = _fresh(scratch, "cli-run")
    cli("cli-config", "run", "--config", path, *TOY, "--budget", 1, "--out", out, *QUIET)


# ---- --set ---------------------------------------------------------------------------------------------------------
set_items = st.builds(
    lambda section, key, sep, value: f"{section}{sep}{key}={value}",
    section_names,
    st.sampled_from(sorted({k for keys in KEYS.values() for k in keys})) | st.text(max_size=8),
    st.sampled_from([".", ".", "", ".."]),
    fragment_text | st.sampled_from(["nan", ".nan", "inf", "-inf", "1e400", "330G", "[1, .nan]", "{a: .inf}"]),
) | st.text(max_size=30)


@given(item=set_items)
def test_a_set_item_parses_or_is_one_error(item):
    call("set-parse", parse_set, item)


@settings(max_examples=max(5, settings.default.max_examples // 2))
@given(items=st.lists(set_items, min_size=1, max_size=3))
def test_the_cli_runs_or_exits_2_on_any_set(scratch, items):
    out = _fresh(scratch, "cli-set")
    sets = [a for item in items for a in ("--set", item)]
    cli("cli-set", "run", *TOY, "--budget", 1, "--out", out, *QUIET, *sets)


# ---- architecture texts -----------------------------------------------------------------------------------------
def _space(name: str):
    from nasframe.common.options import build_options
    from nasframe.common.plugins import load_plugin
    from nasframe.core.registry import spaces

    load_plugin(CORE_TOY)
    cls = spaces.get(name)
    return cls(build_options(cls.Options, {}, "space"))


SPACES = {name: _space(name) for name in ("darts", "nb201", "mobilenet", "shufflenet", "core_toy")}


def _valid_texts() -> list[str]:
    """Valid texts of every form each space reads: names, Genotype/cell/list text, JSON."""
    texts = []
    for space in SPACES.values():
        for name, arch in sorted(space.named_architectures().items())[:3]:
            texts += [name, json.dumps(arch.to_dict())]
            export = space.export(arch)
            texts += [v for k, v in export.items() if isinstance(v, str) and k in ("genotype", "cell", "arch_string")]
    texts += ["|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "1234"]
    texts += ["2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3", "[[2, 1], [0, 1]]"]
    return texts


VALID = _valid_texts()


@st.composite
def mutated_text(draw) -> str:
    """A valid architecture text with a few random cuts, insertions and swaps."""
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        insert = draw(st.sampled_from(["", "", "(", ")", "[", "]", "'", ",", "|", "~", "9" * 30, "²", "\x00", "{"]))
        text = text[:i] + insert + text[j:]
    return text


arch_texts = mutated_text() | fragment_text | st.text(max_size=40)


@given(space=st.sampled_from(sorted(SPACES)), text=arch_texts)
def test_an_architecture_text_parses_or_is_one_error(space, text):
    call("arch-text", SPACES[space].parse_arch, text)


@settings(max_examples=max(5, settings.default.max_examples // 4))
@given(space=st.sampled_from(["nb201", "core_toy"]), text=arch_texts, as_file=st.booleans())
def test_inspect_reads_any_architecture_or_exits_2(scratch, space, text, as_file):
    arch: list[object] = ["--arch", text]
    if as_file:
        path = scratch / "arch.json"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        arch = ["--arch-file", path]
    cli("cli-inspect", "inspect", "--plugin", CORE_TOY, "--space", space, "--data", "digits", "--no-macs", *arch)


# ---- damaged run folders ----------------------------------------------------------------------------------------
RUN_FILES = [
    "config.yaml",
    "run.json",
    "history.jsonl",
    "work.jsonl",
    "checkpoint.pt",
    "checkpoint.prev.pt",
    "best.json",
]


@pytest.fixture(scope="module")
def finished_run(scratch) -> Path:
    """A finished 4-evaluation toy run with a checkpoint after every evaluation."""
    run = scratch / "finished"
    code, err = cli("setup", "run", *TOY, "--budget", 4, "--out", run, *QUIET, "--set", "run.checkpoint_every=1")
    assert code == 0, err
    other = scratch / "other-run"  # what the "foreign" damage copies from
    code, err = cli("setup", "run", *TOY, "--budget", 4, "--out", other, *QUIET, "--set", "run.checkpoint_every=1",
                    "--seed", 7)  # fmt: skip
    assert code == 0, err
    return run


def _damage(folder: Path, name: str, how: str, where: float, payload: bytes) -> None:
    path = folder / name
    if not path.exists():
        return
    data = path.read_bytes()
    cut = int(where * len(data))
    if how == "remove":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[:cut])
    elif how == "flip":
        if data:
            k = min(cut, len(data) - 1)
            path.write_bytes(data[:k] + bytes([data[k] ^ (payload[0] if payload else 0xFF) or 1]) + data[k + 1 :])
    elif how == "insert":
        path.write_bytes(data[:cut] + payload + data[cut:])
    elif how == "append":
        path.write_bytes(data + payload)
    elif how == "replace_line":
        lines = data.split(b"\n")
        lines[min(int(where * len(lines)), len(lines) - 1)] = payload
        path.write_bytes(b"\n".join(lines))
    elif how == "json":
        path.write_text(json.dumps(_json_value(payload)))
    elif how in ("duplicate_line", "swap_lines"):  # a record repeated, or two records out of order
        lines = data.splitlines(keepends=True)
        if len(lines) >= 2:
            k = min(int(where * (len(lines) - 1)), len(lines) - 2)
            if how == "duplicate_line":
                lines.insert(k, lines[k])
            else:
                lines[k], lines[k + 1] = lines[k + 1], lines[k]
            path.write_bytes(b"".join(lines))
    elif how == "foreign":  # the same file of another run (same components, another seed)
        other = folder.parent / "other-run" / name
        if other.exists():
            path.write_bytes(other.read_bytes())


ORDER_DAMAGE = ("duplicate_line", "swap_lines", "foreign")


def _json_value(payload: bytes) -> object:
    """A JSON value of a shape a reader might not expect, chosen by the payload."""
    shapes = [None, 3, "x", [], {}, {"format": 2}, {"format": 2, "sessions": "x"}, {"final": []}, [1, {"a": None}]]
    return shapes[payload[0] % len(shapes)] if payload else None


damages = st.lists(
    st.tuples(
        st.sampled_from(RUN_FILES),
        st.sampled_from(
            [
                "remove",
                "truncate",
                "flip",
                "insert",
                "append",
                "replace_line",
                "json",
                "duplicate_line",
                "swap_lines",
                "foreign",
            ]
        ),  # fmt: skip
        st.floats(0, 1),
        st.binary(max_size=40)
        | st.sampled_from([b"garbage\n", b'{"index": 3, "arch": {"d0"', b"\xff\xfe", b"9" * 5000]),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=max(10, settings.default.max_examples))
@given(damage=damages, unfinished=st.booleans())
def test_show_and_resume_of_a_damaged_run_work_or_exit_2(scratch, finished_run, damage, unfinished):
    run = _fresh(scratch, "damaged")
    shutil.copytree(finished_run, run)
    if unfinished:
        (run / "best.json").unlink()
    for name, how, where, payload in damage:
        _damage(run, name, how, where, payload)
    # counted apart: records repeated or out of order, or a file of another run (the run identity's checks)
    prop = "run-folder" if not any(how in ORDER_DAMAGE for _, how, _, _ in damage) else "run-folder-order-identity"
    cli(prop, "show", run)
    cli(prop, "show", run, "--json")
    cli(prop, "resume", run, "--quiet")


plain = st.recursive(
    st.none() | st.booleans() | small_ints | floats | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def checkpoint_states(draw) -> object:
    """A checkpoint's plain data with one part (or the whole) replaced by generated values."""
    real = torch.load(_read_sample(), weights_only=True)
    target = draw(st.sampled_from(["all", "loop", "strategy", "evaluator", "loop-field", "names", "version"]))
    if target == "all":
        return draw(plain)
    if target == "loop-field":
        key = draw(st.sampled_from(sorted(real["loop"])))
        real["loop"][key] = draw(plain)
    elif target == "version":
        real["version"] = draw(plain)
    else:
        real[target] = draw(plain)
    return real


CHECKPOINT_SAMPLE = io.BytesIO()


@settings(max_examples=max(10, settings.default.max_examples))
@given(state=checkpoint_states(), keep_previous=st.booleans())
def test_resume_from_a_checkpoint_of_the_wrong_structure_works_or_exits_2(scratch, finished_run, state, keep_previous):
    run = _fresh(scratch, "wrong-structure")
    shutil.copytree(finished_run, run)
    (run / "best.json").unlink()
    if not keep_previous:
        (run / "checkpoint.prev.pt").unlink(missing_ok=True)
    torch.save(state, run / "checkpoint.pt")
    cli("checkpoint", "resume", run, "--quiet")


@pytest.fixture(scope="module", autouse=True)
def _checkpoint_sample(finished_run):
    """The finished run's checkpoint, for `checkpoint_states` to damage."""
    CHECKPOINT_SAMPLE.seek(0)
    CHECKPOINT_SAMPLE.truncate()
    CHECKPOINT_SAMPLE.write((finished_run / "checkpoint.pt").read_bytes())
    CHECKPOINT_SAMPLE.seek(0)


def _read_sample():
    CHECKPOINT_SAMPLE.seek(0)
    return CHECKPOINT_SAMPLE


# ---- folder contents: a command writes only into an empty folder or its own ---------------------------------------
FAULT_TOY = str(Path(CORE_TOY).with_name("fault_toy.py"))
FOLDER_NAMES = ["checkpoint.pt", "run.json", "config.yaml", "history.jsonl", "best.json", "train.json", "model.json",
                "nasframe.json", "summary.csv", "tensorboard", ".lock", "notes.txt", "seed-0", "random"]  # fmt: skip


@st.composite
def folder_entries(draw) -> list[tuple[str, str, bytes]]:
    """Up to four entries (name, kind, bytes): files of nasframe's names or others, with any bytes, a
    marker of any kind and identity, or a folder."""
    entries = []
    for name in draw(st.lists(st.sampled_from(FOLDER_NAMES) | st.text("abc.-_", min_size=1, max_size=6),
                              max_size=4, unique=True)):  # fmt: skip
        kind = draw(st.sampled_from(["file", "file", "folder", "marker"]))
        if kind == "marker":
            marker = {
                "kind": draw(st.sampled_from(["search run", "training", "comparison", "other"])),
                "format": draw(st.sampled_from([1, 2, "2"])),
                "identity": draw(st.text("0123456789abcdef", max_size=16)),
            }
            name, payload = "nasframe.json", json.dumps(marker).encode()
        else:
            payload = draw(
                st.binary(max_size=40) | st.sampled_from([b"", b"pid 1", b"{}", b'{"format": 2, "sessions": []}'])
            )
        entries.append((name, kind, payload))
    return entries


def _make_folder(folder: Path, entries: list[tuple[str, str, bytes]]) -> None:
    folder.mkdir(parents=True)
    for name, kind, payload in entries:
        path = folder / name
        if path.exists():
            continue
        if kind == "folder":
            path.mkdir()
            (path / "inside").write_bytes(payload)
        else:
            path.write_bytes(payload)


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


@settings(max_examples=max(5, settings.default.max_examples // 2))
@given(entries=folder_entries(), command=st.sampled_from(["run", "resume", "train", "show"]))
def test_a_command_leaves_a_folder_that_is_not_its_own_as_it_was(scratch, entries, command):
    if command == "resume" and any(name == "config.yaml" for name, _, _ in entries):
        command = "show"  # a config.yaml of any bytes could name a long search (an empty one: DARTS)
    folder = _fresh(scratch, "folder")
    _make_folder(folder, entries)
    before = _snapshot(folder)
    if command == "run":
        code, _ = cli("folder", "run", *TOY, "--budget", 1, "--out", folder, *QUIET)
    elif command == "train":
        code, _ = cli("folder", "train", "--plugin", CORE_TOY, "--space", "core_toy", "--arch", "all_first",
                      "--set", "recipe.epochs=1", "--set", "data.limit=32", "--quiet", "--no-tensorboard",
                      "--out", folder)  # fmt: skip
    else:
        code, _ = cli("folder", command, folder, *(["--quiet"] if command == "resume" else []))
    if code != 0 or command in ("show", "resume"):
        assert _snapshot(folder) == before  # refused (or only read): nothing written, renamed or deleted
    elif before:  # it ran in a folder that was not empty: only its own marker, or a lock, was there
        assert set(before) <= {"nasframe.json", ".lock"}, before


# ---- plugin faults: one line naming the component and method, and a checkpoint that resumes --------------------
FAULT_RUN = ["--plugin", FAULT_TOY, "--strategy", "fault_random", "--space", "fault_space", "--evaluator", "fault_eval",
             "--budget", 4, "--set", "run.checkpoint_every=1", *QUIET]  # fmt: skip
FAULT_METHODS = {
    "strategy": ["__init__", "ask", "tell", "state_dict", "final"],
    "evaluator": ["__init__", "evaluate", "state_dict", "final_metrics", "close"],
    "space": ["validate", "build", "export"],
}


def _fault_plugin():
    """The fault plugin as the runs load it (loaded once: it registers its components once)."""
    import sys

    from nasframe.common.plugins import load_plugin

    os.environ.pop("NASFRAME_FAULT", None)
    load_plugin(FAULT_TOY)
    return sys.modules["nasframe_plugin_fault_toy"]


FAULT_PLUGIN = _fault_plugin()
WRONG = FAULT_PLUGIN.WRONG
RAISED = {"raise": "exception", "exit0": "sys.exit", "exit": "sys.exit", "interrupt": "interrupt"}
NOT_FINITE = ("nan", "inf", "nan-cost", "negative-cost")


@st.composite
def plugin_fault(draw) -> str:
    """`component.method:kind:n`: the n-th call raises, exits, is interrupted, gives back a non-finite or
    negative value or another wrong answer (each class as likely; n is often 1: some methods run once)."""
    where = [(c, m) for c in sorted(FAULT_METHODS) for m in FAULT_METHODS[c]]
    kinds = {
        **{name: [(c, m, k) for c, m in where for k in RAISED if RAISED[k] == name] for name in set(RAISED.values())},
        "non-finite": [(c, m, k) for c, m in where for k in WRONG.get(m, {}) if k in NOT_FINITE],
        "wrong": [(c, m, k) for c, m in where for k in WRONG.get(m, {}) if k not in NOT_FINITE],
    }
    component, method, kind = draw(st.sampled_from(kinds[draw(st.sampled_from(sorted(kinds)))]))
    return f"{component}.{method}:{kind}:{draw(st.just(1) | st.integers(1, 6))}"


def _fault_class(fault: str) -> str:
    """How the sweep counts a fault: exception, sys.exit, interrupt, a non-finite or negative value, or
    another wrong answer."""
    kind = fault.split(":")[1]
    return RAISED.get(kind) or ("non-finite-or-negative" if kind in NOT_FINITE else "wrong-answer")


@pytest.fixture(scope="module")
def fault_reference(scratch):
    os.environ.pop("NASFRAME_FAULT", None)
    code, err = cli("setup", "run", *FAULT_RUN, "--out", scratch / "fault-reference")
    assert code == 0, err
    return _outcome(scratch / "fault-reference")


def _outcome(run: Path) -> tuple:
    history = [{k: v for k, v in json.loads(x).items() if k not in ("time", "cost")}
               for x in (run / "history.jsonl").read_text().splitlines()]  # fmt: skip
    best = json.loads((run / "best.json").read_text())
    return history, best["final"], best["best_evaluated"]


@settings(max_examples=max(5, settings.default.max_examples // 2))
@given(fault=plugin_fault())
def test_a_plugin_fault_is_one_line_and_the_run_then_resumes_to_the_same_end(scratch, fault_reference, fault):
    run = _fresh(scratch, "fault")
    FAULT_PLUGIN.INJECTED.clear()
    os.environ["NASFRAME_FAULT"] = fault
    try:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["run", *map(str, FAULT_RUN), "--out", str(run)])
    finally:
        del os.environ["NASFRAME_FAULT"]
    text = err.getvalue()
    assert "Traceback" not in text, text
    assert code in (0, 2, 130), (code, text)
    if code == 2:
        last = text.rstrip("\n").splitlines()[-1]
        component, method = fault.split(":")[0].split(".")
        assert last.startswith("nasframe: error: ") and "\n" not in last.strip(), text
        if "called sys.exit" in last or "raised ValueError" in last:
            assert f"{component} 'fault_" in last and f"{method}()" in last, (fault, last)
    came = fault in FAULT_PLUGIN.INJECTED  # else the n-th call never came: an ordinary run
    _log("plugin-fault-method", fault.split(":")[0] + ("" if came else " (not reached)"))
    outcome = {0: "worked", 2: "exit2", 130: "interrupted"}[code] if came else "not-reached"
    _log(f"plugin-fault {_fault_class(fault)}", outcome)
    if code != 0 and (run / "config.yaml").exists():  # without the fault it ends as if it never had one
        resumed = cli("plugin-fault-resume", "resume", run, "--quiet")[0]
        assert resumed == 0 and _outcome(run) == fault_reference, fault
    elif code != 0:  # failed before it held a run: the same command starts it
        assert cli("plugin-fault-rerun", "run", *FAULT_RUN, "--out", run)[0] == 0
        assert _outcome(run) == fault_reference, fault


# ---- stream inputs: pipes, FIFOs and devices where a file is expected ---------------------------------------------
class _Alarm:
    """Fail an example that blocks (a FIFO read with no writer would have hung forever)."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self) -> None:
        import signal

        def expire(signum, frame):
            raise AssertionError(f"blocked for {self.seconds} s")

        self.previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc) -> None:
        import signal

        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def _stream(folder: Path, kind: str, payload: bytes) -> tuple[Path, object]:
    """A path of `kind` holding `payload` where it can: a pipe being written, a FIFO nobody writes to, a
    device, a folder, a link to a device. Returns the path and what to clean up."""
    import threading

    path = folder / "input"
    if kind == "pipe":
        os.mkfifo(path)

        def feed() -> None:
            try:
                with open(path, "wb") as fh:
                    fh.write(payload)
            except OSError:
                pass

        thread = threading.Thread(target=feed, daemon=True)
        thread.start()
        import time

        time.sleep(0.05)
        return path, thread
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind in ("/dev/null", "/dev/zero", "/dev/urandom"):
        os.symlink(kind, path)
    else:
        path.write_bytes(payload)
    return path, None


def _release(feeder: object, folder: Path) -> None:
    """Let a pipe's writer finish when the command never opened the pipe (it refused it first): open every
    FIFO left in `folder` for reading, without blocking, so the writer's open returns."""
    import stat
    import threading

    if not isinstance(feeder, threading.Thread):
        return
    readers = []
    if feeder.is_alive():
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                if stat.S_ISFIFO(path.lstat().st_mode):
                    readers.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    feeder.join(timeout=5)
    for fd in readers:
        os.close(fd)


stream_kinds = st.sampled_from(["pipe", "pipe", "fifo", "/dev/null", "/dev/zero", "/dev/urandom", "folder", "file"])
stream_payloads = st.binary(max_size=200) | st.sampled_from([b"", b"run:\n  max_evaluations: 1\n", b"{}", b"nb201"])


@settings(max_examples=max(5, settings.default.max_examples // 2))
@given(kind=stream_kinds, payload=stream_payloads, use=st.sampled_from(["--config", "--arch-file"]))
def test_a_stream_or_device_given_as_a_file_is_read_with_the_limit_or_refused(scratch, kind, payload, use):
    folder = _fresh(scratch, "stream")
    folder.mkdir()
    path, feeder = _stream(folder, kind, payload)
    with _Alarm(60):
        if use == "--config":
            cli("stream", "run", "--config", path, *TOY, "--budget", 1, "--out", folder / "r", *QUIET)
        else:
            cli("stream", "inspect", "--plugin", CORE_TOY, "--space", "core_toy", "--data", "digits", "--no-macs",
                "--arch-file", path)  # fmt: skip
    _release(feeder, folder)


@settings(max_examples=max(5, settings.default.max_examples // 2))
@given(name=st.sampled_from(RUN_FILES + ["nasframe.json", ".lock"]), kind=stream_kinds, payload=stream_payloads)
def test_a_run_folder_file_replaced_by_a_stream_or_device_is_one_line(scratch, finished_run, name, kind, payload):
    run = _fresh(scratch, "stream-run")
    shutil.copytree(finished_run, run)
    (run / "best.json").unlink()
    target = run / name
    if target.exists():
        target.unlink()
    source, feeder = _stream(run, kind, payload)
    os.replace(source, target)
    with _Alarm(60):
        cli("stream-folder", "show", run)
        cli("stream-folder", "resume", run, "--quiet")
    _release(feeder, run)
