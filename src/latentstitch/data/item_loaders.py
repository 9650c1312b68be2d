"""Datasets that load as ``ItemDataset``: name -> ``load(data_dir, **options)``.

Each loader returns train / test splits as item ids (val is carved by the caller with
``carve_val``) and records its provenance in ``info``. Options are keyword arguments; ``load_items``
turns an unknown one into a ConfigError that lists the loader's options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from latentstitch.data.emoji import load_emoji
from latentstitch.data.gettext_catalogs import load_gettext
from latentstitch.data.graphs import load_planetoid, load_wordnet_graph
from latentstitch.data.hf import load_ag_news, load_dbpedia_14, load_hf_dataset, load_imdb, load_trec
from latentstitch.data.items import ItemDataset
from latentstitch.data.speech import load_spoken_words
from latentstitch.data.user import load_folder, load_table
from latentstitch.data.wordnet import load_wordnet
from latentstitch.errors import ConfigError

ITEM_LOADERS: dict[str, Callable[..., ItemDataset]] = {
    "emoji": load_emoji,
    "gettext": load_gettext,
    "wordnet": load_wordnet,
    "wordnet_graph": load_wordnet_graph,  # graph + text:en views of the same synsets
    "planetoid": load_planetoid,  # Cora / CiteSeer / PubMed files (downloaded on request)
    "spoken_words": load_spoken_words,  # audio:<lang> + text:<lang> of command words
    "ag_news": load_ag_news,
    "trec": load_trec,
    "dbpedia_14": load_dbpedia_14,
    "imdb": load_imdb,
    "folder": load_folder,  # the user's own files (dataset=folder | table | hf)
    "table": load_table,
    "hf": load_hf_dataset,
}


def load_items(name: str, data_dir: str | Path, **options) -> ItemDataset:
    """``ITEM_LOADERS[name](data_dir, **options)``; an unknown name or option is a ConfigError."""
    if name not in ITEM_LOADERS:
        raise ConfigError(f"dataset.name={name!r} has no item loader; known: {sorted(ITEM_LOADERS)}")
    loader = ITEM_LOADERS[name]
    params = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(params) - {"data_dir"})
    if unknown:
        known = [p for p in params if p != "data_dir"]
        raise ConfigError(f"dataset {name} has no option {', '.join(unknown)}; its options: {', '.join(known)}")
    return loader(Path(data_dir), **options)
