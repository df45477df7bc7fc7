"""The DARTS cell search space (Liu et al., ICLR 2019), in its single-path form.

Decisions: the 14 edges of the normal cell and the 14 of the reduction cell, named
`normal.<j><-<k>` / `reduce.<j><-<k>` (node j reads node k; nodes 0, 1 are the cell inputs
c_{k-2}, c_{k-1}; 2..5 the intermediate nodes), in DARTS' edge order. Each picks one of the 8
DARTS primitives, 'none' (no edge) first. A DARTS genotype is the special case with exactly two
non-'none' inputs per node; any other pattern is a valid single-path architecture too.

Network contract (`build`): DARTS' NetworkCIFAR (or NetworkImageNet, `variant`) for the cells;
`model(x)` returns logits, or `(logits, aux_logits)` in train mode when `auxiliary` is on (weight
the auxiliary loss by `model.auxiliary_weight`); `model.drop_path_prob` may be changed per epoch.
See `darts_networks`, `darts_supernet` and `darts_genotype` for the parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nasframe.common.errors import ConfigError, InvalidArchitecture
from nasframe.common.options import option
from nasframe.core.registry import register_space
from nasframe.core.space import Arch, Decision, SearchSpace
from nasframe.data import DataSpec

from .darts_genotype import (
    ALIASES,
    CELL_TYPES,
    DECISION_NAMES,
    PRIMITIVES,
    PUBLISHED,
    Genotype,
    arch_from_value,
    arch_nodes,
    derive_genotype,
    is_genotype,
    looks_like_genotype,
    parse_genotype_fields,
)

if TYPE_CHECKING:  # the networks import torch: loaded when built, so `nasframe list` runs without it
    from .darts_networks import DartsNetwork, Variant
    from .darts_supernet import DartsSupernet

#: input height from which `variant: auto` builds DARTS' ImageNet network
IMAGENET_MIN_HEIGHT = 128
#: inputs lower than this get the small stand-alone network under `C: auto` / `layers: auto`
SMALL_INPUT_HEIGHT = 16
#: (C, layers) that `auto` gives: DARTS' search-network size, and the size for inputs under 16 px.
#: On 8x8 digits the small one reaches the large one's search-val accuracy after short training at
#: about a third of its CPU time (docs/benchmarks-cpu.md): there the last cells of the large one
#: run 5x5 and dilated kernels on 2x2 maps, almost all padding.
AUTO_SIZE = (16, 8)
AUTO_SIZE_SMALL = (8, 4)


@dataclass(frozen=True)
class DartsOptions:
    C: int | Literal["auto"] = option(
        "auto",
        f"initial channels of the stand-alone network, even; auto: {AUTO_SIZE[0]} (DARTS' search network), "
        f"{AUTO_SIZE_SMALL[0]} for inputs under {SMALL_INPUT_HEIGHT} px (DARTS evaluates at 36 on CIFAR, 48 "
        "on ImageNet)",
        min=2,
    )
    layers: int | Literal["auto"] = option(
        "auto",
        f"cells in the stand-alone network; auto: {AUTO_SIZE[1]}, {AUTO_SIZE_SMALL[1]} for inputs under "
        f"{SMALL_INPUT_HEIGHT} px (DARTS evaluates at 20 on CIFAR, 14 on ImageNet)",
        min=1,
    )
    auxiliary: bool = option(False, "add DARTS' auxiliary head after cell 2*layers//3 (train mode only)")
    auxiliary_weight: float = option(0.4, "loss weight for the auxiliary logits, read by evaluators", min=0.0)
    drop_path_prob: float = option(
        0.0, "drop-path probability of non-identity op outputs in training", min=0.0, max=0.9
    )
    stem_multiplier: int = option(3, "CIFAR stem width = stem_multiplier * C", min=1)
    variant: Literal["auto", "cifar", "imagenet"] = option(
        "auto", f"network skeleton; auto = imagenet when the input height is >= {IMAGENET_MIN_HEIGHT}"
    )
    supernet_C: int = option(16, "initial channels of the weight-sharing supernet; even", min=2)
    supernet_layers: int = option(8, "cells in the weight-sharing supernet", min=1)

    def __post_init__(self) -> None:
        for key in ("C", "supernet_C"):
            if getattr(self, key) != "auto" and getattr(self, key) % 2:
                raise ConfigError(
                    f"space.{key}: {getattr(self, key)} is odd; DARTS' FactorizedReduce needs an even channel count"
                )


_NAMED: dict[str, Arch] = {}
#: the papers' spellings that differ from a name by more than case and separators
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "DARTS_V1": ("DARTS (first order)",),
    "DARTS_V2": ("DARTS (second order)",),
}


def _named() -> dict[str, Arch]:
    if not _NAMED:
        parsed = {name: arch_from_value(parse_genotype_fields(text)) for name, text in PUBLISHED.items()}
        # aliases first, so a reverse lookup (architecture -> name) ends on the real name
        _NAMED.update({alias: parsed[target] for alias, target in ALIASES.items()})
        _NAMED.update(parsed)
    return _NAMED


@register_space("darts")
class DartsSpace(SearchSpace[DartsOptions]):
    """DARTS cell space: 14 edges x 8 ops for the normal and the reduction cell (8^28 single paths)."""

    Options = DartsOptions
    reference_data = "cifar10"
    supports_supernet = True
    supernet_extras = frozenset({"angle_terms", "forward_mixed"})
    training_extras = frozenset({"drop_path", "auxiliary"})

    def define_decisions(self) -> list[Decision]:
        return [Decision(name, PRIMITIVES) for name in DECISION_NAMES]

    def variant_for(self, data: DataSpec) -> Variant:
        if self.options.variant != "auto":
            return self.options.variant
        return "imagenet" if data.height >= IMAGENET_MIN_HEIGHT else "cifar"

    def size_for(self, data: DataSpec) -> tuple[int, int]:
        """(C, layers) of the stand-alone network for this data: the options, with `auto` resolved."""
        auto = AUTO_SIZE_SMALL if data.height < SMALL_INPUT_HEIGHT else AUTO_SIZE
        o = self.options
        return (auto[0] if o.C == "auto" else o.C), (auto[1] if o.layers == "auto" else o.layers)

    # ---- names and text ------------------------------------------------------------------
    def named_architectures(self) -> dict[str, Arch]:
        return dict(_named())

    @classmethod
    def published_names(cls) -> dict[str, tuple[str, ...]]:
        return {name: _SPELLINGS.get(name, ()) for name in (*ALIASES, *PUBLISHED)}

    def parse_arch(self, text: str) -> Arch:
        """A name (DARTS_V2, MDENAS, ...), DARTS' `Genotype(...)` text (flat, or pt.darts' nested
        lists), a JSON/YAML genotype mapping, or a JSON/YAML mapping decision -> op."""
        stripped = text.strip()
        found = self.arch_by_name(stripped)
        if found is not None:
            return self.validate(found)
        if stripped.startswith(("Genotype", "(")):
            return self.validate(arch_from_value(parse_genotype_fields(stripped)))
        from nasframe.common.loading import parse_value

        _, value = parse_value(stripped, "architecture text", InvalidArchitecture)
        if looks_like_genotype(value):
            return self.validate(arch_from_value(value))
        if isinstance(value, Mapping):
            return self.validate(value)
        raise InvalidArchitecture(
            f"cannot read DARTS architecture {stripped[:60]!r}: give a name "
            f"({', '.join(self.architecture_names())}), a Genotype(...) text, or a JSON mapping"
            f"{self.name_suggestion(stripped)}"
        )

    def genotype(self, arch: Mapping[str, Any]) -> Genotype:
        """The DARTS genotype of `arch` (InvalidArchitecture unless 2 live inputs per node)."""
        return Genotype.from_arch(self.validate(arch))

    def derive_genotype(self, weights: Mapping[str, Sequence[float]]) -> Genotype:
        """DARTS' rule on per-decision weights aligned with this space's (possibly restricted) choices."""
        return derive_genotype(weights, {d.name: [str(c) for c in d.choices] for d in self.decisions})

    def export(self, arch: Arch, weights: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """`cells`: per node its (op, input) pairs; `genotype`: DARTS text when `arch` is a genotype;
        with `weights`, `derived_genotype` / `derived_arch` by DARTS' rule."""
        arch = self.validate(arch)
        out: dict[str, Any] = {
            "cells": {c: [[list(p) for p in node] for node in arch_nodes(arch, c)] for c in CELL_TYPES},
            "genotype": Genotype.from_arch(arch).to_text() if is_genotype(arch) else None,
        }
        if weights:
            try:
                derived = self.derive_genotype(weights)
            except InvalidArchitecture as exc:
                out["derived_error"] = str(exc)
            else:
                out["derived_genotype"] = derived.to_text()
                out["derived_arch"] = derived.to_arch().to_dict()
        return out

    def plot(self, arch: Arch, path: str) -> None:
        from .darts_plot import plot_cells

        plot_cells(self.validate(arch), path)

    # ---- networks ------------------------------------------------------------------------
    def build(self, arch: Arch, data: DataSpec) -> DartsNetwork:
        from .darts_networks import DartsNetwork, cell_ops

        plain = self.validate(arch).to_dict()
        o = self.options
        channels, layers = self.size_for(data)
        return DartsNetwork(
            cell_ops(plain, "normal"),
            cell_ops(plain, "reduce"),
            data,
            channels=channels,
            layers=layers,
            auxiliary=o.auxiliary,
            auxiliary_weight=o.auxiliary_weight,
            drop_path_prob=o.drop_path_prob,
            stem_multiplier=o.stem_multiplier,
            variant=self.variant_for(data),
        )

    def build_supernet(self, data: DataSpec) -> DartsSupernet:
        from .darts_supernet import DartsSupernet

        o = self.options
        return DartsSupernet(
            data,
            channels=o.supernet_C,
            layers=o.supernet_layers,
            stem_multiplier=o.stem_multiplier,
            variant=self.variant_for(data),
            decisions=self.decisions,
        )
