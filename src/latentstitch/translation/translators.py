"""Closed-form latent space translators (Maiorca et al., NeurIPS 2023).

Every translator follows the same recipe:

1. standard-scale each side with the statistics of its own anchors;
2. estimate a matrix ``R`` between the scaled anchor sets (subclasses differ only here);
3. ``transform(x) = descale_Y(scale_X(x) @ R)``, de-scaled with the *target* anchor statistics.

Steps 1-3 are one affine map, so ``fit`` folds them into ``weight`` and ``bias`` and ``transform``
is a single ``torch.addmm(bias, x, weight)``: one pass over the data instead of five.

The estimation runs on the anchors' device in their own dtype (float32 for float32 latents; half
precisions are promoted to float32), with float64 only where the anchors' conditioning needs it:
then scaling and estimate are redone from the raw anchors in float64 (see
``latentstitch.translation.solvers`` for the least-squares tiers and the checks that pick one).
``_solver`` names the path a fit took. The fitted parameters are kept on the anchors' device in
their dtype (float32 for half precisions), and ``transform`` returns the input's dtype and device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentstitch.translation.scaling import make_scaling
from latentstitch.translation.solvers import all_finite, least_squares, lstsq_min_norm, nearest_orthogonal, solve_normal_equations
from latentstitch.translation.state import Persistent, scalar

__all__ = [
    "TRANSLATORS",
    "AffineTranslator",
    "IdentityTranslator",
    "LinearTranslator",
    "LOrthoTranslator",
    "OrthoTranslator",
    "TranslationError",
    "Translator",
    "lstsq_min_norm",
    "nearest_orthogonal",
]

# Folding the anchor mean into the bias makes ``x @ weight`` carry the mean, so its rounding grows
# about as 1 + |mean| / std; past this root-mean-square ratio over the source dims the input is
# centred first (one extra elementwise pass) and only scaling and de-scaling are folded.
_MAX_FOLDED_MEAN_RATIO = 8.0

# what _estimate returns: R, the input and output offsets o and c (None: 0), and the solver's name
_Estimate = tuple[torch.Tensor, "torch.Tensor | None", "torch.Tensor | None", str]


class TranslationError(ValueError):
    """Raised when a translator cannot map the given spaces (one clear sentence)."""


def _as_matrix(name: str, t: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise TranslationError(f"{name} must be a 2-D tensor (samples x dims), got {getattr(t, 'shape', type(t))}")
    if not t.is_floating_point():
        raise TranslationError(f"{name} must be floating point, got {t.dtype}")
    if not all_finite(t):
        raise TranslationError(f"{name} contains NaN or inf values")
    return t


def _fitted(value: torch.Tensor | None, what: str) -> torch.Tensor:
    """A fitted attribute, or the error a caller gets for using an unfitted translator."""
    if value is None:
        raise RuntimeError(f"{what} is not fitted: call fit(x_anchors, y_anchors) first")
    return value


def _work_dtype(*dtypes: torch.dtype) -> torch.dtype:
    return torch.float64 if torch.float64 in dtypes else torch.float32


class Translator(Persistent):
    """Base class: scaling, validation and the fit/transform plumbing shared by all translators.

    After ``fit``: ``matrix`` is the estimate ``R`` between the scaled spaces (source dim x target
    dim; affine appends its bias row), and ``weight`` / ``bias`` are the whole translator as one
    affine map of the raw latents, ``transform(x) = x @ weight + bias``.

    What a method declares (read by the cell, see :class:`latentstitch.translation.Method`):
    ``paired`` (fitted on parallel anchors; False: on unpaired samples) and ``projection_method``
    (False: it translates into the target space).
    """

    name: str = "translator"  # the config name (``translator=<name>``)
    paired: bool = True
    projection_method: bool = False

    _diagonal = False  # the identity stores its weight as a vector and multiplies element-wise

    def __init__(self, scaling: str = "standard") -> None:
        self.scaling = scaling
        self.x_scaling = make_scaling(scaling)
        self.y_scaling = make_scaling(scaling)
        self.matrix: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self._shift: torch.Tensor | None = None  # input centring kept out of the fold (see _MAX_FOLDED_MEAN_RATIO)
        self._centred_bias: torch.Tensor | None = None
        self._precision: torch.dtype = torch.float32  # dtype of the anchors (set by fit), sets the numerical rank
        self._solver: str | None = None  # which path the last fit took, e.g. "cholesky-float32"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scaling={self.scaling!r})"

    def check_dims(self, source_dim: int, target_dim: int) -> None:
        """Raise TranslationError if this translator cannot map ``source_dim`` to ``target_dim``."""

    # -- state (see latentstitch.translation.state) --------------------------------------------
    def config(self) -> dict:
        return {"scaling": self.scaling}

    def _state(self) -> dict[str, torch.Tensor | None]:
        x_mean, x_std = self.x_scaling.stats()
        y_mean, y_std = self.y_scaling.stats()
        return {"weight": _fitted(self.weight, type(self).__name__), "bias": self.bias, "matrix": self.matrix,
                "shift": self._shift, "centred_bias": self._centred_bias, "x_mean": x_mean, "x_std": x_std,
                "y_mean": y_mean, "y_std": y_std, "source_dim": scalar(self.source_dim), "target_dim": scalar(self.target_dim)}  # fmt: skip

    def _restore(self, state: dict[str, torch.Tensor]) -> None:
        self.weight, self.bias, self.matrix = state["weight"], state["bias"], state.get("matrix")
        self._shift, self._centred_bias = state.get("shift"), state.get("centred_bias")
        self.x_scaling.mean, self.x_scaling.std = state["x_mean"], state["x_std"]
        self.y_scaling.mean, self.y_scaling.std = state["y_mean"], state["y_std"]
        self.source_dim, self.target_dim = int(state["source_dim"]), int(state["target_dim"])
        self._precision = self.weight.dtype

    def fit(self, x_anchors: torch.Tensor, y_anchors: torch.Tensor) -> Translator:
        """Estimate the translation from parallel anchors (row i of each side is the same item)."""
        x = _as_matrix("x_anchors", x_anchors).detach()
        y = _as_matrix("y_anchors", y_anchors).detach()
        if x.shape[0] != y.shape[0]:
            raise TranslationError(f"parallel anchors differ in number: {x.shape[0]} source vs {y.shape[0]} target")
        self.check_dims(x.shape[1], y.shape[1])
        self.source_dim, self.target_dim = x.shape[1], y.shape[1]
        work = _work_dtype(x.dtype, y.dtype)
        self._precision = x.dtype
        estimate = None
        for dtype in (work, torch.float64) if work != torch.float64 else (work,):
            xw, yw = x.to(dtype), y.to(device=x.device, dtype=dtype)
            xs = self.x_scaling.fit_transform(xw, eps_dtype=x.dtype)
            ys = self.y_scaling.fit_transform(yw, eps_dtype=y.dtype)
            estimate = self._estimate(xs, ys)
            if estimate is not None:  # None: only float64 is accurate enough for these anchors
                break
        if estimate is None:  # float64 always gives an estimate; this only guards a broken subclass
            raise RuntimeError(f"{type(self).__name__}._estimate gave no estimate in float64")
        matrix, in_offset, out_offset, self._solver = estimate
        self._fold(matrix, in_offset, out_offset, xw)
        for name in ("matrix", "weight", "bias", "_shift", "_centred_bias"):
            if getattr(self, name) is not None:
                setattr(
                    self, name, getattr(self, name).to(work).contiguous()
                )  # contiguous: saved and reloaded, it multiplies the same way
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Translate source latents ``x`` into the target space: one fused multiply-add."""
        if self.weight is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x_anchors, y_anchors) first")
        x = _as_matrix("x", x)
        if x.shape[1] != self.source_dim:
            raise TranslationError(f"x has {x.shape[1]} dims, the translator was fitted on {self.source_dim}")
        weight = self.weight.to(x)
        if self._shift is None:
            bias = _fitted(self.bias, type(self).__name__).to(x)
        else:
            x, bias = x - self._shift.to(x), _fitted(self._centred_bias, type(self).__name__).to(x)
        return torch.addcmul(bias, x, weight) if self._diagonal else torch.addmm(bias, x, weight)

    def fit_transform(self, x_anchors: torch.Tensor, y_anchors: torch.Tensor) -> torch.Tensor:
        return self.fit(x_anchors, y_anchors).transform(x_anchors)

    def inverse_transform(self, y: torch.Tensor) -> torch.Tensor:
        """Map target latents back into the source space: ``(y - bias) @ pinv(weight)``.

        Exact where the fitted map is invertible (ortho with equal dims; linear / affine with equal
        dims and full rank); elsewhere the minimum-norm least-squares preimage, which still undoes
        ``transform`` where ``weight`` has full row rank (into a wider target) and is undone by it
        where ``weight`` has full column rank (from a wider source). Float64 pseudo-inverse,
        computed once per fit; returns ``y``'s dtype and device.
        """
        if self.weight is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x_anchors, y_anchors) first")
        y = _as_matrix("y", y)
        if y.shape[1] != self.target_dim:
            raise TranslationError(f"y has {y.shape[1]} dims, the translator maps into {self.target_dim}")
        cached = getattr(self, "_inverse_cache", None)
        if cached is None or cached[0] is not self.weight:  # refitting replaces weight
            w = self.weight.double()
            cached = (self.weight, 1.0 / w if self._diagonal else torch.linalg.pinv(w))
            self._inverse_cache = cached
        inverse = cached[1].to(y.device)
        bias, shift = (self.bias, None) if self._shift is None else (self._centred_bias, self._shift)
        centred = y.double() - _fitted(bias, type(self).__name__).to(device=y.device, dtype=torch.float64)
        x = centred * inverse if self._diagonal else centred @ inverse
        if shift is not None:
            x = x + shift.to(device=y.device, dtype=torch.float64)
        return x.to(y.dtype)

    # -- what subclasses define -------------------------------------------------------------
    def _estimate(self, xs: torch.Tensor, ys: torch.Tensor) -> _Estimate | None:
        """``(R, o, c, solver)`` for the scaled-space map ``(xs - o) @ R + c`` (None offsets are 0),
        all in xs's dtype and device, and sets ``self.matrix``; or None to be called again with
        the anchors scaled in float64."""
        raise NotImplementedError

    # -- folding ------------------------------------------------------------------------------
    def _fold(self, matrix: torch.Tensor, in_offset: torch.Tensor | None, out_offset: torch.Tensor | None,
              x_anchors: torch.Tensor) -> None:  # fmt: skip
        """Turn ``descale_Y(((scale_X(x) - o) @ R) + c)`` into ``x @ weight + bias``."""
        mx, sx = self.x_scaling.stats()
        my, sy = self.y_scaling.stats()
        shift = mx if in_offset is None else mx + in_offset * sx  # the input-space origin of the map
        centred_bias = my if out_offset is None else my + out_offset * sy
        if self._diagonal:
            weight = matrix * (sy / sx)
            folded = centred_bias - shift * weight
        else:
            weight = matrix * (sy.unsqueeze(0) / sx.unsqueeze(1))
            folded = centred_bias - shift @ weight
        self.weight, self.bias = weight, folded
        if self.scaling == "standard" and in_offset is None:
            spread = sx
        elif bool((shift == 0).all()):
            spread = None
        else:
            spread = x_anchors.std(dim=0).clamp_min(torch.finfo(x_anchors.dtype).tiny)
        ratio = 0.0 if spread is None else float((shift / spread).square().mean().sqrt())
        keep_shift = ratio > _MAX_FOLDED_MEAN_RATIO
        self._shift, self._centred_bias = (shift, centred_bias) if keep_shift else (None, None)


