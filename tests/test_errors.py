"""Bad input: one clear line, a non-zero exit, no traceback, nothing in the cache."""

import pytest

from conftest import TINY
from latentstitch.cache import Cache

CASES = {
    "anchors_zero": (["anchors.num=0"], "anchors.num=0 must be between 1 and"),
    "anchors_too_many": (["anchors.num=100000"], "anchors.num=100000 must be between 1 and 1293"),
    "none_between_dims": (["translator=none", "encoder.model.num_features=64"], "translator=none needs equal dims, got source 64 and target 128"),
    "nan_latents": (["encoder.train.lr=1e12"], "NaN/inf"),
    "missing_dataset": (["dataset=mnist", "paths.data_dir=/nonexistent"], "dataset MNIST not found"),
    "bad_scaling": (["translator.scaling=minmax"], "translator: scaling='minmax' is not one of"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_cleanly(cli, tmp_path, case):
    overrides, message = CASES[case]
    r = cli(TINY + overrides)
    assert r.returncode != 0
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
