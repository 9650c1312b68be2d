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
