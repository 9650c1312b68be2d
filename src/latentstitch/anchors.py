"""Anchor strategies: which training samples serve as parallel anchors.

A strategy returns sample *indices* into the train split; indexing both spaces with the same
indices gives parallel anchors. ``kmeans`` and ``fps`` read the train latents of one space (the
source by default). ``bootstrap`` discovers parallel anchors between the two spaces from a few
known pairs and returns :class:`AnchorPairs` (source index, target index), which need not agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from latentstitch.errors import ConfigError


@dataclass
class AnchorPairs:
    """Discovered parallel anchors: row i pairs train sample ``source[i]`` of the source space with
    ``target[i]`` of the target space. The first ``seeds`` pairs were given (true pairs)."""

    source: torch.Tensor
    target: torch.Tensor
    seeds: int = 0

    def __len__(self) -> int:
        return len(self.source)

    @property
    def precision(self) -> float | None:
        """Share of the discovered (non-seed) pairs that are true pairs (the same item)."""
        found = self.source[self.seeds :] == self.target[self.seeds :]
        return float(found.double().mean()) if len(found) else None


def split_anchors(anchors: torch.Tensor | AnchorPairs) -> tuple[torch.Tensor, torch.Tensor]:
    """(source indices, target indices) of parallel anchors."""
    if isinstance(anchors, AnchorPairs):
        return anchors.source, anchors.target
    return anchors, anchors


class AnchorStrategy:
    needs: tuple[str, ...] = ()  # train latents the strategy reads: "source", "target"

    def __init__(self, num: int = 2000, seed: int = 0) -> None:
        self.num, self.seed = int(num), int(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num={self.num}, seed={self.seed})"

    def check(self, pool_size: int) -> None:
        if not 1 <= self.num <= pool_size:
            raise ConfigError(f"anchors.num={self.num} must be between 1 and {pool_size} (the size of the train split)")

    def select(
        self, labels: torch.Tensor, source: torch.Tensor | None = None, target: torch.Tensor | None = None
    ) -> torch.Tensor | AnchorPairs:
        """Indices (sorted, unique) of ``num`` anchors among ``len(labels)`` training samples.

        ``source`` / ``target``: the two spaces' train latents, for strategies that read them.
        """
        self.check(len(labels))
        given = {"source": source, "target": target}
        for need in self.needs:
            if given[need] is None:
                raise ConfigError(f"{self!r} needs the {need} space's train latents")
            if len(given[need]) != len(labels):
                raise ConfigError(f"{self!r}: the {need} latents have {len(given[need])} rows, the labels {len(labels)}")
        chosen = self._select(labels, torch.Generator().manual_seed(self.seed), **{k: given[k] for k in self.needs})
        return chosen if isinstance(chosen, AnchorPairs) else chosen.sort().values

    def _select(self, labels: torch.Tensor, gen: torch.Generator, **latents: torch.Tensor) -> torch.Tensor | AnchorPairs:
        raise NotImplementedError


class RandomAnchors(AnchorStrategy):
    """A uniform sample without replacement."""

    def _select(self, labels, gen):
        return torch.randperm(len(labels), generator=gen)[: self.num]


class StratifiedAnchors(AnchorStrategy):
    """Class-balanced: shuffle, then take one sample per class in turn until ``num`` are chosen
    (classes that run out are skipped), as the relative-representations code does."""

    def _select(self, labels, gen):
        order = torch.randperm(len(labels), generator=gen)
        shuffled = labels[order]
        # rank of each sample within its class, in shuffled order
        rank = torch.empty_like(order)
        for c in shuffled.unique():
            members = (shuffled == c).nonzero().squeeze(1)
            rank[members] = torch.arange(len(members))
        # round robin = sort by (rank within class, class)
        num_classes = int(labels.max()) + 1
        key = rank * num_classes + shuffled
        return order[key.argsort(stable=True)[: self.num]]


SPACES = ("source", "target")


class _LatentAnchors(AnchorStrategy):
    """A strategy that reads the train latents of one space (``space``: source or target)."""

    def __init__(self, num: int = 2000, seed: int = 0, space: str = "source") -> None:
        super().__init__(num, seed)
        if space not in SPACES:
            raise ConfigError(f"anchors.space={space!r} is not one of {list(SPACES)}")
        self.space = space
        self.needs = (space,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num={self.num}, seed={self.seed}, space={self.space!r})"


class KMeansAnchors(_LatentAnchors):
    """k-means with ``num`` clusters on one space's train latents; each centroid's nearest sample
    (a sample nearest two centroids goes to the first; the second takes its next nearest)."""

    def __init__(self, num: int = 2000, seed: int = 0, space: str = "source", iters: int = 30) -> None:
        super().__init__(num, seed, space)
        self.iters = int(iters)

    def _select(self, labels, gen, **latents):
        from latentstitch.translation import kmeans

        x = latents[self.space].double()
        centres, _ = kmeans(x, self.num, seed=self.seed, iters=self.iters)
        return nearest_distinct(x, centres)


def nearest_distinct(points: torch.Tensor, centres: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each centre in turn, the index of its nearest point not already taken."""
    taken = torch.zeros(len(points), dtype=torch.bool)
    out = torch.empty(len(centres), dtype=torch.long)
    sq = points.square().sum(dim=1)
    for start in range(0, len(centres), chunk):
        block = centres[start : start + chunk]
        order = (sq[None, :] - 2 * block @ points.T).argsort(dim=1)
        for i, row in enumerate(order):
            free = row[~taken[row]]
            out[start + i] = free[0]
            taken[free[0]] = True
    return out


