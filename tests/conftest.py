"""Shared helpers: run ``run.py`` as a user would, with a private cache and output dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# digits with its own defaults (300 anchors, a 30-epoch cap on the step budgets): a cell in seconds
TINY = ["dataset=digits", "encoder=mlp", "decoder=cnn", "logger=none", "trainer.enable_progress_bar=false"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())


def run_cli(args: list[str], tmp: Path, cache: Path | None = None, timeout: int = 600, env: dict | None = None,
            run_dir: Path | None = None) -> Result:  # fmt: skip
    """``run.py args`` in a fresh ``run<N>`` dir under ``tmp`` (or ``run_dir``: the same sweep again, to resume it)."""
    run_dir = run_dir or tmp / f"run{len(list(tmp.glob('run*')))}"
    cache = cache or tmp / "cache"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **(env or {})}
    dirs = [f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}"]  # run_dir is the sweep dir in a multirun
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args, f"paths.cache_dir={cache}", *dirs],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr, run_dir)


@pytest.fixture
def cli(tmp_path):
    return lambda args, **kw: run_cli(args, tmp_path, **kw)
