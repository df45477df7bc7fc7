"""Train one architecture from scratch with a named recipe: `nasframe train` and `nasframe.train`.

A training folder holds
- `train.json`: what is trained (space, its options, the architecture and where it came from, the recipe,
  the data options), written once at the start; `--resume` reads it back;
- `checkpoint.pt`: model and optimiser state after the last finished epoch (written atomically; plain tensors,
  read with `torch.load(weights_only=True)`);
- `model.safetensors` and `model.json` at the end: the final weights, and beside them the architecture,
  recipe, counts and test metrics (everything `nasframe.load_model` needs to rebuild the network);
- `tensorboard/`: per-epoch train loss, accuracy and learning rate; the test metrics at the end.

Every epoch is seeded from the recipe seed and the epoch's index (batch order, augmentation, drop-path,
dropout), and a checkpoint holds the whole optimiser state, so on the CPU a training killed at any point and
resumed ends with bit-identical weights. The test set takes no part in training: it is scored once, at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from nasframe import distributed
from nasframe.checkpoint import RunLock, atomic_write_bytes, atomic_write_json, load_checkpoint, save_checkpoint
from nasframe.data import DataOptions, DataSpec
from nasframe.data.augment import BatchTransform, choose_policy
from nasframe.errors import ConfigError, NasframeError, NotSupported, RunDirError
from nasframe.options import build_options, options_to_dict
from nasframe.recipes import Recipe, make_recipe, recipe_from_dict, recipe_to_dict

if TYPE_CHECKING:
    from nasframe.space import Arch, SearchSpace

TRAIN_JSON = "train.json"
MODEL_JSON = "model.json"
WEIGHTS = "model.safetensors"
TENSORBOARD = "tensorboard"
#: version of the training folder's files; bump when an older reader would misread them
FORMAT = 1
#: share of the train set held out as the test set for data sets that have no test split of their own (digits)
HELD_OUT_TEST = 0.2
#: the sections `--set` takes in `nasframe train`
TRAIN_SECTIONS = ("recipe", "space", "data")


class TrainingDiverged(NasframeError):
    """The training loss became NaN or infinite."""


# ---- what is trained -------------------------------------------------------------------------------------------
@dataclass
class TrainPlan:
    """Everything that defines a training: the network (space, options, architecture), recipe and data."""

    space: str
    space_options: dict[str, Any]
    arch: dict[str, Any]
    arch_source: str
    recipe_name: str
    recipe: dict[str, Any]
    data: dict[str, Any]
    plugins: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> TrainPlan:
        if not isinstance(d, Mapping):
            raise RunDirError(f"{where}: not a JSON mapping")
        if d.get("format") != FORMAT:
            raise RunDirError(f"{where}: training format {d.get('format')!r}, this nasframe reads format {FORMAT}")
        values: dict[str, Any] = {}
        for name, kind in (
            ("space", str),
            ("space_options", dict),
            ("arch", dict),
            ("arch_source", str),
            ("recipe_name", str),
            ("recipe", dict),
            ("data", dict),
            ("plugins", list),
        ):
            if not isinstance(d.get(name), kind):
                raise RunDirError(f"{where}: field {name!r} is missing or not a {kind.__name__}")
            values[name] = d[name]
        return cls(**values)

    @property
    def recipe_options(self) -> Recipe:
        return recipe_from_dict(self.recipe)

    @property
    def data_options(self) -> DataOptions:
        return build_options(DataOptions, self.data, "data")


def split_sets(sets: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`--set section.key=value` items of `nasframe train` by section (recipe, space, data)."""
    from nasframe.config import parse_set

    out: dict[str, dict[str, Any]] = {s: {} for s in TRAIN_SECTIONS}
    for item in sets:
        section, key, value = parse_set(item, sections=TRAIN_SECTIONS)
        out[section][key] = value
    return out


