"""Relative representations and the methods built on them. Pure torch, no Hydra, no Lightning.

- :class:`RelativeProjection`: each latent as its similarities (or distances) to a set of anchors
  (Moschella et al., ICLR 2023; the Lp / angular variants of Cannistraci et al., ICLR 2024; the
  top-k / power options of ASIF).
- :class:`RelativeStitching`: a *projection method*. Both spaces are projected on their own copy
  of the same anchor samples; the decoder is trained on the target's projection and fed the
  source's. Several projections at once give the product of invariances: one normalisation per
  subspace, then an aggregation (:class:`RelativeDecoderInput`, the layer in front of the head).
- :class:`InverseRelativeTranslator`: source -> relative -> back into the *absolute* target space
  through the pseudo-inverse of the target anchors (Maiorca et al., 2024), so any decoder of the
  target space consumes it.
- :func:`farthest_point_sampling`, :func:`kmeans`: used by anchor pruning and anchor strategies.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from latentstitch.translation import TranslationError  # the package exports it before importing this module
from latentstitch.translation.state import Persistent, count_parts, prefixed, scalar, unprefixed

__all__ = [
    "AGGREGATIONS",
    "DECODER_NORMS",
    "PROJECTIONS",
    "InverseRelativeTranslator",
    "RelativeDecoderInput",
    "RelativeProjection",
    "RelativeStitching",
    "farthest_point_sampling",
    "kmeans",
]

PROJECTIONS = ("cosine", "euclidean", "l1", "linf", "angular")
SIMILARITIES = ("cosine",)  # larger = closer; the others are distances (0 = the anchor itself)
_P = {"euclidean": 2.0, "l1": 1.0, "linf": math.inf}
AGGREGATIONS = ("concat", "sum", "mlp_sum")
DECODER_NORMS = ("layernorm", "l2", "batchnorm", "none")
# scaling of the absolute latents before projecting, with each side's own anchor statistics
RELATIVE_SCALINGS = ("none", "center", "standard")
_CHUNK = 8192


def _matrix(name: str, t: Any) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise TranslationError(f"{name} must be a 2-D tensor (samples x dims), got {getattr(t, 'shape', type(t))}")
    if not t.is_floating_point():
        raise TranslationError(f"{name} must be floating point, got {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise TranslationError(f"{name} contains NaN or inf values")
    return t.detach()


def _one_of(setting: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise TranslationError(f"{setting}={value!r} is not one of {list(options)}")
    return str(value)


def _anchor_std(x: torch.Tensor) -> torch.Tensor:
    """Unbiased per-dimension deviation of the anchors; a (near-)zero deviation counts as 1."""
    std = x.std(dim=0) if len(x) > 1 else torch.zeros_like(x[0])
    return torch.where(std < 10 * torch.finfo(x.dtype).eps, torch.ones_like(std), std)


# --------------------------------------------------------------------------------- projection


class RelativeProjection(Persistent):
    """``transform(x)[i, j]`` = similarity (or distance) of ``x[i]`` to anchor ``j``.

    kinds (``x'``, ``a'`` the latents after ``center`` / ``robust``):

    - ``cosine``: ``<x'/|x'|, a'/|a'|>`` (the relative representation; the default);
    - ``euclidean``, ``l1``, ``linf``: ``|x' - a'|_p`` for p = 2, 1, inf;
    - ``angular``: ``arccos(cosine) / pi`` in [0, 1].

    ``center`` subtracts the anchor mean first; ``robust`` standardises with the anchor mean and
    (unbiased) std per dimension, which makes the cosine invariant to permutations and per-axis
    rescaling too (Garcia-Castellanos et al., 2024). ``top_k`` keeps the k largest similarities
    of each row and zeroes the rest, ``power`` raises the values to ``p`` keeping their sign
    (``v ** p`` where v >= 0; ASIF). Both apply to ``cosine`` only (``power`` to any kind).
    """

    def __init__(
        self, kind: str = "cosine", center: bool = False, robust: bool = False, top_k: int | None = None, power: float = 1.0
    ):
        self.kind = _one_of("projection", kind, PROJECTIONS)
        self.center, self.robust = bool(center), bool(robust)
        self.top_k = None if top_k is None else int(top_k)
        self.power = float(power)
        if self.top_k is not None and (self.kind not in SIMILARITIES or self.top_k < 1):
            raise TranslationError(f"top_k={top_k} needs a similarity projection ({list(SIMILARITIES)}) and a value >= 1")
        if not self.power > 0:
            raise TranslationError(f"power={power} must be positive")
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.anchors: torch.Tensor | None = None  # the prepared (and, for cosine, normalised) anchors

    def __repr__(self) -> str:
        return f"RelativeProjection(kind={self.kind!r}, center={self.center}, robust={self.robust}, top_k={self.top_k}, power={self.power})"

    @property
    def num_anchors(self) -> int:
        return 0 if self.anchors is None else int(self.anchors.shape[0])

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "center": self.center, "robust": self.robust, "top_k": self.top_k, "power": self.power}

    def _state(self) -> dict[str, torch.Tensor | None]:
        if self.anchors is None:
            raise RuntimeError("RelativeProjection is not fitted: call fit(anchors) first")
        return {"mean": self.mean, "std": self.std, "anchors": self.anchors}

    def _restore(self, state: dict[str, torch.Tensor]) -> None:
        self.mean, self.std, self.anchors = state["mean"], state["std"], state["anchors"]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError("RelativeProjection is not fitted: call fit(anchors) first")
        x = x.to(self.mean)
        if self.center or self.robust:
            x = x - self.mean
        if self.robust:
            x = x / self.std
        return x

    def fit(self, anchors: torch.Tensor) -> RelativeProjection:
        a = _matrix("anchors", anchors)
        a = a.to(torch.float64 if a.dtype == torch.float64 else torch.float32)
        if self.top_k is not None and self.top_k > len(a):
            raise TranslationError(
                f"top_k={self.top_k} is larger than the number of anchors ({len(a)}); lower top_k or raise anchors.num"
            )
        self.mean, self.std = a.mean(dim=0), _anchor_std(a)
        prepared = self._prepare(a)
        self.anchors = F.normalize(prepared, dim=1) if self.kind in ("cosine", "angular") else prepared
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``(len(x), num_anchors)``, in the anchors' float dtype."""
        if self.anchors is None:
            raise RuntimeError("RelativeProjection is not fitted: call fit(anchors) first")
        x = _matrix("x", x)
        if x.shape[1] != self.anchors.shape[1]:
            raise TranslationError(f"x has {x.shape[1]} dims, the anchors have {self.anchors.shape[1]}")
        return torch.cat([self._project(chunk) for chunk in x.split(_CHUNK)]) if len(x) else x.new_zeros(0, self.num_anchors)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        anchors = cast(torch.Tensor, self.anchors)  # set by fit, checked by transform
        if self.kind in ("cosine", "angular"):
            rel = F.normalize(x, dim=1) @ anchors.T
            if self.kind == "angular":
                rel = torch.arccos(rel.clamp(-1.0, 1.0)) / math.pi
        else:
            rel = torch.cdist(x, anchors, p=_P[self.kind])
        if self.top_k is not None and self.top_k < rel.shape[1]:
            values, idx = rel.topk(self.top_k, dim=1)
            rel = torch.zeros_like(rel).scatter_(1, idx, values)
        if self.power != 1.0:
            rel = rel.sign() * rel.abs().pow(self.power)
        return rel

    def fit_transform(self, anchors: torch.Tensor) -> torch.Tensor:
        return self.fit(anchors).transform(anchors)