class LinearTranslator(Translator):
    """R = argmin ||X R - Y|| (least squares, minimum norm when under-determined)."""

    name = "linear"

    def _estimate(self, xs, ys):
        solved = least_squares(xs, ys, self._precision)
        if solved is None:
            return None
        self.matrix = solved[0].to(xs)
        return self.matrix, None, None, solved[1]


class AffineTranslator(Translator):
    """Least squares with a bias column: [X 1] W = Y. After standard scaling the bias is ~0.

    Where [X 1] has full column rank this is least squares on the centred anchors plus the bias
    that maps the anchor means onto each other (the standard-scaled anchors are centred already);
    otherwise the minimum-norm solution of [X 1] W = Y itself, as in the reference.
    """

    name = "affine"

    def _estimate(self, xs, ys):
        centred = self.scaling == "standard"
        o, c = (None, None) if centred else (xs.mean(dim=0), ys.mean(dim=0))
        r = solve_normal_equations(xs if o is None else xs - o, ys if c is None else ys - c, self._precision)
        if r is not None:
            bias = torch.zeros_like(ys[0]) if o is None or c is None else c - o @ r
            self.matrix = torch.cat([r, bias.unsqueeze(0)])
            return r, o, c, f"cholesky-{str(xs.dtype).removeprefix('torch.')}"
        if xs.dtype != torch.float64:
            return None
        w = lstsq_min_norm(F.pad(xs, (0, 1), value=1.0), ys, self._precision).to(xs)
        self.matrix = w
        return w[:-1], None, w[-1], "gelsd-float64"


