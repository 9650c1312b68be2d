"""Sweeps through a real SLURM scheduler: slurmctld + slurmd + munge on localhost, started by
``scripts/slurm_local.sh`` (installed from Debian packages where missing; skipped, with the reason,
only where that cannot be done: not root, no apt). Every sweep goes through ``run.py -m
hydra/launcher=slurm`` as a user's would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT, TINY, run_cli

SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The local scheduler's environment (SLURM_CONF, the sacct stand-in first on PATH)."""
    base = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(base)}
    up = subprocess.run(
        ["bash", str(ROOT / "scripts" / "slurm_local.sh"), "up"], capture_output=True, text=True, env=env, timeout=300
    )
    if up.returncode != 0:
        reason = up.stderr.strip().splitlines()[-1] if up.stderr.strip() else "slurm_local.sh up failed"
        if "needs root" in reason or "apt-get is not available" in reason:
            pytest.skip(f"no local SLURM here: {reason}")
        pytest.fail(f"slurm_local.sh up failed: {up.stderr[-2000:]}")
    for line in up.stdout.splitlines():
        key, value = line.removeprefix("export ").split("=", 1)
        env[key] = value.replace("$PATH", os.environ["PATH"])
    yield env
    subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "down"], capture_output=True, env=env, timeout=120)


def sweep(slurm, tmp_path: Path, *args: str, timeout: int = 600):
    return run_cli(["-m", *SLURM, *TINY, *args], tmp_path, cache=tmp_path / "cache", env=slurm, timeout=timeout)


def test_local_scheduler_runs_jobs_and_sacct_answers(slurm, tmp_path):
    r = subprocess.run(
        ["srun", "--ntasks=2", "bash", "-c", "echo task $SLURM_PROCID"], capture_output=True, text=True, env=slurm, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split("\n")[:2]) == ["task 0", "task 1"]  # two tasks on the one node
    job = subprocess.run(["sbatch", "--parsable", "--wrap", "true", f"--output={tmp_path}/%j.out"], capture_output=True, text=True,
                         env=slurm, check=True).stdout.strip()  # fmt: skip
    deadline, acct = time.time() + 60, ""
    while time.time() < deadline and f"{job}|COMPLETED|" not in acct:  # what submitit asks to learn a job's fate
        acct = subprocess.run(["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", job], capture_output=True, text=True,
                              env=slurm).stdout  # fmt: skip
        time.sleep(0.5)
    assert acct.splitlines()[0] == "JobID|State|NodeList" and f"{job}|COMPLETED|" in acct, acct


def test_a_grid_and_its_resumed_rerun(slurm, tmp_path):
    cells = ["decoder=mlp", "decoder.space.seed=1", "translator=ortho,linear", "threads=1"]
    first = sweep(slurm, tmp_path, *cells)
    assert first.returncode == 0, first.stderr[-3000:]
    grid = pd.read_csv(first.run_dir / "grid.csv")
    assert len(grid) == 2 and (grid["status"] == "ok").all() and (grid["stitched_acc"] > 0.85).all()
    assert (first.run_dir / "grid_ortho.png").is_file() and (first.run_dir / "grid_linear.png").is_file()
    assert len(list((first.run_dir / ".submitit").iterdir())) >= 1  # the jobs really went through sbatch
    # the same sweep into the same dir: both cells kept, nothing trained or evaluated again
    dirs = [f"hydra.sweep.dir={first.run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    again = subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", *SLURM, *TINY, *cells, *dirs], cwd=ROOT, env=slurm,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    kept = pd.read_csv(first.run_dir / "grid.csv")
    assert kept["resumed"].tolist() == [True, True]
    assert kept["stitched_acc"].tolist() == grid["stitched_acc"].tolist()


@pytest.mark.slow  # 36 s: the grid-and-resume SLURM test keeps the scheduler path in make test
def test_a_failed_and_a_cancelled_cell_fail_the_sweep_not_hang_it(slurm, tmp_path):
    """Two cells: one fails on its own (a translator that cannot map 64 to 128 dims), one is
    cancelled with scancel while its encoder trains. The sweep ends in bounded time with exit 1 and
    a grid marking both: the first with its error, the second with the scheduler's state."""
    run_dir, cache = tmp_path / "run0", tmp_path / "cache"
    long = [
        "decoder.space.model.num_features=64",
        "dataset.max_epochs=100000",
        "encoder.train.steps=100000",
        "checkpoint_every=50",
    ]
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *SLURM, *TINY, *long, "translator=none,ortho", "threads=1",
           f"paths.cache_dir={cache}", f"hydra.sweep.dir={run_dir}"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**slurm, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list(cache.glob(".partial/encoder-*/last.ckpt")):
            time.sleep(0.5)  # the ortho cell is training now (the none cell failed before training)
        jobs = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True, env=slurm
        ).stdout.split()
        assert jobs, "no job is running"
        subprocess.run(["scancel", *jobs], check=True, env=slurm)
        start = time.time()
        out, _ = proc.communicate(timeout=180)
        ended = time.time() - start
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    assert proc.returncode == 1, out[-3000:]
    grid = pd.read_csv(run_dir / "grid.csv").set_index("translator")
    assert grid.loc["none", "status"] == "failed" and "needs equal dims" in grid.loc["none", "error"]
    assert grid.loc["ortho", "status"] == "failed" and re.search(r"ended CANCELLED", grid.loc["ortho", "error"]), grid["error"]
    assert ended < 120, f"the sweep took {ended:.0f} s to notice the cancelled job"