def plan_training(
    run_dir: str | Path | None = None,
    *,
    space: str | None = None,
    arch: str | Mapping[str, Any] | None = None,
    recipe: str = "quick",
    data: str | None = None,
    sets: Sequence[str] = (),
    plugins: Sequence[str] = (),
) -> TrainPlan:
    """The plan for training a run's answer (`run_dir`) or a given architecture (`space` and `arch`: a name,
    a JSON mapping, the space's text form, or a file such as a run's best.json).

    From a run, the space options and data set are the run's; the run's `data.limit` is dropped (a search
    often limits its data for speed; the trained network should see the whole train set): set it again with
    `--set data.limit=N`.
    """
    from nasframe.registry import load_plugin, spaces

    by_section = split_sets(sets)
    for plugin in plugins:
        load_plugin(plugin)
    if run_dir is not None:
        if space is not None or arch is not None:
            raise ConfigError("train: give either a run directory or --space with --arch, not both")
        space_name, space_values, chosen, source, data_values, run_plugins = _from_run(Path(run_dir))  # loads them
        plugins = [*run_plugins, *plugins]
        space_values.update(by_section["space"])
    else:
        if space is None or arch is None:
            raise ConfigError("train: give a run directory, or --space NAME with --arch NAME|FILE")
        space_name, data_values = space, {}
        text, source = _arch_text(arch)
        # a named architecture may need options of its own (e.g. its layout), beneath the user's --set values
        given = spaces.get(space)
        name = given.published_name(text) or text
        space_values = dict(given.options_for_arch(name) or {}) if isinstance(arch, str) else {}
        space_values.update(by_section["space"])
        chosen = given(build_options(given.Options, space_values, "space")).parse_arch(text).to_dict()
    cls = spaces.get(space_name)
    if data is not None:
        data_values["name"] = data
    data_values.update(by_section["data"])
    recipe_options = make_recipe(recipe, by_section["recipe"])
    space_values.update(_regularisers(cls, space_name, recipe, recipe_options))
    space_options = build_options(cls.Options, space_values, "space")
    checked = cls(space_options).validate(dict(chosen)).to_dict()
    data_options = build_options(DataOptions, data_values, "data")
    return TrainPlan(
        space=space_name,
        space_options=options_to_dict(space_options),
        arch=checked,
        arch_source=source,
        recipe_name=recipe,
        recipe=recipe_to_dict(recipe_options),
        data=options_to_dict(data_options),
        plugins=list(plugins),
    )


def _from_run(run_dir: Path) -> tuple[str, dict[str, Any], dict[str, Any], str, dict[str, Any], list[str]]:
    from nasframe.config import merge_config, resolve
    from nasframe.rundir import RunDir, answer_of

    files = RunDir(run_dir)
    files.require_run()
    if not files.is_finished():
        raise RunDirError(f"{run_dir}: the run has not finished (no best.json); resume it first")
    config = resolve(merge_config(files.read_config()))
    chosen, where = answer_of(files.read_result())
    data_values = options_to_dict(config.options["data"])
    data_values.pop("limit", None)
    return (
        config.names["space"],
        options_to_dict(config.options["space"]),
        dict(chosen),
        f"{run_dir / 'best.json'}: {where}",
        data_values,
        list(config.plugins),
    )


def _arch_text(arch: str | Mapping[str, Any]) -> tuple[str, str]:
    """The architecture's text and a note of where it came from (a file's path, or 'given')."""
    if isinstance(arch, Mapping):
        return json.dumps(dict(arch)), "given mapping"
    if Path(arch).is_file():
        from nasframe.cli import arch_text_from_file

        text, where = arch_text_from_file(arch)
        return text, where or arch
    return arch, f"--arch {arch}" if len(arch) <= 80 else "--arch (text)"


def _regularisers(cls: type[SearchSpace], space_name: str, recipe_name: str, recipe: Recipe) -> dict[str, Any]:
    """The space options that give the recipe's auxiliary head and drop-path, or a one-line refusal where the
    space's networks have neither (they are declared in `SearchSpace.training_extras`)."""
    extras = cls.training_extras
    values: dict[str, Any] = {}
    for wanted, extra, key in (
        (recipe.drop_path_prob > 0, "drop_path", "drop_path_prob"),
        (recipe.auxiliary_weight > 0, "auxiliary", "auxiliary_weight"),
    ):
        if wanted and extra not in extras:
            raise NotSupported(
                f"recipe {recipe_name}: space {space_name}'s networks have no {extra.replace('_', '-')}; "
                f"set --set recipe.{key}=0 to train without it"
            )
    if "auxiliary" in extras:
        values.update(auxiliary=recipe.auxiliary_weight > 0, auxiliary_weight=recipe.auxiliary_weight)
    if "drop_path" in extras:
        values["drop_path_prob"] = 0.0  # raised per epoch by the trainer
    return values


def build_space(plan: TrainPlan) -> SearchSpace:
    from nasframe.registry import load_plugin, spaces

    for plugin in plan.plugins:
        load_plugin(plugin)
    cls = spaces.get(plan.space)
    return cls(build_options(cls.Options, plan.space_options, "space"))


def data_spec(plan: TrainPlan) -> DataSpec:
    from nasframe.registry import datasets

    return datasets.create(plan.data_options.name, plan.data_options).spec()


def build_model(plan: TrainPlan) -> tuple[nn.Module, Arch, DataSpec]:
    """The plan's network with fresh weights drawn from the recipe seed (the same weights every time)."""
    space = build_space(plan)
    arch = space.validate(plan.arch)
    spec = data_spec(plan)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.recipe_options.seed)
        model = space.build(arch, spec)
    return model, arch, spec


