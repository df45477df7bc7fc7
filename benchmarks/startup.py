"""How long the light commands take as whole processes: `--help`, argument errors, `list`, `show`.

Each command runs as a fresh process (`python -m nasframe ...`), first on the machine as it is
("idle") and then beside `--load` CPU-bound processes of this script's own ("loaded"); it prints
the median wall and CPU seconds per command. With `--baseline PYTHON` (the interpreter of another
checkout's venv, e.g. one at the commit before a change) every command runs alternately under
both interpreters, so both sides see the same load, and the ratios baseline/this are printed.
Two reference lines give the floor and what torch alone costs: `python -c pass` and
`python -c "import torch"`.

    .venv/bin/python benchmarks/startup.py                                   # this checkout, idle and loaded
    .venv/bin/python benchmarks/startup.py --baseline ../before/.venv/bin/python --repeats 7

A baseline checkout: `git worktree add ../before <commit> && python3 -m venv ../before/.venv &&
../before/.venv/bin/pip install --no-deps -e ../before` (its dependencies from this venv's
site-packages, e.g. through a .pth file naming them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_load import Load, load_average, machine  # a module beside this script

clock = time.perf_counter


def timed(argv: list[str], expect: int, cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one fresh process; its exit code must be `expect`.

    It runs in `cwd`, a folder without a `nasframe` package: `python -m` and `-c` put the working
    folder first on the import path, which would make every interpreter import this checkout.
    """
    t0 = clock()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = clock() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != expect:
        raise SystemExit(f"{' '.join(argv)}: exit code {code}, expected {expect}: {err.strip()[-400:]}")
    return wall, usage.ru_utime + usage.ru_stime


def cases(run_dir: Path) -> list[tuple[str, list[str], int]]:
    """(label, arguments after the interpreter, expected exit code)."""
    cli = ["-m", "nasframe"]
    return [
        ("python -c pass (floor)", ["-c", "pass"], 0),
        ("python -c 'import torch'", ["-c", "import torch"], 0),
        ("nasframe --help", [*cli, "--help"], 0),
        ("argument error (run --no-such-flag)", [*cli, "run", "--no-such-flag"], 2),
        ("config error (run --strategy mdenaz)", [*cli, "run", "--strategy", "mdenaz"], 2),
        ("nasframe list", [*cli, "list"], 0),
        ("nasframe show RUN", [*cli, "show", str(run_dir)], 0),
    ]


def measure(
    pythons: dict[str, str], run_dirs: dict[str, Path], repeats: int
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Every case `repeats` times under every interpreter, interleaved (A, B, A, B, ...); `show` reads
    the run folder each side wrote itself (an older checkout need not read a newer one's files)."""
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    per_side = {side: cases(run_dirs[side]) for side in pythons}
    for i, (label, _, _) in enumerate(per_side["this"]):
        for _ in range(repeats):
            for side, python in pythons.items():
                _, args, expect = per_side[side][i]
                out.setdefault((label, side), []).append(timed([python, *args], expect, run_dirs[side].parent))
    return out


def report(title: str, times: dict, sides: list[str], run_dir: Path) -> None:
    print(f"\n{title} (load average before: {load_average()})")
    head = "".join(f"{s + ' wall':>14}{s + ' CPU':>13}" for s in sides)
    ratio = f"{sides[0] + '/' + sides[1] + ' wall':>22}" if len(sides) == 2 else ""
    print(f"{'command':<40}{head}{ratio}")
    for label, _, _ in cases(run_dir):
        walls = {s: statistics.median(w for w, _ in times[(label, s)]) for s in sides}
        cpus = {s: statistics.median(c for _, c in times[(label, s)]) for s in sides}
        cells = "".join(f"{walls[s]:>12.2f} s{cpus[s]:>11.2f} s" for s in sides)
        extra = f"{walls[sides[0]] / walls[sides[1]]:>21.1f}x" if len(sides) == 2 else ""
        print(f"{label:<40}{cells}{extra}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", metavar="PYTHON", help="another checkout's interpreter, measured side by side")
    p.add_argument("--repeats", type=int, default=5, help="runs of each command per side and phase (median shown)")
    p.add_argument("--load", type=int, default=2, help="busy processes for the loaded phase (default 2; 0: skip)")
    args = p.parse_args()

    pythons = {"this": sys.executable}
    if args.baseline:
        pythons = {"baseline": args.baseline, "this": sys.executable}
    sides = list(pythons)
    print(f"machine: {machine()}; median of {args.repeats} runs per command, sides interleaved")
    with tempfile.TemporaryDirectory() as tmp:
        run_dirs = {side: Path(tmp) / f"nb201-{side}" for side in pythons}
        for side, python in pythons.items():
            made = [python, "-m", "nasframe", "run", "--strategy", "random", "--space", "nb201", "--evaluator"]
            timed([*made, "tabular", "--budget", "4", "--out", str(run_dirs[side]), "--quiet"], 0, Path(tmp))
        report("idle", measure(pythons, run_dirs, args.repeats), sides, run_dirs["this"])
        if args.load:
            with Load(args.load, seconds=1800):
                times = measure(pythons, run_dirs, args.repeats)
            report(f"beside {args.load} busy processes", times, sides, run_dirs["this"])


if __name__ == "__main__":
    main()
