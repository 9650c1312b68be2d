"""Datasets as items with views.

An item is one element of a dataset (an image and its caption, an English sentence and its French
translation). It has an integer id, a label when the dataset has labels, and one or more *views*:
``image`` (raw pixels, any size) and ``text:<lang>`` (one string per item and language). Splits
are lists of item ids, so the same id is parallel across every view and every encoder: that is
what makes anchors parallel across modalities and languages.

Views hold the data as it was read (uint8 or [0, 1] float pixels, plain strings); each encoder
brings its own preprocessing and applies it per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from latentstitch.errors import ConfigError

SPLIT_NAMES = ("train", "val", "test")


def text_view(language: str) -> str:
    """The view name of the text in ``language`` (``text:en``)."""
    return f"text:{language}"


@dataclass
class ItemDataset:
    """Items with optional labels, views keyed by name, and splits as sorted int64 id tensors.

    ``views["image"]`` is a tensor (N, C, H, W), uint8 or float in [0, 1], or a lazy view of N images
    decoded per batch (``lazy_images.LazyImages``: only its length is read here); ``views["text:<lang>"]``
    is a list of N strings. ``labels`` is None for unlabeled data (e.g. parallel sentences).
    ``info`` records provenance (files, packages, counts) and goes into run outputs.
    ``keys`` are the items' external ids as strings (a file's path relative to the dataset root, a
    table's id column); they default to the positions ``"0"``, ``"1"``, ... Embeddings made
    elsewhere (``encoder=precomputed``) are matched to items by these keys.
    """

    name: str
    views: dict[str, Any]
    labels: torch.Tensor | None
    splits: dict[str, torch.Tensor]
    num_classes: int = 0
    class_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    keys: list[str] | None = None

    def __post_init__(self) -> None:
        sizes = {name: len(view) for name, view in self.views.items()}
        if self.labels is not None:
            sizes["labels"] = len(self.labels)
        if self.keys is not None:
            sizes["keys"] = len(self.keys)
        if len(set(sizes.values())) > 1:
            raise ValueError(f"dataset {self.name}: views and labels differ in length: {sizes}")
        self.splits = {k: torch.as_tensor(v, dtype=torch.long).sort().values for k, v in self.splits.items()}
        self.splits.setdefault("val", torch.zeros(0, dtype=torch.long))
        if self.keys is None:
            self.keys = [str(i) for i in range(len(self))]
        elif len(set(self.keys)) != len(self.keys):
            raise ValueError(f"dataset {self.name}: item keys are not unique")

    def __len__(self) -> int:
        return len(next(iter(self.views.values())))

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def view_names(self) -> list[str]:
        return sorted(self.views)

    def ids(self, split: str) -> torch.Tensor:
        return self.splits[split]

    def labels_of(self, split: str) -> torch.Tensor:
        """Labels of a split in id order; -1 everywhere when the dataset has no labels."""
        ids = self.ids(split)
        return self.labels[ids] if self.labels is not None else torch.full((len(ids),), -1, dtype=torch.long)

    def require_view(self, view: str) -> Any:
        if view not in self.views:
            raise ConfigError(f"dataset {self.name} has no view {view!r}; it has {self.view_names}")
        return self.views[view]

    def view_of(self, view: str, ids: torch.Tensor) -> Any:
        """The ``view`` data of the items ``ids``: a list of strings for a text view; for an image
        view, a tensor slice or, for a lazy view (``lazy_images``), a lazy subset, nothing decoded."""
        data = self.require_view(view)
        if isinstance(data, (list, tuple)):
            return [data[i] for i in ids.tolist()]
        return data[ids]


def carve_val(train_ids: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) ids: a seeded random ``val_fraction`` of ``train_ids`` becomes validation."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction={val_fraction} must be in [0, 1)")
    order = torch.randperm(len(train_ids), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * len(train_ids)))
    return train_ids[order[n_val:]].sort().values, train_ids[order[:n_val]].sort().values


def stratified_subset(ids: torch.Tensor, labels: torch.Tensor | None, limit: int | None, seed: int) -> torch.Tensor:
    """At most ``limit`` of ``ids``, seeded, with every class keeping its share (largest remainders).

    Unlabeled data gets a plain seeded random subset. ``limit`` None or >= len(ids) keeps all.
    """
    if limit is None or limit >= len(ids):
        return ids
    if limit < 1:
        raise ConfigError(f"a subset size must be at least 1, got {limit}")
    gen = torch.Generator().manual_seed(seed)
    if labels is None:
        return ids[torch.randperm(len(ids), generator=gen)[:limit]].sort().values
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * limit / len(ids)
    quota = exact.floor().long()
    short = limit - int(quota.sum())
    quota[(exact - quota).argsort(descending=True, stable=True)[:short]] += 1
    chosen = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        members = ids[labels == c]
        chosen.append(members[torch.randperm(len(members), generator=gen)[:q]])
    return torch.cat(chosen).sort().values


def check_test_fraction(test_fraction: float) -> float:
    """``test_fraction`` as a float, or a ConfigError when it is not in (0, 1)."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"dataset.test_fraction={test_fraction} must be in (0, 1)")
    return float(test_fraction)


def split_items(
    labels: torch.Tensor | None, n: int, test_fraction: float, seed: int
) -> dict[str, torch.Tensor]:
    """Train / test ids for a dataset that comes without an official split (class-stratified)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.arange(n)
    if labels is None:
        order = torch.randperm(n, generator=gen)
        n_test = int(round(test_fraction * n))
        return {"train": order[n_test:], "test": order[:n_test]}
    test = []
    for c in labels.unique().tolist():
        members = ids[labels == c]
        members = members[torch.randperm(len(members), generator=gen)]
        test.append(members[: int(round(test_fraction * len(members)))])
    test_ids = torch.cat(test)
    mask = torch.ones(n, dtype=torch.bool)
    mask[test_ids] = False
    return {"train": ids[mask], "test": test_ids}
