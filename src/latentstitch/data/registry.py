"""One entry for every dataset config: ``load_dataset(cfg.dataset, data_dir) -> ItemDataset``.

Image classification datasets (in-memory tensors, official splits), item datasets with
several views (emoji, gettext, wordnet, Hugging Face datasets) and the user's own files (folder,
table, hf) come out the same way:
items, views, and train / val / test ids, with the optional seeded, class-stratified subsets
``max_train`` / ``max_test`` for encoders too expensive to run on a whole dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latentstitch.data.datasets import LOADERS, load_image_items
from latentstitch.data.item_loaders import ITEM_LOADERS, load_items
from latentstitch.data.items import ItemDataset, carve_val, stratified_subset
from latentstitch.data.user import resolve_dataset_defaults
from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)

DATASETS = sorted({*LOADERS, *ITEM_LOADERS})


def _options(ds: DictConfig | dict) -> dict[str, Any]:
    options = ds.get("loader") or {}
    return OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else dict(options)


def check_required(ds: DictConfig | dict) -> None:
    """A required dataset setting left unset (``???`` in its config) is one line naming it."""
    if not isinstance(ds, DictConfig):
        return
    missing = [key for key in ds if OmegaConf.is_missing(ds, key)]
    if missing:
        example = " ".join(f"dataset.{key}=..." for key in missing)
        raise ConfigError(f"dataset={ds.get('name')} needs {', '.join(f'dataset.{k}' for k in missing)}: add {example}")


def load_dataset(ds: DictConfig | dict, data_dir: str | Path) -> ItemDataset:
    """The dataset ``ds`` describes, split into train / val / test ids and subset as asked.

    A val split the loader gave (a table's split column) is kept; else ``val_fraction`` of train is
    carved. Settings derived from the data (``anchors: auto``, ``max_epochs: auto``, the files'
    fingerprint) are then written into ``ds``: see ``user.resolve_dataset_defaults``.
    """
    check_required(ds)
    name = ds["name"]
    if name in LOADERS:
        items = load_image_items(name, data_dir, int(ds.get("num_classes") or 0), bool(ds.get("download", False)))
    else:
        items = load_items(name, data_dir, **_options(ds))
    seed = int(ds.get("split_seed", 0))
    if len(items.ids("val")) == 0:
        items.splits["train"], items.splits["val"] = carve_val(items.ids("train"), float(ds.get("val_fraction", 0.0)), seed)
    for split in ("train", "test"):
        limit = ds.get(f"max_{split}")
        if limit is not None:
            ids = items.ids(split)
            labels = items.labels[ids] if items.labels is not None else None
            items.splits[split] = stratified_subset(ids, labels, int(limit), seed)
    sizes = {k: len(v) for k, v in items.splits.items()}
    log.info("dataset %s: %s items, views %s, splits %s", name, len(items), items.view_names, sizes)
    items.info["splits"] = sizes
    resolve_dataset_defaults(ds, items)
    return items
