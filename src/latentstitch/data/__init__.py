"""Datasets as items with views (image, text per language), split into id lists."""

from latentstitch.data.datasets import LOADERS, DatasetSplits, Split, image_splits, load_image_items, load_splits
from latentstitch.data.items import ItemDataset, text_view
from latentstitch.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "LOADERS", "DatasetSplits", "ItemDataset", "Split", "image_splits", "load_dataset", "load_image_items",
           "load_splits", "text_view"]  # fmt: skip
