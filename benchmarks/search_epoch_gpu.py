"""Images per second of a full MDENAS search epoch at CIFAR size, and the projected 150-epoch time.

An MDENAS epoch samples one path of the DARTS supernet (C=16, 8 cells), trains it for one epoch
on search-train and scores it on search-val: exactly one `supernet` evaluation. The data are
synthetic 50,000 x 3 x 32 x 32 uint8 images on the GPU, split 25,000 / 25,000 as in DARTS;
batch 256 (XNAS' MDENAS setting), bf16 autocast and channels_last (the evaluator's defaults).
The first epoch (cuDNN autotuning, allocator warm-up) is reported apart and left out of the
projection.

    .venv/bin/python benchmarks/search_epoch_gpu.py                # needs CUDA; says so otherwise
    .venv/bin/python benchmarks/search_epoch_gpu.py --epochs 4 --no-amp
    .venv/bin/python benchmarks/search_epoch_gpu.py --tiny         # a small CPU run that checks the script
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=3, help="timed search epochs after the warm-up epoch")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--images", type=int, default=50_000, help="synthetic train-set size (half is search-val)")
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--search-epochs", type=int, default=150, help="epochs of the projected search")
    p.add_argument("--tiny", action="store_true", help="run a tiny version on the CPU (C=4, 3 cells, 512 images)")
    args = p.parse_args(argv)

    if not torch.cuda.is_available() and not args.tiny:
        print(
            "CUDA is not available: this benchmark measures GPU throughput and has nothing to measure here. "
            "Run it on a CUDA machine, or pass --tiny to check the script on the CPU."
        )
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        args.C, args.layers, args.images, args.batch_size, args.epochs = 4, 3, 512, 32, 1

    from nasframe.core.registry import spaces
    from nasframe.data import DataOptions, DataSource
    from nasframe.evaluators.supernet import SupernetEvaluator

    space_cls = spaces.get("darts")
    space = space_cls(space_cls.Options(supernet_C=args.C, supernet_layers=args.layers))
    data = DataSource(
        DataOptions(name="synthetic", synthetic_shape=[3, 32, 32], synthetic_size=args.images, search_split=0.5),
        seed=0,
        device=device,
    )
    opts = SupernetEvaluator.Options(
        batch_size=args.batch_size,
        eval_batch_size=1024,
        amp=not args.no_amp,
        channels_last=not args.no_channels_last,
        schedule_epochs=args.search_epochs,
    )
    ev = SupernetEvaluator(space, opts, data=data, device=device)
    search = data.search()
    n_train, n_val = search.train_x.shape[0], search.val_x.shape[0]
    spe = n_train // args.batch_size
    rng = np.random.default_rng(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{name}: DARTS supernet C={args.C}, {args.layers} cells; synthetic {args.images:,} x 3x32x32 "
        f"({n_train:,} search-train / {n_val:,} search-val); batch {args.batch_size}; "
        f"amp={'off' if args.no_amp else 'bf16'}, channels_last={not args.no_channels_last}"
    )
    times = []
    for epoch in range(args.epochs + 1):
        arch = space.sample(rng)  # MDENAS draws one op per edge and trains that path for an epoch
        torch.manual_seed(epoch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = ev.evaluate(arch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        if not result.ok:
            raise SystemExit(f"epoch {epoch} failed: {result.reason}")
        label = "warm-up" if epoch == 0 else f"epoch {epoch}"
        print(
            f"{label:>8}: {seconds:7.2f} s  ({spe * args.batch_size / seconds:9.0f} train images/s, "
            f"{(spe * args.batch_size + n_val) / seconds:9.0f} train+val images/s)  val_acc "
            f"{result.metrics['val_acc']:.2f}"
        )
        if epoch:
            times.append(seconds)
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    if times:
        mean = sum(times) / len(times)
        print(
            f"mean epoch {mean:.2f} s -> projected {args.search_epochs}-epoch search: "
            f"{args.search_epochs * mean / 3600:.2f} h ({args.search_epochs * mean / 60:.1f} min)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