@pytest.mark.slow  # 41 s: DDP under SLURM; the SLURM grid test keeps the scheduler path in make test
def test_ddp_ranks_are_the_slurm_tasks(slurm, tmp_path):
    """tasks_per_node=2 trainer=ddp_cpu: SLURM starts the two ranks (Lightning joins them through
    SLURM's environment, it launches nothing itself); the spaces equal a single process's, both
    ranks log their threads, only rank 0 writes the cell."""
    from safetensors.torch import load_file

    from latentstitch.cache import Cache

    single = run_cli([*TINY, "trainer=cpu", "threads=1"], tmp_path, cache=tmp_path / "single")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp_cache = tmp_path / "ddp"
    for entry in Cache(tmp_path / "single").entries("encoder"):  # share the trained encoders only
        (ddp_cache / "encoder").mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", str(entry), str(ddp_cache / "encoder")], check=True)
    r = run_cli(["-m", *SLURM, "hydra.launcher.tasks_per_node=2", *TINY, "trainer=ddp_cpu"], tmp_path, cache=ddp_cache, env=slurm)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = {p.name: p.read_text() for p in (r.run_dir / ".submitit").glob("*/*_log.err")}
    logs.update({p.name: p.read_text() for p in (r.run_dir / ".submitit").glob("*/*_log.out")})
    text = "\n".join(logs.values())
    assert re.search(r"rank 0 trains decoder/\S+ with 1 intra-op threads", text) and re.search(
        r"rank 1 trains decoder/\S+ with 1 intra-op", text
    )
    assert not list(r.run_dir.glob("*/train_ddp_process_*.log"))  # Lightning started no processes of its own
    a = {p.name: load_file(str(p / "tensors.safetensors")) for p in Cache(tmp_path / "single").entries("space")}
    b = {p.name: load_file(str(p / "tensors.safetensors")) for p in Cache(ddp_cache).entries("space")}
    assert a.keys() == b.keys() and len(a) == 4
    for key in a:
        assert torch.equal(a[key]["labels"], b[key]["labels"]) and torch.allclose(a[key]["latents"], b[key]["latents"], atol=1e-5)
    grid = pd.read_csv(r.run_dir / "grid.csv")
    assert grid["status"].tolist() == ["ok"] and grid["native_acc"].iloc[0] > 0.85
    assert len(list(r.run_dir.glob("*/metrics.json"))) == 1 and len(Cache(ddp_cache).entries("decoder")) == 1


@pytest.mark.slow  # 75 s; the same resume path is in the fast suite (test_hardening: a killed training resumes)
def test_a_requeued_job_resumes_its_training(slurm, tmp_path):
    """scontrol requeue while the encoder trains: the job starts again, its training resumes from
    the last checkpoint (step > 0) and the cell matches an uninterrupted run's within 0.02 (not
    exactly: Lightning restarts a mid-epoch checkpoint's epoch with a fresh shuffle)."""
    long = ["dataset.max_epochs=1000", "encoder.train.steps=600", "checkpoint_every=50", "threads=1"]
    run_dir, cache = tmp_path / "run0", tmp_path / "cache"
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        "-m",
        *SLURM,
        *TINY,
        *long,
        f"paths.cache_dir={cache}",
        f"hydra.sweep.dir={run_dir}",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=slurm, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list(cache.glob(".partial/encoder-*/last.ckpt")):
            time.sleep(0.5)
        assert list(cache.glob(".partial/encoder-*/last.ckpt")), "no checkpoint appeared"
        job = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True, env=slurm
        ).stdout.split()[0]
        subprocess.run(["scontrol", "requeue", job], check=True, env=slurm)
        # a requeued job waits 120 s for its begin time (SLURM's requeue delay); once it is pending again, make it eligible now
        for _ in range(60):
            state = subprocess.run(
                ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, env=slurm
            ).stdout.strip()
            if state == "PENDING":
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, env=slurm)
                break
            time.sleep(0.5)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    logs = "\n".join(p.read_text() for p in (run_dir / ".submitit").rglob("*_log.*"))
    steps = [int(s) for s in re.findall(r"encoder/mlp:s0: resuming from its checkpoint at step (\d+)", logs)]
    assert steps and steps[0] > 0, logs[-3000:]
    resumed = pd.read_csv(run_dir / "grid.csv").iloc[0]
    assert resumed["status"] == "ok" and not list(cache.glob(".partial/*/last.ckpt"))  # the scratch dir went with the build
    plain = run_cli([*TINY, *long], tmp_path, cache=tmp_path / "uninterrupted")
    assert plain.returncode == 0, plain.stderr[-3000:]
    for score in ("native_acc", "stitched_acc"):
        assert abs(resumed[score] - plain.metrics[score]) <= 0.02, (score, resumed[score], plain.metrics[score])


@pytest.mark.slow  # over a minute: SLURM's smallest time limit is one minute
def test_a_job_at_its_time_limit_is_a_failed_cell(slurm, tmp_path):
    run_dir = tmp_path / "run0"
    args = ["-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=1", "hydra.launcher.max_num_timeout=0",
            "hydra.launcher.signal_delay_s=10", *TINY, "dataset.max_epochs=100000", "encoder.train.steps=100000", "threads=1"]  # fmt: skip
    start = time.time()
    r = run_cli(args, tmp_path, cache=tmp_path / "cache", env=slurm, timeout=400)
    assert r.returncode == 1, r.stderr[-3000:]
    grid = pd.read_csv(run_dir / "grid.csv")
    error = grid["error"].iloc[0]  # submitit's handler of the time-limit signal ends the job (no requeue left): the cell says so
    assert grid["status"].tolist() == ["failed"] and re.search(r"ended TIMEOUT|timed-out too many times", error), error
    assert time.time() - start < 240
