"""Anchor-free translation: a linear map between two spaces fitted on *unpaired* samples.

None of the seed papers does this. :class:`UnsupervisedTranslator` follows mini-vec2vec (Dar et
al., 2025; the public notebook ``guy-dar/mini-vec2vec``), a linear method:

1. centre each space with its own mean and L2-normalise the rows;
2. k-means in each space; match the two sets of centroids through their similarity structure
   (quadratic assignment on the centred cosine Gram matrices of the centroids, best of several
   random starts, polished by 2-opt); repeat with other k-means seeds and pool the matched pairs;
3. pair every x with the mean of the y most similar to it in relative space (cosines to its own
   space's matched centroids);
4. orthogonal Procrustes on those pseudo-pairs;
5. refine: map a batch, pair each point with the mean of its nearest ys, Procrustes again, and
   average with the current map (then take the nearest orthogonal matrix);
   Or (``init="gromov"``, beyond the papers) steps 2-4 by Gromov-Wasserstein optimal transport
   (POT): couple ``gw_samples`` points of X with as many of Y so that distances within X match
   distances within Y, at a high entropy (``gw_epsilon``), and take each x's pseudo-partner as the
   coupling-weighted mean of the ys; one such coupling per round. The coarse, high-entropy coupling
   is the point: it pins the global layout down, and the refinement below sharpens it (sharper
   couplings, annealed towards the exact problem, stopped in worse local optima here);
6. optionally (``refine_clusters``, mini-vec2vec's 500) refine by many clusters: k-means on X,
   k-means on Y started at the mapped X centroids (so centroid i of Y grew from centroid i of X),
   Procrustes on the centroid pairs, averaged with the current map in the same way.

``transform(x) = ((x - mean_X) / norm_X) @ W * norm_Y + mean_Y`` (``norm``: each fit sample's mean
centred norm), so the output lives in the absolute target space and any decoder of it consumes it.
Where it fails: spaces whose cluster structure is symmetric or does not correspond (the QAP then
matches the wrong centroids and nothing downstream recovers), and k-means with too few points.
Measured here: on digits mlp <-> cnn, 10 clusters stitch at 0.958 / 0.961 (ortho with 300 pairs:
0.958 / 0.969) but 20 clusters (mini-vec2vec's default) fail (0.31); on Fashion-MNIST
(``+experiment=relative_family``: mlp / cnn / resnet, ortho with 2000 pairs) it is within 0.01 of
ortho on 5 of the 6 cross-architecture pairs but fails on cnn -> resnet (0.674 against 0.888);
on gettext sentences (about 1000 unpaired per side, 384-512 dims) it fails outright (top-1
retrieval 0.00-0.15 against ortho's 0.75-0.95).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentstitch.translation import TranslationError
from latentstitch.translation.relative import _label, _matrix, kmeans
from latentstitch.translation.state import Persistent, scalar

__all__ = ["UnsupervisedTranslator", "cluster_refinement", "procrustes"]


def procrustes(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """R = U V^T from the SVD of ``a^T b``: the (semi-)orthogonal map minimising ``|a R - b|``."""
    u, _, vh = torch.linalg.svd(a.T @ b, full_matrices=False)
    return u @ vh


def polar(cov: torch.Tensor) -> torch.Tensor:
    """The (semi-)orthogonal factor U V^T of ``cov``'s SVD: the map that best aligns with it."""
    u, _, vh = torch.linalg.svd(cov, full_matrices=False)
    return u @ vh


def mutual_nn_rate(mapped: torch.Tensor, targets: torch.Tensor, gen: torch.Generator, sample: int = 2000) -> float:
    """Share of mutual nearest neighbours between mapped sources and targets (rows unit-norm), on
    ``sample`` of each: needs no pairs. A right map puts each cluster of mapped points on its
    cluster of targets, where neighbourhoods answer each other; a wrong one scatters them."""
    a = mapped[torch.randperm(len(mapped), generator=gen)[:sample]]
    b = targets[torch.randperm(len(targets), generator=gen)[:sample]]
    sim = a @ b.T
    forward, backward = sim.argmax(dim=1), sim.argmax(dim=0)
    return float((backward[forward] == torch.arange(len(a))).double().mean())


