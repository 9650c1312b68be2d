"""Datasets (local files first, downloads only on request) and Lightning data plumbing."""

from latentstitch.data.datasets import LOADERS, DatasetSplits, Split, load_splits

__all__ = ["LOADERS", "DatasetSplits", "Split", "load_splits"]