class FarthestPointAnchors(_LatentAnchors):
    """Farthest point sampling (Euclidean) on one space's train latents, from a seeded random start."""

    def _select(self, labels, gen, **latents):
        from latentstitch.translation import farthest_point_sampling

        x = latents[self.space]
        start = int(torch.randint(len(x), (1,), generator=gen))
        picked = farthest_point_sampling(x, num=self.num, start=start)
        if len(picked) < self.num:
            raise ConfigError(
                f"anchors=fps found only {len(picked)} distinct points in the {self.space} space, fewer than anchors.num={self.num}"
            )
        return picked


class BootstrapAnchors(AnchorStrategy):
    """Discover parallel anchors from ``seeds`` known pairs (Cannistraci et al., 2023, in spirit).

    The ``seeds`` true pairs are drawn at random from the train split. Then, for ``rounds``
    rounds: the relative representation (centred cosine) of every candidate in each space w.r.t.
    the current anchors of that space; candidates matched across the spaces by mutual nearest
    neighbours between the (column-standardised) relative vectors, ranked by a CSLS margin; the
    most confident pairs join the anchors (a growing share each round, all ``num - seeds`` in the
    last). The candidates are ``pool`` train samples (the same items in both spaces, shuffled
    independently, so their order gives nothing away). Returns :class:`AnchorPairs`; their
    ``precision`` against the ground truth is reported in the cell.
    """

    needs = ("source", "target")

    def __init__(
        self, num: int = 2000, seed: int = 0, seeds: int = 15, rounds: int = 8, pool: int = 5000, csls_k: int = 10
    ) -> None:
        super().__init__(num, seed)
        self.seeds, self.rounds, self.pool, self.csls_k = int(seeds), int(rounds), int(pool), int(csls_k)
        if self.seeds < 2:
            raise ConfigError(f"anchors.seeds={seeds}: bootstrapping needs at least 2 known pairs")
        if self.seeds >= self.num:
            raise ConfigError(f"anchors.seeds={seeds} must be fewer than anchors.num={num} (the seeds plus the discovered pairs)")
        if self.rounds < 1 or self.csls_k < 1:
            raise ConfigError(f"anchors.rounds={rounds} and anchors.csls_k={csls_k} must be >= 1")

    def __repr__(self) -> str:
        return f"BootstrapAnchors(num={self.num}, seed={self.seed}, seeds={self.seeds}, rounds={self.rounds}, pool={self.pool})"

    def check(self, pool_size: int) -> None:
        super().check(pool_size)
        candidates = min(self.pool, pool_size - self.seeds)
        if self.num - self.seeds > candidates:
            raise ConfigError(
                f"anchors.num={self.num} needs {self.num - self.seeds} discovered pairs, but only {candidates} candidates "
                f"(anchors.pool={self.pool}, train split {pool_size}, {self.seeds} seeds)"
            )

    def _select(self, labels, gen, source=None, target=None):
        order = torch.randperm(len(labels), generator=gen)
        seeds = order[: self.seeds]
        pool = order[self.seeds : self.seeds + self.pool]
        src_pool = pool[torch.randperm(len(pool), generator=gen)]  # independent orders: the algorithm sees two unordered sets
        tgt_pool = pool[torch.randperm(len(pool), generator=gen)]
        found_src, found_tgt = discover_pairs(
            source, target, seeds, src_pool, tgt_pool, self.num - self.seeds, self.rounds, self.csls_k
        )
        return AnchorPairs(torch.cat([seeds, found_src]), torch.cat([seeds, found_tgt]), seeds=self.seeds)


