"""Pretrained encoders on paired data through run.py: cross-modal cells in both directions for
every head, cross-lingual retrieval cells, and the one-line errors of issue 8."""

import time

import pandas as pd
import pytest
import torch

from latentstitch import metrics
from latentstitch.cache import Cache

from conftest import run_cli

# a class-stratified subset keeps the image encoder's share of the suite under a minute
EMOJI = ["dataset=emoji", "dataset.max_train=300", "dataset.max_test=150", "dataset.max_epochs=100", "anchors.num=250", "logger=none",
         "trainer.enable_progress_bar=false"]  # fmt: skip


@pytest.fixture(scope="module")
def cross_modal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cross_modal")
    r = run_cli(["-m", *EMOJI, "encoder=mobilenetv2,minilm", "decoder=mobilenetv2,minilm", "head=svm,linear"], tmp, timeout=1200)
    return r, tmp


def test_cross_modal_cells_stitch_in_both_directions_for_two_heads(cross_modal):
    r, _ = cross_modal
    assert r.returncode == 0, r.stderr[-3000:]
    grid = pd.read_csv(r.run_dir / "grid.csv")
    assert len(grid) == 8 and (grid["status"] == "ok").all()
    assert set(grid["encoder"]) == {"mobilenetv2", "minilm:en"}
    off = grid[grid["encoder"] != grid["decoder"]]
    assert len(off) == 4  # image -> text and text -> image, for svm and linear (mlp: every other cell test)
    for _, cell in off.iterrows():
        where = f"{cell['encoder']} -> {cell['decoder']} ({cell['head']})"
        assert cell["native_acc"] > 0.55, where  # 9 groups, majority share ~0.2
        assert cell["stitched_acc"] > 0.4 and cell["stitched_acc"] > 0.5 * cell["native_acc"], where
        assert pd.isna(cell["untranslated_acc"]), where  # 1280 vs 384 dims: n/a
        assert (cell["source_dim"], cell["target_dim"]) in {(1280, 384), (384, 1280)}
    norms = grid.groupby("decoder")["target_norm"].first()
    assert abs(norms["minilm:en"] - 1.0) < 1e-3 and norms["mobilenetv2"] > 2  # MiniLM is L2-normalised


def test_pretrained_spaces_are_cached_once(cross_modal):
    r, tmp = cross_modal
    log = r.stdout + r.stderr
    cache = Cache(tmp / "cache")
    assert len(cache.entries("space")) == 4 and cache.entries("encoder") == []  # frozen: nothing trained
    assert log.count("cache miss: space mobilenetv2 train") == 1 and log.count("cache miss: space minilm:en test") == 1
    assert len(cache.entries("decoder")) == 4  # 2 heads x 2 target spaces


@pytest.mark.slow  # 19 s: the cross-modal cells test covers paired pretrained cells
def test_cross_lingual_retrieval_between_different_encoders(tmp_path):
    r = run_cli(["-m", "dataset=gettext", "dataset.loader.max_items=1000", "anchors.num=500", "logger=none",
                 "encoder=use", "encoder.language=de,en", "decoder=minilm", "trainer.enable_progress_bar=false"], tmp_path, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    grid = pd.read_csv(r.run_dir / "grid.csv").set_index("encoder")
    assert set(grid.index) == {"use:de", "use:en"} and (grid["decoder"] == "minilm:en").all()
    assert (grid["task"] == "retrieval").all() and (grid["pool"] == 300).all()  # 30 % of 1000 items are test
    for encoder in ("use:de", "use:en"):  # USE on German (or English) into MiniLM on English
        assert (
            grid.loc[encoder, "stitched_top1"] > 0.3 and grid.loc[encoder, "stitched_top5"] >= grid.loc[encoder, "stitched_top1"]
        )
        assert grid.loc[encoder, "stitched_mrr"] > grid.loc[encoder, "stitched_top1"] - 1e-9
        assert pd.isna(grid.loc[encoder, "untranslated_top1"])  # 512 vs 384 dims
    assert "retrieval cell: use:de -> minilm:en" in r.stdout


def test_retrieval_metrics_equal_brute_force():
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(50, 8, generator=g)
    queries = keys + 0.9 * torch.randn(50, 8, generator=g)
    scores = metrics.retrieval(queries, keys, chunk=7)  # chunking must not change anything
    sims = torch.nn.functional.cosine_similarity(queries[:, None, :], keys[None, :, :], dim=2)
    ranks = [1 + sum(float(sims[i, j]) > float(sims[i, i]) for j in range(50)) for i in range(50)]
    assert scores["top1"] == pytest.approx(sum(r == 1 for r in ranks) / 50)
    assert scores["top5"] == pytest.approx(sum(r <= 5 for r in ranks) / 50)
    assert scores["mrr"] == pytest.approx(sum(1 / r for r in ranks) / 50)
    assert scores["pool"] == 50 and 0 < scores["top1"] < scores["top5"] < 1


ERRORS = {
    "unknown_timm_name": (["encoder=timm", "encoder.model_name=no_such_net_v9"], "no_such_net_v9"),
    "missing_checkpoint": (["encoder=timm", "encoder.checkpoint=/nonexistent/weights.pt"], "/nonexistent/weights.pt"),
    "hub_offline": (["encoder=hf_text", "encoder.model_name=bert-base-uncased"], "not available offline"),
    "missing_debian_package": (["dataset.loader.root=/nonexistent"], "needs the Debian package"),
    "text_encoder_on_images": (
        ["dataset=digits", "encoder=minilm"],
        "reads the view 'text:en', which dataset digits does not have",
    ),
    "language_not_in_dataset": (["encoder=minilm", "encoder.language=ja"], "reads the view 'text:ja'"),
}


# a process start each (about 8 s): these share the path of a fast case and run with `make test-slow`
SLOW_CASES = {"missing_checkpoint", "missing_debian_package", "language_not_in_dataset"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in ERRORS])
def test_errors_are_one_line_fast_and_write_nothing(tmp_path, case):
    overrides, message = ERRORS[case]
    start = time.perf_counter()
    defaults = [
        d for d in ("dataset=emoji", "encoder=mobilenetv2") if not any(o.startswith(d.split("=")[0] + "=") for o in overrides)
    ]
    r = run_cli([*defaults, "decoder=minilm", "logger=none", *overrides], tmp_path, timeout=120)
    elapsed = time.perf_counter() - start
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr + r.stdout
    assert elapsed < 60  # process start-up included; never a hang on the network
    assert Cache(tmp_path / "cache").entries("space") == []
