"""CaSpeR's spectral regulariser (Frascaroli et al., arXiv 2301.03345), in pure torch.

The loss asks the latent space of a class-balanced batch of replayed samples to form one
cluster per class: on the symmetric kNN graph of the samples' penultimate features, the
normalised Laplacian should have (about) as many near-zero eigenvalues as there are classes in
the batch, followed by a large eigengap.

Everything here follows the authors' code (mammoth, ``models/casper_utils``):

- squared Euclidean distances between features, the diagonal excluded;
- a hard symmetric kNN adjacency ``A = ((A_knn + A_knn^T) > 0)``, made differentiable with a
  straight-through estimator: ``A = A_hard + (W - W.detach())`` where ``W = w + w^T`` and ``w``
  sums the ``k`` soft neighbour weights of the Neural Nearest Neighbours relaxation (Plötz and
  Roth, 2018). Forward values are exactly the hard graph; gradients flow through ``w``.
  Temperature 1 on the raw squared distances, as in the authors' code (they create the
  relaxation afresh at every call, so its "learnable" log-temperature stays 0);
- ``L = I - D^{-1/2} A D^{-1/2}``;
- eigenvalues by ``torch.linalg.eigvalsh`` (the authors use xitorch's partial ``symeig``; both
  give the same smallest eigenvalues, and gradients through eigenvalues alone stay finite even
  when eigenvalues coincide: only eigenvector-dependent losses blow up).

Eigenvalue-index convention (0-based, ascending, ``lambda_0 = 0`` always for a Laplacian):

- ``convention="code"`` (default, the authors' code): ``sum(lambda_0 .. lambda_p) - lambda_{p+1}``,
  i.e. ``evals[:p + 1].sum() - evals[p + 1]``: the ``p + 1`` smallest eigenvalues minus the
  ``(p + 2)``-th smallest.
- ``convention="paper"`` (the paper's text, ``sum_{j=1..g} lambda_j - lambda_{g+1}`` with 1-based
  indices): ``evals[:p].sum() - evals[p]``: the ``p`` smallest minus the ``(p + 1)``-th.

A graph with exactly ``p`` connected components has ``lambda_0 = ... = lambda_{p-1} = 0``, so the
paper's version is the one that targets ``p`` clusters; the code's version targets ``p + 1``.
The default reproduces the code, since that is what the published numbers were produced with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CONVENTIONS = ("code", "paper")
_LOG_HALF = math.log(0.5)


def squared_distances(features: torch.Tensor) -> torch.Tensor:
    """``D[i, j] = ||z_i - z_j||^2`` (n, n), computed as the authors do (exact, no Gram trick)."""
    return (features.unsqueeze(0) - features.unsqueeze(1)).pow(2).sum(-1)


def _log1mexp(x: torch.Tensor, guard: float = 1e-7) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, with the NNN code's guarded backward near ``x = 0``.

    Both branches are evaluated on clamped inputs so that ``torch.where`` never multiplies a zero
    gradient with an infinite one (which would give NaN).
    """
    small = x < _LOG_HALF
    a = torch.log1p(-torch.exp(torch.where(small, x, torch.full_like(x, _LOG_HALF))))
    em1 = torch.expm1(torch.where(small, torch.full_like(x, _LOG_HALF), x))
    forward = torch.log(-em1)
    backward = torch.log(-em1 + guard)  # bounds the gradient where a weight saturates at 1
    b = forward.detach() + (backward - backward.detach())
    return torch.where(small, a, b)


def soft_knn_weights(distances: torch.Tensor, k: int, temperature: float = 1.0) -> torch.Tensor:
    """Continuous kNN relaxation (Neural Nearest Neighbours): the sum over ``k`` rounds of soft
    one-hot neighbour weights, (n, n). Row ``i`` sums to ``k``; the diagonal is 0.

    Round ``r``: ``w_r = softmax(logits)``, then ``logits += log(1 - w_r)`` so that the neighbours
    already taken weigh less in the next round. ``logits = -D / temperature``.
    """
    n = distances.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=distances.device)
    logits = torch.where(eye, torch.full_like(distances, -math.inf), -distances / temperature)
    total = torch.zeros_like(distances)
    for _ in range(k):
        log_w = F.log_softmax(logits, dim=1)
        total = total + log_w.exp()
        logits = logits + _log1mexp(log_w)
    return total


