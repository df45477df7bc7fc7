"""Weights of the benchmark's own search models, loaded into the NAS-Bench-201 supernet.

The benchmark's search code (AutoDL-Projects: the DARTS, GDAS, SETN, ENAS and random-search tiny
networks) names its modules differently and gives every cell conv a bias (`bias=not affine`, and the
cells' BNs are affine-free). `load_search_model_state` renames the keys and handles the biases:

- a supernet built with `supernet_conv_bias=true` takes them as they are;
- the default supernet has no conv bias. Each bias is folded into the running mean of the BN right
  after its conv (running_mean - bias). That BN is affine-free, so in eval mode it computes
  (conv(x) + b - mean) / std = (conv(x) - (mean - b)) / std, the same output; in train mode the batch
  mean cancels the bias either way, and the running mean then keeps tracking conv(x) alone, so the
  fold stays exact while training goes on. Without running statistics
  (`supernet_track_running_stats=false`) the BN always normalises with the batch's own mean, which
  cancels the bias: it is dropped.

Only what a supernet can hold is loaded: the architecture parameters (the benchmark's single (6, 5)
`arch_parameters` tensor) belong to a strategy and are returned instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from nasframe.common.errors import NasframeError

from .nb201 import EDGE_NAMES
from .nb201_supernet import NB201Supernet

#: the benchmark's search-model names -> the supernet's names
_RENAMES = (
    # NAS201SearchCell: edges is a ModuleDict keyed "i<-j" of ModuleLists in the search-space op order;
    # each conv op is ReLUConvBN, whose layers sit in a Sequential called `op`
    (re.compile(r"^cells\.(\d+)\.edges\.(\d<-\d)\.(\d+)\.op\.(.+)$"), "edge"),
    # ResNetBasicblock: conv_a / conv_b are ReLUConvBN (`op` Sequential); the shortcut is `downsample`
    (re.compile(r"^cells\.(\d+)\.(conv_a|conv_b)\.op\.(.+)$"), "conv"),
    (re.compile(r"^cells\.(\d+)\.downsample\.(.+)$"), "shortcut"),
)
_ALPHAS = "arch_parameters"
_CONV_BIAS = re.compile(r"^(cells\.\d+\.edges\.\d+\.ops\.\d+\.)1\.bias$")


def _rename(key: str) -> str:
    for pattern, kind in _RENAMES:
        m = pattern.match(key)
        if m is None:
            continue
        if kind == "edge":
            k, edge, op, rest = m.groups()
            if edge not in EDGE_NAMES:
                return key  # reported as not in the supernet
            return f"cells.{k}.edges.{EDGE_NAMES.index(edge)}.ops.{op}.{rest}"
        if kind == "conv":
            k, conv, rest = m.groups()
            return f"cells.{k}.{conv}.{rest}"
        k, rest = m.groups()
        return f"cells.{k}.shortcut.{rest}"
    return key


def _listing(keys: set[str]) -> str:
    shown = sorted(keys)[:3]
    return ", ".join(shown) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def load_search_model_state(net: NB201Supernet, state: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """Load a state dict of the benchmark's search model (e.g. the `search_model` entry of its search
    checkpoints) into `net`, in place; return its `arch_parameters` (6 edges x 5 ops, in the benchmark's
    edge and op order, which are the space's) or None when it has none.

    The layout must match: the same `C` and `N` (the benchmark's defaults are the space's, 16 and 5),
    affine-free cell BNs (the benchmark's `affine=0`), and running statistics in the cells exactly when
    `net` keeps them (`supernet_track_running_stats`). Anything else is refused in one line naming the
    keys that do not fit; nothing is loaded then.
    """
    target = net.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    alphas = None
    for key, value in state.items():
        key = key.removeprefix("module.")  # saved from a DataParallel wrapper
        if key == _ALPHAS:
            alphas = value.detach().clone()
            continue
        renamed[_rename(key)] = value
    for key in [k for k in renamed if k not in target]:
        m = _CONV_BIAS.match(key)
        if m is None:
            continue
        mean = m.group(1) + "2.running_mean"
        if mean not in target:  # no running statistics: the batch mean cancels the bias in every mode
            del renamed[key]
        elif mean in renamed:  # otherwise the running statistics are missing, reported below
            bias = renamed.pop(key)
            renamed[mean] = renamed[mean] - bias.to(renamed[mean].dtype)
    missing, unexpected = set(target) - set(renamed), set(renamed) - set(target)
    if missing or unexpected:
        parts = [f"missing {_listing(missing)}"] if missing else []
        parts += [f"not in the supernet {_listing(unexpected)}"] if unexpected else []
        raise NasframeError(
            f"search-model weights do not fit this NB201 supernet ({'; '.join(parts)}); check space.C, space.N, "
            "space.supernet_track_running_stats and that the search model had affine-free cell BNs (affine=0)"
        )
    for key, value in renamed.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise NasframeError(
                f"search-model weights: {key!r} has shape {tuple(value.shape)}, the supernet's is "
                f"{tuple(target[key].shape)}; check space.C and space.N"
            )
    net.load_state_dict(renamed)
    return alphas
