"""Dataset-aware defaults, honest exit codes, resumable sweeps and thread defaults (issue 7)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from latentstitch.cache import Cache
from latentstitch.runtime import configure_threads, default_threads

from conftest import ROOT

GRID_2X2 = ["-m", "dataset=digits", "encoder=mlp,cnn", "decoder=mlp,cnn", "logger=none", "trainer.enable_progress_bar=false"]


def sweep_command(sweep_dir, cache):
    return [sys.executable, str(ROOT / "run.py"), *GRID_2X2, f"paths.cache_dir={cache}", f"hydra.sweep.dir={sweep_dir}"]


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


@pytest.mark.slow  # 28 s; resuming a sweep and a killed training are in the fast suite (test_slurm.py, below)
def test_killed_sweep_resumes_and_digits_defaults_train_well(tmp_path):
    """A 2x2 digits grid with no override but the dataset, killed with SIGKILL once its first cell
    is done (the second must still train the cnn, so the kill lands mid-way), then re-run into the
    same sweep dir: finished cells are kept, nothing finished is trained twice, and the defaults
    give native accuracy >= 0.9 for mlp and cnn."""
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    first = subprocess.Popen(sweep_command(sweep, cache), cwd=ROOT, env=env(), start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 600
    while not (sweep / "0" / "metrics.json").exists():
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.time() < deadline, "the first cell did not finish in 10 minutes"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first_log = first.communicate()[0]
    assert first.returncode == -signal.SIGKILL
    finished = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    assert finished[0] == "0" and len(finished) < 4, finished  # really killed mid-way
    assert first_log.count("training encoder mlp:s0") == 1
    cached_before = {p.name for kind in ("encoder", "space", "decoder") for p in Cache(cache).entries(kind)}
    assert len(cached_before) >= 4  # the mlp encoder, its train and test spaces, its decoder at least

    second = subprocess.run(sweep_command(sweep, cache), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    assert log.count("resumed: cell") == len(finished)
    rebuilt = set(re.findall(r"cache miss: \w+ .*? \[(\w+)\], building", log))
    assert rebuilt and not rebuilt & cached_before, rebuilt & cached_before  # nothing finished before the kill is built again
    assert "training encoder mlp:s0" not in log and not re.search(r"training decoder \S+ on mlp:s0", log)
    assert log.count("training encoder cnn:s0") <= 1
    grid = pd.read_csv(sweep / "grid.csv")
    assert len(grid) == 4 and (grid["status"] == "ok").all()
    assert grid["resumed"].fillna(False).astype(bool).tolist() == [str(job) in finished for job in range(4)]
    assert (grid["num_anchors"] == 300).all()  # the dataset's default anchor count
    native = grid.groupby("decoder")["native_acc"].first()
    assert native["mlp:s0"] >= 0.9 and native["cnn:s0"] >= 0.9, native  # measured 0.964 and 0.967
    off = grid[grid["encoder"] != grid["decoder"]]
    assert (off["stitched_acc"] > 0.9 * off["native_acc"]).all()

    # a narrower sweep into the same dir: its one cell is kept, the other three job dirs are stale
    narrow = [a if not a.startswith(("encoder=", "decoder=")) else a.split(",")[0] for a in sweep_command(sweep, cache)]
    third = subprocess.run(narrow, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "grid: left out 3 job dirs from an earlier sweep into this dir: 1, 2, 3" in third.stdout
    assert "training" not in third.stdout + third.stderr
    grid = pd.read_csv(sweep / "grid.csv")
    assert grid[["encoder", "decoder"]].values.tolist() == [["mlp:s0", "mlp:s0"]] and bool(grid["resumed"].iloc[0])


def test_a_changed_config_is_not_resumed(tmp_path):
    from latentstitch.pipeline import config_hash, finished_cell

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "head": {"dropout": 0.1}})
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "ok", "config_hash": config_hash(cfg)}))
    assert finished_cell(cfg) is not None
    changed = OmegaConf.merge(cfg, {"head": {"dropout": 0.2}})
    assert finished_cell(changed) is None
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "failed", "config_hash": config_hash(cfg)}))
    assert finished_cell(cfg) is None  # failed cells run again
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "ok", "config_hash": config_hash(cfg)})[:20])
    assert finished_cell(cfg) is None  # a half-written metrics.json runs again


def test_where_and_how_a_cell_ran_does_not_change_its_identity(tmp_path):
    from latentstitch.pipeline import config_hash

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path), "root_dir": "/a"}, "threads": "auto",
                            "trainer": {"enable_progress_bar": True, "max_epochs": 3}, "head": {"dropout": 0.1}})  # fmt: skip
    elsewhere = OmegaConf.merge(
        cfg, {"paths": {"root_dir": "/b", "cache_dir": "/c"}, "threads": 1, "trainer": {"enable_progress_bar": False}}
    )
    assert config_hash(elsewhere) == config_hash(cfg)
    assert config_hash(OmegaConf.merge(cfg, {"trainer": {"max_epochs": 4}})) != config_hash(cfg)


def test_sweep_where_every_cell_fails_exits_non_zero_with_a_grid(cli):
    r = cli(["-m", "dataset=digits", "encoder=mlp", "decoder=mlp,cnn", "logger=none", "anchors.num=5000"])
    assert r.returncode == 1, r.stderr[-3000:]
    grid = pd.read_csv(r.run_dir / "grid.csv")
    assert len(grid) == 2 and (grid["status"] == "failed").all()
    assert grid["error"].str.contains("anchors.num=5000 must be between 1 and 1293").all()
    assert "error: cell mlp:s0 -> mlp:s0 (ortho) failed" in r.stderr and "error: cell mlp:s0 -> cnn:s0 (ortho) failed" in r.stderr
    assert "grid: 2 cells (0 ok, 2 failed)" in r.stdout
    assert "Traceback" not in r.stderr and "UserWarning" not in r.stderr


@pytest.mark.parametrize("setting", ["paths.cache_dir", "hydra.run.dir", pytest.param("hydra.sweep.dir", marks=pytest.mark.slow)])
def test_unwritable_directory_is_one_line_and_exit_2(tmp_path, setting):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a directory cannot be created below a file
    target = blocker / "sub"
    args = ["dataset=digits", "logger=none", f"{setting}={target}"]
    if setting == "hydra.sweep.dir":
        args = ["-m", *args, "translator=ortho,linear"]
    if setting != "paths.cache_dir":
        args.append(f"paths.cache_dir={tmp_path / 'cache'}")
    else:
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    r = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: {setting}={target} cannot be created or written (Not a directory); pick another directory"
    ]
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != blocker]
    assert written == [], written  # nothing trained, cached or reported before the check


def test_unwritable_cache_dir_stops_a_multirun_before_any_job(tmp_path):
    """The default cache dir lies below ${hydra:runtime.cwd}, which Hydra resolves only in the jobs:
    checked at the sweep's start all the same (else every job would fail on its own, exit 1)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    sweep = tmp_path / "sweep"
    args = [
        sys.executable,
        str(ROOT / "run.py"),
        "-m",
        "dataset=digits",
        "logger=none",
        "translator=ortho,linear",
        f"hydra.sweep.dir={sweep}",
    ]
    r = subprocess.run(
        args, cwd=ROOT, env={**env(), "LATENTSTITCH_CACHE": str(blocker / "sub")}, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [
        f"error: paths.cache_dir={blocker / 'sub'} cannot be created or written (Not a directory); pick another directory"
    ]
    assert list(sweep.iterdir()) == []  # no job ran


@pytest.mark.parametrize(
    ("trainer", "launcher", "cores", "expected"),
    [
        ({"accelerator": "cpu", "devices": 1, "strategy": "auto"}, None, 2, 2),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp"}, None, 2, 1),  # 2 DDP processes
        ({"accelerator": "cpu", "devices": 1}, {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, 2, 1),
        ({"accelerator": "cpu", "devices": 1}, {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}, 8, 1),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp"}, {"_target_": "x.JoblibLauncher", "n_jobs": 2}, 16, 4),
        ({"accelerator": "cpu", "devices": 1}, {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", "cpus_per_task": 3}, 16, 3),
        ({"accelerator": "gpu", "devices": 4, "strategy": "ddp"}, None, 16, 16),  # GPU ranks do not share CPU BLAS work the same way
        ({"accelerator": "cpu", "devices": -1, "strategy": "ddp"}, None, 8, 1),  # one DDP process per core
        ({"accelerator": "cpu", "devices": [0, 1, 2, 3], "strategy": "ddp"}, None, 8, 2),
        ({"accelerator": "cpu", "devices": "auto", "strategy": "ddp"}, None, 8, 8),
        # submitit_local starts every job at once and we cannot see how many: one thread each
        ({"accelerator": "cpu", "devices": 1}, {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}, 16, 1),
        # SLURM starting one task per DDP process: each task's cpus are its own
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp"},
         {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 4, "tasks_per_node": 2}, 64, 4),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp"},
         {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 4}, 64, 2),
    ],
)  # fmt: skip
def test_default_threads_divide_the_cores(trainer, launcher, cores, expected):
    assert default_threads(trainer, launcher, cores)[0] == expected


def test_lightning_ddp_launchers_keep_our_thread_count(monkeypatch):
    """Lightning's DDP launchers reset torch's threads to cores / processes unless OMP_NUM_THREADS
    is set; configure_threads sets it, so the setting survives them (and their child processes)."""
    from lightning.fabric.utilities.distributed import _set_num_threads_if_needed

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        configure_threads(3, {"accelerator": "cpu", "devices": 2, "strategy": "ddp"})
        _set_num_threads_if_needed(num_processes=64)  # what the launcher calls: would give 1 thread
        assert torch.get_num_threads() == 3 and os.environ["OMP_NUM_THREADS"] == "3"
    finally:
        torch.set_num_threads(before)


def test_thread_setting_is_used_and_logged(cli):
    r = cli(["dataset=digits", "encoder=mlp", "decoder=mlp", "logger=none", "threads=1", "anchors.num=5000"])
    assert r.returncode == 2  # stops at the anchor check, after the threads are set
    assert "threads: 1 intra-op (threads setting)" in r.stdout + r.stderr


@pytest.mark.slow  # a process start; configure_threads' errors are also tested in-process
def test_a_bad_thread_setting_is_one_line(cli):
    bad = cli(["dataset=digits", "logger=none", "threads=zero"])
    assert bad.returncode == 2 and "error: threads='zero' must be a positive integer or auto" in bad.stderr


def test_data_hungry_encoders_scale_the_datasets_epoch_cap():
    from latentstitch.encoders.spaces import epoch_cap
    from latentstitch.encoders.training import budget_steps

    vit = OmegaConf.load(ROOT / "conf" / "encoder" / "vit.yaml").train
    mlp = OmegaConf.load(ROOT / "conf" / "encoder" / "mlp.yaml").train
    assert epoch_cap(30, vit) == 120 and epoch_cap(30, mlp) == 30
    assert epoch_cap(None, vit) is None  # Fashion-MNIST: no cap, the step budget alone
    assert budget_steps(vit.steps, 6, epoch_cap(30, vit)) == 720  # digits: 6 batches of 256 per epoch
    assert budget_steps(vit.steps, 211, epoch_cap(None, vit)) == 1055


def test_a_killed_training_resumes_from_its_checkpoint(tmp_path):
    """kill -9 while the encoder trains (a preempted job), then the same run again: the training
    resumes from the build's last checkpoint (step > 0) and the scratch dir goes with the build.
    (On the local SLURM with scontrol requeue, and against an uninterrupted run: the slow
    tests/test_slurm.py::test_a_requeued_job_resumes_its_training.)"""
    from conftest import ROOT, TINY, run_cli

    cache = tmp_path / "cache"
    long = [*TINY, "decoder=mlp", "dataset.max_epochs=1000", "encoder.train.steps=400", "checkpoint_every=50", "threads=1"]
    cmd = [sys.executable, str(ROOT / "run.py"), *long, f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'killed'}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(cache.glob(".partial/encoder-*/last.ckpt")):
            time.sleep(0.2)
        assert list(cache.glob(".partial/encoder-*/last.ckpt")), "no checkpoint appeared"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    again = run_cli(long, tmp_path, cache=cache)
    assert again.returncode == 0, again.stderr[-3000:]
    steps = [
        int(s) for s in re.findall(r"encoder/mlp:s0: resuming from its checkpoint at step (\d+)", again.stdout + again.stderr)
    ]
    assert steps and steps[0] > 0
    assert again.metrics["native_acc"] > 0.9 and not list(cache.glob(".partial/*/*"))


def test_half_precision_spaces_and_encoders_have_their_own_cache_entries():
    """trainer.precision=bf16-mixed trains and extracts other numbers than fp32: their cache keys
    differ, and fp32 keys are what they were before precision was part of them."""
    from latentstitch.encoders.spaces import SpaceBuilder

    def keyed(precision):
        builder = SpaceBuilder(cache=None, items=None, dataset_cfg=None, trainer_cfg={"precision": precision})
        return builder._with_precision({"encoder": {"name": "mlp"}})

    assert keyed("32-true") == keyed("32") == {"encoder": {"name": "mlp"}}
    assert keyed("bf16-mixed") == {"encoder": {"name": "mlp"}, "precision": "bf16-mixed"} != keyed("16-mixed")


def test_bad_thread_settings_are_config_errors():
    from latentstitch.errors import ConfigError
    from latentstitch.runtime import configure_threads

    for bad, message in (
        ("zero", "threads='zero' must be a positive integer or auto"),
        (0, "threads=0 must be a positive integer"),
    ):
        with pytest.raises(ConfigError, match=message):
            configure_threads(bad, {"accelerator": "cpu", "devices": 1})