def knn_graph(distances: torch.Tensor, k: int, symmetric: bool = True, temperature: float = 1.0) -> torch.Tensor:
    """kNN adjacency (n, n) whose values are the hard 0/1 graph and whose gradient is that of the
    continuous relaxation (straight-through). ``symmetric``: ``i ~ j`` if either is among the
    other's ``k`` nearest. ``k`` is capped at ``n - 1``."""
    n = distances.shape[0]
    if n < 2:
        raise ValueError(f"a kNN graph needs at least 2 points, got {n}")
    k = min(int(k), n - 1)
    eye = torch.eye(n, dtype=torch.bool, device=distances.device)
    masked = distances.detach().masked_fill(eye, math.inf)
    hard = torch.zeros_like(distances)
    hard.scatter_(1, masked.topk(k, dim=1, largest=False).indices, 1.0)
    soft = soft_knn_weights(distances, k, temperature)
    if symmetric:
        hard = ((hard + hard.T) > 0).to(distances.dtype)
        soft = soft + soft.T
    return hard + (soft - soft.detach())


def normalized_laplacian(adjacency: torch.Tensor) -> torch.Tensor:
    """``L = I - D^{-1/2} A D^{-1/2}`` with ``D = diag(A 1)``. A kNN graph has no isolated node."""
    degree = adjacency.sum(1)
    inv_sqrt = degree.clamp_min(torch.finfo(adjacency.dtype).tiny).rsqrt()
    eye = torch.eye(adjacency.shape[0], dtype=adjacency.dtype, device=adjacency.device)
    return eye - inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]


def laplacian_eigenvalues(features: torch.Tensor, k: int = 10, temperature: float = 1.0) -> torch.Tensor:
    """Ascending eigenvalues of the normalised Laplacian of the features' symmetric kNN graph.

    Differentiable (straight-through kNN, ``eigvalsh`` in float64); use under ``torch.no_grad()``
    for the diagnostic spectrum.
    """
    graph = knn_graph(squared_distances(features), k, symmetric=True, temperature=temperature)
    laplacian = normalized_laplacian(graph)
    return torch.linalg.eigvalsh(laplacian.double()).to(features.dtype)


def casper_loss(
    features: torch.Tensor,
    labels: torch.Tensor | None = None,
    num_classes_per_task: int | None = None,
    k: int = 10,
    temperature: float = 1.0,
    convention: str = "code",
) -> torch.Tensor:
    """CaSpeR's spectral loss of a class-balanced batch of (replayed) features, a scalar.

    ``features``: (n, d) penultimate-layer features of ``p`` classes x ``m`` samples.
    ``num_classes_per_task``: ``p``, the number of classes in the batch; when None it is the
    number of distinct ``labels`` (the labels serve no other purpose: the loss is unsupervised
    given a class-balanced batch).

    With ascending 0-based eigenvalues ``lambda_0 = 0 <= lambda_1 <= ...`` of
    ``L = I - D^{-1/2} A D^{-1/2}`` (symmetric kNN graph, ``k`` neighbours):

    - ``convention="code"`` (default, as in the authors' code): ``sum_{i=0..p} lambda_i - lambda_{p+1}``
      (the ``p + 1`` smallest eigenvalues minus the ``(p + 2)``-th);
    - ``convention="paper"`` (the paper's 1-based ``sum_{j=1..g} lambda_j - lambda_{g+1}``):
      ``sum_{i=0..p-1} lambda_i - lambda_p``.

    Needs ``n >= p + 2`` samples. Multiply by the weight ``rho`` (default 0.01) yourself, or use
    :class:`latentstitch.continual.regularizer.CasperRegularizer`.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r} is not one of {list(CONVENTIONS)}")
    p = num_classes_per_task
    if p is None:
        if labels is None:
            raise ValueError("casper_loss needs num_classes_per_task or labels")
        p = int(torch.unique(labels).numel())
    p = int(p)
    last = p + 1 if convention == "code" else p  # index of the eigenvalue subtracted
    if p < 1 or features.shape[0] < last + 1:
        raise ValueError(
            f"casper_loss with p={p} ({convention} convention) needs at least {last + 1} samples, got {features.shape[0]}"
        )
    evals = laplacian_eigenvalues(features, k, temperature)
    return evals[:last].sum() - evals[last]
