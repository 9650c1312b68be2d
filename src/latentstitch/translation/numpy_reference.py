"""An independent plain-NumPy implementation of the translators' math, written straight from the
paper's recipe. It is the yardstick the torch translators are tested and benchmarked against.
"""

from __future__ import annotations

import numpy as np


def _scale_stats(a: np.ndarray, standard: bool, eps: float) -> tuple[np.ndarray, np.ndarray]:
    if not standard:
        return np.zeros(a.shape[1], dtype=a.dtype), np.ones(a.shape[1], dtype=a.dtype)
    std = a.std(axis=0, ddof=1)
    return a.mean(axis=0), np.where(np.abs(std) < 10 * eps, 1.0, std)


def numpy_translate(
    name: str, x_anchors: np.ndarray, y_anchors: np.ndarray, x: np.ndarray, scaling: str = "standard", rcond: float | None = None
) -> np.ndarray:
    """Fit translator ``name`` on the anchors and apply it to ``x``, all in the arrays' dtype.

    Float64 is the reference; float32 arrays give the same math at float32 (the benchmark's second
    yardstick). ``rcond`` is the least-squares cut-off (None: NumPy's ``eps * max(n, d)`` of the
    arrays' dtype; pass float32's for float32 latents that were converted to float64).
    """
    eps = float(np.finfo(x_anchors.dtype).eps)
    mx, sx = _scale_stats(x_anchors, scaling == "standard", eps)
    my, sy = _scale_stats(y_anchors, scaling == "standard", eps)
    xa, ya, xs = (x_anchors - mx) / sx, (y_anchors - my) / sy, (x - mx) / sx
    dy = ya.shape[1]
    if name == "linear":
        out = xs @ np.linalg.lstsq(xa, ya, rcond=rcond)[0]
    elif name == "affine":
        w = np.linalg.lstsq(np.hstack([xa, np.ones((len(xa), 1), dtype=xa.dtype)]), ya, rcond=rcond)[0]
        out = xs @ w[:-1] + w[-1]
    elif name == "lortho":
        u, _, vt = np.linalg.svd(np.linalg.lstsq(xa, ya, rcond=rcond)[0], full_matrices=False)
        out = xs @ (u @ vt)
    elif name == "ortho":
        d = max(xa.shape[1], dy)
        pad = lambda a: np.hstack([a, np.zeros((len(a), d - a.shape[1]), dtype=a.dtype)])  # noqa: E731
        u, _, vt = np.linalg.svd(pad(xa).T @ pad(ya))
        out = (pad(xs) @ (u @ vt))[:, :dy]
    elif name == "none":
        out = xs
    else:
        raise ValueError(f"unknown translator {name!r}")
    return out * sy + my
