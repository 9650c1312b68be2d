"""A task the package does not have, added from here: one class and one config file, no package edit.

``LabelRegression`` regresses the digit's value (0-9) from the latents with ridge regression and
scores R^2. The test writes ``task/regression.yaml`` into its own config dir, adds that dir to
Hydra's search path and runs a two-cell sweep through ``run.py``: the cells and the grid report
``stitched_r2`` like any built-in score.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch

from latentstitch.tasks import Task

from conftest import ROOT, TINY, run_cli


class LabelRegression(Task):
    """Ridge regression of the class index on the target's train latents, scored by R^2."""

    name = "regression"
    scores = ("r2",)
    primary = "r2"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    def decoder(self, spec, builder):
        x, y = spec.space.train.double(), spec.space.train_labels.double()
        mean, offset = x.mean(0), y.mean()
        xc = x - mean
        w = torch.linalg.solve(xc.T @ xc + self.alpha * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (y - offset))
        return lambda z: (z.double() - mean) @ w + offset

    def score(self, decoder, latents, target):
        y = target.test_labels.double()
        residual = ((y - decoder(latents)) ** 2).sum()
        return {"r2": float(1 - residual / ((y - y.mean()) ** 2).sum())}


@pytest.mark.slow  # 13 s: the in-process task registry tests stay fast
def test_a_task_from_outside_the_package_runs_through_run_py(tmp_path):
    conf = tmp_path / "conf"
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "regression.yaml").write_text("_target_: test_tasks.LabelRegression\nalpha: 1.0\n")
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    args = ["-m", *TINY, "decoder=mlp", "decoder.space.seed=1", "translator=ortho,none", "task=regression", "threads=1",
            f"hydra.searchpath=[file://{conf}]"]  # fmt: skip
    r = run_cli(args, tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    grid = pd.read_csv(r.run_dir / "grid.csv").set_index("translator")
    assert (grid["task"] == "regression").all() and (grid["score"] == "r2").all() and (grid["head"] == "none").all()
    # the seed-0 mlp regressed by the seed-1 mlp's ridge map: the native fit is good, ortho keeps most
    # of it, the identity (two independently trained spaces) does not
    assert (grid["native_r2"] > 0.6).all()  # 0.79 measured
    assert grid.loc["ortho", "stitched_r2"] > 0.45 and grid.loc["none", "stitched_r2"] < 0  # 0.60 and -14.2 measured
    assert grid.loc["ortho", "stitched_over_native"] > 0.6  # 0.75 measured
    assert grid.loc["none", "stitched_r2"] == grid.loc["none", "untranslated_r2"]  # the identity: untranslated latents
    assert (r.run_dir / "grid_ortho.png").is_file() and (r.run_dir / "summary.csv").is_file()
    assert "stitched_r2" in pd.read_csv(r.run_dir / "summary.csv")
