"""Datasets made of the user's own files: a folder of class folders, or a table.

``dataset=folder dataset.root=<dir>``: one subfolder per class (torchvision's ImageFolder layout),
``dataset.test_root`` (same layout) for the test split or else a seeded, class-stratified
``dataset.test_fraction``. ``dataset=table dataset.path=<file.csv|.parquet|.jsonl>``: one row per
item, with text columns per language, optionally an image column (paths relative to the file's
folder), a label column and a split column. Images are decoded per batch (``lazy_images``).

Also here: ``resolve_dataset_defaults``, which turns ``anchors: auto`` and ``max_epochs: auto`` into
numbers from the train split's size and records a fingerprint of the files, so that changed
files never reuse cached latents of the old ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, open_dict

from latentstitch.data.columns import (
    column_settings,
    default_splits,
    labels_of,
    require_columns,
    row_names,
    splits_of,
    text_columns_of,
    text_views,
)
from latentstitch.data.items import ItemDataset
from latentstitch.data.lazy_images import ImageFiles, check_files
from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)

TABLE_READERS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}

# ------------------------------------------------------------------------------ auto settings

AUTO = "auto"
MIN_ANCHORS, MAX_ANCHORS = 10, 2000
SMALL_DATA = 20_000  # train items up to which the 30-epoch cap of the built-in small datasets applies
SMALL_DATA_EPOCHS = 30


def auto_anchors(train_size: int) -> int:
    """A quarter of the train split, at least 10 and at most 2,000 (and never more than there are).

    The built-in datasets' choices, which this reproduces roughly: 300 anchors for the 1,293 digits
    (rule: 323), 1,000 for wordnet's 2,100 train glosses (rule: 525), 2,000 for the 20,000 or more
    train items of ag_news, mnist or cifar (rule: 2,000).
    """
    return min(train_size, max(MIN_ANCHORS, min(MAX_ANCHORS, train_size // 4)))


def auto_max_epochs(train_size: int) -> int | None:
    """30 passes over a train split of at most 20,000 items, else no cap (as the built-ins do).

    The step budgets are sized for the large datasets; on small data they would be hundreds of
    epochs, which only overfit and cost time (digits, emoji, wordnet, ag_news: 30; mnist, cifar: none).
    """
    return SMALL_DATA_EPOCHS if train_size <= SMALL_DATA else None


def resolve_dataset_defaults(ds: DictConfig | dict, items: ItemDataset) -> None:
    """Write the data-derived settings into ``ds`` (so ``anchors.num: ${dataset.anchors}``, the step
    budgets and the cache keys all see them): ``anchors`` and ``max_epochs`` where they are ``auto``,
    ``num_classes`` where it is null or ``auto``, ``node_features`` (a graph's feature width) where ``auto``, and ``fingerprint`` where the loader fingerprinted its files."""
    train_size = len(items.ids("train"))
    updates: dict[str, Any] = {}
    if ds.get("anchors") == AUTO:
        updates["anchors"] = auto_anchors(train_size)
    if ds.get("max_epochs") == AUTO:
        updates["max_epochs"] = auto_max_epochs(train_size)
    if ds.get("num_classes", 0) in (None, AUTO):
        updates["num_classes"] = items.num_classes
    if ds.get("node_features") == AUTO and "graph" in items.views:  # what a graph encoder's first layer reads
        updates["node_features"] = int(items.views["graph"].num_features)
    if items.info.get("fingerprint"):
        updates["fingerprint"] = items.info["fingerprint"]
    if updates and updates.keys() - {"fingerprint"}:
        log.info(
            "dataset %s (%d train items): %s", items.name, train_size, {k: v for k, v in updates.items() if k != "fingerprint"}
        )
    if isinstance(ds, DictConfig):
        with open_dict(ds):
            for key, value in updates.items():
                ds[key] = value
    else:
        ds.update(updates)


def fingerprint(*parts: Any) -> str:
    """A short hash of ``parts`` (JSON-able), for cache keys."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_stamp(path: Path) -> tuple[str, int, int]:
    """What identifies a file's version cheaply: its name, size and modification time."""
    stat = path.stat()
    return path.name, stat.st_size, stat.st_mtime_ns


# ------------------------------------------------------------------------------------ folder


def _scan(root: Path, setting: str, class_to_idx: dict[str, int] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(path, class id)]) of an ImageFolder tree, by torchvision's own scan."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if not root.is_dir():
        raise ConfigError(f"{setting}={root} is not a directory (it must hold one subfolder of images per class)")
    try:
        classes, found = find_classes(str(root))
        if class_to_idx is not None:
            unknown = sorted(set(classes) - set(class_to_idx))
            if unknown:
                raise ConfigError(f"{setting}={root} has classes that dataset.root lacks: {', '.join(unknown)}")
            found = {c: class_to_idx[c] for c in classes}
        return classes, make_dataset(str(root), found, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as e:
        raise ConfigError(f"{setting}={root}: {e}") from None


def load_folder(
    data_dir: Path,
    root: str | Path,
    test_root: str | Path | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    image_size: int = 64,
    check: bool = True,
) -> ItemDataset:
    """A folder of class folders as items with a lazy ``image`` view, labelled by folder name.

    Keys are the files' paths relative to ``root`` (``test/<path>`` for files of ``test_root``).
    ``check`` opens every file's header at load, so a broken file fails now, naming it; with
    ``check=false`` (huge folders) it fails when its batch is decoded.
    """
    root = Path(root).expanduser()
    classes, train = _scan(root, "dataset.root")
    samples = [(p, y, Path(p).relative_to(root).as_posix()) for p, y in train]
    if test_root is not None:
        test_root = Path(test_root).expanduser()
        _, test = _scan(test_root, "dataset.test_root", {c: i for i, c in enumerate(classes)})
        samples += [(p, y, "test/" + Path(p).relative_to(test_root).as_posix()) for p, y in test]
    paths, labels, keys = zip(*samples)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    if test_root is not None:
        splits = {"train": torch.arange(len(train)), "test": torch.arange(len(train), len(samples))}
    else:
        splits = default_splits(labels_t, len(samples), test_fraction, split_seed)
    images = ImageFiles(paths, image_size)
    if check:
        check_files(images, "dataset.root" if test_root is None else "dataset.root / dataset.test_root")
    stamps = [file_stamp(Path(p))[1:] for p in paths]
    info = {"source": str(root), "test_root": str(test_root) if test_root else None, "items": len(samples),
            "fingerprint": fingerprint(keys, stamps)}  # fmt: skip
    return ItemDataset(name="folder", views={"image": images}, labels=labels_t, splits=splits,
                       num_classes=len(classes), class_names=classes, info=info, keys=list(keys))  # fmt: skip


# ------------------------------------------------------------------------------------- table


def read_table(path: Path) -> pd.DataFrame:
    """A CSV / TSV / Parquet / JSON-lines file as a DataFrame (strings kept as strings)."""
    kind = TABLE_READERS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"dataset.path={path}: unknown table format {path.suffix!r}; use {', '.join(sorted(TABLE_READERS))}")
    if not path.is_file():
        raise ConfigError(f"dataset.path={path} does not exist")
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_csv(path, sep="\t" if kind == "tsv" else ",", keep_default_na=True)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise ConfigError(f"dataset.path={path} cannot be read as {kind}: {str(e).splitlines()[0]}") from None