def _relative(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Centred cosine to the anchors, each column standardised over the candidates."""
    mean = anchors.mean(dim=0)
    rel = F.normalize(x - mean, dim=1) @ F.normalize(anchors - mean, dim=1).T
    rel = (rel - rel.mean(dim=0)) / rel.std(dim=0).clamp_min(1e-12)
    return F.normalize(rel, dim=1)


def discover_pairs(
    source: torch.Tensor, target: torch.Tensor, seeds: torch.Tensor, src_pool: torch.Tensor, tgt_pool: torch.Tensor,
    count: int, rounds: int, csls_k: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``count`` (source index, target index) pairs matched between ``src_pool`` and ``tgt_pool``,
    starting from the true pairs ``seeds`` (see :class:`BootstrapAnchors`)."""
    x, y = source.double(), target.double()
    xs, ys = x[src_pool], y[tgt_pool]
    anchor_src, anchor_tgt = seeds, seeds
    pairs = (torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    for r in range(rounds):
        keep = count if r == rounds - 1 else max(1, count * (r + 1) // (2 * rounds))
        sims = _relative(xs, x[anchor_src]) @ _relative(ys, y[anchor_tgt]).T  # (pool, pool)
        k = min(csls_k, sims.shape[1])
        r_x, r_y = sims.topk(k, dim=1).values.mean(dim=1), sims.topk(k, dim=0).values.mean(dim=0)
        csls = 2 * sims - r_x[:, None] - r_y[None, :]
        i, j = greedy_matching(csls, keep)
        pairs = (src_pool[i], tgt_pool[j])
        anchor_src, anchor_tgt = torch.cat([seeds, pairs[0]]), torch.cat([seeds, pairs[1]])
    return pairs


def greedy_matching(scores: torch.Tensor, count: int, chunk: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` one-to-one (row, column) pairs: mutual best matches first, by score, then the
    best remaining row-wise matches among unused rows and columns (greedily by score).

    The fill walks the entries in descending order of score, ``chunk`` of them at a time into
    Python (the walk usually ends long before the n x m entries, and a list of all of them held
    1.2 GB at 5000 x 5000).
    """
    best_col = scores.argmax(dim=1)
    best_row = scores.argmax(dim=0)
    rows = torch.arange(len(scores))
    mutual = best_row[best_col] == rows
    order = rows[mutual][scores[rows[mutual], best_col[mutual]].argsort(descending=True)]
    chosen_r, chosen_c = order[:count].tolist(), best_col[order[:count]].tolist()
    used_r, used_c = set(chosen_r), set(chosen_c)
    n_cols = scores.shape[1]
    for block in scores.flatten().argsort(descending=True).split(chunk):
        if len(chosen_r) >= count:
            break
        for f in block.tolist():
            r, c = divmod(f, n_cols)
            if r in used_r or c in used_c:
                continue
            chosen_r.append(r)
            chosen_c.append(c)
            used_r.add(r)
            used_c.add(c)
            if len(chosen_r) == count:
                break
    return torch.tensor(chosen_r, dtype=torch.long), torch.tensor(chosen_c, dtype=torch.long)


ANCHORS = {
    "random": RandomAnchors,
    "stratified": StratifiedAnchors,
    "kmeans": KMeansAnchors,
    "fps": FarthestPointAnchors,
    "bootstrap": BootstrapAnchors,
}
