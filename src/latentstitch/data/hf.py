"""English text classification datasets from the Hugging Face Hub (online users) or a local copy.

``load_hf(name, ...)`` reads the official train / test splits of ag_news, trec, dbpedia_14 or imdb
with ``datasets.load_dataset`` (into ``cache_dir``), or, with ``path``, a ``DatasetDict`` written
by ``save_to_disk``. Items are the train examples then the test examples; the view is ``text:en``.
Offline (HF_HUB_OFFLINE=1 or HF_DATASETS_OFFLINE=1) without a cached copy is a one-line ConfigError.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import torch

from latentstitch.data.items import ItemDataset, stratified_subset, text_view
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


def hf_offline() -> bool:
    """Whether the Hub is switched off for this process (as ``datasets`` reads it at import)."""
    import datasets

    flags = [os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")]
    return bool(datasets.config.HF_HUB_OFFLINE) or any(f.upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _load(name: str, hub_id: str, cache_dir: Path, path: str | None, revision: str | None):
    import datasets

    if path is not None:
        try:
            return datasets.load_from_disk(str(path)), f"local copy {path}"
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"dataset {name}: dataset.path={path} is not a saved Hugging Face dataset ({e})") from None
    try:
        return datasets.load_dataset(hub_id, revision=revision, cache_dir=str(cache_dir)), f"hub {hub_id}"
    except Exception as e:  # datasets raises ConnectionError, FileNotFoundError, DatasetNotFoundError, ...
        if hf_offline():
            raise ConfigError(
                f"dataset {name} is not available offline: set HF_HUB_OFFLINE=0 (online) or point dataset.cache_dir "
                f"at a copy (looked in {cache_dir})"
            ) from None
        raise ConfigError(
            f"dataset {name}: could not load {hub_id} from the Hub: {type(e).__name__}: {e}".splitlines()[0]
        ) from None


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
    if not isinstance(dsd, dict):  # a single Dataset (DatasetDict is a dict)
        raise ConfigError(f"dataset {name} ({origin}) must have the splits {' '.join(SPLITS)}; it is a single split")
    missing = [s for s in SPLITS if s not in dsd]
    if missing:
        raise ConfigError(f"dataset {name} ({origin}) has no split {' '.join(missing)}; it has {sorted(dsd)}")
    columns = dsd["train"].column_names
    for field in (text_field, label_field):
        if field not in columns:
            raise ConfigError(f"dataset {name} ({origin}) has no column {field!r}; it has {columns}")
    feature = dsd["train"].features[label_field]
    class_names = list(getattr(feature, "names", None) or spec.class_names)

    texts: list[str] = []
    labels, splits, sizes = [], {}, {}
    for split, limit in zip(SPLITS, (max_train, max_test)):
        table = dsd[split].with_format("arrow")[:]  # a pyarrow Table: far faster than datasets' Column
        column = table.column(label_field)
        if not pa.types.is_integer(column.type):
            raise ConfigError(f"dataset {name} ({origin}): column {label_field!r} holds {column.type}, not integer class ids")
        y = torch.from_numpy(column.to_numpy().astype("int64"))
        keep = stratified_subset(torch.arange(len(y)), y, limit, subset_seed)
        start = len(texts)
        texts += [str(t) for t in table.column(text_field).take(keep.numpy()).to_pylist()]
        labels.append(y[keep])
        splits[split] = torch.arange(start, len(texts))
        sizes[split] = {"available": len(y), "kept": len(keep)}
    labels_t = torch.cat(labels)
    if len(labels_t) and (labels_t.min() < 0 or labels_t.max() >= len(class_names)):
        raise ConfigError(f"dataset {name}: labels outside 0..{len(class_names) - 1} in column {label_field!r}")
    info = {
        "source": origin,
        "hub_id": hub_id,
        "revision": revision,
        "cache_dir": str(cache_dir) if path is None else None,
        "text_field": text_field,
        "label_field": label_field,
        "splits": sizes,
        "load_seconds": round(time.perf_counter() - t0, 2),
    }
    return ItemDataset(
        name=name,
        views={text_view("en"): texts},
        labels=labels_t,
        splits=splits,
        num_classes=len(class_names),
        class_names=class_names,
        info=info,
    )


# load_<name>(data_dir, **options): partials keep load_hf's signature (options are checked by name)
load_ag_news = partial(load_hf, "ag_news")
load_trec = partial(load_hf, "trec")
load_dbpedia_14 = partial(load_hf, "dbpedia_14")
load_imdb = partial(load_hf, "imdb")
