"""The linear algebra behind the translators: least squares with a cheap fast path, the nearest
orthogonal matrix, and the checks that decide when the fast path is accurate enough.

Least squares ``argmin_R ||X R - Y||`` is solved, in order of preference:

1. ``cholesky-<dtype>``: normal equations ``(X^T X) R = X^T Y`` by Cholesky in the latents' own
   dtype (float32 for float32 latents). It costs about two ``X^T`` products and a d x d solve, but
   squares the condition number, so it is taken only when an estimate of ``kappa_2(X^T X)`` says
   the result stays within the target accuracy of the latents' precision (``TARGET_RELATIVE_ERROR``).
2. ``cholesky-float64``: the same in float64, for float32 latents that are too ill-conditioned
   for float32 but still well inside the numerical rank, so the minimum-norm solution (below) would
   keep every direction and equals the unique least-squares solution this computes. The caller
   redoes the scaling in float64 first (``least_squares`` returns None to ask for it), or the float32
   rounding of the scaled anchors, amplified by the conditioning, would cost what float64 buys.
3. ``gelsd-float64``: SVD-based minimum-norm least squares in float64 on the CPU, singular values
   below ``eps(latents' dtype) * max(n, d)`` dropped. This is the under-determined and rank-deficient
   case (a ViT's mean-pooled LayerNorm features are rank d-1), and the reference semantics.

Pure torch: nothing here knows about configs, encoders or files.
"""

from __future__ import annotations

import math

import torch

# Target relative accuracy of an estimate, by the dtype the latents came in: float32 latents carry
# ~7 digits, and 1e-5 keeps two digits of headroom above their rounding; float64 latents are held to
# 1e-10, well inside the 1e-8 the NumPy-reference tests ask for.
TARGET_RELATIVE_ERROR = {torch.float64: 1e-10}
DEFAULT_TARGET_RELATIVE_ERROR = 1e-5

# Measured worst case of the normal equations (float32, d = 16..768, random, log-spaced and nearly
# collinear spectra): relative error of the translated points <= 0.4 * kappa_2(X^T X) * eps.
_NORMAL_EQUATIONS_ERROR_FACTOR = 0.4

# Lanczos steps and the relative accuracy eps_L they guarantee for the largest eigenvalue: with a
# random start, P(estimate < (1 - eps_L) * lambda_max) <= 1.648 sqrt(d) exp(-sqrt(eps_L) (2 m - 1))
# (Kuczynski & Wozniakowski 1992), i.e. below 1e-6 for m = 20, eps_L = 0.25 and any d <= 10^5.
_LANCZOS_STEPS = 20
_LANCZOS_EPS = 0.25


def target_relative_error(precision: torch.dtype) -> float:
    """The relative accuracy the translators aim at for latents of dtype ``precision``."""
    return TARGET_RELATIVE_ERROR.get(precision, DEFAULT_TARGET_RELATIVE_ERROR)


def min_norm_rcond(precision: torch.dtype, shape: tuple[int, int]) -> float:
    """Relative cut-off below which singular values count as zero: ``eps(precision) * max(n, d)``.

    NumPy's and LAPACK's convention, with eps from the dtype the latents came in: float32 latents
    cannot pin down directions below float32 precision, and solving for them in float64 blows the
    solution up (measured: a ViT's mean-pooled LayerNorm features are rank d-1, and keeping the
    null direction gave a largest singular value of 8e5 instead of 19).
    """
    return torch.finfo(precision).eps * max(shape)


def all_finite(t: torch.Tensor) -> bool:
    """True when ``t`` has no NaN or inf: one reduction (a sum), the element-wise test only if the
    sum is not finite (which finite values can also cause, by overflowing it)."""
    if bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def _largest_eigenvalue(apply, dim: int, like: torch.Tensor) -> float:
    """Largest Ritz value of ``_LANCZOS_STEPS`` Lanczos steps from a fixed random start (a lower bound
    on lambda_max of the symmetric positive definite operator ``apply``, within ``_LANCZOS_EPS`` of it
    with overwhelming probability). Single vectors, scalars as Python floats: each step is one d x d
    read and five small ops."""
    q = torch.randn(dim, generator=torch.Generator().manual_seed(0), dtype=like.dtype).to(like.device)
    q = q.div_(float(torch.linalg.vector_norm(q)))
    q_prev, beta = torch.zeros_like(q), 0.0
    alphas: list[float] = []
    betas: list[float] = []
    for _ in range(min(_LANCZOS_STEPS, dim)):
        w = apply(q)
        alpha = float(torch.dot(w, q))
        alphas.append(alpha)
        w = w.sub_(q, alpha=alpha).sub_(q_prev, alpha=beta)
        beta = float(torch.linalg.vector_norm(w))
        if not beta > 1e-7 * abs(alpha):  # invariant subspace found (or NaN): the Ritz values are final
            break
        betas.append(beta)
        q_prev, q = q, w.div_(beta)
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if len(alphas) > 1:
        off = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    if not bool(torch.isfinite(t).all()):  # overflow: a (numerically) singular operator
        return math.inf
    return float(torch.linalg.eigvalsh(t)[-1])