def cluster_refinement(xn: torch.Tensor, yn: torch.Tensor, w: torch.Tensor, clusters: int, momentum: float,
                       seed: int = 0) -> torch.Tensor:  # fmt: skip
    """mini-vec2vec's second refinement: k-means with ``clusters`` centroids on X, k-means on Y
    started at the X centroids mapped by ``w`` (so Y's centroid i grew from X's centroid i: a
    pairing that needs no labels), Procrustes on the centroid pairs, averaged with ``w`` by
    ``momentum`` and projected back to the nearest orthogonal map."""
    cx, _ = kmeans(xn, clusters, seed=seed)
    cy, _ = kmeans(yn, clusters, init=cx @ w)
    return polar(momentum * w + (1 - momentum) * procrustes(cx, cy))


def _nearest_mean(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """For each query row: the mean of ``values`` over its ``k`` most similar ``keys`` (inner product)."""
    out = []
    for q in queries.split(chunk):
        idx = (q @ keys.T).topk(k, dim=1).indices
        out.append(values[idx].mean(dim=1))
    return torch.cat(out)


class UnsupervisedTranslator(Persistent):
    """mini-vec2vec: ``fit(x, y)`` on two *unpaired* samples of the two spaces (no anchors).

    Settings: ``clusters`` (k-means per space), ``repeats`` (independent k-means + matching rounds
    whose centroid pairs are pooled), ``qap_inits`` (random starts of the quadratic assignment),
    ``neighbours`` (ys averaged into each pseudo-pair), ``refine_iters`` x ``refine_batch`` and
    ``momentum`` (weight of the current map in the refinement average), ``refine_clusters`` (the
    cluster refinement's k; 0 skips it), ``max_samples`` (per space, a seeded subsample),
    ``kmeans_inits`` (k-means++ seedings per clustering, the best kept), ``combine`` (how the
    rounds' matchings become one map: ``pool`` their centroid pairs, ``average`` their
    cross-covariances, or take the ``best`` round by mutual nearest neighbours),
    ``stability_fits`` (that many more fits from other seeds, only to measure agreement), ``init``
    (``kmeans``: k-means + QAP matching of centroids; ``gromov``: a Gromov-Wasserstein coupling of
    ``gw_samples`` points per space at entropy ``gw_epsilon``; ``both``: a full fit from each, the
    one whose map makes more mutual nearest neighbours kept), ``seed``.

    ``confidence_`` after ``fit``: scores that need no pairs (see :meth:`fit`).
    """

    projection_method = False
    paired = False  # fit(x, y) takes two unpaired samples
    name = "unsupervised"
    DEFAULTS = {"clusters": 10, "repeats": 10, "qap_inits": 30, "neighbours": 50, "refine_iters": 100, "refine_batch": 1000,
                "momentum": 0.5, "max_samples": 5000, "kmeans_inits": 3, "combine": "pool", "refine_clusters": 0,
                "stability_fits": 0, "init": "kmeans", "gw_samples": 1000, "gw_epsilon": 0.1}  # fmt: skip
    COMBINE = ("pool", "average", "best")
    INIT = ("kmeans", "gromov", "both")

    def __init__(self, scaling: str = "center", clusters: int = 10, repeats: int = 10, qap_inits: int = 30, neighbours: int = 50,
                 refine_iters: int = 100, refine_batch: int = 1000, momentum: float = 0.5, max_samples: int = 5000, kmeans_inits: int = 3,
                 combine: str = "pool", refine_clusters: int = 0, stability_fits: int = 0, init: str = "kmeans",
                 gw_samples: int = 1000, gw_epsilon: float = 0.1, seed: int = 0):  # fmt: skip
        if scaling != "center":
            raise TranslationError(
                f"translator.scaling={scaling!r}: the unsupervised translator centres each space (scaling=center)"
            )
        self.scaling = scaling
        self.clusters, self.repeats, self.qap_inits = int(clusters), int(repeats), int(qap_inits)
        self.neighbours, self.refine_iters, self.refine_batch = int(neighbours), int(refine_iters), int(refine_batch)
        self.momentum, self.max_samples, self.seed = float(momentum), int(max_samples), int(seed)
        self.kmeans_inits, self.refine_clusters, self.stability_fits = (
            int(kmeans_inits),
            int(refine_clusters),
            int(stability_fits),
        )
        if combine not in self.COMBINE:
            raise TranslationError(f"translator.combine={combine!r} is not one of {', '.join(self.COMBINE)}")
        self.combine = str(combine)
        if init not in self.INIT:
            raise TranslationError(f"translator.init={init!r} is not one of {', '.join(self.INIT)}")
        self.init, self.gw_samples, self.gw_epsilon = str(init), int(gw_samples), float(gw_epsilon)
        if self.gw_samples < 3:
            raise TranslationError(f"translator.gw_samples={gw_samples} must be >= 3")
        if not self.gw_epsilon > 0:
            raise TranslationError(f"translator.gw_epsilon={gw_epsilon} must be > 0 (the coupling's entropy weight)")
        self.confidence_: dict[str, float] = {}
        for key in ("clusters", "repeats", "qap_inits", "neighbours", "refine_batch", "max_samples", "kmeans_inits"):
            if getattr(self, key) < 1:
                raise TranslationError(f"translator.{key}={getattr(self, key)} must be >= 1")
        if self.clusters < 3:
            raise TranslationError(
                f"translator.clusters={clusters}: matching centroids by their similarity structure needs at least 3"
            )
        if self.max_samples < max(self.clusters, self.neighbours):
            raise TranslationError(f"translator.max_samples={self.max_samples} must be at least translator.clusters={self.clusters} "
                                   f"and translator.neighbours={self.neighbours}")  # fmt: skip
        if self.stability_fits < 0:
            raise TranslationError(f"translator.stability_fits={stability_fits} must be >= 0 (0: no stability check)")
        if self.refine_clusters < 0:
            raise TranslationError(f"translator.refine_clusters={refine_clusters} must be >= 0 (0: no cluster refinement)")
        if self.max_samples < self.refine_clusters:
            raise TranslationError(f"translator.max_samples={self.max_samples} must be at least "
                                   f"translator.refine_clusters={self.refine_clusters}")  # fmt: skip
        if not 0 <= self.momentum < 1:
            raise TranslationError(f"translator.momentum={momentum} must be in [0, 1)")
        self.weight: torch.Tensor | None = None

    def __repr__(self) -> str:
        return f"UnsupervisedTranslator(clusters={self.clusters}, repeats={self.repeats}, neighbours={self.neighbours}, combine={self.combine!r})"

    def check_dims(self, source_dim: int, target_dim: int) -> None:
        """Any two dims (Procrustes is semi-orthogonal where they differ)."""

    def config(self) -> dict[str, Any]:
        return {"scaling": self.scaling, "seed": self.seed, **{k: getattr(self, k) for k in self.DEFAULTS}}

    def _state(self) -> dict[str, torch.Tensor | None]:
        if self.weight is None:
            raise RuntimeError("UnsupervisedTranslator is not fitted: call fit(x, y) first")
        return {"weight": self.weight, "x_mean": self.x_mean, "y_mean": self.y_mean, "x_norm": scalar(self.x_norm),
                "y_norm": scalar(self.y_norm), "source_centroids": self.centroids[0], "target_centroids": self.centroids[1]}  # fmt: skip

    def _restore(self, state: dict[str, torch.Tensor]) -> None:
        self.weight, self.x_mean, self.y_mean = state["weight"], state["x_mean"], state["y_mean"]
        self.x_norm, self.y_norm = float(state["x_norm"]), float(state["y_norm"])
        self.centroids = (state["source_centroids"], state["target_centroids"])
        self.source_dim, self.target_dim, self.dtype = self.weight.shape[0], self.weight.shape[1], torch.float32

    def check_samples(self, n_x: int, n_y: int) -> None:
        need = max(self.clusters, self.neighbours, self.refine_clusters)
        if min(n_x, n_y) < need:
            raise TranslationError(
                f"the unsupervised translator needs at least {need} samples per space (translator.clusters={self.clusters}, "
                f"translator.neighbours={self.neighbours}, translator.refine_clusters={self.refine_clusters}), got {n_x} and {n_y}"
            )

    # ------------------------------------------------------------------------------ fit
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> UnsupervisedTranslator:
        """Fit on unpaired samples ``x`` (source) and ``y`` (target): their rows need not correspond.

        Sets ``confidence_``, each needing no pairs: ``confidence_mutual_nn`` (share of mutual
        nearest neighbours between mapped sources and targets), ``confidence_gram`` (how well the
        matched centroids' Gram matrices correlate, averaged over rounds), ``confidence_restarts``
        (agreement of the rounds' maps with the final one) and, with ``stability_fits``,
        ``confidence_stability`` (agreement with fits from other seeds)."""
        x, y = _matrix("x", x), _matrix("y", y)
        self.check_samples(len(x), len(y))
        if self.init == "both":
            return self._fit_both(x, y)
        given = (x, y)
        gen = torch.Generator().manual_seed(self.seed)
        x, y = (t[torch.randperm(len(t), generator=gen)[: self.max_samples]].double() for t in (x, y))
        self.x_mean, self.y_mean = x.mean(dim=0), y.mean(dim=0)
        self.x_norm = float((x - self.x_mean).norm(dim=1).mean()) or 1.0
        self.y_norm = float((y - self.y_mean).norm(dim=1).mean()) or 1.0
        xn, yn = F.normalize(x - self.x_mean, dim=1), F.normalize(y - self.y_mean, dim=1)
        self.source_dim, self.target_dim, self.dtype = x.shape[1], y.shape[1], torch.float32

        if self.init == "gromov":
            round_maps, gram_fit = self._gromov_rounds(xn, yn, gen)
            k = min(self.neighbours, len(yn))
            self.centroids = (torch.zeros(0, xn.shape[1], dtype=xn.dtype), torch.zeros(0, yn.shape[1], dtype=yn.dtype))
            w = self._combine(xn, yn, round_maps, k, pooled=None)
        else:
            round_maps, gram_fit, k, w = self._kmeans_rounds(xn, yn)
        agreement = [float((polar(c) * w).sum() / min(w.shape)) for c in round_maps]
        w = self._refine(xn, yn, w, k, gen)
        self.weight = w
        self.confidence_ = {
            "confidence_restarts": float(np.mean(agreement)) if len(agreement) > 1 else float("nan"),
            "confidence_mutual_nn": mutual_nn_rate(F.normalize(xn @ w, dim=1), yn, gen),
            "confidence_gram": float(np.mean(gram_fit)),
        }
        if self.stability_fits:
            self.confidence_["confidence_stability"] = self._stability(*given, xn)
        return self

    def _kmeans_rounds(self, xn: torch.Tensor, yn: torch.Tensor) -> tuple[list[torch.Tensor], list[float], int, torch.Tensor]:
        """Steps 1-4: each round's cross-covariance, its Gram fit, the neighbour count and the combined map."""
        # 1-2: matched centroid pairs from independent rounds of k-means + matching
        mx, my, gram_fit = [], [], []
        for r in range(self.repeats):
            cx, _ = kmeans(xn, self.clusters, seed=self.seed * 7919 + 2 * r, n_init=self.kmeans_inits)
            cy, _ = kmeans(yn, self.clusters, seed=self.seed * 7919 + 2 * r + 1, n_init=self.kmeans_inits)
            perm, fit = self._match(cx, cy, seed=self.seed * 7919 + r)
            mx.append(cx)
            my.append(cy[perm])
            gram_fit.append(fit)
        self.centroids = (torch.cat(mx), torch.cat(my))

        # 3-4: pseudo-pairs through relative representations, then Procrustes: on the pooled
        # centroid pairs, or one cross-covariance per round, averaged (each round's own pairs)
        k = min(self.neighbours, len(yn))
        round_maps = [self._pseudo_pair_map(xn, yn, cx, cy, k, covariance=True) for cx, cy in zip(mx, my)]
        pooled = (
            procrustes(xn, _nearest_mean(*self._relatives(xn, yn, *self.centroids), yn, k)) if self.combine == "pool" else None
        )
        return round_maps, gram_fit, k, self._combine(xn, yn, round_maps, k, pooled)

    def _gromov_rounds(self, xn: torch.Tensor, yn: torch.Tensor, gen: torch.Generator) -> tuple[list[torch.Tensor], list[float]]:
        """Steps 2-4 by Gromov-Wasserstein: per round, ``gw_samples`` points of each space (fresh
        seeded draws), their cosine-distance matrices (each scaled to max 1) coupled by POT's
        entropic GW solver; each x's pseudo-partner is the coupling-weighted mean of the ys. Returns
        each round's cross-covariance and how well the sample's Gram matrix correlates with its
        pseudo-partners' (the point-level analogue of the centroid Gram fit)."""
        import ot  # POT: the maintained GW solvers (entropic projected gradient, Sinkhorn inside)

        m = min(self.gw_samples, len(xn), len(yn))
        maps, fits = [], []
        off = ~torch.eye(m, dtype=torch.bool)
        for _ in range(self.repeats):
            a = xn[torch.randperm(len(xn), generator=gen)[:m]]
            b = yn[torch.randperm(len(yn), generator=gen)[:m]]
            c1, c2 = (1 - a @ a.T).clamp_min(0), (1 - b @ b.T).clamp_min(0)
            c1, c2 = c1 / c1.max().clamp_min(1e-12), c2 / c2.max().clamp_min(1e-12)
            p = np.full(m, 1.0 / m)
            coupling = ot.gromov.entropic_gromov_wasserstein(
                c1.numpy(), c2.numpy(), p, p, "square_loss", epsilon=self.gw_epsilon, max_iter=100
            )
            t = torch.as_tensor(coupling, dtype=a.dtype)
            # unnormalised means: an x whose coupling spreads over dissimilar ys gets a short partner, so less weight
            partners = (t @ b) / t.sum(dim=1, keepdim=True).clamp_min(1e-300)
            maps.append(a.T @ partners / m)
            unit = F.normalize(partners, dim=1)
            fits.append(float(torch.corrcoef(torch.stack([(a @ a.T)[off], (unit @ unit.T)[off]]))[0, 1]))
        return maps, fits

    def _combine(self, xn: torch.Tensor, yn: torch.Tensor, round_maps: list[torch.Tensor], k: int,
                 pooled: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        """One map from the rounds: the pooled pairs' Procrustes (``pool``, when given), the polar
        factor of the averaged cross-covariances (``average``; ``pool`` without pooled pairs), or the
        round whose map makes the most mutual nearest neighbours (``best``: no pairs needed)."""
        if self.combine == "best":
            scores = [
                mutual_nn_rate(F.normalize(xn @ polar(c), dim=1), yn, torch.Generator().manual_seed(self.seed))
                for c in round_maps
            ]
            return polar(round_maps[int(np.argmax(scores))])
        if self.combine == "pool" and pooled is not None:
            return pooled
        return polar(torch.stack(round_maps).mean(dim=0))

    def _refine(self, xn: torch.Tensor, yn: torch.Tensor, w: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
        """Steps 5-6: nearest-neighbour Procrustes rounds, then the optional cluster refinement."""
        # 5: refinement by nearest neighbours in the target space
        for _ in range(max(0, self.refine_iters)):
            batch = xn[torch.randperm(len(xn), generator=gen)[: self.refine_batch]]
            targets = _nearest_mean(F.normalize(batch @ w, dim=1), yn, yn, k)
            w_new = procrustes(batch, targets)
            w = polar(self.momentum * w + (1 - self.momentum) * w_new)
        # 6: refinement by many clusters, paired through the current map
        if self.refine_clusters:
            w = cluster_refinement(xn, yn, w, self.refine_clusters, self.momentum, seed=self.seed * 7919 + 2 * self.repeats)
        return w

    def _fit_both(self, x: torch.Tensor, y: torch.Tensor) -> UnsupervisedTranslator:
        """init=both: a full fit from each initialisation (same subsample, refinement and combine),
        keeping the one whose final map makes more mutual nearest neighbours, a pair-free choice.
        The two fail on different cells (on Fashion-MNIST k-means + QAP misses cnn -> resnet, which
        the Gromov-Wasserstein coupling finds, and the reverse on three other pairs), and the
        mutual-NN rate of a right map stood above a wrong one's in every such pair measured."""
        settings = {**self.config(), "stability_fits": 0}
        fits = [UnsupervisedTranslator(**{**settings, "init": init}).fit(x, y) for init in ("kmeans", "gromov")]
        rates = [f.confidence_["confidence_mutual_nn"] for f in fits]
        chosen = fits[int(np.argmax(rates))]
        self._restore({key: value for key, value in chosen._state().items() if value is not None})  # all set once fitted
        self.confidence_ = {**chosen.confidence_, "gromov_chosen": float(chosen is fits[1]),
                            "confidence_mutual_nn_kmeans": rates[0], "confidence_mutual_nn_gromov": rates[1]}  # fmt: skip
        if self.stability_fits:
            self.confidence_["confidence_stability"] = self._stability(x, y, F.normalize(x.double() - self.x_mean, dim=1))
        return self

    def _stability(self, x: torch.Tensor, y: torch.Tensor, xn: torch.Tensor) -> float:
        """Agreement of this fit with ``stability_fits`` others from other seeds (hence other
        subsamples, clusterings and matchings): the mean cosine between where the two maps send
        each (centred, normalised) sample, 1 = the same map on the data. Refinement pulls every fit
        that found the correspondence to the same map; fits that matched the centroids wrongly land
        on different wrong ones. Measured on the data rather than on the matrices, so directions the
        data barely uses, where fits may differ harmlessly, count for little."""
        settings = {**self.config(), "stability_fits": 0}
        agreement = []
        for i in range(self.stability_fits):
            other = UnsupervisedTranslator(**{**settings, "seed": self.seed + 1000 * (i + 1)}).fit(x, y)
            assert self.weight is not None and other.weight is not None  # both fitted
            agreement.append(float(F.cosine_similarity(xn @ self.weight, xn @ other.weight, dim=1).mean()))
        return float(np.mean(agreement))

    def _relatives(
        self, xn: torch.Tensor, yn: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._relative(xn, cx), self._relative(yn, cy)

    def _pseudo_pair_map(self, xn: torch.Tensor, yn: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, k: int,
                         covariance: bool = False) -> torch.Tensor:  # fmt: skip
        """One round's cross-covariance ``xn^T pseudo-partners`` (``covariance``) or its Procrustes map."""
        cov = xn.T @ _nearest_mean(*self._relatives(xn, yn, cx, cy), yn, k)
        return cov / len(xn) if covariance else polar(cov)

    @staticmethod
    def _relative(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        """Cosines to the matched centroids, each column centred, rows normalised (for inner products)."""
        rel = points @ F.normalize(centroids, dim=1).T
        return F.normalize(rel - rel.mean(dim=0), dim=1)

    def _match(self, cx: torch.Tensor, cy: torch.Tensor, seed: int) -> tuple[torch.Tensor, float]:
        """Permutation p such that centroid i of X corresponds to centroid p[i] of Y (QAP, maximised),
        and how well the matched Gram matrices agree: the Pearson correlation of their off-diagonal
        entries (1: the two sets of centroids have the same similarity structure under p)."""
        from scipy.optimize import quadratic_assignment

        def gram(c: torch.Tensor) -> np.ndarray:
            c = F.normalize(c - c.mean(dim=0), dim=1)
            return (c @ c.T).numpy()

        a, b = gram(cx), gram(cy)
        np.fill_diagonal(a, 0.0)  # constant under any permutation; zeroed, the FAQ relaxation finds the optimum far more often
        np.fill_diagonal(b, 0.0)
        rng = np.random.default_rng(seed)
        rows = np.arange(len(a))
        best, best_score = rows, -np.inf
        for i in range(self.qap_inits):  # FAQ from a random start, polished by 2-opt; the best objective wins
            res = quadratic_assignment(
                a, b, method="faq", options={"maximize": True, "P0": "barycenter" if i == 0 else "randomized", "rng": rng}
            )
            guess = np.column_stack([rows, res.col_ind])
            res = quadratic_assignment(a, b, method="2opt", options={"maximize": True, "partial_guess": guess, "rng": rng})
            score = float((a * b[np.ix_(res.col_ind, res.col_ind)]).sum())
            if score > best_score:
                best, best_score = res.col_ind, score
        off = ~np.eye(len(a), dtype=bool)
        fit = float(np.corrcoef(a[off], b[np.ix_(best, best)][off])[0, 1])
        return torch.as_tensor(best, dtype=torch.long), fit

    # ------------------------------------------------------------------------------ transform
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            raise RuntimeError("UnsupervisedTranslator is not fitted: call fit(x, y) first")
        x = _matrix("x", x)
        if x.shape[1] != self.source_dim:
            raise TranslationError(f"x has {x.shape[1]} dims, the translator was fitted on {self.source_dim}")
        out = ((x.double() - self.x_mean) / self.x_norm) @ self.weight * self.y_norm + self.y_mean
        return out.to(x.dtype)

    def inverse_transform(self, y: torch.Tensor) -> torch.Tensor:
        """Target latents back into the source space (``W^T``: exact where the dims are equal)."""
        if self.weight is None:
            raise RuntimeError("UnsupervisedTranslator is not fitted: call fit(x, y) first")
        y = _matrix("y", y)
        if y.shape[1] != self.target_dim:
            raise TranslationError(f"y has {y.shape[1]} dims, the translator maps into {self.target_dim}")
        return (((y.double() - self.y_mean) / self.y_norm) @ self.weight.T * self.x_norm + self.x_mean).to(y.dtype)

    @classmethod
    def label(cls, node: dict[str, Any]) -> str:
        return _label(cls.name, dict(node), cls.DEFAULTS, {})
