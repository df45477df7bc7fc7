"""The plugin example of docs/plugins.md works as written and does what the page says it does.

tests/test_docs_examples.py runs it too; this test also checks its behaviour (mutating the best).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def example() -> tuple[str, list[str]]:
    text = PAGE.read_text()
    after = text.split("<!-- test: file my_strategy.py -->", 1)[1]
    code = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    command = re.search(r"```bash\n(nasframe run --plugin my_strategy\.py[^\n]*)\n```", after).group(1)
    return code, shlex.split(command)


def test_plugin_example_runs_as_written(tmp_path):
    code, argv = example()
    (tmp_path / "my_strategy.py").write_text(code)
    assert argv[0] == "nasframe"
    proc = subprocess.run(
        [sys.executable, "-m", "nasframe.app.cli", *argv[1:], "--out", "run", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert best["strategy"] == "mutate_best" and best["evaluations"] == len(history) == 100
    # after the random starts, every proposal differs from the best so far in at most one decision
    best_so_far = None
    for rec in history:
        if rec["index"] >= 5 and best_so_far is not None:
            assert sum(rec["arch"][k] != best_so_far["arch"][k] for k in rec["arch"]) <= 1
        if rec["status"] == "ok" and (
            best_so_far is None or rec["metrics"]["val_acc"] > best_so_far["metrics"]["val_acc"]
        ):
            best_so_far = rec