# ---- data ------------------------------------------------------------------------------------------------------
@dataclass
class TrainTestData:
    """The train and test sets as uint8 image tensors on the device, with the normalisation statistics."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor  # (1, C, 1, 1)
    std: torch.Tensor
    spec: DataSpec
    split: dict[str, Any]


def load_train_test(options: DataOptions, device: torch.device) -> TrainTestData:
    """The data set's own train/test split; a set without one (digits) gives a fixed, seeded
    `HELD_OUT_TEST` share of its images as the test set. `data.limit` takes a seeded subset of the train part."""
    from nasframe.registry import datasets

    dataset = datasets.create(options.name, options)
    if dataset.streaming:
        raise NotSupported(
            f"train: {options.name} streams from disk; training reads whole in-memory sets only "
            "(digits, fashion_mnist, cifar10, cifar100, synthetic)"
        )
    raw = dataset.load()
    gen = torch.Generator().manual_seed(0)
    train_x, train_y = raw.train_x, raw.train_y
    if raw.test_x is not None and raw.test_y is not None:
        test_x, test_y, test_source = raw.test_x, raw.test_y, "the data set's test split"
    else:
        order = torch.randperm(train_x.shape[0], generator=gen)
        n_test = max(1, int(round(train_x.shape[0] * HELD_OUT_TEST)))
        test_idx, train_idx = order[:n_test], order[n_test:]
        test_x, test_y = train_x[test_idx], train_y[test_idx]
        train_x, train_y = train_x[train_idx], train_y[train_idx]
        test_source = f"a fixed {HELD_OUT_TEST:.0%} of the train images (the data set has no test split)"
    if options.limit is not None and options.limit < train_x.shape[0]:
        keep = torch.randperm(train_x.shape[0], generator=gen)[: options.limit]
        train_x, train_y = train_x[keep], train_y[keep]
    c = train_x.shape[1]
    return TrainTestData(
        train_x=train_x.to(device),
        train_y=train_y.to(device),
        test_x=test_x.to(device),
        test_y=test_y.to(device),
        mean=torch.tensor(raw.mean, dtype=torch.float32, device=device).view(1, c, 1, 1),
        std=torch.tensor(raw.std, dtype=torch.float32, device=device).view(1, c, 1, 1),
        spec=dataset.spec(),
        split={"train": int(train_x.shape[0]), "test": int(test_x.shape[0]), "test_source": test_source},
    )


# ---- the schedule ----------------------------------------------------------------------------------------------
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


# ---- the loop --------------------------------------------------------------------------------------------------
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


def resolve_device(name: str) -> torch.device:
    from nasframe.runner import resolve_device as run_device

    return run_device(name)


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
    ):
        self.plan = plan
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
        self.new_folder = False  # created by `create`: removed again if the training fails before its first epoch

    # ---- creating and resuming -------------------------------------------------------------------------------
    @classmethod
    def create(cls, plan: TrainPlan, out: str | Path | None, **kwargs: Any) -> Trainer:
        distributed.start()  # under torchrun: join the other processes of this training
        folder = Path(out) if out is not None else Path(distributed.agree_text(str(_default_out(plan))))
        if (folder / TRAIN_JSON).exists():
            raise RunDirError(f"{folder} already holds a training; continue it with: nasframe train --resume {folder}")
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--out {folder} is a file, not a folder")
        new_folder = not folder.exists()
        distributed.barrier()  # every process has looked at the folder before rank 0 writes to it
        if distributed.is_writer():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / TRAIN_JSON, plan.to_dict())
        trainer = cls(plan, folder, **kwargs)
        trainer.new_folder = new_folder
        return trainer

    @classmethod
    def resume(cls, out: str | Path, **kwargs: Any) -> Trainer:
        distributed.start()  # under torchrun: join the other processes of this training
        return cls(read_plan(Path(out)), Path(out), resuming=True, **kwargs)

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

    def _discard_if_empty(self) -> None:
        """A new training that failed before any epoch (missing data, a refused setting) leaves nothing behind,
        so the same command can simply be run again."""
        if self.resuming or (self.out / "checkpoint.pt").exists():
            return
        (self.out / TRAIN_JSON).unlink(missing_ok=True)
        import shutil

        shutil.rmtree(self.out / TENSORBOARD, ignore_errors=True)
        if self.new_folder and not any(self.out.iterdir()):
            self.out.rmdir()

    def prepare(self) -> None:
        """Model, data, optimiser and batch transform on the device (what `train_epoch` needs)."""
        from nasframe.evaluators.training import StepSettings

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
        if distributed.active():  # the global batch split over the processes (nasframe/distributed.py)
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
        from nasframe.evaluators.training import autocast, classification_loss

        assert self.model is not None and self.network is not None, "prepare() first"
        r, model, opt, data, settings = self.recipe, self.model, self.optimizer, self.data, self.settings
        parallel = self.network is not model
        start = time.perf_counter()
        if self.drop_path:  # declared in the space's training_extras: the network reads this attribute
            network: Any = model
            network.drop_path_prob = r.drop_path_prob * epoch / r.epochs  # DARTS' linear schedule
        seed = epoch_seed(r.seed, epoch)
        torch.manual_seed(seed)  # dropout and drop-path draw from the global generators
        gen = torch.Generator(device=self.device).manual_seed(seed)
        order = torch.randperm(int(data.train_x.shape[0]), device=self.device, generator=gen)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        group = opt.param_groups[0]
        first = epoch * self.steps_per_epoch
        lr = r.lr
        model.train()
        for i in range(self.steps_per_epoch):
            idx = order[i * self.batch : (i + 1) * self.batch]
            x = self.transform.train(data.train_x[idx], gen)
            y = data.train_y[idx]
            if parallel:  # augmented whole, as one process would, then this process's slice
                x, y = distributed.shard(x, y)
            lr = learning_rate(r, first + i, self.total_steps, self.steps_per_epoch)
            group["lr"] = lr
            synced = distributed.synced_batchnorm(True) if parallel else contextlib.nullcontext()
            with autocast(self.device, settings.amp), synced:
                out = self.network(x)
                loss = classification_loss(out, y, settings)
            loss.backward()
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, settings.grad_clip, foreach=True)
            opt.step()
            opt.zero_grad(set_to_none=True)
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

    @torch.no_grad()
    def test(self) -> tuple[float, float]:
        """(top-1 accuracy in percent, mean cross-entropy) on the test set, in eval mode."""
        from nasframe.evaluators.training import autocast

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
        from nasframe.evaluators.training import deterministic_mode
        from nasframe.progress import Progress

        self.prepare()
        assert self.model is not None
        done, seconds = 0, 0.0
        history: list[dict[str, Any]] = []
        if self.resuming:
            done, history, seconds = self._load_checkpoint()
        if done >= self.recipe.epochs and (self.out / WEIGHTS).exists():
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
                "epochs_done": epochs_done,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "history": history,
                "seconds": seconds,
            },
        )

    def _load_checkpoint(self) -> tuple[int, list[dict[str, Any]], float]:
        assert self.model is not None
        if not (self.out / "checkpoint.pt").exists():
            return 0, [], 0.0  # killed before its first epoch ended: start again
        state = load_checkpoint(self.out)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            return int(state["epochs_done"]), list(state["history"]), float(state["seconds"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise RunDirError(
                f"{self.out / 'checkpoint.pt'}: does not fit this training ({type(exc).__name__})"
            ) from None

    def _finish(self, test_acc: float, test_loss: float, history: list[dict[str, Any]], seconds: float) -> TrainResult:
        from nasframe.model_stats import count_macs, count_parameters

        assert self.model is not None
        model = self.model
        params = count_parameters(model)
        macs: int | None
        try:
            macs = count_macs(model, self.data.spec.input_shape)
        except (RuntimeError, NotImplementedError):
            macs = None
        if self.writer:
            save_weights(model, self.out / WEIGHTS)
        space = build_space(self.plan)
        train_loss = history[-1]["train_loss"] if history else float("nan")
        meta = {
            **self.plan.to_dict(),
            "input_shape": list(self.data.spec.input_shape),
            "num_classes": self.data.spec.num_classes,
            "export": space.export(self.arch),
            "params": params,
            "macs": macs,
            "metrics": {"test_acc": test_acc, "test_loss": test_loss, "train_loss": train_loss},
            "data_split": self.data.split,
            "epochs": self.recipe.epochs,
            "seconds": seconds,
            "device": str(self.device),
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


def read_plan(folder: Path) -> TrainPlan:
    path = folder / TRAIN_JSON
    if not path.is_file():
        raise RunDirError(f"{folder}: no {TRAIN_JSON}; is this a nasframe training folder?")
    from nasframe.loading import load_json

    return TrainPlan.from_dict(load_json(path, "", RunDirError), str(path))


# ---- weights -----------------------------------------------------------------------------------------------------
def save_weights(model: nn.Module, path: Path) -> None:
    """The state dict as safetensors (contiguous CPU copies), written atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"format": "nasframe", "version": str(FORMAT)}))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into `model`; a damaged or mismatched file is one RunDirError."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise RunDirError(f"{path}: unreadable weights file ({type(exc).__name__}); it is damaged") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError:
        raise RunDirError(f"{path}: the weights do not fit the architecture in {MODEL_JSON}") from None
