"""short_train's throughput against a bare PyTorch training loop on the same model and data.

Both sides build the same architecture from the same seed, train it with the same recipe (SGD
momentum 0.9, weight decay 3e-4, per-step cosine, gradient clipping 5, batch 64, shuffled
device-resident data, no augmentation) and validate it once. The evaluator additionally counts
parameters and MACs and checks the loss for NaN. Runs alternate (bare, evaluator, bare, ...) in
one process, so machine load hits both alike; ratios are given from the best run of each side
(load only ever adds time) and as the median over adjacent pairs.

    .venv/bin/python benchmarks/overhead.py                  # DARTS C=8, 5 cells, digits, 2 epochs
    .venv/bin/python benchmarks/overhead.py --repeats 5 --data synthetic
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

clock = time.perf_counter


def make_space(args):
    from nasframe.common.plugins import load_plugin
    from nasframe.core.registry import spaces

    if "darts" in spaces.names():
        cls = spaces.get("darts")
        space = cls(cls.Options(C=args.C, layers=args.layers))
        return space, space.parse_arch("DARTS_V2"), f"darts C={args.C} layers={args.layers} DARTS_V2"
    from pathlib import Path

    load_plugin(str(Path(__file__).resolve().parent.parent / "tests" / "plugins" / "supernet_toy.py"))
    space = spaces.get("supernet_toy")()
    arch = space.validate({d.name: "conv3x3" for d in space.decisions})
    return space, arch, "supernet_toy (conv3x3 everywhere)"


def make_data(args):
    from nasframe.data import DataOptions, DataSource

    if args.data == "synthetic":
        opts = DataOptions(name="synthetic", synthetic_shape=[3, 16, 16], synthetic_size=2048)
    else:
        opts = DataOptions(name="digits")
    return DataSource(opts, seed=0, device="cpu")


def bare_loop(space, arch, data, args) -> tuple[float, float]:
    """The plain loop a user would write: returns (seconds, val_acc)."""
    t0 = clock()
    search = data.search()
    model = space.build(arch, search.spec)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=3e-4)
    n = search.train_x.shape[0]
    spe = n // args.batch_size
    total = spe * args.epochs
    step = 0
    model.train()
    for _ in range(args.epochs):
        perm = torch.randperm(n)
        for i in range(spe):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            x = (search.train_x[idx].float() / 255 - search.mean) / search.std
            for g in opt.param_groups:
                g["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * step / total))
            out = model(x)
            loss = F.cross_entropy(out[0] if isinstance(out, tuple) else out, search.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, search.val_x.shape[0], 512):
            x = (search.val_x[s : s + 512].float() / 255 - search.mean) / search.std
            correct += int((model(x).argmax(1) == search.val_y[s : s + 512]).sum())
    return clock() - t0, 100.0 * correct / search.val_x.shape[0]


def evaluator_run(space, arch, data, args, model_stats: bool = True) -> tuple[float, float]:
    from nasframe.core.registry import evaluators

    cls = evaluators.get("short_train")
    # the bare loop does not recalibrate BatchNorm, so neither does the evaluator here
    ev = cls(
        space,
        cls.Options(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            augment="none",
            deterministic=False,
            bn_recalibration_batches=0,
            model_stats=model_stats,
        ),
        data=data,
        device="cpu",
    )
    t0 = clock()
    result = ev.evaluate(arch)
    seconds = clock() - t0
    if not result.ok:
        raise SystemExit(f"short_train failed: {result.reason}")
    return seconds, result.metrics["val_acc"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        choices=("digits", "synthetic"),
        default="digits",
        help="digits (real 8x8, 899 train images) or synthetic 3x16x16 (1024 train images)",
    )
    p.add_argument("--C", type=int, default=8, help="DARTS initial channels")
    p.add_argument("--layers", type=int, default=5, help="DARTS cells")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=5, help="runs per side (alternating); the best of each is compared")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (steadier on a busy machine; use with --threads 1)",
    )
    args = p.parse_args(argv)
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    space, arch, label = make_space(args)
    data = make_data(args)
    data.search()
    # warm-up: imports, allocator, first-call costs on all sides
    for fn in (bare_loop, evaluator_run):
        torch.manual_seed(0)
        fn(space, arch, data, args)
    bare_s, ev_s, lean_s, accs = [], [], [], []
    for r in range(args.repeats):
        torch.manual_seed(r)
        s, a_bare = bare_loop(space, arch, data, args)
        bare_s.append(s)
        torch.manual_seed(r)
        s, a_ev = evaluator_run(space, arch, data, args)
        ev_s.append(s)
        torch.manual_seed(r)
        lean_s.append(evaluator_run(space, arch, data, args, model_stats=False)[0])
        accs.append((a_bare, a_ev))
    n_train = data.search().train_x.shape[0]
    imgs = (n_train // args.batch_size) * args.batch_size * args.epochs
    b, e, lean = min(bare_s), min(ev_s), min(lean_s)
    print(
        f"model: {label}; data: {args.data} ({n_train} train images); {args.epochs} epochs, batch "
        f"{args.batch_size}; {torch.get_num_threads()} CPU threads; {args.clock} clock; {args.repeats} runs per "
        f"side, best shown"
    )
    for name, best, runs in (
        ("bare loop", b, bare_s),
        ("short_train", e, ev_s),
        ("short_train, model_stats off", lean, lean_s),
    ):
        print(
            f"{name:29s} {best:7.3f} s per candidate ({imgs / best:7.1f} train images/s)  runs: "
            + ", ".join(f"{s:.3f}" for s in runs)
        )
    print("val_acc (bare, short_train) per run: " + ", ".join(f"({a:.1f}, {c:.1f})" for a, c in accs))
    print(f"throughput ratio short_train / bare = {b / e:.3f}  (goal >= 0.97; short_train also counts params and MACs)")
    print(f"throughput ratio short_train (model_stats off) / bare = {b / lean:.3f}")
    paired = statistics.median(x / y for x, y in zip(bare_s, ev_s))
    paired_lean = statistics.median(x / y for x, y in zip(bare_s, lean_s))
    print(f"same ratios as the median of adjacent pairs (steadiest under load): {paired:.3f}, {paired_lean:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
