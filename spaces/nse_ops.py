"""The candidate operations of NSE's search spaces and their pools, in the released code's index order.

Every op expands its input to t x C_in channels with a 1x1 conv first (t = 1 included), then does its
spatial work, then projects to C_out with a linear 1x1 conv; BatchNorm follows every conv and ReLU
every conv but the last (reference algorithms-2.md section 11.1):

- LB (linear bottleneck): depthwise k x k with dilation d; `groups` gives the groups of the expand and
  project 1x1 convs ((1, 2): expand 1, project 2).
- NormalConv: one full k x k conv (strided).
- DualConv: a full k x k conv at stride 1, then a strided full k x k conv.
- Rec: a full 1 x k conv (stride (1, s)), then a full k x 1 conv (stride (s, 1)).

Pools (a decision's op index is its position here, so published codes read directly):
- "multi_branch" (the GPU space, 19 ops): LB k {3,5,7} x t {1,3,6} (t fastest), NormalConv k3 t {1,2},
  DualConv k3 t {1,2}, Rec k {5,7} x t {1,2,4}.
- "multi_mac" (NSE-27, 27 ops): LB k3 t {1,3,6} x d {1,2,3} (d fastest), LB k {5,7,9,11} x t {1,3,6},
  Rec k {5,7} x t {1,2,4}.
- "multi_mac_group" (the second space, 72 ops): the 27 above, then for (k, t) in {3,5,7,9,11} x {1,3,6}
  three grouped LBs with groups (1,2), (2,1), (2,2): index 27 + 3 (3 k_i + t_i) + g.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class OpSpec:
    """One candidate op: its family, kernel, expansion, dilation and 1x1 conv groups (expand, project)."""

    kind: str  # "lb", "normal", "dual", "rec"
    k: int
    t: int
    d: int = 1
    groups: tuple[int, int] = (1, 1)

    @property
    def label(self) -> str:
        text = f"{self.kind}_k{self.k}_t{self.t}"
        if self.d != 1:
            text += f"_d{self.d}"
        if self.groups != (1, 1):
            text += f"_g{self.groups[0]}{self.groups[1]}"
        return text


def _pool_multi_branch() -> tuple[OpSpec, ...]:
    ops = [OpSpec("lb", k, t) for k in (3, 5, 7) for t in (1, 3, 6)]
    ops += [OpSpec("normal", 3, t) for t in (1, 2)]
    ops += [OpSpec("dual", 3, t) for t in (1, 2)]
    ops += [OpSpec("rec", k, t) for k in (5, 7) for t in (1, 2, 4)]
    return tuple(ops)


def _pool_multi_mac() -> tuple[OpSpec, ...]:
    ops = [OpSpec("lb", 3, t, d) for t in (1, 3, 6) for d in (1, 2, 3)]
    ops += [OpSpec("lb", k, t) for k in (5, 7, 9, 11) for t in (1, 3, 6)]
    ops += [OpSpec("rec", k, t) for k in (5, 7) for t in (1, 2, 4)]
    return tuple(ops)


def _pool_multi_mac_group() -> tuple[OpSpec, ...]:
    grouped = [OpSpec("lb", k, t, 1, g) for k in (3, 5, 7, 9, 11) for t in (1, 3, 6) for g in ((1, 2), (2, 1), (2, 2))]
    return _pool_multi_mac() + tuple(grouped)


POOLS: dict[str, tuple[OpSpec, ...]] = {
    "multi_branch": _pool_multi_branch(),
    "multi_mac": _pool_multi_mac(),
    "multi_mac_group": _pool_multi_mac_group(),
}


def _conv_bn(
    cin: int,
    cout: int,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    groups: int = 1,
    dilation: int = 1,
    act: bool = True,
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return layers


def build_op(spec: OpSpec, cin: int, cout: int, stride: int) -> nn.Sequential:
    """The module of one candidate op between `cin` and `cout` channels at `stride`."""
    mid = spec.t * cin
    k = spec.k
    layers = _conv_bn(cin, mid, 1, groups=spec.groups[0])
    if spec.kind == "lb":
        pad = (k + 2 * (spec.d - 1)) // 2  # the released padding rule (exact for the k = 3 dilated ops)
        layers += _conv_bn(mid, mid, k, stride, pad, groups=mid, dilation=spec.d)
    elif spec.kind == "normal":
        layers += _conv_bn(mid, mid, k, stride, k // 2)
    elif spec.kind == "dual":
        layers += _conv_bn(mid, mid, k, 1, k // 2) + _conv_bn(mid, mid, k, stride, k // 2)
    elif spec.kind == "rec":
        layers += _conv_bn(mid, mid, (1, k), (1, stride), (0, k // 2))
        layers += _conv_bn(mid, mid, (k, 1), (stride, 1), (k // 2, 0))
    else:
        raise ValueError(f"unknown op family {spec.kind!r}")
    layers += _conv_bn(mid, cout, 1, groups=spec.groups[1], act=False)
    return nn.Sequential(*layers)
