"""Embeddings made elsewhere, read from a file: a space without running any model here.

``encoder=precomputed encoder.path=<file>``; the format is the file's extension:

* ``.npy``: a 2-D numeric array (N, D); row i belongs to the dataset's item i (its position in
  the order the dataset loads), so N must equal the dataset's item count.
* ``.safetensors``: a 2-D tensor ``embeddings`` (N, D); the rows' item keys either in the file's
  metadata ``ids`` (a JSON list of N strings) or as an integer tensor ``ids`` (N,), compared as
  decimal strings. With neither, rows are in item order, as for ``.npy``.
* ``.parquet``: an ``id`` (or ``ids``) column of item keys (integers compared as decimal strings),
  and either one list column ``embedding`` (every row the same length) or, without it, every other
  numeric column in file order as one dimension each (``e0, e1, ...``).

Keyed files (parquet, safetensors with ids) may list rows in any order and may hold rows for ids
the dataset does not have: those are ignored, with a log line. Every item of the dataset must have
exactly one row: missing or repeated ids are a ConfigError, never silently dropped.

The encoder reads the pseudo-view ``id``: it is handed item positions and returns their rows, after
:meth:`PrecomputedEmbeddings.bind` has matched the dataset's item keys to the file's rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentstitch.encoders.pretrained.base import FrozenEncoder, file_sha256, one_line, require_file
from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)

ID_VIEW = "id"  # the pseudo-view of item positions: what a precomputed space is looked up by
FORMATS = ("npy", "safetensors", "parquet")
EXAMPLES = 5  # keys quoted in an error


def examples(keys: Sequence[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:EXAMPLES])
    return shown + (", ..." if len(keys) > EXAMPLES else "")


class _Reader:
    """One file format: ``shape`` from the header only, ``ids`` (or None: rows in item order),
    ``rows(index)`` the float32 embeddings of those rows."""

    def __init__(self, path: Path, where: str) -> None:
        self.path, self.where = path, where  # `where`: "encoder.path=/abs/file", the start of every error

    def fail(self, why: str) -> ConfigError:
        return ConfigError(f"{self.where}: {why}")

    def shape(self) -> tuple[int, int]:
        raise NotImplementedError

    def ids(self) -> list[str] | None:
        raise NotImplementedError

    def rows(self, index: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _Npy(_Reader):
    def _array(self) -> np.ndarray:
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise self.fail(f"not a readable .npy array of numbers: {one_line(e)}") from None
        if array.ndim != 2 or array.dtype.kind not in "fiub":
            raise self.fail(f"expected a 2-D numeric array (items, dim), got shape {array.shape} of {array.dtype}")
        return array

    def shape(self) -> tuple[int, int]:
        n, d = self._array().shape
        return int(n), int(d)

    def ids(self) -> None:
        return None

    def rows(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(self._array()[index], dtype=np.float32)


class _Safetensors(_Reader):
    def _open(self):
        from safetensors import safe_open

        try:
            return safe_open(str(self.path), framework="pt")
        except Exception as e:  # noqa: BLE001 - SafetensorError and friends: one line
            raise self.fail(f"not a readable safetensors file: {one_line(e)}") from None

    def shape(self) -> tuple[int, int]:
        with self._open() as f:
            if "embeddings" not in f.keys():
                raise self.fail(f"no tensor named 'embeddings' (it has {sorted(f.keys())})")
            shape = tuple(f.get_slice("embeddings").get_shape())
        if len(shape) != 2:
            raise self.fail(f"tensor 'embeddings' must be 2-D (items, dim), got shape {shape}")
        return int(shape[0]), int(shape[1])

    def ids(self) -> list[str] | None:
        with self._open() as f:
            meta = f.metadata() or {}
            if "ids" in meta:
                try:
                    ids = json.loads(meta["ids"])
                except ValueError as e:
                    raise self.fail(f"metadata 'ids' is not JSON: {one_line(e)}") from None
                if not isinstance(ids, list):
                    raise self.fail("metadata 'ids' must be a JSON list of item keys")
                return [str(i) for i in ids]
            if "ids" in f.keys():
                tensor = f.get_tensor("ids")
                if tensor.ndim != 1 or tensor.is_floating_point() or tensor.is_complex():
                    raise self.fail(f"tensor 'ids' must be 1-D integers, got {tuple(tensor.shape)} {tensor.dtype}")
                return [str(i) for i in tensor.tolist()]
        return None

    def rows(self, index: np.ndarray) -> np.ndarray:
        with self._open() as f:
            tensor = f.get_tensor("embeddings")
        if tensor.is_complex() or tensor.dtype == torch.bool:
            raise self.fail(f"tensor 'embeddings' must be real numbers, got {tensor.dtype}")
        return tensor[torch.from_numpy(index)].float().numpy()


class _Parquet(_Reader):
    def _file(self):
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except Exception as e:  # noqa: BLE001 - ArrowInvalid and friends: one line
            raise self.fail(f"not a readable parquet file: {one_line(e)}") from None

    def _columns(self) -> tuple[str, list[str], bool]:
        """(the id column, the embedding columns, whether that is one list column)."""
        import pyarrow as pa

        schema = self._file().schema_arrow
        names = schema.names
        id_column = next((c for c in ("id", "ids") if c in names), None)
        if id_column is None:
            raise self.fail(f"no 'id' (or 'ids') column of item keys (columns: {names[:8]}{'...' if len(names) > 8 else ''})")
        if "embedding" in names:
            kind = schema.field("embedding").type
            if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
                raise self.fail(f"column 'embedding' must hold one list of numbers per row, got {kind}")
            if not (pa.types.is_integer(kind.value_type) or pa.types.is_floating(kind.value_type)):
                raise self.fail(f"column 'embedding' must hold numbers, got lists of {kind.value_type}")
            return id_column, ["embedding"], True
        numeric = [
            f.name for f in schema if f.name != id_column and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
        ]
        if not numeric:
            raise self.fail("no 'embedding' list column and no numeric columns besides the ids")
        return id_column, numeric, False

    def shape(self) -> tuple[int, int]:
        _, columns, is_list = self._columns()
        pf = self._file()
        n = int(pf.metadata.num_rows)
        if not is_list:
            return n, len(columns)
        kind = pf.schema_arrow.field("embedding").type
        if hasattr(kind, "list_size"):  # fixed-size list: the width is in the schema
            return n, int(kind.list_size)
        if n == 0:
            return 0, 0
        first = next(pf.iter_batches(batch_size=1, columns=["embedding"])).column(0)[0].as_py()
        return n, len(first or [])

    def ids(self) -> list[str]:
        id_column, _, _ = self._columns()
        ids = self._file().read(columns=[id_column]).column(0).to_pylist()
        if any(i is None for i in ids):
            raise self.fail(f"column {id_column!r} has {sum(i is None for i in ids)} empty ids")
        return [str(i) for i in ids]

    def rows(self, index: np.ndarray) -> np.ndarray:
        import pyarrow.compute as pc

        _, columns, is_list = self._columns()
        table = self._file().read(columns=columns)
        if not is_list:
            return np.column_stack([c.to_numpy().astype(np.float32) for c in table.columns])[index]
        column = table.column(0).combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(column), -1).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if len(lengths) else 0
        if (lengths != width).any():
            raise self.fail(
                f"column 'embedding' holds lists of {sorted(set(lengths.tolist()))[:5]} values (empty = -1): all rows need one length"
            )
        values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        return values.reshape(len(column), width)[index]


READERS: dict[str, type[_Reader]] = {"npy": _Npy, "safetensors": _Safetensors, "parquet": _Parquet}


class PrecomputedEmbeddings(FrozenEncoder):
    """A space read from a file of embeddings (see the module docstring for the file conventions).

    ``dim`` comes from the file's header (no data read); :meth:`bind` matches the dataset's item
    keys to rows, so a missing item fails before any training; the rows are read on first use.
    The identity is the file's sha256 and format: moving or renaming the file keeps its cached
    spaces, editing it makes new ones.
    """

    view = ID_VIEW
    config_name = "precomputed"

    def __init__(self, path: str | None = None, setting: str = "encoder.path") -> None:
        super().__init__()
        if not path:
            raise ConfigError(f"encoder=precomputed needs {setting}=<a .npy, .safetensors or .parquet file of embeddings>")
        self.setting = setting
        self.path = require_file(path, setting)
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in READERS:
            raise ConfigError(
                f"{setting}={self.path}: unsupported file type {self.path.suffix!r} (use .npy, .safetensors or .parquet)"
            )
        self.reader = READERS[self.format](self.path, f"{setting}={self.path}")
        self.count, self.dim = self.reader.shape()
        if self.count == 0 or self.dim == 0:
            raise ConfigError(f"{setting}={self.path}: no embeddings in it (shape ({self.count}, {self.dim}))")
        self.rows: np.ndarray | None = None  # item position -> file row, set by bind()
        self.table: torch.Tensor | None = None  # (items, dim) float32 in item order, read by load()

    @classmethod
    def from_config(cls, cfg: dict, setting: str = "encoder") -> PrecomputedEmbeddings:
        """From a resolved ``encoder=precomputed`` config dict; ``setting`` is where it sits (``decoder.space``)."""
        return cls(cfg.get("path"), setting=f"{setting}.path")

    def bind(self, keys: Sequence[str], dataset: str = "the dataset") -> PrecomputedEmbeddings:
        """Match the dataset's item ``keys`` (in item order) to the file's rows; a ConfigError when
        an item has no row, an id repeats, or an unkeyed file has another row count."""
        ids = self.reader.ids()
        rows = self._positional(len(keys), dataset) if ids is None else self._match(ids, list(keys), dataset)
        if self.rows is None or not np.array_equal(rows, self.rows):
            self.rows, self.table, self._loaded = rows, None, False
        return self

    def _positional(self, n: int, dataset: str) -> np.ndarray:
        if self.count != n:
            raise ConfigError(
                f"{self.setting}={self.path}: {self.count} rows for the {n} items of dataset {dataset}; a {self.format} file "
                f"without ids needs one row per item in item order (or write the item keys as ids into a .parquet or .safetensors)"
            )
        return np.arange(n, dtype=np.int64)

    def _match(self, ids: list[str], keys: list[str], dataset: str) -> np.ndarray:
        if len(ids) != self.count:
            raise ConfigError(f"{self.setting}={self.path}: {len(ids)} ids for {self.count} rows")
        where: dict[str, int] = {}
        repeated = [i for row, i in enumerate(ids) if where.setdefault(i, row) != row]
        if repeated:
            raise ConfigError(
                f"{self.setting}={self.path}: {len(repeated)} repeated ids (e.g. {examples(repeated)}); each id needs one row"
            )
        missing = [k for k in keys if k not in where]
        if missing:
            raise ConfigError(
                f"{self.setting}={self.path}: {len(missing)} of the {len(keys)} items of dataset {dataset} have no embedding "
                f"(e.g. keys {examples(missing)}); the file's ids look like {examples(ids)}"
            )
        if len(ids) > len(keys):
            log.info("%s: %d rows have ids that are not items of dataset %s: ignored", self.path, len(ids) - len(keys), dataset)
        return np.array([where[k] for k in keys], dtype=np.int64)

    def _identity(self) -> dict:
        return {"weights": {"file_sha256": file_sha256(self.path), "format": self.format}}

    def _load(self) -> None:
        if self.rows is None:
            raise RuntimeError("PrecomputedEmbeddings.bind(item_keys) must be called before it is used")
        table = torch.from_numpy(np.ascontiguousarray(self.reader.rows(self.rows)))
        bad = int((~torch.isfinite(table)).sum())
        if bad:
            raise ConfigError(f"{self.setting}={self.path}: {bad} NaN/inf values in the embeddings of the dataset's items")
        self.table = table

    def _encode(self, batch: Any) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor) or batch.is_floating_point() or batch.ndim != 1:
            raise ConfigError(
                f"{type(self).__name__} reads item positions (a 1-D integer tensor, view=id), got {type(batch).__name__}"
            )
        return self.table[batch.cpu()].to(batch.device)
