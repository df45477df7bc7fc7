"""Hardware-aware search on the MobileNet space, measured on this machine: docs/latency.md's demonstration.

With a latency table of the MobileNet space (ProxylessNAS layout) at 224x224 (`nasframe latency-table`), a
search on digits runs twice, with latencies predicted for 224x224 ImageNet-size inputs (`latency.data: imagenet`):
once under a latency limit (default: MobileNetV2's measured latency), once with two objectives [val_acc,
latency_ms]. The search is SPOS with the supernet evaluator (`--strategy spos`, the default) or evolution with
short_train, each candidate trained from scratch for `--epochs` (`--strategy evolution`). MobileNetV2,
ProxylessNAS-CPU and ProxylessNAS-GPU (on their own layouts, so not members of this space) are measured whole on
the same machine with the table's settings, and so is every architecture of the front (predicted against
measured). With `--train` the front, the limited run's answer and the three references are trained from scratch
on digits with the same recipe (`quick`), so that accuracy is comparable across them. Writes a JSON of every
number (with the load averages) and the figure.

    .venv/bin/python benchmarks/latency_demo.py --table benchmarks/results/latency_table_mobilenet_torch_cpu.json
    .venv/bin/python benchmarks/latency_demo.py --table T.json --train --figure docs/img/latency_front.png
    .venv/bin/python benchmarks/latency_demo.py --table T.json --strategy evolution --epochs 2 --lr 0.05 --train
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REFERENCES = ("mobilenetv2", "proxyless_cpu", "proxyless_gpu")


def load() -> float:
    return round(os.getloadavg()[0], 2)


def search(args: argparse.Namespace, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """One search on digits with the table (SPOS with the supernet evaluator, or evolution with short_train);
    returns best.json."""
    import nasframe

    if args.strategy == "spos":
        strategy = {
            "name": "spos",
            "supernet_epochs": args.epochs,
            "population": args.population,
            "parents": max(2, args.population // 4),
            "mutations": args.population // 3,
            "crossovers": args.population // 3,
            "generations": args.generations,
            "bn_batches": 4,
            "bn_batch_size": 64,
        }
        evaluator = {"name": "supernet", "batch_size": 64, "lr": args.lr}
        budget = None
    else:
        strategy = {"name": "evolution", "population": args.population, "sample_size": 3}
        evaluator = {"name": "short_train", "epochs": args.epochs, "batch_size": 64, "lr": args.lr}
        budget = args.population * args.generations
    config = {
        "strategy": {**strategy, **extra.get("strategy", {})},
        "space": {"name": "mobilenet"},
        "evaluator": evaluator,
        "data": {"name": "digits"},
        "run": {"out": str(out), "seed": args.seed, "max_evaluations": budget, "tensorboard": False, "progress": False},
        "latency": {"table": args.table, "data": "imagenet"},
        "constraints": extra.get("constraints", {}),
    }
    started, before = time.time(), load()
    # a run folder left by an earlier try is resumed (to the same end; a finished run returns at once)
    resumed = (out / "run.json").is_file()
    result = (nasframe.resume(out) if resumed else nasframe.run(config)).to_dict()
    result["_seconds"], result["_load"] = round(time.time() - started, 1), [before, load()]
    result["_resumed"] = resumed  # then _seconds is the resumption's only
    return result


def measured(arch: Any, settings: dict[str, Any], repeat: int) -> dict[str, Any]:
    import nasframe

    r = nasframe.measure_latency(
        "mobilenet", arch, data="imagenet", runtime=settings["runtime"], clock=settings.get("clock", "wall"),
        threads=settings["threads"], repeat=repeat,
    )  # fmt: skip
    return {"latency_ms": r["latency_ms"], "medians": [m["median_ms"] for m in r["measurements"]], "load": load()}


def trained(arch: Any, out: Path, seed: int) -> float:
    """Test accuracy on digits after the `quick` recipe (from scratch)."""
    import nasframe

    result = nasframe.train(space="mobilenet", arch=arch, recipe="quick", data="digits",
                            sets=[f"recipe.seed={seed}"], out=out, tensorboard=False, device="cpu")  # fmt: skip
    return float(result.test_acc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True)
    p.add_argument("--out", default="runs/latency-demo")
    p.add_argument("--limit", type=float, help="ms (default: MobileNetV2's measured latency)")
    p.add_argument(
        "--strategy",
        choices=("spos", "evolution"),
        default="spos",
        help="spos: supernet evaluator; evolution: short_train (each candidate trained from scratch)",
    )
    p.add_argument("--epochs", type=float, default=30, help="spos: supernet epochs; evolution: epochs per candidate")
    p.add_argument("--lr", type=float, default=0.025, help="the evaluator's learning rate")
    p.add_argument("--population", type=int, default=24)
    p.add_argument("--generations", type=int, default=6, help="evolution: budget = population x generations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="whole-network measurements per architecture")
    p.add_argument("--train", action="store_true", help="retrain front, answer and references on digits")
    p.add_argument("--figure", default="docs/img/latency_front_mobilenet.png")
    p.add_argument("--json", default="benchmarks/results/latency_demo.json")
    args = p.parse_args()
    table = json.loads(Path(args.table).read_text())
    settings = table["settings"]
    out = Path(args.out)
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    refs = {name: measured(name, settings, args.repeat) for name in REFERENCES}
    say(f"references: { {k: round(v['latency_ms'], 2) for k, v in refs.items()} }")
    limit = args.limit or refs["mobilenetv2"]["latency_ms"]
    limited = search(args, out / "limited", {"constraints": {"max_latency_ms": limit}})
    say(f"limited run: {limited['final']['latency_ms']:.2f} ms predicted, {limited['_seconds']} s")
    front = search(args, out / "front", {"strategy": {"objectives": ["val_acc", "latency_ms"]}})
    say(f"front run: {len(front['pareto'])} members, {front['_seconds']} s")
    members = [{**m, "measured": measured(json.dumps(m["arch"]), settings, args.repeat)} for m in front["pareto"]]
    answer = {
        "arch": limited["final"]["arch"],
        "val_acc": (limited["final"]["metrics"] or {}).get("val_acc"),
        "latency_ms": limited["final"]["latency_ms"],
        "measured": measured(json.dumps(limited["final"]["arch"]), settings, args.repeat),
    }
    if args.train:
        for i, m in enumerate(members + [answer]):
            m["test_acc"] = trained(json.dumps(m["arch"]), out / f"trained-{i}", args.seed)
        for name, ref in refs.items():
            ref["test_acc"] = trained(name, out / f"trained-{name}", args.seed)
    record = {
        "table": args.table,
        "table_settings": settings,
        "search": {k: getattr(args, k) for k in ("strategy", "epochs", "lr", "population", "generations", "seed")},
        "machine": table["environment"].get("cpu"),
        "limit_ms": limit,
        "references": refs,
        "limited": {k: limited[k] for k in ("final", "infeasible", "evaluations", "_seconds", "_load", "_resumed")},
        "answer": answer,
        "front": members,
        "front_run": {k: front[k] for k in ("evaluations", "_seconds", "_load", "_resumed")},
    }
    Path(args.json).write_text(json.dumps(record, indent=2))
    draw(record, Path(args.figure), args.train)
    say(f"wrote {args.json} and {args.figure}")


def draw(r: dict[str, Any], path: Path, with_training: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if with_training else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.4 * panels, 4.8), squeeze=False)
    ax = axes[0][0]
    strategy = r["search"]["strategy"]
    front = sorted(r["front"], key=lambda m: m["latency_ms"])
    x, y = [m["latency_ms"] for m in front], [m["val_acc"] for m in front]
    ax.step(x, y, where="post", color="C0", label=f"{strategy} front [val_acc, latency_ms] (table prediction)")
    ax.plot(x, y, "o", color="C0", markersize=4)
    ax.plot([m["measured"]["latency_ms"] for m in front], y, "x", color="C0", alpha=0.6, label="same, measured whole")
    a = r["answer"]
    ax.plot([a["latency_ms"]], [a["val_acc"]], "s", color="C3", label=f"{strategy} under {r['limit_ms']:.1f} ms")
    ax.axvline(r["limit_ms"], color="C3", linestyle=":", linewidth=1)
    for i, (name, ref) in enumerate(r["references"].items()):
        ax.axvline(ref["latency_ms"], color="k", linestyle="--", linewidth=0.8, alpha=0.6)
        ax.annotate(
            name, (ref["latency_ms"], 0.94 - 0.06 * i), xycoords=("data", "axes fraction"), fontsize=8, ha="right"
        )
    ax.set_xlabel("latency at 224x224, ms")
    ax.set_ylabel(f"search accuracy on digits, {strategy} (%)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    if with_training:
        bx = axes[0][1]
        pts = [(m["measured"]["latency_ms"], m["test_acc"]) for m in front]
        bx.plot(*zip(*pts), "o", color="C0", label="front members")
        bx.plot([a["measured"]["latency_ms"]], [a["test_acc"]], "s", color="C3", label="answer under the limit")
        for name, ref in r["references"].items():
            bx.plot([ref["latency_ms"]], [ref["test_acc"]], "k*", markersize=10)
            bx.annotate(
                name, (ref["latency_ms"], ref["test_acc"]), textcoords="offset points", xytext=(-20, 6), fontsize=8
            )
        bx.set_xlabel("latency at 224x224, measured whole, ms")
        bx.set_ylabel("digits test accuracy after the quick recipe (%)")
        bx.legend(fontsize=7, loc="upper left")
        bx.grid(alpha=0.3)
    s = r["table_settings"]
    fig.suptitle(
        f"MobileNet space, {s['runtime']} on {r['machine']}, {s['threads']} thread, {s.get('clock', 'wall')} clock",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
