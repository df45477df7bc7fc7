"""ABS' angle metric on the supernet (`AngleMetric`; Hu et al., 2020): the angle between a path's
weight vector at the base weights and now.

The base weights are taken when the supernet is built and kept in its checkpoint (`shared.py`);
`save_base_weights` replaces them. A path's vector is the concatenation of the terms its
supernet names (`angle_terms`): parameters, read through flat views kept beside the base, and
constant tensors that count the same at both ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nasframe.common.errors import NotSupported
from nasframe.core.angles import angle
from nasframe.core.capabilities import AngleMetric
from nasframe.core.space import Arch, ParamSlice
from nasframe.evaluators.supernet.shared import SharedSupernet
from nasframe.training.sliced import slice_vectors


class SupernetAngles(SharedSupernet, AngleMetric):
    """The supernet's `AngleMetric`: base weights and path angles."""

    @torch.no_grad()
    def path_angles(self, archs: Sequence[Arch]) -> list[float]:
        """ABS angles of the paths, computed on the device and read back once."""
        angles = [angle(*self.path_vectors(a)) for a in archs]
        return torch.stack(angles).cpu().tolist() if angles else []

    def save_base_weights(self) -> None:
        self._build()
        self._set_base({name: p.detach().clone() for name, p in self._params.items()})

    @torch.no_grad()
    def path_vectors(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        self._build()
        base, current = [], []
        flat = self._flat
        for term in self.supernet.angle_terms(arch):
            if isinstance(term, ParamSlice):  # part of a parameter (nasframe/training/sliced.py)
                part_base, part_now = slice_vectors(term, self.base, self._params)
                base.append(part_base)
                current.append(part_now)
            elif isinstance(term, str):
                entry = flat.get(term)
                if entry is None:
                    raise NotSupported(f"angle term names unknown parameter {term!r}")
                base.append(entry[0])
                current.append(entry[1] if entry[1] is not None else self._params[term].detach().reshape(-1))
            else:
                const = term.detach().reshape(-1).to(self.device, torch.float32)
                base.append(const)
                current.append(const)
        if not base:
            empty = torch.zeros(0, device=self.device)
            return empty, empty.clone()
        return torch.cat(base), torch.cat(current)
