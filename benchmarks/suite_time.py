"""The test suite's time: the README's test command's wall time, and wall and CPU seconds per file and test.

Run as a script, it runs pytest (by default the README's test command's arguments; others after
`--`) with itself loaded as a pytest plugin, samples the machine's load average every 10 s, and
prints the wall time, the CPU seconds of the test processes (their children included: subprocess
tests count, Ray's workers do not), the load during the run, and the files and tests that cost
most CPU. CPU seconds hardly depend on what else the machine does, so they show what to cut even
on a shared machine; wall time is what the user waits. Every test's phase is written as a JSON
line as it finishes (`--log`), so a run that is stopped early still tells where its time went;
`--report A.jsonl [B.jsonl]` summarises logs again, two of them side by side per file.

    .venv/bin/python benchmarks/suite_time.py                        # the README's test command
    .venv/bin/python benchmarks/suite_time.py --log serial.jsonl -- -q -p no:cacheprovider -m "not slow"
    .venv/bin/python benchmarks/suite_time.py --report before.jsonl after.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: the pytest arguments of the README's test command (tests/test_docs_examples.py checks the README)
README_ARGS = ["-q", "-p", "no:cacheprovider", "-n", "auto", "-m", "not slow"]
LOG_ENV = "NASFRAME_SUITE_TIME_LOG"


# ---- the pytest plugin (loaded with -p suite_time; active only when LOG_ENV names a file) ------------
def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed_phase(item: Any) -> Any:
    start = _cpu_seconds()
    yield
    item.user_properties.append(("cpu_seconds", _cpu_seconds() - start))


def _hookwrapper(fn: Any) -> Any:
    import pytest

    return pytest.hookimpl(hookwrapper=True)(fn)


@_hookwrapper
def pytest_runtest_setup(item: Any) -> Any:
    yield from _timed_phase(item)


@_hookwrapper
def pytest_runtest_call(item: Any) -> Any:
    yield from _timed_phase(item)


@_hookwrapper
def pytest_runtest_teardown(item: Any) -> Any:
    yield from _timed_phase(item)


_controller = True  # False in an xdist worker: its reports reach the controller, which writes them


def pytest_configure(config: Any) -> None:
    global _controller
    _controller = not hasattr(config, "workerinput")


def pytest_runtest_logreport(report: Any) -> None:
    """On the controlling process (with xdist: the workers' reports arrive here) append one line per phase."""
    path = os.environ.get(LOG_ENV)
    if not path or not _controller:
        return
    cpu = [v for k, v in report.user_properties if k == "cpu_seconds"]
    line = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome, "wall": report.duration,
            "cpu": cpu[-1] if cpu else None, "worker": getattr(report, "node", None) and report.node.gateway.id,
            "time": time.time()}  # fmt: skip
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


# ---- the script --------------------------------------------------------------------------------------
def _read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def per_file(rows: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"wall": 0.0, "cpu": 0.0, "tests": 0})
    for r in rows:
        f = out[r["nodeid"].split("::")[0]]
        f["wall"] += r["wall"]
        f["cpu"] += r["cpu"] or 0.0
        f["tests"] += r["when"] == "call"
    return out


def summarise(logs: list[Path], top: int) -> None:
    runs = [_read(p) for p in logs]
    files = [per_file(rows) for rows in runs]
    for path, rows in zip(logs, runs):
        calls = [r for r in rows if r["when"] == "call"]
        failed = sum(r["outcome"] == "failed" for r in rows)
        print(f"{path}: {len(calls)} tests ({failed} failed phases), {sum(r['wall'] for r in rows):.0f} s of test "
              f"wall time, {sum(r['cpu'] or 0 for r in rows):.0f} CPU-s")  # fmt: skip
    names = sorted(set().union(*files), key=lambda n: -max(f.get(n, {"cpu": 0})["cpu"] for f in files))
    head = "".join(f"{'wall ' + str(i + 1):>10}{'CPU ' + str(i + 1):>10}" for i in range(len(files)))
    print(f"\n{'file':<44}{'tests':>6}{head}")
    for name in names[:top]:
        cells = "".join(
            f"{f[name]['wall']:>8.1f} s{f[name]['cpu']:>8.1f} s" if name in f else f"{'-':>10}{'-':>10}" for f in files
        )
        print(f"{name:<44}{int(files[-1].get(name, files[0].get(name, {'tests': 0}))['tests']):>6}{cells}")
    print(f"\nslowest tests (CPU-s, setup + call + teardown) in {logs[-1]}:")
    tests: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for r in runs[-1]:
        tests[r["nodeid"]][0] += r["wall"]
        tests[r["nodeid"]][1] += r["cpu"] or 0.0
    for nodeid, (wall, cpu) in sorted(tests.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {cpu:7.1f} CPU-s {wall:7.1f} s  {nodeid}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--log", type=Path, help="where the per-test lines go (default: a file in the working folder)")
    p.add_argument("--report", type=Path, nargs="+", metavar="LOG", help="only summarise these logs")
    p.add_argument("--top", type=int, default=25, help="files and tests listed (default 25)")
    p.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments (default: the README's)")
    args = p.parse_args()
    if args.report:
        summarise(args.report, args.top)
        return
    log = args.log or Path(f"suite-time-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    log.unlink(missing_ok=True)
    pytest_args = args.pytest_args or README_ARGS
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, LOG_ENV: str(log.resolve()), "PYTHONPATH": path}
    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(10.0):
            loads.append(os.getloadavg()[0])

    before = os.getloadavg()
    threading.Thread(target=sample, daemon=True).start()
    argv = [sys.executable, "-m", "pytest", *pytest_args, "-p", "suite_time"]
    print(f"running: {shlex.join(argv)}   (load average before: {'/'.join(f'{x:.2f}' for x in before)})", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    spread = f"{min(loads):.1f}-{max(loads):.1f}, median {statistics.median(loads):.1f}" if loads else "n/a"
    print(f"\npytest exited {code}: {wall:.0f} s wall ({wall / 60:.1f} min), {cpu:.0f} CPU-s in pytest and its "
          f"children (Ray's workers not counted); 1-minute load average during the run {spread}; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    summarise([log], args.top)
    sys.exit(code)


if __name__ == "__main__":
    main()
