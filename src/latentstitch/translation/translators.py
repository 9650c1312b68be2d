"""Closed-form latent space translators (Maiorca et al., NeurIPS 2023).

Every translator follows the same recipe:

1. standard-scale each side with the statistics of its own anchors;
2. estimate a matrix ``R`` between the scaled anchor sets (subclasses differ only here);
3. ``transform(x) = descale_Y(scale_X(x) @ R)``, de-scaled with the *target* anchor statistics.

The estimation runs on the CPU in float64 (anchors are at most a few thousand rows, and the
min-norm least-squares and SVD solutions are then reproducible across devices); the fitted
parameters are stored in the anchors' dtype and device, and ``transform`` returns the input's
dtype and device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentstitch.translation.scaling import make_scaling


class TranslationError(ValueError):
    """Raised when a translator cannot map the given spaces (one clear sentence)."""


def _as_matrix(name: str, t: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise TranslationError(f"{name} must be a 2-D tensor (samples x dims), got {getattr(t, 'shape', type(t))}")
    if not t.is_floating_point():
        raise TranslationError(f"{name} must be floating point, got {t.dtype}")
    if not torch.isfinite(t).all():
        raise TranslationError(f"{name} contains NaN or inf values")
    return t


def lstsq_min_norm(x: torch.Tensor, y: torch.Tensor, precision: torch.dtype | None = None) -> torch.Tensor:
    """argmin_R ||x R - y||_F, the minimum-norm solution when under-determined or rank deficient.

    Singular values below ``eps * max(n, d)`` of ``precision`` (the dtype the latents came in,
    NumPy's and LAPACK's convention) count as zero: float32 latents cannot pin down directions
    below float32 precision, and solving for them in float64 blows the solution up (measured: a
    ViT's mean-pooled LayerNorm features are rank d-1, and keeping the null direction gave a
    largest singular value of 8e5 instead of 19).
    """
    rcond = torch.finfo(precision or x.dtype).eps * max(x.shape)
    return torch.linalg.lstsq(x, y, rcond=rcond, driver="gelsd").solution


def nearest_orthogonal(m: torch.Tensor) -> torch.Tensor:
    """U V^T from the thin SVD of ``m``: the closest (semi-)orthogonal matrix in Frobenius norm."""
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    return u @ vh


class Translator:
    """Base class: scaling, validation and the fit/transform plumbing shared by all translators."""

    def __init__(self, scaling: str = "standard") -> None:
        self.scaling = scaling
        self.x_scaling = make_scaling(scaling)
        self.y_scaling = make_scaling(scaling)
        self.matrix: torch.Tensor | None = None
        self._precision: torch.dtype | None = None  # dtype of the anchors, sets the numerical rank

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scaling={self.scaling!r})"

    def check_dims(self, source_dim: int, target_dim: int) -> None:
        """Raise TranslationError if this translator cannot map ``source_dim`` to ``target_dim``."""

    def fit(self, x_anchors: torch.Tensor, y_anchors: torch.Tensor) -> Translator:
        x = _as_matrix("x_anchors", x_anchors)
        y = _as_matrix("y_anchors", y_anchors)
        if x.shape[0] != y.shape[0]:
            raise TranslationError(f"parallel anchors differ in number: {x.shape[0]} source vs {y.shape[0]} target")
        self.check_dims(x.shape[1], y.shape[1])
        self.source_dim, self.target_dim = x.shape[1], y.shape[1]
        x64, y64 = x.detach().cpu().double(), y.detach().cpu().double()
        self.x_scaling.fit(x64, eps_dtype=x.dtype)
        self.y_scaling.fit(y64, eps_dtype=y.dtype)
        self._precision = x.dtype
        matrix = self._estimate(self.x_scaling.transform(x64), self.y_scaling.transform(y64))
        self.matrix = matrix.to(device=x.device, dtype=x.dtype)
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        if self.matrix is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x_anchors, y_anchors) first")
        x = _as_matrix("x", x)
        if x.shape[1] != self.source_dim:
            raise TranslationError(f"x has {x.shape[1]} dims, the translator was fitted on {self.source_dim}")
        matrix = self.matrix.to(x)
        translated = self._apply(self.x_scaling.transform(x), matrix)
        return self.y_scaling.inverse_transform(translated)

    def fit_transform(self, x_anchors: torch.Tensor, y_anchors: torch.Tensor) -> torch.Tensor:
        return self.fit(x_anchors, y_anchors).transform(x_anchors)

    # -- what subclasses define -------------------------------------------------------------
    def _estimate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _apply(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        return x @ matrix


class LinearTranslator(Translator):
    """R = argmin ||X R - Y|| (least squares, minimum norm when under-determined)."""

    def _estimate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lstsq_min_norm(x, y, self._precision)


class AffineTranslator(Translator):
    """Least squares with a bias column: [X 1] W = Y. After standard scaling the bias is ~0."""

    def _estimate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lstsq_min_norm(F.pad(x, (0, 1), value=1.0), y, self._precision)

    def _apply(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        return x @ matrix[:-1] + matrix[-1]


class LOrthoTranslator(Translator):
    """The orthogonal factor U V^T of the least-squares solution (no padding: semi-orthogonal)."""

    def _estimate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nearest_orthogonal(lstsq_min_norm(x, y, self._precision))


class OrthoTranslator(Translator):
    """Procrustes: SVD of X^T Y = U S V^T, R = U V^T.

    Where the dims differ the narrower side is zero-padded (after scaling) to the wider one,
    and the output is truncated to the target dim.
    """

    def _estimate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        width = max(x.shape[1], y.shape[1])
        x, y = _pad_to(x, width), _pad_to(y, width)
        return nearest_orthogonal(x.T @ y)

    def _apply(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        return (_pad_to(x, matrix.shape[0]) @ matrix)[:, : self.target_dim]


class IdentityTranslator(Translator):
    """No translation: the untranslated baseline. Only defined where the dims match."""

    def check_dims(self, source_dim: int, target_dim: int) -> None:
        if source_dim != target_dim:
            raise TranslationError(
                f"translator=none needs equal dims, got source {source_dim} and target {target_dim}; "
                "pick translator=ortho, linear, lortho or affine"
            )

    def _estimate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.eye(x.shape[1], dtype=x.dtype)


def _pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    return F.pad(x, (0, width - x.shape[1]))


TRANSLATORS = {
    "affine": AffineTranslator,
    "linear": LinearTranslator,
    "lortho": LOrthoTranslator,
    "ortho": OrthoTranslator,
    "none": IdentityTranslator,
}
