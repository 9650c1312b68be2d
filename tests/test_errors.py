"""Bad input: one clear line, a non-zero exit, no traceback, nothing in the cache."""

import json

import pytest

from latentstitch.cache import Cache

from conftest import TINY

CASES = {
    "anchors_zero": (["anchors.num=0"], "anchors.num=0 must be between 1 and"),
    "anchors_too_many": (["anchors.num=100000"], "anchors.num=100000 must be between 1 and 1293"),
    "none_between_dims": (
        ["translator=none", "encoder.model.num_features=64"],
        "translator=none needs equal dims, got source 64 and target 128",
    ),
    "diverged_encoder": (
        ["encoder.train.lr=inf"],
        "encoder mlp:s0 diverged: NaN/inf weights after training (lower encoder.train.lr=inf)",
    ),
    "zero_std": (["dataset.std=[0.0]"], "dataset.std=[0.0] must be positive"),
    "missing_dataset": (["dataset=mnist", "paths.data_dir=/nonexistent"], "dataset MNIST not found"),
    "bad_scaling": (["translator.scaling=minmax"], "translator: scaling='minmax' is not one of"),
    "graph_encoder_on_images": (
        ["encoder=gcn"],
        "encoder.model.in_features refers to dataset.node_features, which dataset=digits does not set: a graph encoder",
    ),
    "audio_encoder_on_images": (
        ["encoder=audio_cnn"],
        "encoder audio_cnn:en:s0 reads the view 'audio:en', which dataset digits does not have",
    ),
}


# a process start each (about 8 s); these share the path of a fast case and run with `make test-slow`
SLOW_CASES = {"anchors_zero", "diverged_encoder", "zero_std", "bad_scaling", "audio_encoder_on_images", "graph_encoder_on_images"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in CASES])
def test_bad_input_fails_cleanly(cli, tmp_path, case):
    overrides, message = CASES[case]
    r = cli(TINY + overrides)
    assert r.returncode == 2, r.stderr[-2000:]
    error_lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr + r.stdout
    cache = Cache(tmp_path / "cache")
    assert cache.entries("encoder") == [] and cache.entries("space") == [] and cache.entries("decoder") == []
    assert not (r.run_dir / "metrics.json").exists()


def test_unknown_option_gets_hydras_message(cli):
    r = cli(TINY + ["encoder=transformer9000"])
    assert r.returncode != 0
    assert "Could not find 'encoder/transformer9000'" in r.stderr and "Available options in 'encoder'" in r.stderr
    assert "mlp" in r.stderr and "vit" in r.stderr


def test_nan_latents_are_refused_before_caching(tmp_path):
    """Finite weights but non-finite inputs on one split: the space is not cached, the message names it."""
    import torch
    from omegaconf import OmegaConf

    from latentstitch.data import ItemDataset
    from latentstitch.encoders import SpaceBuilder
    from latentstitch.errors import ConfigError

    g = torch.Generator().manual_seed(0)
    images = torch.rand(80, 1, 8, 8, generator=g)
    images[64 + 3] = float("nan")  # one test image
    data = ItemDataset(
        "toy", {"image": images}, torch.arange(80) % 4, {"train": torch.arange(64), "test": torch.arange(64, 80)}, num_classes=4
    )
    encoder = OmegaConf.create(
        {
            "name": "mlp",
            "seed": 0,
            "train": {"steps": 2, "lr": 1e-3, "batch_size": 32},
            "model": {"_target_": "latentstitch.encoders.scratch.MLPEncoder", "img_size": 8, "num_features": 16},
        }
    )
    trainer = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}
    builder = SpaceBuilder(Cache(tmp_path), data, OmegaConf.create({"name": "toy", "mean": [0.5], "std": [0.5]}), trainer)
    with pytest.raises(ConfigError, match="encoder mlp:s0 produced 16 NaN/inf latent values on the test split"):
        builder.space(encoder)
    spaces = Cache(tmp_path).entries("space")
    assert len(spaces) == 1 and json.loads((spaces[0] / "manifest.json").read_text())["spec"]["split"] == "train"


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs: room for the first cache entries, not for all of them (root only)."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_cache_disk_is_one_error_line_and_no_half_entry(cli, full_disk):
    """Measured before: a Python traceback. Now one line naming the entry and the setting, exit 2
    in a single run, a failed cell in a sweep, and only complete entries left in the cache."""
    import pandas as pd

    cache = full_disk / "cache"
    r = cli([*TINY, "threads=1"], cache=cache)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(errors) == 1 and f"cannot write {cache}/" in errors[0], errors
    assert "No space left on device" in errors[0] and "set paths.cache_dir (or LATENTSTITCH_CACHE) to another disk" in errors[0]
    leftovers = [p for p in cache.rglob("*") if p.name.startswith((".tmp", ".write-test"))]
    assert not leftovers, leftovers
    for kind in ("encoder", "space", "decoder"):
        for entry in Cache(cache).entries(kind):  # whatever is there is whole
            assert Cache(cache).load(kind, entry.name) is not None
    sweep = cli(["-m", *TINY, "threads=1"], cache=cache)
    assert sweep.returncode == 1 and "Traceback" not in sweep.stderr, sweep.stderr[-2000:]
    grid = pd.read_csv(sweep.run_dir / "grid.csv")
    assert grid["status"].tolist() == ["failed"] and "No space left on device" in grid["error"].iloc[0]


def test_a_setting_the_dataset_lacks_is_named_in_one_line():
    """In process, the path behind graph_encoder_on_images (a slow CLI case)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationKeyError

    from latentstitch.pipeline import user_error

    cfg = OmegaConf.create({"dataset": {"name": "digits"}, "encoder": {"model": {"in_features": "${dataset.node_features}"}}})
    with pytest.raises(InterpolationKeyError) as caught:
        OmegaConf.to_container(cfg, resolve=True)
    error = user_error(caught.value, cfg)
    assert str(error).startswith("encoder.model.in_features refers to dataset.node_features, which dataset=digits does not set")
    assert "graph encoder" in str(error)
