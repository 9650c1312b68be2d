import gzip
import struct

import numpy as np
import pytest
import torch

from latentstitch.data import load_splits
from latentstitch.data.idx import read_idx
from latentstitch.errors import ConfigError


def write_idx(path, array: np.ndarray, compress: bool):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def fake_idx_dir(folder, n_train=50, n_test=20, value=7):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.full((n_train, 28, 28), value), True)
    write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, n_train), False)
    write_idx(folder / "t10k-images-idx3-ubyte", np.full((n_test, 28, 28), value), False)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n_test), True)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    write_idx(tmp_path / "x.gz", a, compress) if compress else write_idx(tmp_path / "x", a, compress)
    assert np.array_equal(read_idx(tmp_path / ("x.gz" if compress else "x")), a)


def test_idx_rejects_garbage(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_data_dir_comes_before_debian_package_and_val_is_carved(tmp_path):
    fake_idx_dir(tmp_path / "fashion_mnist", n_train=50, n_test=20, value=255)
    splits = load_splits("fashion_mnist", tmp_path, [0.0], [1.0], 10, val_fraction=0.2, split_seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 20)
    assert splits.train.images.shape == (40, 1, 28, 28) and torch.all(splits.train.images == 1.0)
    again = load_splits("fashion_mnist", tmp_path, [0.0], [1.0], 10, val_fraction=0.2, split_seed=0)
    assert torch.equal(again.val.labels, splits.val.labels)


def test_missing_dataset_is_a_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError, match="dataset MNIST not found .* dataset.download=true") as e:
        load_splits("mnist", tmp_path, [0.0], [1.0], 10)
    assert "\n" not in str(e.value)


def test_digits_is_bundled_and_normalised():
    splits = load_splits("digits", "/nonexistent", [0.5], [0.5], 10, val_fraction=0.1)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert splits.test.images.shape[1:] == (1, 8, 8)
    assert -1.01 <= float(splits.train.images.min()) and float(splits.train.images.max()) <= 1.01
