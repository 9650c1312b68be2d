"""Scores for cells: classification (accuracy, macro-F1) and latent fidelity (MSE, cosine, CKA).
Pure torch / scikit-learn; imports nothing else of ours."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return int((pred == labels).sum()) / len(labels)


def macro_f1(pred: torch.Tensor, labels: torch.Tensor) -> float:
    from sklearn.metrics import (
        f1_score,  # imported here: scikit-learn costs 2 s at start-up, and a run that fails early never scores
    )

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
    reciprocal rank), ``foscttm`` and ``pool`` (the number of candidates). A rank counts the keys
    scoring strictly higher than the match, so ties go in the query's favour.

    ``foscttm`` (fraction of samples closer than the true match; Liu et al., 2019) is the mean, over
    both directions (each query among the keys, each key among the queries), of the share of the
    other n - 1 samples more similar than the true partner: 0 for a perfect alignment, about 0.5
    for an unrelated one. Unlike top-1 it grades the misses, so it separates a translation that
    is nearly right from one that is not right at all.
    """
    if queries.shape != keys.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must have the same shape")
    q = F.normalize(queries.float(), dim=1)
    k = F.normalize(keys.float(), dim=1)
    pair = (q * k).sum(dim=1)  # each key's similarity to its own query
    ranks, closer_to_key = [], torch.zeros(len(k), dtype=torch.long)
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ k.T
        rows = torch.arange(len(sims))
        true = sims[rows, rows + start]
        ranks.append((sims > true[:, None]).sum(dim=1) + 1)
        sims[rows, rows + start] = -torch.inf  # the pair itself never counts (float noise between two products)
        closer_to_key += (sims > pair[None, :]).sum(dim=0)  # queries closer to key j than its own query
    rank = torch.cat(ranks).double()
    scores = {f"top{n}": float((rank <= n).double().mean()) for n in ks}
    scores["mrr"] = float((1.0 / rank).mean())
    others = max(len(k) - 1, 1)
    scores["foscttm"] = float(((rank - 1).mean() + closer_to_key.double().mean()) / (2 * others))
    scores["pool"] = int(len(k))
    return scores


# ------------------------------------------------------------------ similarity between spaces (analysis)


def _centre_gram(k: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T / n."""
    return k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()


def kernel_cka(k: torch.Tensor, l: torch.Tensor) -> float:  # noqa: E741
    """CKA of two Gram matrices: <HKH, HLH>_F / (|HKH|_F |HLH|_F)."""
    kc, lc = _centre_gram(k.double()), _centre_gram(l.double())
    return float((kc * lc).sum() / (kc.norm() * lc.norm()))


def rbf_kernel(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """``exp(-|x_i - x_j|^2 / (2 sigma^2))``; ``sigma`` defaults to the square root of the median
    of the non-zero squared distances."""
    x = x.double()
    sq = x.square().sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)
    d2.fill_diagonal_(0)
    if sigma is None:
        nonzero = d2[d2 > 0]
        sigma2 = float(nonzero.median()) if len(nonzero) else 1.0
    else:
        sigma2 = float(sigma) ** 2
    return torch.exp(-d2 / (2 * sigma2))


def rbf_cka(x: torch.Tensor, y: torch.Tensor, sigma_x: float | None = None, sigma_y: float | None = None) -> float:
    """CKA with RBF kernels (median heuristic per space); O(n^2) memory: subsample large sets."""
    if len(x) != len(y):
        raise ValueError(f"rbf_cka needs parallel rows, got {len(x)} and {len(y)}")
    return kernel_cka(rbf_kernel(x, sigma_x), rbf_kernel(y, sigma_y))


@torch.no_grad()
def knn_indices(queries: torch.Tensor, keys: torch.Tensor, k: int, exclude_self: bool = False, chunk: int = 1024) -> torch.Tensor:
    """Indices (n, k) of the ``k`` keys most cosine-similar to each query. ``exclude_self``: the
    queries are the keys, and row i may not pick key i."""
    q = F.normalize(queries.float(), dim=1)
    kk = F.normalize(keys.float(), dim=1)
    if k > len(kk) - int(exclude_self):
        raise ValueError(f"k={k} neighbours asked for among {len(kk) - int(exclude_self)} candidates")
    out = []
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ kk.T
        if exclude_self:
            rows = torch.arange(len(sims))
            sims[rows, rows + start] = -float("inf")
        out.append(sims.topk(k, dim=1).indices)
    return torch.cat(out)


def _overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, the number of indices that rows of ``a`` and ``b`` share (each row has no repeats)."""
    return (a[:, :, None] == b[:, None, :]).any(dim=2).sum(dim=1)


def mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int = 10) -> float:
    """Mutual k-NN alignment (Huh et al., 2024): mean over samples of |N_k^A(i) & N_k^B(i)| / k,
    neighbours by cosine within each space, self excluded. Rows of ``a`` and ``b`` are parallel."""
    if len(a) != len(b):
        raise ValueError(f"mutual_knn needs parallel rows, got {len(a)} and {len(b)}")
    na, nb = knn_indices(a, a, k, exclude_self=True), knn_indices(b, b, k, exclude_self=True)
    return float(_overlap(na, nb).double().mean() / k)


def knn_jaccard(queries: torch.Tensor, keys: torch.Tensor, k: int = 5) -> float:
    """Cross-space Jaccard@k (relreps): for each i, the k keys nearest to ``queries[i]`` against the
    k keys nearest to ``keys[i]`` itself (both by cosine, self included), |S & T| / |S | T|, averaged.
    Queries and keys must share the dimension (translated, or relative to shared anchors)."""
    if queries.shape != keys.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must have the same shape")
    s, t = knn_indices(queries, keys, k), knn_indices(keys, keys, k)
    inter = _overlap(s, t).double()
    return float((inter / (2 * k - inter)).mean())
