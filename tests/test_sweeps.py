"""Multiruns: grids from the callback, launchers sharing one cache, failed cells, DDP on the CPU."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from latentstitch.cache import Cache

from conftest import ROOT, TINY


def job_logs(sweep_dir) -> str:
    return "".join(p.read_text() for p in sweep_dir.glob("*/*.log"))


def check_grid(sweep_dir, n_cells, translators):
    grid = pd.read_csv(sweep_dir / "grid.csv")
    assert len(grid) == n_cells and (grid["status"] == "ok").all()
    for t in translators:
        assert (sweep_dir / f"grid_{t}.png").stat().st_size > 10_000
    assert (sweep_dir / "grid_untranslated.png").exists()
    return grid


def test_basic_sweep_builds_grid_per_translator(cli):
    r = cli(["-m", *TINY, "encoder=mlp,cnn", "decoder=mlp,cnn", "translator=ortho,linear"])
    assert r.returncode == 0, r.stderr[-3000:]
    grid = check_grid(r.run_dir, 8, ["ortho", "linear"])
    diag = grid[grid["encoder"] == grid["decoder"]]
    assert (diag["untranslated_acc"] == diag["native_acc"]).all()  # a space fed to its own decoder
    off = grid[grid["encoder"] != grid["decoder"]]
    assert (off["stitched_acc"] > 0.8 * off["native_acc"]).all() and (off["untranslated_acc"] < 0.4).all()
    summary = pd.read_csv(r.run_dir / "summary.csv")
    assert set(summary["translator"]) == {"ortho", "linear"} and (summary["cells"] == 2).all()
    # rebuilding after the fact gives the same grid
    rebuilt = subprocess.run([sys.executable, str(ROOT / "scripts" / "grid.py"), str(r.run_dir)], capture_output=True, text=True)
    assert rebuilt.returncode == 0 and pd.read_csv(r.run_dir / "grid.csv").equals(grid)


@pytest.mark.parametrize("launcher", [
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    # submitit's path is in the fast suite through a real scheduler (test_slurm.py); this one runs with `make test-slow`
    pytest.param(["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=15", "hydra.launcher.cpus_per_task=1"], marks=pytest.mark.slow),
])  # fmt: skip
def test_concurrent_jobs_share_the_cache_and_train_each_encoder_once(cli, tmp_path, launcher):
    r = cli(["-m", *launcher, *TINY, "translator=ortho,linear"])
    assert r.returncode == 0, r.stderr[-3000:]
    check_grid(r.run_dir, 2, ["ortho", "linear"])
    logs = job_logs(r.run_dir)
    assert logs.count("training encoder mlp:s0") == 1 and logs.count("training encoder cnn:s0") == 1, logs[-3000:]
    assert logs.count("training decoder") == 1
    cache = Cache(tmp_path / "cache")
    assert (len(cache.entries("encoder")), len(cache.entries("space")), len(cache.entries("decoder"))) == (2, 4, 1)
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


@pytest.mark.slow  # 15 s; failed cells are marked, and fail the sweep, in test_slurm.py and test_hardening.py
def test_failed_cells_are_marked_and_exit_non_zero(cli):
    r = cli(["-m", *TINY, "encoder.model.num_features=64", "translator=none,ortho"])
    assert r.returncode == 1
    grid = pd.read_csv(r.run_dir / "grid.csv")
    failed = grid[grid["status"] == "failed"]
    assert list(failed["translator"]) == ["none"] and "needs equal dims" in failed["error"].iloc[0]
    assert (grid[grid["translator"] == "ortho"]["status"] == "ok").all()
    assert (r.run_dir / "grid_ortho.png").exists() and (r.run_dir / "grid_none.png").exists()
    assert "error: cell mlp:s0 -> cnn:s0 (none) failed" in r.stderr


def test_grid_of_an_empty_dir_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "grid.py"), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and f"error: no cells in {tmp_path}" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # 37 s; the same equality is asserted in the fast suite with the ranks as SLURM tasks (test_slurm.py)
def test_ddp_extraction_equals_single_process(cli, tmp_path):
    """Encoders trained once on one process; the spaces extracted again by 2 gloo processes."""
    single = cli([*TINY, "trainer=cpu"], cache=tmp_path / "single")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp_cache = tmp_path / "ddp"
    for entry in Cache(tmp_path / "single").entries("encoder"):  # share the trained encoders only
        (ddp_cache / "encoder").mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", str(entry), str(ddp_cache / "encoder")], check=True)
    ddp = cli([*TINY, "trainer=ddp_cpu"], cache=ddp_cache)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert (ddp.run_dir / "train_ddp_process_1.log").exists()  # a second process really ran
    a = {p.name: load_file(str(p / "tensors.safetensors")) for p in Cache(tmp_path / "single").entries("space")}
    b = {p.name: load_file(str(p / "tensors.safetensors")) for p in Cache(ddp_cache).entries("space")}
    assert a.keys() == b.keys() and len(a) == 4
    for key in a:
        assert a[key]["latents"].shape == b[key]["latents"].shape  # every sample exactly once
        assert torch.equal(a[key]["labels"], b[key]["labels"])  # in dataset order
        assert torch.allclose(a[key]["latents"], b[key]["latents"], atol=1e-5)
    assert ddp.metrics["native_acc"] > 0.85  # the decoder head was trained under DDP


@pytest.mark.slow  # 44 s; DDP in a sweep job runs in the fast suite as SLURM tasks (test_slurm.py), DDP extraction above
def test_ddp_inside_a_multirun(cli):
    """Two sweep jobs in one process, each training under 2-process DDP (the Hydra+DDP pitfall)."""
    r = cli(["-m", *TINY, "trainer=ddp_cpu", "encoder.seed=0,1"], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    grid = check_grid(r.run_dir, 2, ["ortho"])
    assert set(grid["encoder"]) == {"mlp:s0", "mlp:s1"}
    assert sorted(p.parent.name for p in r.run_dir.glob("*/train_ddp_process_1.log")) == ["0", "1"]


def test_sweep_logs_cells_and_grid_to_wandb_offline(cli):
    r = cli(["-m", *[a for a in TINY if a != "logger=none"], "logger=wandb", "translator=ortho,linear"])
    assert r.returncode == 0, r.stderr[-3000:]
    for job in ("0", "1"):  # one offline W&B run per cell
        assert len(list((r.run_dir / job / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    grid_runs = list((r.run_dir / "wandb").glob("offline-run-*"))
    assert len(grid_runs) == 1  # plus one for the grid, with the table and the heatmaps
    media = grid_runs[0] / "files" / "media"
    assert list(media.glob("table/grid_*.table.json")) and len(list(media.glob("images/*.png"))) == 3


def test_experiments_in_a_sweep_are_not_read_as_cells(tmp_path):
    """A multirun of +experiment=aggregation writes metrics.json with an encoder but no decoder: it
    reports itself, and the grid must neither count it as a cell nor fail on it (KeyError 'decoder')."""
    from latentstitch.grid import read_cells

    for job, metrics in {"0": {"task": "aggregation", "encoder": "cnn x2", "status": "ok"},
                         "1": {"encoder": "mlp:s0", "decoder": "cnn:s0", "translator": "ortho", "status": "ok"},
                         "2": {"encoder": "mlp:s0", "decoder": "mlp:s0", "status": "failed", "error": "x"}}.items():  # fmt: skip
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / "metrics.json").write_text(json.dumps(metrics))
    cells = read_cells(tmp_path)
    assert cells["job"].tolist() == ["1", "2"] and cells["status"].tolist() == ["ok", "failed"]
