"""Registry: lazy built-ins, unknown names with a suggestion, duplicates, user plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nasframe.common.errors import PluginLoadError, RegistryError
from nasframe.common.plugins import Registry, load_plugin
from nasframe.core.registry import strategies


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(RegistryError) as err:
        strategies.get("rnadom")
    msg = str(err.value)
    assert "unknown strategy 'rnadom'; did you mean 'random'?" in msg
    assert "random" in msg.split("known:")[1]
    assert "\n" not in msg


def test_names_come_from_entry_points_without_importing():
    code = (
        "import sys; from nasframe.core.registry import strategies, spaces, evaluators; "
        "n = strategies.names(); s = spaces.names(); e = evaluators.names(); "
        "print(sorted(m for m in sys.modules if m.startswith(('nasframe.strategies.', 'nasframe.spaces.', "
        "'nasframe.evaluators.')))); print(n)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    imported, names = out.splitlines()
    assert imported == "[]"  # nothing is built or imported just because it is registered
    assert "'random'" in names and "'mdenas'" in names


def test_duplicate_registration_is_an_error():
    reg = Registry("thing")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(RegistryError, match="thing 'a' is already registered by"):

        @reg.register("a")
        class B:
            pass


def test_plugin_file_errors_are_one_line(tmp_path):
    with pytest.raises(PluginLoadError, match="does not exist"):
        load_plugin(str(tmp_path / "missing.py"))
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginLoadError, match="failed to import: RuntimeError: boom"):
        load_plugin(str(bad))
    with pytest.raises(PluginLoadError, match="plugin module 'no_such_module_xyz' not found"):
        load_plugin("no_such_module_xyz")


def test_entry_point_plugin_from_installed_package(tmp_path, core_toy):
    """A third-party package that declares an entry point in group nasframe.strategies."""
    site = tmp_path / "site"
    (site / "thirdparty_nas").mkdir(parents=True)
    (site / "thirdparty_nas" / "__init__.py").write_text(
        textwrap.dedent("""
        from nasframe import Strategy, register_strategy

        @register_strategy("first_choice")
        class FirstChoice(Strategy):
            '''Always proposes the first choice of every decision.'''
            def ask(self):
                from nasframe import Arch
                return [Arch([(d.name, d.choices[0]) for d in self.space.decisions])]
            def tell(self, arch, result):
                super().tell(arch, result)
    """)
    )
    dist = site / "thirdparty_nas-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-nas\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[nasframe.strategies]\nfirst_choice = thirdparty_nas\n")
    out = tmp_path / "run"
    env_code = "import sys; from nasframe.app.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            env_code,
            "run",
            "--plugin",
            core_toy,
            "--strategy",
            "first_choice",
            "--space",
            "core_toy",
            "--evaluator",
            "core_toy_eval",
            "--budget",
            "2",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(site)},
    )
    assert proc.returncode == 0, proc.stderr
    import json

    best = json.loads((out / "best.json").read_text())
    assert best["strategy"] == "first_choice"
    assert best["final"]["arch"] == {"d0": "c0", "d1": "c0", "d2": "c0", "d3": "c0"}
