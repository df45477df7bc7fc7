"""Training-step throughput of `nasframe train`'s loop against a bare PyTorch loop, side by side in one run.

Both sides train the same network (two copies with the same initial weights) on the same in-memory data set
with the same batch size, SGD settings and gradient clipping. The nasframe side is `Trainer.train_epoch` as
`nasframe train` runs it (per-step learning rate, augmentation policy, loss and accuracy kept on the device,
deterministic kernels on the CPU, the progress counter); the bare side is the shortest loop that does the same
arithmetic: index a batch, normalise, forward, cross-entropy, backward, clip, step. Timed runs alternate (one
epoch each, the bare side running the same number of steps); the ratio is bare time / nasframe time (1.0: no
overhead) from the best run of each side, with the median over adjacent pairs beside it.

    .venv/bin/python benchmarks/train_throughput.py                    # DARTS C=8, 5 cells on digits, batch 64
    .venv/bin/python benchmarks/train_throughput.py --threads 1 --clock cpu --load 2
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def make_trainer(args: argparse.Namespace, folder: Path):
    from nasframe.training.plan import plan_training
    from nasframe.training.trainer import Trainer

    sets = [f"space.C={args.C}", f"space.layers={args.layers}", f"recipe.batch_size={args.batch_size}"]
    sets += [f"recipe.epochs={args.repeats + 1}"]
    plan = plan_training(space="darts", arch=args.arch, recipe="quick", data=args.data, sets=sets)
    trainer = Trainer(plan, folder, device=args.device, quiet=True, tensorboard=False)
    trainer.prepare()
    return trainer


def bare_loop(model, optimizer, data, batch: int, steps: int, clip: float | None, device) -> None:
    """The plain loop: what a hand-written training of the same network would run per step."""
    order = torch.randperm(int(data.train_x.shape[0]), device=device)
    for i in range(steps):
        idx = order[i * batch : (i + 1) * batch]
        x = (data.train_x[idx].float() / 255.0 - data.mean) / data.std
        loss = F.cross_entropy(model(x), data.train_y[idx])
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


class Load:
    """`n` pure-Python busy processes for the loaded measurement (each exits by itself after `seconds`)."""

    def __init__(self, n: int, seconds: float = 600.0):
        self.n, self.seconds = n, seconds
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Load:
        code = f"import time\nend = time.monotonic() + {self.seconds}\nwhile time.monotonic() < end:\n    pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.n)]
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def measure(args: argparse.Namespace, clock) -> tuple[float, float, float, float, int]:
    """(nasframe best s/step, bare best s/step, best ratio, median pair ratio, steps per epoch)."""
    from nasframe.common.progress import Progress
    from nasframe.training.step_options import deterministic_mode

    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(args, Path(tmp))
        assert trainer.model is not None
        bare_model = copy.deepcopy(trainer.model)
        r = trainer.recipe
        bare_opt = torch.optim.SGD(bare_model.parameters(), lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
        steps = trainer.steps_per_epoch
        progress = Progress("bench", trainer.total_steps, 0, False, unit="step")
        sync = torch.cuda.synchronize if trainer.cuda else (lambda: None)
        ours, bare = [], []
        deterministic = trainer.device.type != "cuda"
        with deterministic_mode(deterministic):  # as `nasframe train` runs its epochs
            trainer.train_epoch(0, progress)  # warm-up of both sides, untimed
        bare_loop(bare_model, bare_opt, trainer.data, trainer.batch, steps, r.grad_clip, trainer.device)
        for epoch in range(1, args.repeats + 1):
            sync()
            t = clock()
            with deterministic_mode(deterministic):
                trainer.train_epoch(epoch, progress)
            sync()
            ours.append((clock() - t) / steps)
            t = clock()
            bare_loop(bare_model, bare_opt, trainer.data, trainer.batch, steps, r.grad_clip, trainer.device)
            sync()
            bare.append((clock() - t) / steps)
    pairs = statistics.median(b / o for o, b in zip(ours, bare))
    return min(ours), min(bare), min(bare) / min(ours), pairs, steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--C", type=int, default=8, help="DARTS initial channels")
    p.add_argument("--layers", type=int, default=5, help="DARTS cells")
    p.add_argument("--arch", default="DARTS_V2", help="DARTS architecture name")
    p.add_argument("--data", default="digits", help="in-memory data set (digits, fashion_mnist, cifar10, synthetic)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per side (alternating)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time or this process's CPU time")
    p.add_argument("--load", type=int, default=0, help="also measure with this many busy processes running")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(
        f"network: darts C={args.C}, {args.layers} cells, {args.arch} on {args.data}; batch {args.batch_size}; "
        f"device {args.device}; threads {torch.get_num_threads()}; clock {args.clock}"
    )
    conditions = [("as is", 0)] + ([(f"+{args.load} busy", args.load)] if args.load else [])
    for label, busy in conditions:
        if busy:
            with Load(busy):
                result = measure(args, clock)
        else:
            result = measure(args, clock)
        ours, bare, best, median, steps = result
        load = os.getloadavg()[0]
        print(
            f"{label:>8} (load average {load:.1f} at the end): nasframe {ours * 1e3:.2f} ms/step, "
            f"bare {bare * 1e3:.2f} ms/step ({steps} steps/epoch); "
            f"throughput ratio {best:.3f} (best runs), {median:.3f} (median of pairs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
