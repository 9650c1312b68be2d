"""Anchor strategies: which training samples serve as parallel anchors.

A strategy returns sample *indices* into the train split; indexing both spaces with the same
indices gives parallel anchors.
"""

from __future__ import annotations

import torch

from latentstitch.errors import ConfigError


class AnchorStrategy:
    def __init__(self, num: int = 2000, seed: int = 0) -> None:
        self.num, self.seed = int(num), int(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num={self.num}, seed={self.seed})"

    def check(self, pool_size: int) -> None:
        if not 1 <= self.num <= pool_size:
            raise ConfigError(f"anchors.num={self.num} must be between 1 and {pool_size} (the size of the train split)")

    def select(self, labels: torch.Tensor) -> torch.Tensor:
        """Indices (sorted, unique) of ``num`` anchors among ``len(labels)`` training samples."""
        self.check(len(labels))
        return self._select(labels, torch.Generator().manual_seed(self.seed)).sort().values

    def _select(self, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class RandomAnchors(AnchorStrategy):
    """A uniform sample without replacement."""

    def _select(self, labels, gen):
        return torch.randperm(len(labels), generator=gen)[: self.num]


class StratifiedAnchors(AnchorStrategy):
    """Class-balanced: shuffle, then take one sample per class in turn until ``num`` are chosen
    (classes that run out are skipped), as the relative-representations code does."""

    def _select(self, labels, gen):
        order = torch.randperm(len(labels), generator=gen)
        shuffled = labels[order]
        # rank of each sample within its class, in shuffled order
        rank = torch.empty_like(order)
        for c in shuffled.unique():
            members = (shuffled == c).nonzero().squeeze(1)
            rank[members] = torch.arange(len(members))
        # round robin = sort by (rank within class, class)
        num_classes = int(labels.max()) + 1
        key = rank * num_classes + shuffled
        return order[key.argsort(stable=True)[: self.num]]


ANCHORS = {"random": RandomAnchors, "stratified": StratifiedAnchors}