def image_paths(frame: pd.DataFrame, column: str, folder: Path, source: str, keys: list[str]) -> list[Path]:
    """The image column's paths, relative to the table's folder; each must exist."""
    paths = []
    for key, value in zip(keys, frame[column].tolist()):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{source}: dataset.image_column={column!r} is empty in row {key}")
        path = folder / value
        if not path.is_file():
            raise ConfigError(f"{source}: dataset.image_column={column!r} names {path} in row {key}, which does not exist")
        paths.append(path)
    return paths


def load_table(
    data_dir: Path,
    path: str | Path,
    text_column: str | None = None,
    text_columns: Mapping[str, str] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    split_column: str | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    image_size: int = 64,
) -> ItemDataset:
    """A table file as items: a ``text:<lang>`` view per text column, an ``image`` view of the image
    column's files, labels from ``label_column`` (none: unlabeled, retrieval cells), splits from
    ``split_column`` (train / test / val) or a seeded, class-stratified ``test_fraction``."""
    path = Path(path).expanduser()
    frame = read_table(path)
    source = f"dataset.path={path}"
    texts = text_columns_of(text_column, text_columns)
    settings = column_settings(texts, label_column, id_column, image_column=image_column, split_column=split_column)
    require_columns(list(frame.columns), settings, source)
    if not texts and image_column is None:
        raise ConfigError(f"{source}: set dataset.text_columns={{lang: column}} and / or dataset.image_column (no view)")
    keys = row_names(frame, id_column)
    views: dict[str, Any] = text_views(frame, texts, source, keys)
    stamps = [file_stamp(path)]
    if image_column is not None:
        files = image_paths(frame, image_column, path.parent, source, keys)
        views["image"] = ImageFiles(files, image_size)
        stamps += [file_stamp(f)[1:] for f in files]
    labels, classes = labels_of(frame[label_column], label_column, source, keys) if label_column else (None, None)
    if split_column is not None:
        splits = splits_of(frame[split_column], split_column, source, keys)
    else:
        splits = default_splits(labels, len(frame), test_fraction, split_seed)
    info = {"source": str(path), "rows": len(frame), "columns": settings, "fingerprint": fingerprint(stamps)}
    return ItemDataset(name="table", views=views, labels=labels, splits=splits, num_classes=len(classes or ()),
                       class_names=classes, info=info, keys=keys)  # fmt: skip
