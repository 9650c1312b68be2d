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


def mean_norm(x: torch.Tensor) -> float:
    """Mean L2 norm of the rows (the latent scale; the paper's Figure 5 sets it beside accuracy)."""
    return float(x.float().norm(dim=1).mean())


@torch.no_grad()
def retrieval(queries: torch.Tensor, keys: torch.Tensor, ks: tuple[int, ...] = (1, 5), chunk: int = 1024) -> dict[str, float]:
    """Row i of ``queries`` should retrieve row i of ``keys`` by cosine similarity.

    Returns ``top{k}`` (share of queries whose match ranks within the first k), ``mrr`` (mean
    reciprocal rank) and ``pool`` (the number of candidates). A rank counts the keys scoring
    strictly higher than the match, so ties go in the query's favour.
    """
    if queries.shape != keys.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must have the same shape")
    q = F.normalize(queries.float(), dim=1)
    k = F.normalize(keys.float(), dim=1)
    ranks = []
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ k.T
        rows = torch.arange(len(sims))
        true = sims[rows, rows + start]
        ranks.append((sims > true[:, None]).sum(dim=1) + 1)
    rank = torch.cat(ranks).double()
    scores = {f"top{n}": float((rank <= n).double().mean()) for n in ks}
    scores["mrr"] = float((1.0 / rank).mean())
    scores["pool"] = int(len(k))
    return scores