# ------------------------------------------------------------------- relative stitching (projection method)


class L2Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def _norm_layer(norm: str, width: int) -> nn.Module:
    # every option is per sample or uses training statistics: none reads the test batch
    if norm == "layernorm":
        return nn.LayerNorm(width)
    if norm == "l2":
        return L2Normalize()
    if norm == "batchnorm":  # running statistics from training at evaluation, not the test batch's
        return nn.BatchNorm1d(width)
    return nn.Identity()


class RelativeDecoderInput(nn.Module):
    """What sits between the relative vectors and the decoder head.

    The input is ``num_subspaces`` relative vectors of ``width`` anchors each, concatenated; each
    subspace gets its own normalisation (``layernorm``, ``l2``, ``batchnorm`` with running
    statistics, or ``none``), then the subspaces are aggregated: ``concat`` (width x subspaces),
    ``sum``, or ``mlp_sum`` (sum of ``tanh(Linear_i(.))``, a DeepSet; Cannistraci et al. 2024).
    """

    def __init__(self, num_subspaces: int, width: int, norm: str = "layernorm", aggregation: str = "concat"):
        super().__init__()
        self.num_subspaces, self.width = int(num_subspaces), int(width)
        self.norm_name = _one_of("translator.decoder_norm", norm, DECODER_NORMS)
        self.aggregation = _one_of("translator.aggregation", aggregation, AGGREGATIONS)
        self.norms = nn.ModuleList([_norm_layer(norm, width) for _ in range(num_subspaces)])
        if self.aggregation == "mlp_sum":
            self.maps = nn.ModuleList([nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(num_subspaces)])
        self.out_dim = width * num_subspaces if self.aggregation == "concat" else width

    @property
    def trainable(self) -> bool:
        """Whether the layer needs training (an SVM head cannot train it)."""
        return self.aggregation == "mlp_sum" or self.norm_name == "batchnorm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [norm(part) for norm, part in zip(self.norms, x.split(self.width, dim=1))]
        if self.aggregation == "concat":
            return torch.cat(parts, dim=1)
        if self.aggregation == "mlp_sum":
            parts = [f(part) for f, part in zip(self.maps, parts)]
        return torch.stack(parts).sum(dim=0)


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _label(name: str, settings: dict[str, Any], defaults: dict[str, Any], short: dict[str, str]) -> str:
    """``name`` plus ``-key=value`` for each setting that differs from its default (shell-safe)."""
    parts = [name]
    for key, default in defaults.items():
        if key not in settings:
            continue
        value = settings[key]
        if value is not None and not isinstance(value, (str, int, float, bool)):
            value = [str(v) for v in value]  # lists, ListConfig
        if value == default or (isinstance(default, float) and isinstance(value, (int, float)) and float(value) == default):
            continue
        parts.append(f"{short.get(key, key)}={'+'.join(value) if isinstance(value, list) else value}")
    return "-".join(parts)


