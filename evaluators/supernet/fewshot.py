"""Few-shot supernets: one supernet split into sub-supernets, each owning part of the space.

Hu et al., "Generalizing Few-Shot NAS with Gradient Matching" (ICLR 2022; reference algorithms.md
section 6) split a decision's choices into groups whose shared-weight gradients disagree least
within a group, and give each group its own copy of the supernet; Zhao et al., "Few-Shot Neural
Architecture Search" (ICML 2021) split exhaustively, one copy per choice. Both rest on the same
pieces, kept here:

- `FewShotSupernet`, a `Supernet` over sub-supernets ("shots") with a mask per shot; every
  architecture belongs to exactly one shot and is routed to it, so strategies never know;
- `gradient_distances`: the gradient-matching distance between a decision's choices;
- `partition_min_within`: the two-group partition with the least within-group distance;
- `FewShotSplitting`, the supernet evaluator's part that decides when to split (`few_shot`,
  `split_epochs`), moves the optimizer's state and the base weights from a parent to its
  children, and keeps the sub-supernets in the checkpoint.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.core.space import Arch, Decision, Index, ParamSlice, SearchSpace, Supernet
from nasframe.data import DataSource
from nasframe.evaluators.supernet.options import SupernetOptions
from nasframe.evaluators.supernet.shared import SharedSupernet

#: a shot's mask: decision name -> the choices that shot owns (decisions not listed: all choices)
Mask = dict[str, tuple[Any, ...]]


class FewShotSupernet(nn.Module, Supernet):
    """Sub-supernets `shots[i]` owning the architectures that `masks[i]` allows (a partition of the
    space). Parameter names are the shot's own prefixed with `shots.<i>.`."""

    def __init__(self, base: nn.Module, decisions: Sequence[Decision]):
        super().__init__()
        self.shots = nn.ModuleList([base])
        self.masks: list[Mask] = [{}]
        self.decisions = list(decisions)
        #: the shot `forward_mixed` runs (set before each mixed step by the evaluator)
        self.mixed_shot = 0
        self._current = 0
        self._path: Arch | None = None
        self._mask_weights: dict[tuple[int, str], torch.Tensor] = {}

    # ---- routing -----------------------------------------------------------------------------------
    def shot_of(self, arch: Mapping[str, Any]) -> int:
        for i, mask in enumerate(self.masks):
            if all(arch.get(name) in allowed for name, allowed in mask.items()):
                return i
        raise InvalidArchitecture(f"no sub-supernet holds {dict(arch)} (masks: {self.masks})")

    def shot(self, i: int) -> Any:
        return self.shots[i]

    @property
    def current_path(self) -> Arch | None:
        """The architecture of the last `set_path` (what `forward` runs)."""
        return self._path

    def set_path(self, arch: Arch) -> None:
        self._current = self.shot_of(arch)
        self.shot(self._current).set_path(arch)
        self._path = arch

    def forward(self, x: torch.Tensor) -> Any:
        return self.shots[self._current](x)

    def path_parameter_names(self, arch: Arch) -> list[str]:
        i = self.shot_of(arch)
        return [f"shots.{i}.{n}" for n in self.shot(i).path_parameter_names(arch)]

    def path_parameter_slices(self, arch: Arch) -> dict[str, Index | None]:
        i = self.shot_of(arch)
        return {f"shots.{i}.{n}": index for n, index in self.shot(i).path_parameter_slices(arch).items()}

    def path_buffer_slices(self, arch: Arch) -> dict[str, Index]:
        i = self.shot_of(arch)
        return {f"shots.{i}.{n}": index for n, index in self.shot(i).path_buffer_slices(arch).items()}

    def angle_terms(self, arch: Arch) -> list[str | ParamSlice | torch.Tensor]:
        i = self.shot_of(arch)
        return [_in_shot(i, t) for t in self.shot(i).angle_terms(arch)]

    def forward_mixed(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The mixed forward of shot `mixed_shot`, each decision's weights restricted to the choices
        that shot owns and renormalised (softmax over the owned subset, when `weights` are a softmax)."""
        i = self.mixed_shot
        masked = dict(weights)
        for name, allowed in self.masks[i].items():
            w = weights[name]
            key = (i, name)
            keep = self._mask_weights.get(key)
            if keep is None or keep.device != w.device or keep.dtype != w.dtype:
                choices = next(d.choices for d in self.decisions if d.name == name)
                keep = torch.tensor([float(c in allowed) for c in choices], device=w.device, dtype=w.dtype)
                self._mask_weights[key] = keep
            kept = w * keep
            # clamped: a strategy whose own space excludes every choice this shot owns gives them all 0
            masked[name] = kept / kept.sum().clamp_min(1e-12)
        return self.shot(i).forward_mixed(x, masked)

    # ---- splitting ---------------------------------------------------------------------------------
    def split(self, i: int, decision: str, groups: Sequence[Sequence[Any]]) -> Callable[[str], str]:
        """Replace shot `i` by one copy per group (the first keeps the parent's tensors), each owning
        `decision`'s choices of its group; returns new parameter name -> the name it was copied from."""
        parent = self.shots[i]
        children = [parent] + [copy.deepcopy(parent) for _ in groups[1:]]
        masks = [{**self.masks[i], decision: tuple(g)} for g in groups]
        g = len(groups)
        self.shots = nn.ModuleList([*self.shots[:i], *children, *self.shots[i + 1 :]])
        self.masks = [*self.masks[:i], *masks, *self.masks[i + 1 :]]
        self._mask_weights = {}
        if self._path is not None:
            self.set_path(self._path)

        def source(name: str) -> str:
            _, j_text, rest = name.split(".", 2)
            j = int(j_text)
            old = j if j < i else i if j < i + g else j - g + 1
            return f"shots.{old}.{rest}"

        return source

    def owned_choices(self, i: int, decision: Decision) -> tuple[Any, ...]:
        return self.masks[i].get(decision.name, tuple(decision.choices))

    def sample_in(self, i: int, rng: np.random.Generator) -> Arch:
        """A uniform architecture among those shot `i` owns."""
        return Arch([(d.name, _pick(self.owned_choices(i, d), rng)) for d in self.decisions])

    # ---- checkpoints -------------------------------------------------------------------------------
    def layout(self) -> list[dict[str, list[Any]]]:
        """The masks as plain data (the checkpoint rebuilds the shots from it before loading weights)."""
        return [{name: list(allowed) for name, allowed in mask.items()} for mask in self.masks]

    def restore_layout(self, layout: Sequence[Mapping[str, Sequence[Any]]]) -> None:
        base = self.shots[0]
        self.shots = nn.ModuleList([base] + [copy.deepcopy(base) for _ in layout[1:]])
        self.masks = [{name: tuple(allowed) for name, allowed in mask.items()} for mask in layout]
        self._mask_weights = {}


def _in_shot(i: int, term: str | ParamSlice | torch.Tensor) -> str | ParamSlice | torch.Tensor:
    """An angle term of shot `i`'s supernet, named as in the few-shot supernet."""
    if isinstance(term, ParamSlice):
        return ParamSlice(f"shots.{i}.{term.name}", term.part)
    return f"shots.{i}.{term}" if isinstance(term, str) else term


def _pick(choices: Sequence[Any], rng: np.random.Generator) -> Any:
    return choices[int(rng.integers(len(choices)))]


def gradient_distances(
    net: FewShotSupernet,
    shot: int,
    decision: Decision,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    repeats: int,
    rng: np.random.Generator,
    loss_of: Callable[[Any, torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """D[k, l] = 1 - cos(g_k, g_l), averaged over `repeats` mini-batches, for `decision`'s choices k
    that shot `shot` owns (GM-NAS' `cos` distance, 1e-6 added to the denominator).

    Each repeat draws one path uniformly among the shot's architectures for the other decisions
    (GM-NAS' weight-sharing mode, where other edges sample), then sets `decision` to each choice in
    turn and takes the gradient of the training loss. g_k covers the parameters every choice's path
    uses (the shared weights; the decision's own ops are in only one path each). The diagonal is 0,
    which the partition never reads. BatchNorm
    statistics are restored afterwards, so measuring changes nothing in the supernet.
    """
    choices = net.owned_choices(shot, decision)
    buffers = [(b, b.detach().clone()) for b in net.buffers()]
    previous = net.current_path
    params = dict(net.named_parameters())
    total = np.zeros((len(choices), len(choices)))
    was_training = net.training
    net.train()
    try:
        for _ in range(repeats):
            x, y = next(batches)
            path = net.sample_in(shot, rng)
            archs = [Arch([(n, c if n == decision.name else v) for n, v in path.items()]) for c in choices]
            g = _choice_gradients(net, archs, params, x, y, loss_of)
            total += _cosine_distances(g).cpu().numpy()
    finally:
        with torch.no_grad():
            for b, value in buffers:
                b.copy_(value)
        net.train(was_training)
        if previous is not None:  # the path that was running before the measurement runs again
            net.set_path(previous)
    return total / max(1, repeats)


def _choice_gradients(
    net: FewShotSupernet,
    archs: Sequence[Arch],
    params: Mapping[str, nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    loss_of: Callable[[Any, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """One row per architecture: the gradient of its loss on (x, y) over the parameters all of `archs` use."""
    names = [set(net.path_parameter_names(a)) for a in archs]
    shared = [n for n in params if all(n in s for s in names)]
    grads = []
    for arch in archs:
        net.set_path(arch)
        used = [params[n] for n in shared]
        loss = loss_of(net(x), y)
        got = torch.autograd.grad(loss, used, allow_unused=True)
        grads.append(
            torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(got, used)])
            if used
            else torch.zeros(1, device=x.device)
        )
    return torch.stack(grads).double()


def _cosine_distances(g: torch.Tensor) -> torch.Tensor:
    """1 - cos between the rows of `g` (1e-6 added to the denominator), 0 on the diagonal."""
    norms = g.norm(dim=1)
    cos = (g @ g.T) / (norms[:, None] * norms[None, :] + 1e-6)
    distance = 1.0 - cos
    distance.fill_diagonal_(0.0)  # a choice's distance to itself (the eps would leave 1e-6 / |g|^2)
    return distance


def partition_min_within(distances: np.ndarray) -> tuple[list[list[int]], float, float]:
    """Two groups of choice indices minimising the sum of pairwise distances inside the groups
    (GM-NAS: subsets S with 2 <= |S| <= K/2 against their complements). With fewer than 4 choices no
    such S exists; then groups of one are allowed (2 choices: one each; 3: one and two).

    Returns (groups, within, cross): the within-group sum and the cross-group sum, each pair counted
    once. Ties keep the first subset in `itertools.combinations` order.
    """
    k = len(distances)
    if k < 2:
        raise ValueError("a decision needs at least 2 choices to split")
    d = (np.asarray(distances, dtype=np.float64) + np.asarray(distances, dtype=np.float64).T) / 2
    pairs = float(np.triu(d, 1).sum())
    smallest = 2 if k >= 4 else 1
    best: tuple[float, list[int]] | None = None
    for size in range(smallest, k // 2 + 1):
        for subset in itertools.combinations(range(k), size):
            rest = [i for i in range(k) if i not in subset]
            within = _within(d, list(subset)) + _within(d, rest)
            if best is None or within < best[0] - 1e-12:
                best = (within, list(subset))
    assert best is not None  # k >= 2 always leaves a subset of size 1 or 2
    group = best[1]
    rest = [i for i in range(k) if i not in group]
    return [group, rest], best[0], pairs - best[0]


def _within(d: np.ndarray, group: list[int]) -> float:
    return float(sum(d[a, b] for a, b in itertools.combinations(group, 2)))


def _loss_of_logits(out: Any, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a supernet's logits (the first output when it also returns auxiliary logits)."""
    logits = out[0] if isinstance(out, tuple) else out
    return torch.nn.functional.cross_entropy(logits.float(), y)


class FewShotSplitting(SharedSupernet):
    """The supernet evaluator's few-shot part: with `evaluator.few_shot` on, the supernet is a
    `FewShotSupernet` whose sub-supernets all split once at each of `split_epochs` (between two
    training steps, see `SharedSupernet._train`); the children inherit their parent's weights, momentum
    and base weights, and the checkpoint records the layout."""

    def __init__(
        self,
        space: SearchSpace,
        options: SupernetOptions | None = None,
        *,
        data: DataSource | None = None,
        device: torch.device | str = "cpu",
    ):
        super().__init__(space, options, data=data, device=device)
        names = [d.name for d in space.decisions]
        wanted = self.options.split_decisions
        if wanted is not None and (not wanted or any(n not in names for n in wanted)):
            bad = [n for n in wanted if n not in names]
            what = f"unknown decision(s) {', '.join(map(repr, bad))}" if bad else "an empty list"
            raise ConfigError(
                f"evaluator.split_decisions: {what}; give null (all) or names among {', '.join(names[:8])}"
                f"{', ...' if len(names) > 8 else ''}"
            )
        #: split points passed, and what each split did
        self.splits_done = 0
        self.splits: list[dict[str, Any]] = []

    def _wrap_supernet(self, net: torch.nn.Module) -> torch.nn.Module:
        return FewShotSupernet(net, self.space.decisions) if self.options.few_shot != "none" else net

    def _steps_to_split(self) -> float:
        """Steps until the next split point (0: due now; inf: none left or few-shot off)."""
        o = self.options
        if o.few_shot == "none" or self.splits_done >= len(o.split_epochs):
            return math.inf
        at = round(sorted(o.split_epochs)[self.splits_done] * self._steps_per_epoch())
        return max(0, at - self.step)

    def _split_all(self, generator: torch.Generator | None) -> None:
        """Split every sub-supernet once (GM-NAS splits each of them at every split point)."""
        net = cast(FewShotSupernet, self.supernet)
        epoch = sorted(self.options.split_epochs)[self.splits_done]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))  # seeded by the runner's piece seed
        for shot in reversed(range(len(net.masks))):  # children are inserted after their parent
            choice = self._choose_split(net, shot, generator, rng)
            if choice is None:
                continue
            decision, groups, within, cross = choice
            source = net.split(shot, decision, groups)
            self._inherit(source)
            record = {"epoch": epoch, "sub_supernet": shot, "decision": decision, "groups": groups}
            if within is not None:
                record |= {"within": within, "cross": cross}
            self.splits.append(record)
            detail = "" if within is None else f" (within-group distance {within:.4f}, cross-group {cross:.4f})"
            self._notes.append(
                f"epoch {epoch:g}: sub-supernet {shot} split on {decision} into "
                f"{' | '.join(','.join(map(str, g)) for g in groups)}{detail}; {len(net.masks)} sub-supernets"
            )
        self.splits_done += 1

    def _choose_split(
        self, net: FewShotSupernet, shot: int, generator: torch.Generator | None, rng: np.random.Generator
    ) -> tuple[str, list[list[Any]], float | None, float | None] | None:
        o = self.options
        wanted = o.split_decisions or [d.name for d in self.space.decisions]
        by_name = {d.name: d for d in self.space.decisions}
        candidates = [
            by_name[n] for n in wanted if n not in net.masks[shot] and len(net.owned_choices(shot, by_name[n])) > 1
        ]
        if not candidates:
            return None
        if o.few_shot == "exhaustive":
            d = candidates[0]
            return d.name, [[c] for c in net.owned_choices(shot, d)], None, None
        batches, transform = self._data()
        stream = ((transform.train(x, generator), y) for x, y in batches.stream("train", o.batch_size, generator))
        best: tuple[float, str, list[list[Any]], float, float] | None = None
        for d in candidates:
            distances = gradient_distances(net, shot, d, stream, o.split_batches, rng, _loss_of_logits)
            groups, within, cross = partition_min_within(distances)
            key = within if o.split_select == "min_within" else -cross
            if best is None or key < best[0]:
                choices = net.owned_choices(shot, d)
                best = (key, d.name, [[choices[i] for i in g] for g in groups], within, cross)
        assert best is not None
        return best[1], best[2], best[3], best[4]

    def _inherit(self, source: Callable[[str], str]) -> None:
        """After a split: a new optimizer over the children's parameters, each child's momentum and
        base weights copied from the parameter it was copied from (GM-NAS' children inherit weights
        and optimizer state)."""
        old_params, old_state = self._params, cast(torch.optim.SGD, self.optimizer).state
        self._new_optimizer()
        state = cast(torch.optim.SGD, self.optimizer).state
        for name, p in self._params.items():
            buf = old_state.get(old_params[source(name)], {}).get("momentum_buffer")
            if buf is not None:
                state[p]["momentum_buffer"] = buf.clone()
        self._set_base({name: self.base[source(name)].clone() for name in self._params})

    def _shot_metrics(self) -> dict[str, float]:
        if self.options.few_shot == "none":
            return {}
        return {"sub_supernets": float(len(cast(FewShotSupernet, self.supernet).masks))}

    def _few_shot_state(self) -> dict[str, Any] | None:
        if not isinstance(self.supernet, FewShotSupernet):
            return None
        return {
            "layout": self.supernet.layout(),
            "splits_done": self.splits_done,
            "splits": list(self.splits),
            "split_epochs": sorted(self.options.split_epochs),
        }

    def _load_few_shot(self, few_shot: dict[str, Any] | None) -> None:
        if few_shot is not None:
            if not isinstance(self.supernet, FewShotSupernet):
                raise ConfigError(
                    "the checkpoint holds a few-shot supernet; resume with the evaluator.few_shot it was started with"
                )
            if [float(e) for e in few_shot["split_epochs"]] != sorted(self.options.split_epochs):
                raise ConfigError(
                    f"the checkpoint's supernet splits at epochs {few_shot['split_epochs']}; resume with that "
                    f"evaluator.split_epochs"
                )
            self.supernet.restore_layout(few_shot["layout"])
            self._new_optimizer()
            self.splits_done, self.splits = int(few_shot["splits_done"]), list(few_shot["splits"])
        elif isinstance(self.supernet, FewShotSupernet):
            raise ConfigError("the checkpoint holds a one-shot supernet; resume without evaluator.few_shot")
