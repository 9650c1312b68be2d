"""Reservoir replay buffer (Vitter's algorithm R), with the class-balanced sampling CaSpeR needs."""

from __future__ import annotations

import torch


class ReservoirBuffer:
    """At most ``capacity`` (input, label) pairs; after ``n`` items have been offered, every one of
    them is in the buffer with probability ``capacity / n``.

    Storage is allocated on the first :meth:`add`, on CPU. All randomness comes from
    ``generator`` (reservoir decisions) or the generator passed to a sampling method, so runs are
    reproducible and the replay stream does not depend on who else samples from the buffer.
    """

    def __init__(self, capacity: int, generator: torch.Generator | None = None):
        if capacity < 1:
            raise ValueError(f"buffer capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.num_seen = 0
        self.inputs: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return min(self.num_seen, self.capacity)

    @torch.no_grad()
    def add(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        """Offer a batch, item by item in order, to the reservoir."""
        inputs, labels = inputs.detach().cpu(), labels.detach().cpu()
        if self.inputs is None:
            self.inputs = torch.zeros((self.capacity, *inputs.shape[1:]), dtype=inputs.dtype)
            self.labels = torch.full((self.capacity,), -1, dtype=torch.long)
        n = len(labels)
        seen = self.num_seen + torch.arange(n)  # items offered before each one of the batch
        draws = (torch.rand(n, generator=self.generator, dtype=torch.float64) * (seen + 1)).long()
        slots = torch.where(seen < self.capacity, seen, draws)
        for i, slot in enumerate(slots.tolist()):  # in order: a later item may overwrite an earlier one
            if slot < self.capacity:
                self.inputs[slot] = inputs[i]
                self.labels[slot] = labels[i]
        self.num_seen += n

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything stored, (inputs, labels)."""
        if self.inputs is None:
            raise ValueError("the buffer is empty")
        return self.inputs[: len(self)], self.labels[: len(self)]

    def sample(self, size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``min(size, len(self))`` stored items drawn uniformly without replacement."""
        inputs, labels = self.data()
        idx = torch.randperm(len(labels), generator=generator)[:size]
        return inputs[idx], labels[idx]

    def balanced_sample(
        self, num_classes: int, per_class: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A class-balanced batch: ``num_classes`` classes drawn uniformly among those stored (all of
        them if fewer), then ``per_class`` items of each without replacement (fewer where a class
        has fewer). This is what CaSpeR's ``get_balanced_data(casper_batch, n_classes=p)`` does."""
        inputs, labels = self.data()
        classes = labels.unique()
        chosen = classes[torch.randperm(len(classes), generator=generator)[:num_classes]]
        picks = []
        for c in chosen.tolist():
            members = (labels == c).nonzero().squeeze(1)
            picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
        idx = torch.cat(picks)
        return inputs[idx], labels[idx]
