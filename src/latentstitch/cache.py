"""Content-addressed store for trained encoders, spaces and decoders.

An entry is a directory ``<root>/<kind>/<key>/`` holding ``tensors.safetensors`` and a
``manifest.json`` (the spec that produced it and the tensors file's sha256). The key is a hash of
the spec, so anything that changes the result changes the key. Writes are atomic (a temporary
directory renamed into place), concurrent jobs serialise on a per-entry file lock (so each entry
is built exactly once), and an entry whose manifest or checksum does not match is rebuilt.

Under multi-process training (DDP) only global rank 0 locks and writes; the other ranks read an
entry that is already complete and otherwise build alongside rank 0 (they must take part in the
same collective training), so all ranks make the same hit/miss decision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

from latentstitch.errors import write_error

log = logging.getLogger(__name__)

CACHE_VERSION = 1
TENSORS, MANIFEST = "tensors.safetensors", "manifest.json"

Tensors = dict[str, torch.Tensor]

_BUILDING: ContextVar[Path | None] = ContextVar("latentstitch_building", default=None)


def build_dir() -> Path | None:
    """The scratch dir of the cache entry being built right now, or None outside a build.

    A training that may be preempted keeps its checkpoints here (``<cache>/.partial/<kind>-<key>``):
    a rerun of the same build (a requeued job, a resumed sweep) finds them under the same key and
    resumes; the dir is removed once the entry is saved, or when the build fails.
    """
    return _BUILDING.get()


def spec_key(kind: str, spec: dict[str, Any]) -> str:
    """Stable hash of ``spec`` (any JSON-able dict); key order does not matter."""
    blob = json.dumps({"kind": kind, "version": CACHE_VERSION, "spec": spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def global_rank() -> int:
    """This process's rank in a multi-process launch (0 when alone)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


class Cache:
    """``get_or_build(kind, spec, build)``: load the entry for ``spec`` or build, store and return it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._memo: dict[tuple[str, str], Tensors] = {}

    def entry_dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def entries(self, kind: str) -> list[Path]:
        """Complete-looking entries of ``kind`` (for inspection and tests)."""
        folder = self.root / kind
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []

    def _lock(self, kind: str, key: str) -> FileLock:
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(lock_dir / f"{kind}-{key}.lock"))

    def load(self, kind: str, key: str) -> Tensors | None:
        """The entry's tensors, or None if absent; a damaged entry is reported and removed."""
        path = self.entry_dir(kind, key)
        if not path.exists():
            return None
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            if manifest.get("sha256") != _sha256(path / TENSORS):
                raise ValueError("checksum mismatch")
            return load_file(str(path / TENSORS))
        except Exception as e:  # noqa: BLE001 - any damage means: rebuild
            log.warning("cache entry %s/%s is corrupt (%s): rebuilding", kind, key, e)
            if global_rank() == 0:
                shutil.rmtree(path, ignore_errors=True)
            return None

    def save(self, kind: str, key: str, tensors: Tensors, spec: dict[str, Any]) -> Path:
        """Write atomically: a temporary directory, renamed into place when complete.

        A write that fails (a full disk, an I/O error) removes the temporary directory and raises
        one :class:`WriteError` naming the entry and ``paths.cache_dir``: no half entry is left.
        """
        final = self.entry_dir(kind, key)
        tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / TENSORS))
            manifest = {"kind": kind, "key": key, "spec": spec, "sha256": _sha256(tmp / TENSORS)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except Exception as e:  # noqa: BLE001 - any failed write of an entry is the disk's, not the data's
            raise write_error(final, e, "paths.cache_dir (or LATENTSTITCH_CACHE)") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def partial_dir(self, kind: str, key: str) -> Path:
        return self.root / ".partial" / f"{kind}-{key}"

    def _build(self, kind: str, key: str, build: Callable[[], Tensors]) -> Tensors:
        """``build()`` with :func:`build_dir` pointing at the entry's scratch dir. A build that
        fails removes it; one that is killed or interrupted (preemption) keeps its checkpoints."""
        scratch = self.partial_dir(kind, key)
        token = _BUILDING.set(scratch)
        try:
            return build()
        except Exception:
            if global_rank() == 0:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        finally:
            _BUILDING.reset(token)

    def get_or_build(self, kind: str, spec: dict[str, Any], build: Callable[[], Tensors], label: str = "") -> Tensors:
        key = spec_key(kind, spec)
        what = f"{kind} {label or key}".strip()
        if (kind, key) in self._memo:
            return self._memo[(kind, key)]
        if global_rank() != 0:
            tensors = self.load(kind, key)
            tensors = tensors if tensors is not None else self._build(kind, key, build)
        else:
            with self._lock(kind, key):
                tensors = self.load(kind, key)
                if tensors is not None:
                    log.info("cache hit: %s [%s]", what, key)
                else:
                    log.info("cache miss: %s [%s], building", what, key)
                    tensors = self._build(kind, key, build)
                    self.save(kind, key, tensors, spec)
                    shutil.rmtree(self.partial_dir(kind, key), ignore_errors=True)
        self._memo[(kind, key)] = tensors
        return tensors
