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
}


@pytest.mark.parametrize("case", list(CASES))
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
