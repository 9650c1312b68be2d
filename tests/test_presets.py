"""Experiment presets: each composes into a sweep; the cheap ones run end to end on the digits."""

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from latentstitch.config import register_resolvers

from conftest import ROOT, TINY

PRESETS = {
    "cross_seed": {"encoder.seed", "decoder.space.seed", "translator"},
    "cross_architecture": {"encoder", "decoder", "translator"},
    "translators": {"encoder", "decoder", "translator"},
    "anchor_count": {"anchors.num", "translator"},
    "scaling": {"translator", "translator.scaling"},
    "reconstruction": {"translator"},
    "relative_family": {"encoder", "decoder", "translator"},
    "invariances": {"encoder", "decoder", "translator", "translator.projections"},
    "graphs": {"encoder", "decoder", "translator"},
    "speech": {"encoder", "decoder", "translator"},
    "speech_lingual": {"encoder", "encoder.language", "decoder", "translator"},
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_composes_into_a_sweep(name):
    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert set(cfg.hydra.sweeper.params) == PRESETS[name]
    if name in ("graphs", "speech", "speech_lingual"):
        assert cfg.dataset.name == {"graphs": "wordnet_graph", "speech": "emoji", "speech_lingual": "spoken_words"}[name]
        assert name != "speech" or list(cfg.dataset.loader.audio) == ["en", "fr"]
    if name == "reconstruction":
        assert (
            cfg.task._target_ == "latentstitch.tasks.Reconstruction" and cfg.encoder.name == "ae" and cfg.decoder.space.seed == 1
        )


@pytest.mark.slow  # 18 s; the preset composes in-process above
def test_anchor_count_preset_gives_a_curve(cli):
    r = cli([*TINY, "+experiment=anchor_count", "anchors.num=10,1000", "translator=ortho,linear"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert (r.run_dir / "anchors_curve.png").stat().st_size > 10_000
    summary = pd.read_csv(r.run_dir / "summary.csv").set_index(["translator", "num_anchors"])
    assert len(summary) == 4
    for translator in ("ortho", "linear"):  # more anchors help (measured: ortho 0.85 -> 0.96, linear 0.81 -> 0.96)
        assert summary.loc[(translator, 1000), "stitched_acc"] > summary.loc[(translator, 10), "stitched_acc"] + 0.08


@pytest.mark.slow  # 17 s: the reconstruction task's unit tests stay fast
def test_reconstruction_preset_stitches_autoencoders(cli):
    r = cli(["dataset=digits", "logger=none", "trainer.enable_progress_bar=false", "anchors.num=500", "+experiment=reconstruction",
             "translator=ortho,linear"])  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    grid = pd.read_csv(r.run_dir / "grid.csv")
    assert set(grid["translator"]) == {"ortho", "linear"} and (grid["status"] == "ok").all()
    assert (grid["encoder"] == "ae:s0").all() and (grid["decoder"] == "ae:s1").all()
    for _, cell in grid.iterrows():
        assert cell["native_mse"] < cell["stitched_mse"] < 0.6 * cell["untranslated_mse"]  # translation recovers most of it
    assert all((r.run_dir / job / "reconstructions.png").stat().st_size > 5_000 for job in ("0", "1"))
    assert (r.run_dir / "grid_ortho.png").exists()


@pytest.mark.slow  # 18 s; its composition is checked in-process above, the product of invariances in test_relative_cli.py
def test_invariances_preset_sweeps_each_projection_and_their_product(cli):
    """The preset's list sweep gives one grid per product of invariances on digits (mlp -> cnn)."""
    r = cli([*TINY, "+experiment=invariances", "encoder=mlp", "decoder=cnn"])
    assert r.returncode == 0, r.stderr[-3000:]
    summary = pd.read_csv(r.run_dir / "summary.csv")
    assert len(summary) == 5 and (summary["cells"] == 1).all() and (summary["failed"] == 0).all()
    assert summary["translator"].str.contains("euclidean").sum() == 2  # alone, and in the product
    assert (summary["stitched_acc"] > 0.8).all()  # chance is 0.1; measured 0.94-0.96
    assert len(list(r.run_dir.glob("grid_relative*.png"))) == 5
