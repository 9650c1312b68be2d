"""Items from named columns: what a table file and a Hugging Face dataset share.

Both are rows with columns: one optional label column (integer ids or strings; strings become
class ids in sorted order of their names), text columns (one ``text:<lang>`` view each), an
optional id column (the items' keys) and where given a split column. Every setting names a column,
so every check says which setting named a missing column, in which file, and which columns exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from latentstitch.data.items import check_test_fraction, split_items, text_view
from latentstitch.errors import ConfigError

SPLIT_VALUES = ("train", "val", "test")


def text_columns_of(text_column: str | None, text_columns: Mapping[str, str] | None) -> dict[str, str]:
    """{language: column}: ``text_columns`` as given, or ``text_column`` as the English text."""
    if text_column and text_columns:
        raise ConfigError("set dataset.text_column (English) or dataset.text_columns={lang: column}, not both")
    if text_column:
        return {"en": str(text_column)}
    return {str(lang): str(col) for lang, col in dict(text_columns or {}).items()}


def require_columns(available: Sequence[str], wanted: Mapping[str, str | None], source: str) -> None:
    """Every setting -> column of ``wanted`` (None: not set) names a column of ``source``."""
    for setting, column in wanted.items():
        if column is not None and column not in available:
            raise ConfigError(f"{source} has no column {column!r} ({setting}); its columns: {', '.join(map(str, available))}")


def column_settings(
    text_columns: Mapping[str, str], label_column: str | None, id_column: str | None, **more: str | None
) -> dict[str, str | None]:
    """The setting -> column pairs of a column dataset, for ``require_columns``."""
    texts = {f"dataset.text_columns.{lang}": col for lang, col in text_columns.items()}
    return {**texts, "dataset.label_column": label_column, "dataset.id_column": id_column,
            **{f"dataset.{k}": v for k, v in more.items()}}  # fmt: skip


def row_names(frame: pd.DataFrame, id_column: str | None) -> list[str]:
    """The items' keys: the id column's values, or the row numbers; unique, else a ConfigError."""
    if id_column is None:
        return [str(i) for i in range(len(frame))]
    keys = frame[id_column].astype(str).tolist()
    dupes = frame[id_column][frame[id_column].duplicated()].astype(str).unique().tolist()
    if dupes:
        raise ConfigError(f"dataset.id_column={id_column!r} has repeated ids, e.g. {', '.join(dupes[:3])}")
    return keys


def texts_of(frame: pd.DataFrame, column: str, source: str, keys: Sequence[str]) -> list[str]:
    """A text column as strings; an empty cell (NaN / None) is a ConfigError naming its row."""
    values = frame[column]
    missing = values.isna().to_numpy().nonzero()[0]
    if len(missing):
        raise ConfigError(f"{source}: text column {column!r} is empty in row {keys[missing[0]]} ({len(missing)} rows in all)")
    return values.astype(str).tolist()


def labels_of(
    values: pd.Series, column: str, source: str, keys: Sequence[str], names: Sequence[str] | None = None
) -> tuple[torch.Tensor, list[str]]:
    """(class ids, class names) of a label column.

    With ``names`` (a Hugging Face ClassLabel) the values are already ids into them; otherwise
    the classes are the column's distinct values in sorted order (strings or numbers alike).
    """
    missing = values.isna().to_numpy().nonzero()[0]
    if len(missing):
        raise ConfigError(f"{source}: label column {column!r} is empty in row {keys[missing[0]]}")
    if names is not None:
        if not pd.api.types.is_integer_dtype(values):
            raise ConfigError(f"{source}: column {column!r} holds {values.dtype}, not integer class ids")
        ids = torch.as_tensor(values.to_numpy().astype("int64"))
        if len(ids) and (ids.min() < 0 or ids.max() >= len(names)):
            raise ConfigError(f"{source}: labels outside 0..{len(names) - 1} in column {column!r}")
        return ids, list(names)
    classes = sorted(values.unique().tolist())
    index = {c: i for i, c in enumerate(classes)}
    return torch.as_tensor([index[v] for v in values.tolist()], dtype=torch.long), [str(c) for c in classes]


def splits_of(values: pd.Series, column: str, source: str, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """Item ids per split from a split column holding train / test (and optionally val)."""
    lowered = values.astype(str).str.strip().str.lower()
    bad = ~lowered.isin(SPLIT_VALUES)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise ConfigError(
            f"{source}: dataset.split_column={column!r} holds {values.iloc[row]!r} in row {keys[row]}; "
            f"its values must be {', '.join(SPLIT_VALUES)}"
        )
    ids = torch.arange(len(values))
    splits = {name: ids[torch.as_tensor((lowered == name).to_numpy())] for name in SPLIT_VALUES}
    if len(splits["train"]) == 0 or len(splits["test"]) == 0:
        raise ConfigError(f"{source}: dataset.split_column={column!r} must mark some rows train and some test")
    return splits


def default_splits(labels: torch.Tensor | None, n: int, test_fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """Train / test ids for data without a split of its own: a seeded, class-stratified test fraction."""
    return split_items(labels, n, check_test_fraction(test_fraction), seed)


def text_views(frame: pd.DataFrame, text_columns: Mapping[str, str], source: str, keys: Sequence[str]) -> dict[str, list[str]]:
    """One ``text:<lang>`` view per entry of ``text_columns``."""
    return {text_view(lang): texts_of(frame, col, source, keys) for lang, col in text_columns.items()}
