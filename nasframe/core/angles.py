"""ABS' angle metric (Hu et al., ECCV 2020; reference 2.1), shared by evaluators and strategies.

A path's angle is the angle between its weight vector taken from base weights and the same vector
taken from the current weights: how far training has turned it. It lives in the core because
both sides of the one-shot protocol use it: weight-sharing evaluators compute it
(`AngleMetric.path_angles`), and ABS scores operators with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def angle(v0: torch.Tensor | Sequence[float], v1: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """arccos(clamp(<v0, v1> / (|v0| |v1|), -1, 1)) in radians: a 0-d float64 tensor on the inputs' device.

    The three dot products are taken in float64 (three passes over the vectors, no host sync).
    angle(v, v) is exactly 0, since sqrt(x * x) == x in IEEE arithmetic; the clamp keeps rounding
    from producing NaN near 0 and pi; the smallest angle it resolves is about 1.5e-8 rad. A zero
    vector points nowhere: two of them give 0, one gives pi/2 (cosine 0), never NaN.
    """
    a = torch.as_tensor(v0).detach().reshape(-1).to(torch.float64)
    b = torch.as_tensor(v1).detach().reshape(-1).to(device=a.device, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"angle: vectors differ in length ({a.numel()} vs {b.numel()})")
    n0, n1, dot = torch.dot(a, a), torch.dot(b, b), torch.dot(a, b)
    denom = torch.sqrt(n0 * n1)
    both_zero = (n0 == n1).to(torch.float64)  # reached only when a norm is 0: 1 if both are
    cos = torch.where(denom > 0, dot / denom.clamp_min(torch.finfo(torch.float64).tiny), both_zero)
    return torch.arccos(cos.clamp(-1.0, 1.0))
