"""One entry for every dataset config: ``load_dataset(cfg.dataset, data_dir) -> ItemDataset``.

Image classification datasets (in-memory tensors, official splits) and item datasets with
several views (emoji, gettext, wordnet, Hugging Face text datasets) come out the same way:
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

log = logging.getLogger(__name__)

DATASETS = sorted({*LOADERS, *ITEM_LOADERS})


def _options(ds: DictConfig | dict) -> dict[str, Any]:
    options = ds.get("loader") or {}
    return OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else dict(options)


def load_dataset(ds: DictConfig | dict, data_dir: str | Path) -> ItemDataset:
    """The dataset ``ds`` describes, split into train / val / test ids and subset as asked."""
    name = ds["name"]
    if name in LOADERS:
        items = load_image_items(name, data_dir, int(ds.get("num_classes") or 0), bool(ds.get("download", False)))
    else:
        items = load_items(name, data_dir, **_options(ds))
    seed = int(ds.get("split_seed", 0))
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
    return items
