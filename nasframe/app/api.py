"""The Python API: run or resume a search, read its result, and build the network it found.

    import nasframe

    result = nasframe.run({"strategy": "random", "space": "nb201", "evaluator": "tabular",
                           "run": {"max_evaluations": 50, "out": "runs/demo"}})
    print(result.final.held_out)
    net = nasframe.build_network("runs/demo")   # an nn.Module of the answer, untrained
    trained = nasframe.train("runs/demo", recipe="quick", out="runs/demo-trained")
    model = nasframe.load_model("runs/demo-trained")   # the trained network, in eval mode
    ms = nasframe.measure_latency("mobilenet", "mobilenetv2")["latency_ms"]   # on this machine

These are what the CLI's `run`, `resume`, `show`, `train`, `latency` and `latency-table` do, without the
printing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import nn

    from nasframe.search.records import RunResult
    from nasframe.training.trainer import TrainResult


def run(
    config: Mapping[str, Any] | str | os.PathLike, *, sets: list[str] | None = None, quiet: bool = True
) -> RunResult:
    """Run a search described by a config mapping (the sections of a YAML config; a component section
    may be just its name) or a YAML file, with optional `section.key=value` overrides. Returns the
    run's result (best.json); the run folder is `config["run"]["out"]` or a new one under runs/."""
    from nasframe.search.config import load_yaml, merge_config
    from nasframe.search.runner import Runner

    base = load_yaml(Path(config)) if isinstance(config, (str, os.PathLike)) else dict(config)
    runner = Runner.create(merge_config(base, sets=sets or []), quiet=quiet, command=["nasframe.run"])
    summary = runner.run()
    assert summary.result is not None  # a finished new run always writes its result
    return summary.result


def resume(run_dir: str | os.PathLike, *, budget: int | None = None, quiet: bool = True) -> RunResult:
    """Continue a killed run (or extend a finished one with a larger evaluation `budget`)."""
    from nasframe.search.runner import Runner

    summary = Runner.resume(
        Path(run_dir), overrides={"max_evaluations": budget}, quiet=quiet, command=["nasframe.resume"]
    ).run()
    return summary.result if summary.result is not None else load_result(run_dir)


def load_result(run_dir: str | os.PathLike) -> RunResult:
    """The result (best.json) of a finished run."""
    from nasframe.search.rundir import RunDir

    files = RunDir(run_dir)
    files.require_run()
    return files.read_result()


def build_network(run_dir: str | os.PathLike, arch: Mapping[str, Any] | None = None) -> nn.Module:
    """The stand-alone network of a run's answer (or of `arch`), built by the run's space with its
    options, sized for the run's data set, with fresh (untrained) weights.

    The answer is the space's derived architecture when it gives one (the DARTS genotype), else the
    final architecture: what `nasframe show` reports and `nasframe inspect --arch-file` reads.
    """
    from nasframe.search.answer import network_of_run

    return network_of_run(Path(run_dir), arch)


def train(
    run_dir: str | os.PathLike | None = None,
    *,
    space: str | None = None,
    arch: str | Mapping[str, Any] | None = None,
    recipe: str = "quick",
    data: str | None = None,
    sets: list[str] | None = None,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    resume: str | os.PathLike | None = None,
    tensorboard: bool = True,
    quiet: bool = True,
    threads: int | Literal["auto"] = "auto",
) -> TrainResult:
    """Train a run's answer (`run_dir`), or `arch` of `space`, from scratch with a named recipe and
    `section.key=value` overrides (sections recipe, space, data); or continue a killed training (`resume`).
    The folder `out` gets the final weights (model.safetensors) and model.json beside them. `threads`
    sets torch's CPU threads as `run.threads` does for a search: `auto` is 1 (or OMP_NUM_THREADS), and a
    resumed training continues with the count it recorded."""
    from nasframe.common.errors import ConfigError
    from nasframe.training.plan import plan_training
    from nasframe.training.trainer import Trainer

    options: dict[str, Any] = {"device": device, "quiet": quiet, "tensorboard": tensorboard, "threads": threads}
    if resume is not None:
        if run_dir is not None or space is not None or arch is not None or sets or out is not None:
            raise ConfigError("train(resume=...) takes only the training folder (and device, threads, quiet)")
        return Trainer.resume(Path(resume), **options).run()
    plan = plan_training(
        None if run_dir is None else Path(run_dir), space=space, arch=arch, recipe=recipe, data=data, sets=sets or []
    )
    return Trainer.create(plan, None if out is None else Path(out), **options).run()


def measure_latency(
    space: str,
    arch: str | Mapping[str, Any],
    *,
    space_options: Mapping[str, Any] | None = None,
    data: str | None = None,
    runtime: str = "torch",
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    clock: str = "wall",
    table: str | os.PathLike | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    """The latency of `arch` (a name, text form or mapping) of `space` at `data`'s input size (default: the
    space's reference data set): measured here (`latency_ms`, the median; `measurements` with the IQR, the
    stopping rule, versions, threads and load), or predicted from the latency table file `table`."""
    import json

    from nasframe.common.latency import LatencySettings
    from nasframe.search.latency_tools import measure_latency as measure
    from nasframe.search.latency_tools import space_for, spec_for

    text = arch if isinstance(arch, str) else json.dumps(dict(arch))
    built = space_for(space, space_options, text.strip())
    settings = LatencySettings(runtime=runtime, device=device, threads=threads, batch=batch, clock=clock)
    spec = spec_for(built, data)
    return measure(built, space, built.parse_arch(text), spec, settings, None if table is None else str(table), repeat)


def build_latency_table(
    space: str,
    out: str | os.PathLike,
    *,
    space_options: Mapping[str, Any] | None = None,
    data: str | None = None,
    runtime: str = "torch",
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    clock: str = "wall",
    calibrate: int = 30,
    check: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Build the latency table of `space` on this machine into `out` (what `nasframe latency-table` does);
    returns the table file's content."""
    from nasframe.common.latency import LatencySettings
    from nasframe.search.latency_tools import make_table, space_for, spec_for

    built = space_for(space, space_options)
    settings = LatencySettings(runtime=runtime, device=device, threads=threads, batch=batch, clock=clock)
    table = make_table(
        built, spec_for(built, data), settings, Path(out), calibrate_archs=calibrate, check_archs=check, seed=seed
    )
    return table.to_dict()


def load_model(folder: str | os.PathLike) -> nn.Module:
    """The network of a training folder with its trained weights (or, for a run folder, the run's
    answer untrained), in eval mode."""
    from nasframe.training.export import load_model as load

    return load(Path(folder)).model
