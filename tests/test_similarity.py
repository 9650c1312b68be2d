"""Similarity measures between spaces (CKA, mutual k-NN, cross-space Jaccard) against direct
computations, and the ``+analysis=similarity`` run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from latentstitch import metrics

from conftest import TINY, run_cli

torch.set_num_threads(1)


def data(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def hsic(k, l):  # noqa: E741
    n = len(k)
    h = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)
    return float(torch.trace(k @ h @ l @ h))


def test_linear_cka_equals_the_hsic_form():
    x, y = data(60, 7, 0), data(60, 5, 1) + data(60, 7, 0)[:, :5]
    k, l = x @ x.T, y @ y.T  # noqa: E741
    assert metrics.linear_cka(x, y) == pytest.approx(hsic(k, l) / (hsic(k, k) * hsic(l, l)) ** 0.5, rel=1e-10)


def test_rbf_cka_equals_the_direct_kernel_computation():
    x, y = data(50, 6, 2), data(50, 4, 3)

    def kernel(z):
        d2 = torch.tensor([[float((a - b).square().sum()) for b in z] for a in z], dtype=torch.float64)
        sigma2 = float(d2[d2 > 0].median())
        return torch.exp(-d2 / (2 * sigma2))

    k, l = kernel(x), kernel(y)  # noqa: E741
    expected = hsic(k, l) / (hsic(k, k) * hsic(l, l)) ** 0.5
    assert metrics.rbf_cka(x, y) == pytest.approx(expected, rel=1e-8)
    q, _ = torch.linalg.qr(data(6, 6, 4))
    assert metrics.rbf_cka(x, 3 * x @ q + 1) == pytest.approx(1.0, abs=1e-10)  # invariant to isometry and scale
    assert 0.0 < expected < 0.5  # unrelated spaces


def direct_neighbours(z, i, k, candidates=None):
    """The k rows most cosine-similar to ``z[i]`` among ``candidates`` (default: all rows but i)."""
    cands = [j for j in range(len(z)) if j != i] if candidates is None else candidates
    sims = [(float(F.cosine_similarity(z[i], z[j], dim=0)), j) for j in cands]
    return {j for _, j in sorted(sims, reverse=True)[:k]}


def test_mutual_knn_equals_the_direct_count():
    a = data(40, 5, 5)
    b = a @ data(5, 5, 6) + 0.5 * data(40, 5, 7)
    expected = sum(len(direct_neighbours(a, i, 4) & direct_neighbours(b, i, 4)) for i in range(40)) / (40 * 4)
    assert metrics.mutual_knn(a, b, k=4) == pytest.approx(expected, abs=1e-12)
    assert metrics.mutual_knn(a, 2 * a, k=4) == 1.0
    assert 0.0 < expected < 1.0


def test_knn_jaccard_equals_the_direct_sets():
    keys = data(30, 4, 8)
    queries = keys + 0.4 * data(30, 4, 9)
    total = 0.0
    for i in range(30):
        s = {
            j
            for _, j in sorted(((float(F.cosine_similarity(queries[i], keys[j], dim=0)), j) for j in range(30)), reverse=True)[:3]
        }
        t = direct_neighbours(keys, i, 3, candidates=list(range(30)))  # self included
        total += len(s & t) / len(s | t)
    assert metrics.knn_jaccard(queries, keys, k=3) == pytest.approx(total / 30, abs=1e-12)
    assert metrics.knn_jaccard(keys, keys, k=3) == 1.0


def test_knn_errors():
    with pytest.raises(ValueError, match="k=10 neighbours asked for among 9 candidates"):
        metrics.mutual_knn(data(10, 3, 0), data(10, 3, 1), k=10)
    with pytest.raises(ValueError, match="parallel rows"):
        metrics.mutual_knn(data(10, 3, 0), data(9, 3, 1))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "issue9-cache"  # shared with the other issue-9 test files


def test_similarity_analysis_from_the_command_line(tmp_path, cache):
    import pandas as pd

    r = run_cli(
        [*TINY, "threads=1", "+analysis=similarity", "analysis.encoders=[mlp,cnn]", "analysis.samples=200"], tmp_path, cache=cache
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for name in (
        "similarity.csv",
        "similarity.png",
        "norms.csv",
        "norms.png",
        "matrix_linear_cka.csv",
        "matrix_top1.csv",
        "metrics.json",
    ):
        assert (r.run_dir / name).is_file(), name
    table = pd.read_csv(r.run_dir / "similarity.csv").set_index(["source", "target"])
    assert len(table) == 4
    assert table.loc[("mlp:s0", "mlp:s0"), "linear_cka"] == 1.0
    pair, back = table.loc[("mlp:s0", "cnn:s0")], table.loc[("cnn:s0", "mlp:s0")]
    assert pair["linear_cka"] == pytest.approx(back["linear_cka"]) and pair["mutual_knn"] == pytest.approx(back["mutual_knn"])
    assert 0.7 < pair["linear_cka"] < 1.0 and 0.3 < pair["mutual_knn"] < 1.0  # 0.90 and 0.70 measured
    assert pair["raw_top1"] < 0.1 < 0.5 < pair["top1"]  # retrieval needs the translation (0.01 -> 0.63 measured)
    assert pair["jaccard"] > pair["raw_jaccard"]
    norms = pd.read_csv(r.run_dir / "norms.csv").set_index("encoder")
    assert set(norms.index) == {"mlp:s0", "cnn:s0"} and (norms["mean"] > 0).all()
    assert json.loads((r.run_dir / "metrics.json").read_text())["samples"] == 200


def test_compare_in_a_projection_methods_shared_space():
    """translator=relative in the analysis: retrieval between the two relative spaces."""
    from latentstitch.encoders import Space
    from latentstitch.experiments.similarity import compare
    from latentstitch.translation import OrthoTranslator, RelativeStitching

    x = data(300, 6, 10).float()
    q, _ = torch.linalg.qr(data(6, 6, 11))
    y = 3 * x @ q.float()  # (cosine k-NN is not translation invariant: no shift here)
    src, tgt = (
        Space("a", x[:200], torch.zeros(200), x[200:], torch.zeros(100)),
        Space("b", y[:200], torch.zeros(200), y[200:], torch.zeros(100)),
    )
    rows = torch.arange(100)
    rel = compare(src, tgt, RelativeStitching(), torch.arange(50), rows, k=5, jaccard_k=5)
    assert rel["top1"] == 1.0 and rel["latent_cosine"] == pytest.approx(1.0, abs=1e-5) and rel["jaccard"] == 1.0
    assert rel["linear_cka"] == pytest.approx(1.0, abs=1e-6) and rel["mutual_knn"] == pytest.approx(1.0)
    assert rel["raw_top1"] < 0.2  # the absolute spaces, untranslated
    ortho = compare(src, tgt, OrthoTranslator(), torch.arange(50), rows, k=5, jaccard_k=5)
    assert ortho["top1"] == 1.0


def test_analysis_settings_errors():
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from latentstitch.errors import ConfigError
    from latentstitch.experiments.similarity import encoder_config, settings

    from conftest import ROOT

    with pytest.raises(ConfigError, match="must name at least 2 encoders"):
        settings(OmegaConf.create({"analysis": {"encoders": ["mlp"]}}))
    with pytest.raises(ConfigError, match="must be below analysis.samples=10"):
        settings(OmegaConf.create({"analysis": {"encoders": ["mlp", "cnn"], "samples": 10, "k": 10}}))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        assert encoder_config(None, "cnn:3").seed == 3
        with pytest.raises(ConfigError, match="analysis.encoders entry 'nosuch'"):
            encoder_config(None, "nosuch")
