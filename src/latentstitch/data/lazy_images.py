"""Image views decoded per batch: the user's image files, or a Hugging Face image column.

A folder of photos does not fit in memory as one tensor, and most encoders only ever see a batch
at a time. A lazy view is a sequence of images that decodes one when it is indexed with an int
(``view[i]``: uint8 (C, H, W), RGB, the shorter side resized to ``size`` and centre-cropped, so
every item has one shape and a DataLoader stacks them), and is subset without decoding anything
when indexed with ids (``view[ids]``: another lazy view). ``ItemDataset.view_of`` hands frozen
encoders such a subset; ``stack_images`` decodes one into a tensor for the scratch encoders,
which train on normalised in-memory tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentstitch.errors import ConfigError

PROGRESS_FROM = 2000  # decoding more images than this shows a progress bar


def square_rgb(image: Any, size: int) -> torch.Tensor:
    """A PIL image as uint8 (3, size, size): RGB, shorter side resized to ``size``, centre-cropped."""
    from PIL import Image, ImageOps

    fitted = ImageOps.fit(image.convert("RGB"), (size, size), method=Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(fitted).copy()).permute(2, 0, 1).contiguous()


class LazyImages(Sequence):
    """Images decoded when indexed; ``rows`` maps positions to the source's own rows.

    Subclasses say how to open a source row (``_open``) and how to name it in an error (``_where``).
    """

    def __init__(self, size: int, rows: torch.Tensor | None = None, total: int = 0) -> None:
        if int(size) < 1:
            raise ConfigError(f"dataset.image_size={size} must be a positive number of pixels")
        self.size = int(size)
        self.rows = torch.arange(total) if rows is None else torch.as_tensor(rows, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.size}x{self.size})"

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.ndim == 0):
            return self.decode(int(self.rows[int(index)]))
        return self._subset(self.rows[torch.as_tensor(index, dtype=torch.long)])

    def decode(self, row: int) -> torch.Tensor:
        """Source row ``row`` as uint8 (3, size, size); an undecodable image is a ConfigError naming it."""
        try:
            return square_rgb(self._open(row), self.size)
        except (OSError, ValueError, SyntaxError) as e:  # PIL: UnidentifiedImageError, truncated files, bad headers
            raise ConfigError(f"cannot decode image {self._where(row)}: {e}") from None

    def _subset(self, rows: torch.Tensor) -> LazyImages:
        raise NotImplementedError

    def _open(self, row: int) -> Any:
        raise NotImplementedError

    def _where(self, row: int) -> str:
        raise NotImplementedError


class ImageFiles(LazyImages):
    """Image files on disk (any format PIL reads), decoded per batch."""

    def __init__(self, paths: Sequence[str | Path], size: int, rows: torch.Tensor | None = None) -> None:
        self.paths = [Path(p) for p in paths] if rows is None else paths
        super().__init__(size, rows, len(self.paths))

    def _subset(self, rows: torch.Tensor) -> ImageFiles:
        return ImageFiles(self.paths, self.size, rows)

    def _open(self, row: int) -> Any:
        from PIL import Image

        with Image.open(self.paths[row]) as image:
            image.load()
            return image

    def _where(self, row: int) -> str:
        return str(self.paths[row])


class HFImages(LazyImages):
    """An image column of a Hugging Face ``Dataset`` (memory-mapped), decoded per batch."""

    def __init__(self, dataset: Any, column: str, size: int, origin: str, rows: torch.Tensor | None = None) -> None:
        self.dataset, self.column, self.origin = dataset, column, origin
        super().__init__(size, rows, len(dataset))

    def _subset(self, rows: torch.Tensor) -> HFImages:
        return HFImages(self.dataset, self.column, self.size, self.origin, rows)

    def _open(self, row: int) -> Any:
        return self.dataset[row][self.column]

    def _where(self, row: int) -> str:
        return f"row {row} of column {self.column!r} of {self.origin}"


def check_files(images: ImageFiles, setting: str) -> None:
    """Open (header only) every file of ``images``: a missing or unreadable file is a ConfigError now,
    naming it and ``setting``, instead of in the middle of a run."""
    from PIL import Image

    for path in _progress(images.paths, "checking image files"):
        try:
            with Image.open(path):
                pass
        except FileNotFoundError:
            raise ConfigError(f"{setting}: image file {path} does not exist") from None
        except (OSError, ValueError, SyntaxError) as e:
            raise ConfigError(f"{setting}: cannot decode image {path}: {e}") from None


def stack_images(view: Any) -> torch.Tensor:
    """An image view as one tensor (N, C, H, W): a tensor as it is, a lazy view decoded (with a
    progress bar for large ones)."""
    if isinstance(view, torch.Tensor):
        return view
    if len(view) == 0:
        return torch.zeros(0, 3, view.size, view.size, dtype=torch.uint8)
    return torch.stack([view[i] for i in _progress(range(len(view)), f"decoding {len(view)} images")])


def _progress(iterable: Sequence, what: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=what, disable=len(iterable) < PROGRESS_FROM, leave=False)
