"""Train one architecture from scratch with a named recipe: `nasframe train` and `nasframe.training`.

A training folder holds
- `nasframe.json`: who owns the folder (kind "training", format, the training's identity: a hash of
  train.json's network, recipe and data), written first (`nasframe.common.ownership`);
- `train.json`: what is trained (space, its options, the architecture and where it came from, the recipe,
  the data options), written once at the start; `--resume` reads it back;
- `checkpoint.pt`: model and optimiser state after the last finished epoch and the training's identity
  (written atomically; plain tensors, read with `torch.load(weights_only=True)`);
- `model.safetensors` and `model.json` at the end: the final weights, and beside them the architecture,
  recipe, counts and test metrics (everything `nasframe.load_model` needs to rebuild the network).
  model.json is written last and is the one completion marker: a training is finished exactly when it
  exists, so a kill at any point leaves either a training to continue or a finished one;
- `tensorboard/`: per-epoch train loss, accuracy and learning rate; the test metrics at the end.

Every epoch is seeded from the recipe seed and the epoch's index (batch order, augmentation, drop-path,
dropout), and a checkpoint holds the whole optimiser state, so on the CPU a training killed at any point and
resumed ends with bit-identical weights. The test set takes no part in training: it is scored once, at the end.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasframe.common import distributed
from nasframe.common.checkpoint import RunLock, atomic_write_json, load_checkpoint, save_checkpoint
from nasframe.common.device import resolve_device
from nasframe.common.errors import ConfigError, NasframeError, RunDirError
from nasframe.common.loading import check_text_path
from nasframe.common.ownership import TRAINING, FolderClaim, Owner, check_folder, claim_folder, read_owner
from nasframe.common.threads import ThreadSetting, apply_threads, resolve_threads
from nasframe.data.augment import BatchTransform, choose_policy
from nasframe.training.plan import (
    FORMAT,
    MODEL_JSON,
    TENSORBOARD,
    TRAIN_JSON,
    WEIGHTS,
    TrainPlan,
    build_model,
    build_space,
    plan_training,
    read_plan,
    training_identity,
)
from nasframe.training.recipes import Recipe
from nasframe.training.step_options import StepSettings, autocast, deterministic_mode
from nasframe.training.steps import classification_loss
from nasframe.training.train_test import load_train_test
from nasframe.training.weights import save_weights


class TrainingDiverged(NasframeError):
    """The training loss became NaN or infinite."""


def learning_rate(recipe: Recipe, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate of global step `step` (0-based): a linear warm-up from 0, then cosine or linear
    decay from `lr` to `lr_min` at the last step."""
    warmup = int(round(recipe.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total_steps - warmup)
    if recipe.schedule == "linear":
        return recipe.lr_min + (recipe.lr - recipe.lr_min) * (1.0 - t)
    return recipe.lr_min + 0.5 * (recipe.lr - recipe.lr_min) * (1.0 + math.cos(math.pi * t))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's batch order, augmentation and drop-path: resuming at an epoch needs no RNG state."""
    return (seed * 1_000_003 + epoch * 7_919 + 1) % (2**63 - 1)


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_acc: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    """What a finished training produced (model.json holds the same numbers)."""

    out: Path
    epochs: int
    test_acc: float
    test_loss: float
    train_loss: float
    params: int
    macs: int | None
    seconds: float
    resumed: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains a `TrainPlan` into a training folder, one checkpointed epoch at a time."""

    def __init__(
        self,
        plan: TrainPlan,
        out: Path,
        *,
        device: str = "auto",
        quiet: bool = True,
        tensorboard: bool = True,
        resuming: bool = False,
        threads: ThreadSetting = "auto",
    ):
        self.plan = plan
        self.threads_setting = threads
        self.threads = resolve_threads(threads, "threads")  # checked now; applied when the training starts
        self.out = Path(out)
        self.device = resolve_device(device)
        self.writer = distributed.is_writer()  # under torchrun, rank 0 alone writes files and prints
        self.quiet = quiet or not self.writer
        self.tensorboard = tensorboard and self.writer
        self.resuming = resuming
        self.recipe = plan.recipe_options
        self.cuda = self.device.type == "cuda"
        self.model: nn.Module | None = None
        #: what a training step calls: the model, or under torchrun its DistributedDataParallel wrapper
        self.network: nn.Module | None = None
        #: the hash of train.json's network, recipe and data; the folder's marker and checkpoints carry it
        self.identity = training_identity(plan)
        self.adopted = False  # a folder made before markers existed: its checkpoints carry no identity
        #: `create`'s claim of the folder: a training that fails before its first epoch removes what it added
        self.claim: FolderClaim | None = None

    # ---- creating and resuming -------------------------------------------------------------------------------
    @classmethod
    def create(cls, plan: TrainPlan, out: str | Path | None, **kwargs: Any) -> Trainer:
        resolve_threads(kwargs.get("threads", "auto"), "threads")  # a bad setting fails before anything is written
        distributed.start()  # under torchrun: join the other processes of this training
        folder = Path(out) if out is not None else Path(distributed.agree_text(str(_default_out(plan))))
        folder = check_text_path(folder, "--out")
        if (folder / TRAIN_JSON).exists():
            raise RunDirError(f"{folder} already holds a training; continue it with: nasframe train --resume {folder}")
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--out {folder} is a file, not a folder")
        owner = Owner(TRAINING, FORMAT, training_identity(plan))
        check_folder(folder, owner)  # a search run, a comparison or the user's own files: refused, nothing written
        distributed.barrier()  # every process has looked at the folder before rank 0 writes to it
        claim = None
        if distributed.is_writer():
            claim = claim_folder(folder, owner)  # the marker first
            with RunLock(folder):
                if (folder / TRAIN_JSON).exists():  # another `train --out` took the folder meanwhile
                    raise RunDirError(
                        f"{folder} already holds a training; continue it with: nasframe train --resume {folder}"
                    )
                atomic_write_json(folder / TRAIN_JSON, plan.to_dict())
        trainer = cls(plan, folder, **kwargs)
        trainer.claim = claim
        return trainer

    @classmethod
    def resume(cls, out: str | Path, **kwargs: Any) -> Trainer:
        distributed.start()  # under torchrun: join the other processes of this training
        folder = check_text_path(Path(out), "training folder")
        owner = read_owner(folder) if folder.is_dir() else None
        if owner is not None and owner.kind != TRAINING:
            raise RunDirError(f"{folder}: not a training folder: it holds {owner.words} (nasframe.json)")
        trainer = cls(read_plan(folder), folder, resuming=True, **kwargs)
        if owner is not None and owner.identity != trainer.identity:
            raise RunDirError(
                f"{folder / TRAIN_JSON} does not describe this folder's training (identity {trainer.identity}; "
                f"nasframe.json says {owner.identity}): was it edited or copied from another training?"
            )
        trainer.adopted = owner is None or owner.adopted
        if owner is None and trainer.writer:  # made before markers existed: it becomes this training's
            claim_folder(folder, Owner(TRAINING, FORMAT, trainer.identity), adopt=True)
        return trainer

    # ---- the work ----------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        distributed.barrier()  # under torchrun: rank 0 has created the folder
        if not self.out.is_dir():
            raise RunDirError(f"{self.out}: no such training folder")
        if not self.writer:  # no lock, and nothing of its own to clean up
            return self._run_locked()
        try:
            with RunLock(self.out):
                return self._run_locked()
        except (NasframeError, OSError):
            self._discard_if_empty()
            raise
        except (Exception, SystemExit) as exc:  # inside the space (build) or the data set: one line naming it
            from nasframe.core.faults import fault_of

            fault = fault_of(exc)
            if fault is None:
                raise
            self._discard_if_empty()
            raise fault from exc

    def _use_threads(self, recorded: Any) -> None:
        """Set torch's CPU threads by the rule `run.threads` follows (nasframe/common/threads.py): the
        `threads` given, and `auto` 1 (or OMP_NUM_THREADS). A resumed training whose setting is `auto`
        continues with the count its checkpoint recorded: the count changes how float sums are split,
        and so the weights; bit-identical resumption needs the same count."""
        wanted = resolve_threads(self.threads_setting, "threads")
        known = isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 1
        if known and recorded != wanted:
            if self.threads_setting == "auto":
                note = f"continuing with {recorded} CPU threads as this training recorded (not {wanted}), so it ends"
                note += " as an uninterrupted one would; give --threads to choose otherwise"
                wanted = recorded
            else:
                note = f"this training continues with {wanted} CPU threads, not the {recorded} it recorded"
                note += "; its weights may now differ from an uninterrupted training's"
            if not self.quiet:
                print(f"note: {note}", file=sys.stderr, flush=True)
        self.threads = apply_threads(wanted).intra_op

    def _discard_if_empty(self) -> None:
        """A new training that failed before any epoch (missing data, a refused setting) removes what it
        added to the folder, and only that, so the same command can simply be run again."""
        if self.resuming or self.claim is None or (self.out / "checkpoint.pt").exists():
            return
        self.claim.undo((TRAIN_JSON, TENSORBOARD))
        self.claim.remove_folder_if_made()

    def prepare(self) -> None:
        """Model, data, optimiser and batch transform on the device (what `train_epoch` needs)."""
        r = self.recipe
        model, self.arch, spec = build_model(self.plan)
        self.data = load_train_test(self.plan.data_options, self.device)
        if self.data.spec != spec:
            raise ConfigError(f"train: data set {spec.name} changed shape since the network was planned")
        memory_format = torch.channels_last if (self.cuda and r.channels_last) else torch.contiguous_format
        self.model = model.to(self.device).to(memory_format=memory_format)
        self.drop_path = "drop_path" in build_space(self.plan).training_extras
        policy = choose_policy(r.augment, spec, cutout=r.cutout)
        self.transform = BatchTransform(
            self.data.mean, self.data.std, policy, channels_last=self.cuda and r.channels_last
        )
        self.settings = StepSettings(
            grad_clip=r.grad_clip or None,
            auxiliary_weight=r.auxiliary_weight,
            label_smoothing=r.label_smoothing,
            amp=r.amp and self.cuda,
        )
        self.network = self.model
        if distributed.active():  # the global batch split over the processes (nasframe/common/distributed.py)
            from torch.nn.parallel import DistributedDataParallel

            distributed.check_batch(min(r.batch_size, int(self.data.train_x.shape[0])), "recipe.batch_size")
            distributed.synchronize_batchnorm(self.model)
            ids = [self.device.index] if self.cuda else None
            with warnings.catch_warnings():  # torch 2.14 renames broadcast_buffers; 2.1 knows no other name
                warnings.simplefilter("ignore", FutureWarning)
                # buffers need no broadcast per forward: global BatchNorm keeps them equal on every process
                self.network = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            self.params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay, nesterov=r.nesterov
        )
        n = int(self.data.train_x.shape[0])
        self.batch = min(r.batch_size, n)
        self.steps_per_epoch = max(1, n // r.batch_size)
        self.total_steps = self.steps_per_epoch * r.epochs

    def train_epoch(self, epoch: int, progress: Any = None) -> EpochStats:
        """One pass over the train set (0-based `epoch`), seeded by the epoch alone; one host sync at its end."""
        assert self.model is not None and self.network is not None, "prepare() first"
        r, data = self.recipe, self.data
        parallel = self.network is not self.model
        start = time.perf_counter()
        if self.drop_path:  # declared in the space's training_extras: the network reads this attribute
            network: Any = self.model
            network.drop_path_prob = r.drop_path_prob * epoch / r.epochs  # DARTS' linear schedule
        seed = epoch_seed(r.seed, epoch)
        torch.manual_seed(seed)  # dropout and drop-path draw from the global generators
        gen = torch.Generator(device=self.device).manual_seed(seed)
        order = torch.randperm(int(data.train_x.shape[0]), device=self.device, generator=gen)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        first = epoch * self.steps_per_epoch
        lr = r.lr
        self.model.train()
        for i in range(self.steps_per_epoch):
            idx = order[i * self.batch : (i + 1) * self.batch]
            x = self.transform.train(data.train_x[idx], gen)
            y = data.train_y[idx]
            if parallel:  # augmented whole, as one process would, then this process's slice
                x, y = distributed.shard(x, y)
            lr = learning_rate(r, first + i, self.total_steps, self.steps_per_epoch)
            out, loss = self._step(x, y, lr, parallel)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == y).sum()
            if progress is not None:
                progress.update(1)
        if parallel:  # the global batch's loss and top-1 count: sums over the processes
            loss_sum = distributed.average_(loss_sum)
            correct = distributed.total_(correct)
        mean_loss = float(loss_sum) / self.steps_per_epoch  # the epoch's one host sync
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"train: the loss became {mean_loss} in epoch {epoch + 1}; "
                "lower recipe.lr or raise recipe.warmup_epochs"
            )
        accuracy = 100.0 * int(correct) / (self.steps_per_epoch * self.batch)
        return EpochStats(epoch + 1, mean_loss, accuracy, lr, time.perf_counter() - start)

    def _step(self, x: torch.Tensor, y: torch.Tensor, lr: float, parallel: bool) -> tuple[Any, torch.Tensor]:
        """One SGD step at learning rate `lr`: the network's output and the loss."""
        assert self.network is not None
        settings, opt = self.settings, self.optimizer
        opt.param_groups[0]["lr"] = lr
        synced = distributed.synced_batchnorm(True) if parallel else contextlib.nullcontext()
        with autocast(self.device, settings.amp), synced:
            out = self.network(x)
            loss = classification_loss(out, y, settings)
        loss.backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, settings.grad_clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out, loss

    @torch.no_grad()
    def test(self) -> tuple[float, float]:
        """(top-1 accuracy in percent, mean cross-entropy) on the test set, in eval mode."""
        assert self.model is not None
        model, data = self.model, self.data
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        bs = self.recipe.eval_batch_size
        for start in range(0, int(data.test_x.shape[0]), bs):
            x = self.transform.eval(data.test_x[start : start + bs])
            y = data.test_y[start : start + bs]
            with autocast(self.device, self.settings.amp):
                logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        n = int(data.test_y.shape[0])
        return 100.0 * int(correct) / n, float(loss_sum) / n

    def _run_locked(self) -> TrainResult:
        from nasframe.common.progress import Progress

        self._use_threads(None)  # before the model is built: every kernel runs in this pool
        self.prepare()
        assert self.model is not None
        done, seconds = 0, 0.0
        history: list[dict[str, Any]] = []
        if self.resuming:
            done, history, seconds = self._load_checkpoint()
        if (self.out / MODEL_JSON).exists():  # the completion marker, written last
            raise RunDirError(f"{self.out}: this training already finished ({done} epochs); nothing to do")
        writer = self._writer(done)
        progress = Progress(
            f"train {self.plan.space}",
            self.total_steps,
            done * self.steps_per_epoch,
            not self.quiet,
            unit="step",
        )
        try:
            with deterministic_mode(self.device.type != "cuda"):  # bit-identical resume on the CPU
                for epoch in range(done, self.recipe.epochs):
                    stats = self.train_epoch(epoch, progress)
                    seconds += stats.seconds
                    history.append(asdict(stats))
                    progress.note(f"loss={stats.train_loss:.3f} acc={stats.train_acc:.1f}%")
                    if writer is not None:
                        writer.add_scalar("train/loss", stats.train_loss, stats.epoch)
                        writer.add_scalar("train/acc", stats.train_acc, stats.epoch)
                        writer.add_scalar("train/lr", stats.lr, stats.epoch)
                        writer.flush()
                    self._save_checkpoint(epoch + 1, history, seconds)
                test_acc, test_loss = self.test()
        finally:
            progress.close()
        if writer is not None:
            writer.add_scalar("test/acc", test_acc, self.recipe.epochs)
            writer.add_scalar("test/loss", test_loss, self.recipe.epochs)
            writer.close()
        return self._finish(test_acc, test_loss, history, seconds)

    def _writer(self, done: int) -> Any:
        if not self.tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / TENSORBOARD), purge_step=done + 1 if self.resuming else None)

    def _save_checkpoint(self, epochs_done: int, history: list[dict[str, Any]], seconds: float) -> None:
        assert self.model is not None
        if not self.writer:
            return
        save_checkpoint(
            self.out,
            {
                "format": FORMAT,
                "run": self.identity,
                "epochs_done": epochs_done,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "history": history,
                "seconds": seconds,
                "threads": self.threads,
            },
        )

    def _load_checkpoint(self) -> tuple[int, list[dict[str, Any]], float]:
        assert self.model is not None
        if not (self.out / "checkpoint.pt").exists():
            return 0, [], 0.0  # killed before its first epoch ended: start again
        state = load_checkpoint(self.out)
        written = state.get("run") if isinstance(state, dict) else None
        if written != self.identity and (written is not None or not self.adopted):
            raise RunDirError(
                f"{self.out / 'checkpoint.pt'}: written by another training (identity {str(written)[:40]}; this "
                f"one's is {self.identity})"
            )
        self._use_threads(state.get("threads") if isinstance(state, dict) else None)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            return int(state["epochs_done"]), list(state["history"]), float(state["seconds"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise RunDirError(
                f"{self.out / 'checkpoint.pt'}: does not fit this training ({type(exc).__name__})"
            ) from None

    def _finish(self, test_acc: float, test_loss: float, history: list[dict[str, Any]], seconds: float) -> TrainResult:
        from nasframe.common.model_stats import count_macs, count_parameters
        from nasframe.training.deployment import channel_stats, deployment

        assert self.model is not None
        model = self.model
        params = count_parameters(model)
        macs: int | None
        try:
            macs = count_macs(model, self.data.spec.input_shape)
        except (RuntimeError, NotImplementedError):
            macs = None
        if self.writer:  # the weights first: model.json, written last, says the training is complete
            save_weights(model, self.out / WEIGHTS)
        space = build_space(self.plan)
        train_loss = history[-1]["train_loss"] if history else float("nan")
        meta = {
            **self.plan.to_dict(),
            "input_shape": list(self.data.spec.input_shape),
            "num_classes": self.data.spec.num_classes,
            **deployment(self.data.spec, channel_stats(self.data.mean), channel_stats(self.data.std)),
            "export": space.export(self.arch),
            "params": params,
            "macs": macs,
            "metrics": {"test_acc": test_acc, "test_loss": test_loss, "train_loss": train_loss},
            "data_split": self.data.split,
            "epochs": self.recipe.epochs,
            "seconds": seconds,
            "device": str(self.device),
            "threads": self.threads,
            "torch": torch.__version__,
        }
        if self.writer:
            atomic_write_json(self.out / MODEL_JSON, meta)
        return TrainResult(
            out=self.out,
            epochs=self.recipe.epochs,
            test_acc=test_acc,
            test_loss=test_loss,
            train_loss=train_loss,
            params=params,
            macs=macs,
            seconds=seconds,
            resumed=self.resuming,
            history=history,
        )


def _default_out(plan: TrainPlan) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"train-{stamp}-{plan.space}-{plan.recipe_name}"


__all__ = ["EpochStats", "TrainResult", "Trainer", "TrainingDiverged", "epoch_seed", "learning_rate", "plan_training"]
