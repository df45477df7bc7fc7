"""Space capability: architectures that are ensembles of sub-networks sharing a trunk.

An ensemble space (the `neas` space) encodes K member architectures plus a split layer as ordinary
decisions, so every strategy (random, evolution, SPOS, ...) searches ensembles unchanged and every
evaluator trains and scores the ensemble network `build` gives. A strategy that reasons about the
members themselves (NEAS' diversity-guided shrinking) declares that it needs this capability and
checks `isinstance(space, EnsembleSpace)` when it is built.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from nasframe.core.space import Arch, Choice


class EnsembleSpace(ABC):
    """Mixin for search spaces whose architectures are ensembles of `members` sub-networks."""

    @property
    @abstractmethod
    def members(self) -> int:
        """K, the number of sub-networks in every ensemble."""

    @abstractmethod
    def layer_decisions(self) -> dict[str, tuple[str, ...]]:
        """Layer name -> the decisions that choose its op, one per member (member 0 first). They offer
        the same choices; a shrinking strategy restricts them together."""

    @abstractmethod
    def member_layers(self, arch: Arch) -> list[list[tuple[str, Choice]]]:
        """For each member, the (layer, op) pairs its sub-network runs, the shared trunk included."""

    @abstractmethod
    def canonical(self, arch: Arch) -> Arch:
        """The same ensemble written one way: choices that the network does not use (a member's
        choices inside the shared trunk) set to those it does use."""

    @abstractmethod
    def solo(self, arch: Arch, member: int) -> Arch:
        """The ensemble of K copies of member `member` of `arch`. On a supernet whose members share
        all weights (the space's `build_supernet`) it computes exactly that member's logits."""