def spd_condition_bound(gram: torch.Tensor, chol: torch.Tensor) -> float:
    """An upper bound on kappa_2(gram) that holds with overwhelming probability (see ``_LANCZOS_EPS``).

    ``chol`` is the Cholesky factor of ``gram``; lambda_max comes from Lanczos on ``gram``,
    1 / lambda_min from Lanczos on its inverse (two triangular solves per step). The two runs cost
    ~2 x 20 reads of a d x d matrix (3-4 ms at d = 768 on one core), against the d x d x n
    products the solve needs anyway; LAPACK's 1-norm estimate (xPOCON) is as cheap but overstates
    kappa_2 by about sqrt(d) for dense data, which would send well-conditioned anchors to float64.
    """
    dim = gram.shape[0]
    lam_max = _largest_eigenvalue(lambda v: gram @ v, dim, gram)
    chol_t = chol.T

    def solve(v: torch.Tensor) -> torch.Tensor:  # gram^-1 v; two triangular solves beat cholesky_solve 1.6x here
        w = torch.linalg.solve_triangular(chol, v.unsqueeze(1), upper=False)
        return torch.linalg.solve_triangular(chol_t, w, upper=True).squeeze(1)

    inv_lam_min = _largest_eigenvalue(solve, dim, gram)
    kappa = lam_max * inv_lam_min / (1 - _LANCZOS_EPS) ** 2
    return kappa if math.isfinite(kappa) and kappa > 0 else math.inf


def solve_normal_equations(x: torch.Tensor, y: torch.Tensor, precision: torch.dtype) -> torch.Tensor | None:
    """R from the normal equations in x's dtype, or None where they would not be accurate enough
    (Cholesky fails, or the condition bound exceeds the accuracy or the numerical-rank limit).

    ``precision`` is the dtype the latents came in: it sets the accuracy target and the rank cut-off.
    The Gram matrix is checked before ``X^T Y`` is formed, so a refusal costs one product.
    """
    gram = x.T @ x
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:
        return None
    kappa = spd_condition_bound(gram, chol)
    accuracy_limit = target_relative_error(precision) / (_NORMAL_EQUATIONS_ERROR_FACTOR * torch.finfo(x.dtype).eps)
    rank_limit = min_norm_rcond(precision, (x.shape[0], x.shape[1])) ** -2  # kappa_2(X) below 1/rcond: gelsd keeps all
    if not kappa <= min(accuracy_limit, rank_limit):
        return None
    return torch.cholesky_solve(x.T @ y, chol)


def lstsq_min_norm(x: torch.Tensor, y: torch.Tensor, precision: torch.dtype | None = None) -> torch.Tensor:
    """argmin_R ||x R - y||_F, the minimum-norm solution, by SVD (gelsd) in float64 on the CPU.

    Singular values below ``min_norm_rcond`` of ``precision`` (default: x's dtype) count as zero.
    The CPU because CUDA has no gelsd; the result comes back in float64 on the CPU.
    """
    x64, y64 = x.detach().cpu().double(), y.detach().cpu().double()
    rcond = min_norm_rcond(precision or x.dtype, (x.shape[0], x.shape[1]))
    return torch.linalg.lstsq(x64, y64, rcond=rcond, driver="gelsd").solution


def least_squares(x: torch.Tensor, y: torch.Tensor, precision: torch.dtype) -> tuple[torch.Tensor, str] | None:
    """argmin_R ||x R - y||_F (minimum norm where rank deficient) and the name of the solver used.

    Tiers 1 and 3 of the module docstring; None where x is not float64 and the normal equations
    are not accurate in its dtype: the caller scales the anchors again in float64 and calls again.
    The solution is in x's dtype and device for Cholesky, float64 on the CPU for gelsd.
    """
    solution = solve_normal_equations(x, y, precision)
    if solution is not None:
        return solution, f"cholesky-{str(x.dtype).removeprefix('torch.')}"
    if x.dtype != torch.float64:
        return None
    return lstsq_min_norm(x, y, precision), "gelsd-float64"


def nearest_orthogonal(m: torch.Tensor) -> torch.Tensor:
    """U V^T from the thin SVD of ``m``: the closest (semi-)orthogonal matrix in Frobenius norm.

    Computed in m's dtype: the SVD is backward stable, so the result is the exact polar factor of a
    matrix within a few eps of ``m``, which is as much as latents of that precision determine.
    """
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    return u @ vh