class RelativeStitching(Persistent):
    """Relative stitching (``translator=relative``): a projection method, not a translator.

    ``fit(x_anchors, y_anchors)`` fits one :class:`RelativeProjection` per entry of
    ``projections`` on each side's own anchors (parallel: the same samples). The decoder is then
    trained on ``transform_target(y)`` behind ``decoder_input()`` and fed ``transform_source(x)``.

    ``scaling``: ``none`` (the paper's formula), ``center`` (subtract the anchor mean) or
    ``standard`` (the robust variant: anchor mean and std per dimension).
    """

    projection_method = True  # the decoder is trained on the target's projection
    paired = True
    name = "relative"
    DEFAULTS = {
        "projections": ["cosine"],
        "scaling": "center",
        "aggregation": "concat",
        "decoder_norm": "layernorm",
        "top_k": None,
        "power": 1.0,
    }
    SHORT = {"projections": "proj", "aggregation": "agg", "decoder_norm": "norm"}

    def __init__(self, projections: Sequence[str] | str = ("cosine",), scaling: str = "center", aggregation: str = "concat",
                 decoder_norm: str = "layernorm", top_k: int | None = None, power: float = 1.0) -> None:  # fmt: skip
        self.projections = _as_list(projections)
        if not self.projections:
            raise TranslationError("translator.projections is empty: name at least one of " + str(list(PROJECTIONS)))
        for kind in self.projections:
            _one_of("translator.projections entry", kind, PROJECTIONS)
        if len(set(self.projections)) != len(self.projections):
            raise TranslationError(f"translator.projections={self.projections} repeats a projection")
        self.scaling = _one_of("translator.scaling", scaling, RELATIVE_SCALINGS)
        self.aggregation = _one_of("translator.aggregation", aggregation, AGGREGATIONS)
        if len(self.projections) == 1:  # nothing to aggregate: one setting, one cached decoder
            self.aggregation = "concat"
        self.decoder_norm = _one_of("translator.decoder_norm", decoder_norm, DECODER_NORMS)
        self.top_k, self.power = (None if top_k is None else int(top_k)), float(power)
        self._new = lambda kind: RelativeProjection(kind, center=scaling != "none", robust=scaling == "standard",
                                                    top_k=self.top_k if kind in SIMILARITIES else None, power=self.power)  # fmt: skip
        if self.top_k is not None and not any(k in SIMILARITIES for k in self.projections):
            raise TranslationError(
                f"translator.top_k={top_k} needs a similarity projection ({list(SIMILARITIES)}) among {self.projections}"
            )
        self._new(self.projections[0])  # validates top_k / power once, before any work
        self.source: list[RelativeProjection] = []
        self.target: list[RelativeProjection] = []

    def __repr__(self) -> str:
        return f"RelativeStitching({self.settings()})"

    def check_dims(self, source_dim: int, target_dim: int) -> None:
        """Any two dims work: both sides are projected onto the same number of anchors."""

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings().items() if k != "name"}

    def _state(self) -> dict[str, torch.Tensor | None]:
        if not self.source:
            raise RuntimeError("RelativeStitching is not fitted: call fit(x_anchors, y_anchors) first")
        state: dict[str, torch.Tensor | None] = {"num_anchors": scalar(self.num_anchors)}
        for side, projections in (("source", self.source), ("target", self.target)):
            for i, projection in enumerate(projections):
                state.update(prefixed(f"{side}.{i}", projection._state()))
        return state

    def _restore(self, state: dict[str, torch.Tensor]) -> None:
        self.num_anchors = int(state["num_anchors"])
        for side in ("source", "target"):
            part = unprefixed(side, state)
            restored = [self._new(kind) for kind in self.projections]
            for i, projection in enumerate(restored):
                projection._restore(unprefixed(str(i), part))
            setattr(self, side, restored)

    def check_anchors(self, num_anchors: int) -> None:
        if self.top_k is not None and self.top_k > num_anchors:
            raise TranslationError(f"translator.top_k={self.top_k} is larger than anchors.num={num_anchors}")

    def fit(self, x_anchors: torch.Tensor, y_anchors: torch.Tensor) -> RelativeStitching:
        x, y = _matrix("x_anchors", x_anchors), _matrix("y_anchors", y_anchors)
        if len(x) != len(y):
            raise TranslationError(f"parallel anchors differ in number: {len(x)} source vs {len(y)} target")
        self.check_anchors(len(x))
        self.source = [self._new(kind).fit(x) for kind in self.projections]
        self.target = [self._new(kind).fit(y) for kind in self.projections]
        self.num_anchors = len(x)
        return self

    def _apply(self, side: list[RelativeProjection], x: torch.Tensor) -> torch.Tensor:
        if not side:
            raise RuntimeError("RelativeStitching is not fitted: call fit(x_anchors, y_anchors) first")
        return torch.cat([p.transform(x) for p in side], dim=1)

    def transform_source(self, x: torch.Tensor) -> torch.Tensor:
        """Source latents -> their relative vectors (subspaces concatenated)."""
        return self._apply(self.source, x)

    def transform_target(self, y: torch.Tensor) -> torch.Tensor:
        return self._apply(self.target, y)

    @property
    def decoder_input_trainable(self) -> bool:
        """Whether the decoder's input layer needs training (an SVM head cannot train it)."""
        return (self.aggregation == "mlp_sum" and len(self.projections) > 1) or self.decoder_norm == "batchnorm"

    def decoder_input(self) -> RelativeDecoderInput:
        """A fresh normalisation + aggregation layer for the decoder (trained with its head)."""
        return RelativeDecoderInput(len(self.projections), self.num_anchors, self.decoder_norm, self.aggregation)

    def settings(self) -> dict[str, Any]:
        """What determines the decoder's training input (goes into its cache key)."""
        return {"name": self.name, "projections": self.projections, "scaling": self.scaling, "aggregation": self.aggregation,
                "decoder_norm": self.decoder_norm, "top_k": self.top_k, "power": self.power}  # fmt: skip

    @classmethod
    def label(cls, node: dict[str, Any]) -> str:
        """The cell's ``translator`` column: ``relative`` plus the settings that differ from the defaults."""
        settings = dict(node)
        if "projections" in settings:
            settings["projections"] = _as_list(settings["projections"])
            if len(settings["projections"]) == 1:  # one projection: the aggregation does nothing
                settings.pop("aggregation", None)
        return _label(cls.name, settings, {k: v for k, v in cls.DEFAULTS.items() if k != "scaling"}, cls.SHORT)