class LOrthoTranslator(Translator):
    """The orthogonal factor U V^T of the least-squares solution (no padding: semi-orthogonal)."""

    name = "lortho"

    def _estimate(self, xs, ys):
        solved = least_squares(xs, ys, self._precision)
        if solved is None:
            return None
        q = nearest_orthogonal(solved[0].to(xs))
        self.matrix = q
        return q, None, None, f"{solved[1]}+svd-{str(xs.dtype).removeprefix('torch.')}"


class OrthoTranslator(Translator):
    """Procrustes: SVD of X^T Y = U S V^T, R = U V^T.

    Where the dims differ the reference zero-pads the narrower side (after scaling) to the wider
    one and truncates the output to the target dim. Padding adds zero rows or columns to X^T Y, and
    the block of U V^T that survives the truncation is exactly the thin polar factor of the
    unpadded X^T Y; so ``R`` is that (source dim x target dim) and no padded copy is ever made.
    """

    name = "ortho"

    def _estimate(self, xs, ys):
        q = nearest_orthogonal(xs.T @ ys)
        self.matrix = q
        return q, None, None, f"svd-{str(xs.dtype).removeprefix('torch.')}"


class IdentityTranslator(Translator):
    """No translation: the untranslated baseline. Only defined where the dims match."""

    name = "none"

    _diagonal = True

    def check_dims(self, source_dim: int, target_dim: int) -> None:
        if source_dim != target_dim:
            raise TranslationError(
                f"translator=none needs equal dims, got source {source_dim} and target {target_dim}; "
                "pick translator=ortho, linear, lortho or affine"
            )

    def _estimate(self, xs, ys):
        self.matrix = torch.eye(xs.shape[1], dtype=xs.dtype, device=xs.device)
        return torch.ones_like(xs[0]), None, None, "identity"


TRANSLATORS = {
    "affine": AffineTranslator,
    "linear": LinearTranslator,
    "lortho": LOrthoTranslator,
    "ortho": OrthoTranslator,
    "none": IdentityTranslator,
}
