import pytest
import torch

from latentstitch import metrics


def test_classification_scores():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 0, 1, 0, 2, 1])
    assert metrics.accuracy(pred, labels) == 4 / 6
    # per-class F1: 0.8, 0.5, 0.6667 -> mean
    assert abs(metrics.macro_f1(pred, labels) - (0.8 + 0.5 + 2 / 3) / 3) < 1e-9


def test_latent_fidelity():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert metrics.latent_mse(x, x + 1) == 1.0
    assert metrics.mean_cosine(x, 5 * x) == 1.0 and abs(metrics.mean_cosine(x, -x) + 1.0) < 1e-6


def test_linear_cka_is_invariant_to_rotation_and_isotropic_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 20, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    assert abs(metrics.linear_cka(x, 3.0 * x @ q + 1.0) - 1.0) < 1e-10
    assert metrics.linear_cka(x, torch.randn(300, 20, generator=g, dtype=torch.float64)) < 0.2


def _foscttm_brute_force(x: torch.Tensor, y: torch.Tensor) -> float:
    """FOSCTTM by its definition, pair by pair: for each sample, the share of the other n - 1
    samples of the other side closer (by cosine) than its true partner, in both directions."""
    n = len(x)
    cos = torch.nn.functional.cosine_similarity
    fractions = []
    for i in range(n):
        true = float(cos(x[i : i + 1], y[i : i + 1]))
        fractions.append(sum(float(cos(x[i : i + 1], y[j : j + 1])) > true for j in range(n) if j != i) / (n - 1))
        fractions.append(sum(float(cos(x[j : j + 1], y[i : i + 1])) > true for j in range(n) if j != i) / (n - 1))
    return sum(fractions) / len(fractions)


def test_foscttm_equals_a_brute_force_computation():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(37, 6, generator=gen)
    y = x + 0.8 * torch.randn(37, 6, generator=gen)  # partly aligned: neither 0 nor 0.5
    expected = _foscttm_brute_force(x, y)
    got = metrics.retrieval(x, y, chunk=10)["foscttm"]  # chunks that do not divide n
    assert 0.02 < expected < 0.45
    assert got == pytest.approx(expected, abs=1e-12)
    assert metrics.retrieval(x, x)["foscttm"] == 0.0
    unrelated = metrics.retrieval(torch.randn(400, 8, generator=gen), torch.randn(400, 8, generator=gen))["foscttm"]
    assert unrelated == pytest.approx(0.5, abs=0.03)
