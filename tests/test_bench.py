"""The translator benchmark behind docs/results.md's ratios runs, and its ratios hold loosely here.

The figures there (d=768, 2000 anchors, 10k points, quiet machine: 1.00-1.11 of the kernel sum)
come from ``python scripts/bench.py --only translators``. This smaller run guards the same claim
with room for a busy machine: each translator's fit + transform within 2x of its unavoidable
kernels timed alone in the same run (at load 4-5 on 2 cores this run measured 1.18-1.52), and,
what the speed rests on and timing cannot show under load, estimation in the latents' float32
where the anchors are well conditioned (float64 would double the SVD alone).
"""

import re
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import bench  # noqa: E402


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_translators_run_at_the_kernel_sum_and_match_numpy(one_thread, capsys):
    ratios = bench.bench_translators(repeats=5, d=512, k=1500, n=4000, threads_list=(1,), numpy=False)[1]
    report = capsys.readouterr().out
    assert set(ratios) == {"affine", "linear", "lortho", "ortho"} and "/ kernels" in report
    for name, r in ratios.items():
        assert r["kernels"] < 2.0, (name, r, report)
        assert r["rel_diff"] < 1e-4, (name, r)  # same math as the float64 NumPy reference
    for name in ratios:  # the solver path each took, as the report names it
        solver = re.search(rf"{name} .*\[([^;]+);", report).group(1)
        assert "float64" not in solver and "float32" in solver, (name, solver)
