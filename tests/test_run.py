"""End to end through run.py on the digits, as a user types it."""

import json

import pytest

from latentstitch.cache import Cache

from conftest import TINY, run_cli


@pytest.fixture(scope="module")
def first_and_second(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    return run_cli(TINY, tmp), run_cli(TINY, tmp), tmp


def test_cell_scores_are_real(first_and_second):
    first, _, _ = first_and_second
    assert first.returncode == 0, first.stderr[-3000:]
    m = first.metrics
    assert m["status"] == "ok" and m["encoder"] == "mlp:s0" and m["decoder"] == "cnn:s0" and m["translator"] == "ortho"
    assert m["native_acc"] > 0.9  # a trained CNN + MLP head on digits
    assert m["stitched_acc"] > 0.85 * m["native_acc"]  # zero-shot stitching works
    assert m["untranslated_acc"] < 0.4  # and is needed: raw mlp latents mean nothing to the cnn decoder
    assert 0 < m["native_macro_f1"] <= 1 and m["latent_cosine"] > 0.8 and m["latent_mse"] > 0
    assert 0.3 < m["cka"] < 1  # related spaces, not identical ones
    assert (m["source_dim"], m["target_dim"], m["num_anchors"]) == (128, 128, 300)
    assert "stitched" in first.stdout and "native" in first.stdout  # the console table
    header, row = (first.run_dir / "results.csv").read_text().splitlines()
    assert {"encoder", "decoder", "translator", "native_acc", "stitched_acc", "untranslated_acc"} <= set(header.split(","))
    assert (first.run_dir / ".hydra" / "config.yaml").exists()


def test_second_run_is_all_cache_hits(first_and_second):
    first, second, tmp = first_and_second
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert "cache miss" not in log and "training encoder" not in log and "training decoder" not in log
    assert log.count("cache hit") == 5  # 2 spaces x 2 splits + 1 decoder; encoders are not even loaded
    same = lambda m: {k: v for k, v in m.items() if k != "config_hash"}  # noqa: E731 - the output dir differs
    assert same(second.metrics) == same(first.metrics)
    cache = Cache(tmp / "cache")
    assert len(cache.entries("encoder")) == 2 and len(cache.entries("space")) == 4 and len(cache.entries("decoder")) == 1


def test_changing_the_seed_is_a_miss_for_that_encoder_only(first_and_second):
    _, _, tmp = first_and_second
    r = run_cli(TINY + ["encoder.seed=1"], tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "cache miss: encoder mlp:s1" in log and "cache hit: space cnn:s0 train" in log and "cache hit: decoder" in log
    assert r.metrics["encoder"] == "mlp:s1"


@pytest.mark.slow  # 17 s of process starts; the translators and heads are tested in-process (test_translation.py, test_relative.py)
def test_other_translators_and_heads(first_and_second):
    _, _, tmp = first_and_second
    for extra in (["translator=linear", "head=svm"], ["translator=none", "head=linear"]):
        r = run_cli(TINY + extra, tmp)
        assert r.returncode == 0, r.stderr[-3000:]
        m = r.metrics
        assert m["native_acc"] > 0.85
        if "translator=none" in extra:
            assert m["stitched_acc"] == m["untranslated_acc"]
        else:
            assert m["stitched_acc"] > 0.8 * m["native_acc"]


@pytest.mark.slow  # 17 s; W&B offline runs in the fast suite through a sweep (test_sweeps.py)
def test_csv_and_wandb_offline_loggers(first_and_second):
    _, _, tmp = first_and_second
    csv_run = run_cli(TINY + ["logger=csv"], tmp)
    assert csv_run.returncode == 0, csv_run.stderr[-3000:]
    metrics_csv = list((csv_run.run_dir / "csv").rglob("metrics.csv"))
    assert metrics_csv and "cell/stitched_acc" in metrics_csv[0].read_text()
    wb = run_cli(TINY + ["logger=wandb", "encoder.seed=2"], tmp)  # a miss: training curves go to W&B too
    assert wb.returncode == 0, wb.stderr[-3000:]
    runs = list((wb.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))


@pytest.mark.slow  # 12 s: test_cell_scores_are_real covers the cell path
def test_cross_seed_decoder(first_and_second):
    _, _, tmp = first_and_second
    r = run_cli(TINY + ["encoder=cnn", "decoder.space.seed=1"], tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    m = r.metrics
    assert (m["encoder"], m["decoder"]) == ("cnn:s0", "cnn:s1")
    assert m["stitched_acc"] > 0.9 * m["native_acc"] and m["untranslated_acc"] < m["stitched_acc"]
    assert json.loads((r.run_dir / "metrics.json").read_text())["untranslated_acc"] is not None
