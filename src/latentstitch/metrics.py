"""Scores for cells: classification (accuracy, macro-F1) and latent fidelity (MSE, cosine, CKA).
Pure torch / scikit-learn; imports nothing else of ours."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return int((pred == labels).sum()) / len(labels)


def macro_f1(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float(f1_score(labels.cpu().numpy(), pred.cpu().numpy(), average="macro", zero_division=0))


def latent_mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error over all entries."""
    return float(F.mse_loss(x.float(), y.float()))


def mean_cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over rows of the cosine similarity between corresponding vectors."""
    return float(F.cosine_similarity(x.float(), y.float(), dim=1).mean())


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA: ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred X, Y."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    return float((x.T @ y).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))
