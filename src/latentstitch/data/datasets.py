"""Image classification datasets as in-memory tensors, loaded from local files first.

Every loader returns raw ``(train_images, train_labels, test_images, test_labels)`` with images as
uint8 or float arrays in NHWC or NHW layout; ``load_image_items`` turns them into items with one
``image`` view (kept raw: each encoder preprocesses per batch), and ``image_splits`` gives the
normalised tensors scratch encoders train on. Nothing is downloaded unless ``download=true``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from latentstitch.data.idx import find_idx, read_idx
from latentstitch.data.items import ItemDataset, carve_val
from latentstitch.data.lazy_images import stack_images
from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

RawSplits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Split:
    """One split: what a scratch encoder reads (``images``: normalised images (N, C, H, W) float32,
    or an audio view's waveforms, or a graph's node ids) and labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DatasetSplits:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def _read_idx_dir(directory: Path) -> RawSplits | None:
    files = [find_idx(directory, stem) for stem in IDX_STEMS]
    if any(f is None for f in files):
        return None
    log.info("reading IDX files from %s", directory)
    return tuple(read_idx(f) for f in files)  # type: ignore[return-value]


def _idx_dataset(torchvision_cls: str, local_dirs: list[Path], data_dir: Path, download: bool, how: str) -> RawSplits:
    for directory in local_dirs:
        found = _read_idx_dir(directory)
        if found is not None:
            return found
    if download:
        import torchvision

        getattr(torchvision.datasets, torchvision_cls)(root=str(data_dir), download=True)
        found = _read_idx_dir(data_dir / torchvision_cls / "raw")
        if found is not None:
            return found
    searched = ", ".join(str(d) for d in local_dirs)
    raise ConfigError(f"dataset {torchvision_cls} not found (searched {searched}); {how}")


def load_fashion_mnist(data_dir: Path, download: bool) -> RawSplits:
    return _idx_dataset(
        "FashionMNIST",
        [data_dir / "fashion_mnist", data_dir / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST],
        data_dir,
        download,
        "install it with `apt-get install dataset-fashion-mnist`, put the 4 IDX files in "
        f"{data_dir / 'fashion_mnist'}, or pass dataset.download=true when online",
    )


def load_mnist(data_dir: Path, download: bool) -> RawSplits:
    return _idx_dataset(
        "MNIST",
        [data_dir / "mnist", data_dir / "MNIST" / "raw"],
        data_dir,
        download,
        f"put the 4 IDX files in {data_dir / 'mnist'}, or pass dataset.download=true when online",
    )


def _cifar(cls_name: str, data_dir: Path, download: bool) -> RawSplits:
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        train, test = cls(str(data_dir), train=True, download=download), cls(str(data_dir), train=False, download=download)
    except RuntimeError as e:
        raise ConfigError(
            f"dataset {cls_name} not found under {data_dir} ({e}); place the torchvision archive there "
            "or pass dataset.download=true when online"
        ) from None
    return train.data, np.asarray(train.targets), test.data, np.asarray(test.targets)


def load_cifar10(data_dir: Path, download: bool) -> RawSplits:
    return _cifar("CIFAR10", data_dir, download)


def load_cifar100(data_dir: Path, download: bool) -> RawSplits:
    return _cifar("CIFAR100", data_dir, download)


def load_digits(data_dir: Path, download: bool, test_fraction: float = 0.2) -> RawSplits:
    """scikit-learn's bundled 8x8 digits (1797 images), split train/test with a fixed seed."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=0, stratify=digits.target
    )
    return x_train, y_train, x_test, y_test


LOADERS: dict[str, Callable[[Path, bool], RawSplits]] = {
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "digits": load_digits,
}


def raw_image_tensor(images: np.ndarray) -> torch.Tensor:
    """Images as read (uint8, or float in [0, 1]) in (N, C, H, W) layout, not normalised."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.dtype != torch.uint8:
        x = x.float()
    if x.ndim == 3:
        x = x.unsqueeze(1)  # N H W -> N 1 H W
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)  # N H W C -> N C H W
    return x.contiguous()


def normalise_images(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """Raw images (uint8 or [0, 1] float) -> float32 standardised with the dataset's statistics."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if x.shape[1] != len(mean) and len(mean) == 1:
        x = x.mean(dim=1, keepdim=True)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()


def load_image_items(name: str, data_dir: str | Path, num_classes: int, download: bool = False) -> ItemDataset:
    """An image classification dataset as items: one ``image`` view, official train / test ids."""
    if name not in LOADERS:
        raise ConfigError(f"dataset.name={name!r} has no loader; known: {sorted(LOADERS)}")
    x_train, y_train, x_test, y_test = LOADERS[name](Path(data_dir), bool(download))
    images = torch.cat([raw_image_tensor(x_train), raw_image_tensor(x_test)])
    labels = torch.cat([torch.as_tensor(np.asarray(y), dtype=torch.long) for y in (y_train, y_test)])
    n_train = len(y_train)
    return ItemDataset(name=name, views={"image": images}, labels=labels, num_classes=num_classes,
                       splits={"train": torch.arange(n_train), "test": torch.arange(n_train, len(labels))},
                       info={"source": name, "items": len(labels)})  # fmt: skip


def image_splits(items: ItemDataset, mean: list[float], std: list[float]) -> DatasetSplits:
    """The normalised in-memory tensors a scratch encoder trains on, one Split per split's ids."""
    if len(std) == 0 or min(std) <= 0:
        raise ConfigError(f"dataset.std={list(std)} must be positive (per-channel standard deviation)")
    images = items.require_view("image")  # a tensor, or a lazy view decoded here (scratch encoders train in memory)
    parts = {name: Split(normalise_images(stack_images(images[items.ids(name)]), mean, std), items.labels_of(name))
             for name in ("train", "val", "test")}  # fmt: skip
    return DatasetSplits(name=items.name, num_classes=items.num_classes, **parts)


def load_splits(
    name: str,
    data_dir: str | Path,
    mean: list[float],
    std: list[float],
    num_classes: int,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = False,
) -> DatasetSplits:
    """Load ``name`` and return normalised train / val / test splits (val carved from train)."""
    if len(std) == 0 or min(std) <= 0:
        raise ConfigError(f"dataset.std={list(std)} must be positive (per-channel standard deviation)")
    items = load_image_items(name, data_dir, num_classes, download)
    items.splits["train"], items.splits["val"] = carve_val(items.ids("train"), val_fraction, split_seed)
    return image_splits(items, mean, std)