def anchor_digest(indices: torch.Tensor) -> str:
    """A short hash of anchor indices (a projected decoder depends on which samples are anchors)."""
    return hashlib.sha256(indices.to(torch.int64).cpu().numpy().tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------- inverse relative projection


def farthest_point_sampling(
    x: torch.Tensor, num: int | None = None, threshold: float | None = None, start: int = 0, metric: str = "euclidean"
) -> torch.Tensor:
    """Greedy farthest point sampling: indices into ``x``, in the order picked.

    Starts at ``start``; each step adds the point farthest from those picked so far. Stops after
    ``num`` points, or when the farthest remaining point is closer than ``threshold``.
    ``metric``: ``euclidean`` or ``abs_cosine`` (1 - |cos|, the IRP pruning distance).
    """
    if num is None and threshold is None:
        raise TranslationError("farthest_point_sampling needs num or threshold")
    n = len(x)
    num = n if num is None else min(int(num), n)
    pts = x.double()
    if metric == "abs_cosine":
        pts = F.normalize(pts, dim=1)
        dist = lambda i: 1.0 - (pts @ pts[i]).abs()  # noqa: E731
    elif metric == "euclidean":
        dist = lambda i: (pts - pts[i]).square().sum(dim=1)  # noqa: E731 - squared: same order
        threshold = None if threshold is None else threshold**2
    else:
        raise TranslationError(f"metric={metric!r} is not one of ['euclidean', 'abs_cosine']")
    picked = [int(start)]
    nearest = dist(picked[0])
    nearest[picked[0]] = -1.0
    while len(picked) < num:
        j = int(nearest.argmax())
        if nearest[j] <= 0 or (threshold is not None and nearest[j] < threshold):
            break
        picked.append(j)
        nearest = torch.minimum(nearest, dist(j))
        nearest[j] = -1.0  # earlier picks stay at -1 through the minimum
    return torch.tensor(picked, dtype=torch.long)


def kmeans(
    x: torch.Tensor,
    k: int,
    seed: int = 0,
    iters: int = 50,
    n_init: int = 1,
    tol: float = 1e-6,
    init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding: ``(centroids (k, d), assignment (n,))``.

    Deterministic for a given ``seed``; the best of ``n_init`` seedings (lowest inertia). An
    emptied cluster is re-seeded at the point farthest from its centroid. ``init`` (k, d): start
    Lloyd's iterations there instead (one run, no seeding), so centroid i stays the cluster that
    grew from ``init[i]``: how mini-vec2vec's second refinement keeps two clusterings paired.
    """
    n = len(x)
    if not 1 <= k <= n:
        raise TranslationError(f"k-means with {k} clusters needs at least {k} points, got {n}")
    if init is not None and tuple(init.shape) != (k, x.shape[1]):
        raise TranslationError(f"k-means init has shape {tuple(init.shape)}, expected ({k}, {x.shape[1]})")
    gen = torch.Generator().manual_seed(int(seed))
    pts = x.double()
    sq = pts.square().sum(dim=1)
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for _ in range(1 if init is not None else max(1, int(n_init))):
        centres = (
            _lloyd(pts, sq, init.double().clone(), iters, tol) if init is not None else _kmeans_once(pts, sq, k, gen, iters, tol)
        )
        inertia, assign = _nearest_centre(pts, sq, centres)
        if best is None or float(inertia.sum()) < best[0]:
            best = (float(inertia.sum()), centres, assign)
    assert best is not None  # n_init >= 1 rounds ran
    return best[1].to(x.dtype), best[2]


def _nearest_centre(pts: torch.Tensor, sq: torch.Tensor, centres: torch.Tensor, clamp: bool = True,
                    chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(squared distance to the nearest centre, its index) per point, in blocks of ``chunk`` rows:
    the full n x k float64 matrix would be 2 GB at Fashion-MNIST's 54k points and 2000 centres.
    ``clamp``: round-off negatives to 0 before the minimum (the Lloyd steps compare them unclamped)."""
    csq = centres.square().sum(dim=1)[None, :]
    parts = []
    for i in range(0, len(pts), chunk):
        dist = sq[i : i + chunk, None] - 2 * pts[i : i + chunk] @ centres.T + csq
        parts.append((dist.clamp_min(0) if clamp else dist).min(dim=1))
    return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


def _kmeans_once(pts: torch.Tensor, sq: torch.Tensor, k: int, gen: torch.Generator, iters: int, tol: float) -> torch.Tensor:
    n = len(pts)
    centres = torch.empty(k, pts.shape[1], dtype=pts.dtype)
    centres[0] = pts[int(torch.randint(n, (1,), generator=gen))]
    d2 = (sq - 2 * pts @ centres[0] + centres[0].square().sum()).clamp_min(0)
    for c in range(1, k):
        total = float(d2.sum())
        j = int(torch.multinomial(d2 / total, 1, generator=gen)) if total > 0 else int(torch.randint(n, (1,), generator=gen))
        centres[c] = pts[j]
        d2 = torch.minimum(d2, (sq - 2 * pts @ centres[c] + centres[c].square().sum()).clamp_min(0))
    return _lloyd(pts, sq, centres, iters, tol)


def _lloyd(pts: torch.Tensor, sq: torch.Tensor, centres: torch.Tensor, iters: int, tol: float) -> torch.Tensor:
    """Lloyd's iterations from ``centres`` until they move less than ``tol`` (relative)."""
    k = len(centres)
    for _ in range(int(iters)):
        nearest, assign = _nearest_centre(pts, sq, centres, clamp=False)
        counts = torch.bincount(assign, minlength=k).to(pts.dtype)
        new = torch.zeros_like(centres).index_add_(0, assign, pts) / counts.clamp_min(1)[:, None]
        empty = counts == 0
        if bool(empty.any()):
            far = nearest.argsort(descending=True)
            new[empty] = pts[far[: int(empty.sum())]]
        shift = float((new - centres).square().sum())
        centres = new
        if shift <= tol * float(sq.mean()) * k:
            break
    return centres


class InverseRelativeTranslator(Persistent):
    """Inverse relative projection (IRP; Maiorca et al., 2024): a translator into the absolute
    target space that needs no joint fit of the two spaces.

    ``transform(x)``: cosine relative vector of ``x - mean_X`` to the centred, normalised source
    anchors -> the least-squares point whose cosines to the centred, normalised *target* anchors
    are those (pseudo-inverse) -> its direction times the target anchors' mean centred norm -> plus
    the target anchor mean. ``scaling=standard`` also divides by the anchor std per dimension
    first and multiplies back at the end.

    ``prune_threshold`` (delta) prunes the anchors by farthest point sampling on ``1 - |cos|``
    between the target anchors, stopping once the farthest remaining anchor is closer than delta;
    ``subsets`` (omega) averages the reconstructions of that many prunings from different random
    starts. ``ridge`` > 0 solves the ridge-regularised normal equations instead of applying the plain
    pseudo-inverse, with ``ridge`` relative to the mean eigenvalue of ``A^T A`` (scale-free): real
    latents are often far from full rank (a digits CNN space: 128 dims, singular values of the
    normalised anchors at 1e-16 from the 100th on), and the pseudo-inverse then amplifies every
    difference between the two relative vectors along the near-null directions.
    """

    projection_method = False
    paired = True
    name = "inverse_relative"
    DEFAULTS = {"prune_threshold": None, "subsets": 1, "ridge": 0.3}
    SHORT = {"prune_threshold": "prune", "subsets": "subsets"}

    def __init__(
        self, scaling: str = "center", prune_threshold: float | None = None, subsets: int = 1, ridge: float = 0.3, seed: int = 0
    ):
        self.scaling = _one_of("translator.scaling", scaling, ("center", "standard"))
        self.prune_threshold = None if prune_threshold is None else float(prune_threshold)
        if self.prune_threshold is not None and not 0 < self.prune_threshold <= 1:
            raise TranslationError(f"translator.prune_threshold={prune_threshold} must be in (0, 1] (a 1 - |cos| distance)")
        self.subsets, self.ridge, self.seed = int(subsets), float(ridge), int(seed)
        if self.subsets < 1:
            raise TranslationError(f"translator.subsets={subsets} must be >= 1")
        if self.subsets > 1 and self.prune_threshold is None:
            raise TranslationError("translator.subsets > 1 averages several anchor prunings: set translator.prune_threshold too")
        if self.ridge < 0:
            raise TranslationError(f"translator.ridge={ridge} must be >= 0")
        self._parts: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __repr__(self) -> str:
        return f"InverseRelativeTranslator(scaling={self.scaling!r}, prune_threshold={self.prune_threshold}, subsets={self.subsets}, ridge={self.ridge})"

    def check_dims(self, source_dim: int, target_dim: int) -> None:
        """Any two dims (the target is recovered fully where the anchors span it: anchors.num >= its dim)."""

    def config(self) -> dict[str, Any]:
        return {"scaling": self.scaling, "prune_threshold": self.prune_threshold, "subsets": self.subsets,
                "ridge": self.ridge, "seed": self.seed}  # fmt: skip

    def _state(self) -> dict[str, torch.Tensor | None]:
        if not self._parts:
            raise RuntimeError("InverseRelativeTranslator is not fitted: call fit(x_anchors, y_anchors) first")
        state: dict[str, torch.Tensor | None] = {"x_mean": self.x_mean, "y_mean": self.y_mean, "x_std": self.x_std,
                                                 "y_std": self.y_std, "scale": scalar(self.scale)}  # fmt: skip
        for i, (anchors, inverse_t) in enumerate(self._parts):
            state.update({f"parts.{i}.anchors": anchors, f"parts.{i}.inverse_t": inverse_t})
        return state

    def _restore(self, state: dict[str, torch.Tensor]) -> None:
        self.x_mean, self.y_mean, self.x_std, self.y_std = (state[k] for k in ("x_mean", "y_mean", "x_std", "y_std"))
        self.scale, self.dtype = float(state["scale"]), torch.float32
        self._parts = [(state[f"parts.{i}.anchors"], state[f"parts.{i}.inverse_t"]) for i in range(count_parts("parts", state))]
        self.kept = [len(anchors) for anchors, _ in self._parts]

    def fit(self, x_anchors: torch.Tensor, y_anchors: torch.Tensor) -> InverseRelativeTranslator:
        x, y = _matrix("x_anchors", x_anchors).double(), _matrix("y_anchors", y_anchors).double()
        if len(x) != len(y):
            raise TranslationError(f"parallel anchors differ in number: {len(x)} source vs {len(y)} target")
        if len(x) < 2:
            raise TranslationError("inverse_relative needs at least 2 anchors")
        self.dtype = x_anchors.dtype
        self.x_mean, self.y_mean = x.mean(dim=0), y.mean(dim=0)
        self.x_std = _anchor_std(x) if self.scaling == "standard" else torch.ones_like(self.x_mean)
        self.y_std = _anchor_std(y) if self.scaling == "standard" else torch.ones_like(self.y_mean)
        xs, ys = (x - self.x_mean) / self.x_std, (y - self.y_mean) / self.y_std
        self.scale = float(ys.norm(dim=1).mean())  # the target's mean anchor norm (after centring)
        xn, yn = F.normalize(xs, dim=1), F.normalize(ys, dim=1)
        gen = torch.Generator().manual_seed(self.seed)
        self._parts, self.kept = [], []
        for s in range(self.subsets):
            if self.prune_threshold is None:
                idx = torch.arange(len(yn))
            else:
                start = 0 if s == 0 and self.subsets == 1 else int(torch.randint(len(yn), (1,), generator=gen))
                idx = farthest_point_sampling(yn, threshold=self.prune_threshold, start=start, metric="abs_cosine")
            a = yn[idx]  # (m, d_Y): the target anchors the relative vector is inverted through
            if self.ridge > 0:  # relative to the mean eigenvalue of a^T a (= m / d for m unit rows in d dims)
                lam = self.ridge * float(a.square().sum()) / a.shape[1]
                inv = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1], dtype=a.dtype), a.T)  # (d_Y, m)
            else:
                inv = torch.linalg.pinv(a)  # (d_Y, m)
            self._parts.append((xn[idx], inv.T.contiguous()))
            self.kept.append(len(idx))
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        if not self._parts:
            raise RuntimeError("InverseRelativeTranslator is not fitted: call fit(x_anchors, y_anchors) first")
        x = _matrix("x", x)
        if x.shape[1] != len(self.x_mean):
            raise TranslationError(f"x has {x.shape[1]} dims, the translator was fitted on {len(self.x_mean)}")
        out = []
        for chunk in x.double().split(_CHUNK):
            xn = F.normalize((chunk - self.x_mean) / self.x_std, dim=1)
            direction = cast(torch.Tensor, sum(F.normalize((xn @ ax.T) @ inv_t, dim=1) for ax, inv_t in self._parts))
            out.append(F.normalize(direction, dim=1) * self.scale * self.y_std + self.y_mean)
        return torch.cat(out).to(x.dtype)

    def fit_transform(self, x_anchors: torch.Tensor, y_anchors: torch.Tensor) -> torch.Tensor:
        return self.fit(x_anchors, y_anchors).transform(x_anchors)

    @classmethod
    def label(cls, node: dict[str, Any]) -> str:
        return _label(cls.name, dict(node), cls.DEFAULTS, cls.SHORT)
