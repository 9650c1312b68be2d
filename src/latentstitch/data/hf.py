"""Hugging Face datasets: four named text classification sets, and any dataset by hub id or local copy.

``load_hf(name, ...)`` reads the official train / test splits of ag_news, trec, dbpedia_14 or imdb
with ``datasets.load_dataset`` (into ``cache_dir``), or, with ``path``, a ``DatasetDict`` written
by ``save_to_disk``; their view is ``text:en``. ``load_hf_dataset`` (``dataset=hf``) reads any
dataset the same way, with the columns the config names: text columns per language, an image
column (decoded per batch: ``lazy_images.HFImages``), a label column (a ClassLabel, integers or
strings) and an id column. Items are the examples of the train split, then val, then test.
Offline (HF_HUB_OFFLINE=1 or HF_DATASETS_OFFLINE=1) without a copy is a one-line ConfigError.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from latentstitch.data.columns import column_settings, default_splits, labels_of, require_columns, text_columns_of, text_views
from latentstitch.data.items import ItemDataset, stratified_subset
from latentstitch.data.lazy_images import HFImages
from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubDataset:
    hub_id: str
    text: str  # the text column
    label: str  # the label column
    class_names: tuple[str, ...]  # used when the label column is not a ClassLabel


DBPEDIA_CLASSES = (
    "Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder", "MeanOfTransportation",
    "Building", "NaturalPlace", "Village", "Animal", "Plant", "Album", "Film", "WrittenWork",
)  # fmt: skip
HUB_DATASETS = {
    "ag_news": HubDataset("fancyzhx/ag_news", "text", "label", ("World", "Sports", "Business", "Sci/Tech")),
    "trec": HubDataset("CogComp/trec", "text", "coarse_label", ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")),
    "dbpedia_14": HubDataset("fancyzhx/dbpedia_14", "content", "label", DBPEDIA_CLASSES),
    "imdb": HubDataset("stanfordnlp/imdb", "text", "label", ("neg", "pos")),
}
SPLITS = ("train", "test")
ROLES = ("train", "val", "test")  # the order items come in


@dataclass(frozen=True)
class Columns:
    """Which columns of a Hugging Face dataset make the items, each with the setting that named it."""

    texts: dict[str, str]  # language -> column
    label: str | None = None
    image: str | None = None
    id: str | None = None
    settings: tuple[tuple[str, str | None], ...] = ()  # (setting, column) for error messages

    @property
    def table(self) -> list[str]:
        """The columns read into memory (all but the image column, which is decoded per batch)."""
        return list(dict.fromkeys([*self.texts.values(), *(c for c in (self.label, self.id) if c)]))


def hf_offline() -> bool:
    """Whether the Hub is switched off for this process (as ``datasets`` reads it at import)."""
    import datasets

    flags = [os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")]
    return bool(datasets.config.HF_HUB_OFFLINE) or any(f.upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _load(name: str, hub_id: str | None, cache_dir: Path, path: str | Path | None, revision: str | None,
          config: str | None = None):  # fmt: skip
    """(the dataset, where it came from): the ``save_to_disk`` copy at ``path``, else ``hub_id``
    (its configuration ``config``, e.g. a language pair) from the Hub or ``cache_dir``."""
    import datasets

    if path is not None:
        try:
            return datasets.load_from_disk(str(path)), f"local copy {path}"
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"dataset {name}: dataset.path={path} is not a saved Hugging Face dataset ({e})") from None
    what = hub_id if config is None else f"{hub_id} ({config})"
    try:
        return datasets.load_dataset(hub_id, config, revision=revision, cache_dir=str(cache_dir)), f"hub {what}"
    except Exception as e:  # datasets raises ConnectionError, FileNotFoundError, DatasetNotFoundError, ...
        if hf_offline():
            raise ConfigError(
                f"dataset {name} is not available offline: set HF_HUB_OFFLINE=0 (online) or point dataset.cache_dir "
                f"at a copy (looked in {cache_dir}), or dataset.path at a save_to_disk directory"
            ) from None
        raise ConfigError(
            f"dataset {name}: could not load {what} from the Hub: {type(e).__name__}: {e}".splitlines()[0]
        ) from None


def _split_datasets(dsd: Any, origin: str, name: str, splits: Mapping[str, str]) -> dict[str, Any]:
    """{role: Dataset} for the roles (train / val / test) of ``splits``; a single Dataset is "train"."""
    available = dsd if isinstance(dsd, dict) else {"train": dsd}  # DatasetDict is a dict
    unknown = sorted(set(splits) - set(ROLES))
    if unknown or "train" not in splits:
        raise ConfigError(f"dataset.splits={dict(splits)}: its keys must be train and optionally val, test (got {unknown})")
    missing = [str(s) for s in splits.values() if s not in available]
    if missing:
        raise ConfigError(f"dataset {name} ({origin}) has no split {' '.join(missing)}; it has {sorted(available)}")
    return {role: available[splits[role]] for role in ROLES if role in splits}


def _class_names(feature: Any, default: tuple[str, ...] | None) -> list[str] | None:
    """The class names a label column's ids index: a ClassLabel's, else ``default`` (None: from the values)."""
    names = getattr(feature, "names", None)
    return list(names) if names else (list(default) if default else None)


def _frame(dataset: Any, columns: list[str]) -> pd.DataFrame:
    """Some columns of a split as a DataFrame (via arrow: far faster than datasets' row access)."""
    return dataset.select_columns(columns).with_format("arrow")[:].to_pandas()


def hf_items(
    name: str,
    parts: dict[str, Any],
    origin: str,
    columns: Columns,
    class_names: tuple[str, ...] | None = None,
    limits: Mapping[str, int | None] | None = None,
    subset_seed: int = 0,
    image_size: int = 64,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> tuple[ItemDataset, dict[str, Any]]:
    """Items of the splits ``parts`` ({role: Dataset}): their ``columns`` as views, labels and keys.

    ``limits`` keeps a seeded class-stratified subset of a role before its texts are read; without
    a test role, a seeded class-stratified ``test_fraction`` of train is the test split.
    """
    where = f"dataset {name} ({origin})"
    for role, dataset in parts.items():
        require_columns(dataset.column_names, dict(columns.settings), where + (f" {role}" if role != "train" else ""))
    names = _class_names(parts["train"].features[columns.label], class_names) if columns.label else None
    frames, images, splits, sizes = [], [], {}, {}
    for role, dataset in parts.items():
        frame, kept = _read_split(dataset, role, columns, names, (limits or {}).get(role), subset_seed, where)
        start = sum(len(f) for f in frames)
        frames.append(frame)
        images.append(kept)
        splits[role] = torch.arange(start, start + len(frame))
        sizes[role] = {"available": len(dataset), "kept": len(frame)}
    frame = pd.concat(frames, ignore_index=True)
    keys = frame["_key"].tolist()
    views: dict[str, Any] = text_views(frame, columns.texts, where, keys)
    if columns.image:
        views["image"] = _image_view(images, columns.image, image_size, where)
    labels, classes = labels_of(frame[columns.label], columns.label, where, keys, names) if columns.label else (None, None)
    if "test" not in splits:
        splits = {**default_splits(labels, len(frame), test_fraction, split_seed), "val": splits.get("val", torch.zeros(0))}
    items = ItemDataset(name=name, views=views, labels=labels, splits=splits, num_classes=len(classes or ()),
                        class_names=classes, keys=keys)  # fmt: skip
    return items, sizes


def _read_split(
    dataset: Any, role: str, columns: Columns, names: list[str] | None, limit: int | None, seed: int, where: str
) -> tuple[pd.DataFrame, Any]:
    """The kept rows of one split: its in-memory columns (plus ``_key``) and, with an image column,
    the split's rows that hold the kept images (still encoded)."""
    frame = _frame(dataset, columns.table)
    frame["_key"] = frame[columns.id].astype(str) if columns.id else [f"{role}/{i}" for i in range(len(frame))]
    keep = stratified_subset(torch.arange(len(frame)), _strata(frame, columns.label, names, where), limit, seed)
    images = dataset.select_columns([columns.image]).select(keep.tolist()) if columns.image else None
    return frame.iloc[keep.numpy()].reset_index(drop=True), images


def _strata(frame: pd.DataFrame, column: str | None, names: list[str] | None, origin: str) -> torch.Tensor | None:
    """What a subset of one split keeps the shares of: the class ids (codes of the values where the
    classes come from the values of all splits together), or None without labels."""
    if column is None:
        return None
    if names is not None:
        return labels_of(frame[column], column, origin, frame["_key"].tolist(), names)[0]
    return torch.as_tensor(pd.factorize(frame[column])[0], dtype=torch.long)


def _image_view(parts: list[Any], column: str, size: int, origin: str) -> HFImages:
    """The image column of every kept row, in item order, decoded per batch."""
    import datasets

    feature = parts[0].features[column]
    if not isinstance(feature, datasets.Image):
        raise ConfigError(f"{origin}: dataset.image_column={column!r} holds {feature}, not images (a datasets.Image column)")
    return HFImages(datasets.concatenate_datasets(parts), column, size, origin)


def _info(origin: str, hub_id: str | None, revision: str | None, cache_dir: Path | None, sizes: dict, parts: dict,
          columns: Columns, t0: float) -> dict[str, Any]:  # fmt: skip
    """Provenance of a Hugging Face dataset, with the fingerprints of its splits: ``dataset=hf``
    puts them into the cache keys (a changed copy at the same path must not reuse the old latents)."""
    return {
        "source": origin,
        "hub_id": hub_id,
        "revision": revision,
        "cache_dir": str(cache_dir) if cache_dir else None,
        "columns": dict(columns.settings),
        "splits": sizes,
        "fingerprint": "-".join(str(getattr(d, "_fingerprint", "")) for d in parts.values()),
        "load_seconds": round(time.perf_counter() - t0, 2),
    }


def load_hf(
    name: str,
    data_dir: Path,
    cache_dir: str | Path | None = None,
    path: str | Path | None = None,
    hub_id: str | None = None,
    revision: str | None = None,
    text_field: str | None = None,
    label_field: str | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    subset_seed: int = 0,
) -> ItemDataset:
    """One of ``HUB_DATASETS`` as items: train examples, then test examples, view ``text:en``.

    ``cache_dir`` defaults to ``data_dir/huggingface``; ``path`` reads a ``save_to_disk`` copy
    instead of the Hub; ``max_train`` / ``max_test`` keep a seeded class-stratified subset.
    """
    if name not in HUB_DATASETS:
        raise ConfigError(f"dataset {name!r} is not a known Hugging Face dataset; known: {sorted(HUB_DATASETS)}")
    spec = HUB_DATASETS[name]
    hub_id = hub_id or spec.hub_id
    text_field, label_field = text_field or spec.text, label_field or spec.label
    cache_dir = Path(cache_dir) if cache_dir else Path(data_dir) / "huggingface"
    t0 = time.perf_counter()
    dsd, origin = _load(name, hub_id, cache_dir, path, revision)
    parts = _split_datasets(dsd, origin, name, {s: s for s in SPLITS})
    columns = Columns({"en": text_field}, label=label_field,
                      settings=(("dataset.loader.text_field", text_field), ("dataset.loader.label_field", label_field)))  # fmt: skip
    items, sizes = hf_items(name, parts, origin, columns, spec.class_names, {"train": max_train, "test": max_test}, subset_seed)
    items.info = _info(origin, hub_id, revision, cache_dir if path is None else None, sizes, parts, columns, t0)
    items.info["split_fingerprints"] = items.info.pop("fingerprint")  # recorded only: the named sets keep their cache keys
    return items


def load_hf_dataset(
    data_dir: Path,
    path: str | Path,
    text_column: str | None = None,
    text_columns: Mapping[str, str] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    splits: Mapping[str, str] | None = None,
    config_name: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    image_size: int = 64,
) -> ItemDataset:
    """Any Hugging Face dataset as items (``dataset=hf``): ``path`` is a ``save_to_disk`` directory
    where one exists, else a hub id (``config_name``: its configuration, e.g. a language pair). ``splits`` maps
    train / test (and optionally val) to the dataset's split names (default: its train and, if it
    has one, its test split); without test, a seeded class-stratified ``test_fraction`` of train is
    the test split."""
    cache_dir = Path(cache_dir) if cache_dir else Path(data_dir) / "huggingface"
    texts = text_columns_of(text_column, text_columns)
    if not texts and image_column is None:
        raise ConfigError(f"dataset hf ({path}): set dataset.text_column(s) and / or dataset.image_column (no view)")
    settings = column_settings(texts, label_column, id_column, image_column=image_column)
    columns = Columns(texts, label_column, image_column, id_column, tuple(settings.items()))
    t0 = time.perf_counter()
    local = Path(str(path)).expanduser()
    hub_id = None if local.exists() else str(path)
    dsd, origin = _load("hf", hub_id, cache_dir, local if hub_id is None else None, revision, config_name)
    has_test = isinstance(dsd, dict) and "test" in dsd
    parts = _split_datasets(dsd, origin, "hf", dict(splits or {"train": "train", **({"test": "test"} if has_test else {})}))
    items, sizes = hf_items("hf", parts, origin, columns, None, None, 0, image_size, test_fraction, split_seed)
    items.info = _info(origin, hub_id, revision, cache_dir if hub_id else None, sizes, parts, columns, t0)
    return items


# load_<name>(data_dir, **options): partials keep load_hf's signature (options are checked by name)
load_ag_news = partial(load_hf, "ag_news")
load_trec = partial(load_hf, "trec")
load_dbpedia_14 = partial(load_hf, "dbpedia_14")
load_imdb = partial(load_hf, "imdb")
