"""Anchor strategies that read the latents: k-means, farthest point sampling, and bootstrapping
parallel anchors from a few known pairs."""

from __future__ import annotations

import pytest
import torch

from latentstitch.anchors import AnchorPairs, BootstrapAnchors, FarthestPointAnchors, KMeansAnchors, greedy_matching
from latentstitch.errors import ConfigError
from latentstitch.translation import farthest_point_sampling, kmeans

from conftest import TINY, run_cli

torch.set_num_threads(1)


def blobs():
    """Three tight blobs of 41 points, each around a point that is itself in the set."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = []
    for c in centres:
        ring = torch.randn(20, 2, generator=g) * 0.5
        pts += [c[None], c + ring, c - ring]  # symmetric around c: the blob's mean is exactly c
    return torch.cat(pts), [0, 41, 82]


def test_kmeans_picks_the_sample_nearest_each_centroid():
    x, middles = blobs()
    labels = torch.zeros(len(x), dtype=torch.long)
    idx = KMeansAnchors(num=3, seed=1).select(labels, source=x)
    assert idx.tolist() == middles
    centres, assign = kmeans(x, 3, seed=1)
    assert torch.allclose(centres.sort(dim=0).values, x[middles].sort(dim=0).values, atol=1e-5)
    assert len(assign.unique()) == 3


def test_kmeans_anchors_are_distinct_even_when_centroids_share_a_nearest_sample():
    x = torch.tensor([[0.0], [1.0], [2.0], [2.1], [2.2], [9.0]])
    idx = KMeansAnchors(num=6, seed=0).select(torch.zeros(6, dtype=torch.long), source=x)
    assert idx.tolist() == list(range(6))


def test_fps_picks_the_corners_of_a_square_first():
    corners = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    inner = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    x = torch.cat([inner, corners])
    picked = farthest_point_sampling(x, num=5, start=0)
    assert set(picked[1:5].tolist()) == {50, 51, 52, 53}  # from any inner start: the 4 corners next
    idx = FarthestPointAnchors(num=4, seed=3).select(torch.zeros(len(x), dtype=torch.long), source=x)
    assert len(set(idx.tolist()) & {50, 51, 52, 53}) >= 3  # a random start, then the farthest corners
    # threshold: stop once the farthest remaining point is closer than it
    assert len(farthest_point_sampling(corners, threshold=1.2, start=0)) == 2  # (0,0), (1,1): then the rest are 1 away


def test_latent_strategies_use_the_configured_space():
    x, middles = blobs()
    labels = torch.zeros(len(x), dtype=torch.long)
    assert (
        KMeansAnchors(num=3, seed=1, space="target").select(labels, source=x * 0 + torch.randn(len(x), 2), target=x).tolist()
        == middles
    )
    with pytest.raises(ConfigError, match="needs the source space's train latents"):
        KMeansAnchors(num=3).select(labels)
    with pytest.raises(ConfigError, match="anchors.space='both' is not one of"):
        FarthestPointAnchors(num=3, space="both")


def two_spaces(n=1500, d=10, clusters=8, seed=0):
    """A target space = a rotated, rescaled, noisy copy of a clustered source space."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g) * 3
    label = torch.randint(clusters, (n,), generator=g)
    x = centres[label] + torch.randn(n, d, generator=g)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    y = 2 * x @ q + 0.05 * torch.randn(n, d, generator=g) + 1
    return x, y, label


def test_bootstrap_recovers_the_hidden_correspondence():
    x, y, label = two_spaces()
    pairs = BootstrapAnchors(num=200, seed=0, seeds=12, rounds=4, pool=1500).select(label, source=x, target=y)
    assert isinstance(pairs, AnchorPairs) and len(pairs) == 200 and pairs.seeds == 12
    assert torch.equal(pairs.source[:12], pairs.target[:12])  # the seeds are true pairs
    assert len(pairs.source.unique()) == 200 and len(pairs.target.unique()) == 200  # one to one
    assert pairs.precision > 0.9  # chance: 1 / 1488
    # no known pairs at all beyond the seeds: fewer rounds or fewer seeds do worse, not better
    weak = BootstrapAnchors(num=200, seed=0, seeds=2, rounds=1, pool=1500).select(label, source=x, target=y)
    assert weak.precision < pairs.precision


class NearestCentroid(torch.nn.Module):
    """A deterministic head for cell tests: the class whose train centroid is nearest."""

    def __init__(self, latents, labels):
        super().__init__()
        self.register_buffer("centres", torch.stack([latents[labels == c].mean(dim=0) for c in labels.unique()]))

    def forward(self, x):
        return -torch.cdist(x, self.centres)


@pytest.fixture(scope="module")
def toy_cell():
    """Two toy spaces (train / test rows parallel) and pairs bootstrapped from 2 seeds in one round:
    a failed discovery (precision 0.01), so discovered and true anchors give different translators."""
    from latentstitch.encoders import Space

    x, y, label, train = *two_spaces(), 1200
    source = Space("x", x[:train], label[:train], x[train:], label[train:])
    target = Space("y", y[:train], label[:train], y[train:], label[train:])
    strategy = BootstrapAnchors(num=200, seed=0, seeds=2, rounds=1, pool=train)
    pairs = strategy.select(source.train_labels, source=source.train, target=target.train)
    assert pairs.precision < 0.1  # 0.01 measured
    return source, target, pairs


def test_bootstrap_cell_reports_the_same_translator_on_true_anchors(toy_cell):
    """stitched_acc_true_anchors = the stitched accuracy of a cell whose anchors are the true
    partners of the discovered pairs' source samples (the same count), and beats the discovered."""
    from latentstitch.cell import score_spaces
    from latentstitch.tasks import Classification, Retrieval
    from latentstitch.translation import OrthoTranslator

    source, target, pairs = toy_cell
    head = NearestCentroid(target.train, target.train_labels)
    found = score_spaces(source, target, OrthoTranslator(), pairs, Classification(), lambda spec: head).scores
    true = score_spaces(source, target, OrthoTranslator(), pairs.source, Classification(), lambda spec: head).scores
    assert found["num_anchors"] == true["num_anchors"] == 200
    assert found["stitched_acc_true_anchors"] == true["stitched_acc"]
    assert found["stitched_macro_f1_true_anchors"] == true["stitched_macro_f1"]
    assert found["stitched_acc_true_anchors"] > 0.95 and found["stitched_acc"] < 0.5  # 1.0 and 0.1 measured
    assert "stitched_acc_true_anchors" not in true  # true anchors: nothing to compare
    found = score_spaces(source, target, OrthoTranslator(), pairs, Retrieval(), lambda spec: None).scores
    true = score_spaces(source, target, OrthoTranslator(), pairs.source, Retrieval(), lambda spec: None).scores
    assert found["stitched_top1_true_anchors"] == true["stitched_top1"]
    assert found["stitched_mrr_true_anchors"] == true["stitched_mrr"]


def test_bootstrap_relative_cell_trains_a_decoder_on_the_true_anchors_projection(toy_cell):
    from latentstitch.cell import score_spaces
    from latentstitch.tasks import Classification
    from latentstitch.translation import RelativeStitching
    from latentstitch.translation.relative import anchor_digest

    source, target, pairs = toy_cell
    keys = []

    def make_decoder(spec):
        keys.append(spec.projection["anchors"])
        return NearestCentroid(spec.space.train, spec.space.train_labels)

    found = score_spaces(source, target, RelativeStitching(), pairs, Classification(), make_decoder).scores
    assert keys == [anchor_digest(pairs.target), anchor_digest(pairs.source)]  # discovered, then true target anchors
    true = score_spaces(source, target, RelativeStitching(), pairs.source, Classification(), make_decoder).scores
    assert found["stitched_acc_true_anchors"] == true["stitched_acc"]
    assert found["stitched_acc_true_anchors"] > 0.95 and found["stitched_acc"] < 0.5  # 0.997 and 0.29 measured


def test_bootstrap_precision_is_measured_on_discovered_pairs_only():
    pairs = AnchorPairs(torch.tensor([1, 2, 3, 4, 5]), torch.tensor([1, 2, 3, 9, 5]), seeds=2)
    assert pairs.precision == pytest.approx(2 / 3)


def test_greedy_matching_is_one_to_one_mutual_first():
    scores = torch.tensor([[0.9, 0.8, 0.0], [0.85, 0.1, 0.0], [0.0, 0.2, 0.3]])
    rows, cols = greedy_matching(scores, 3)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (2, 2), (1, 1)]


def greedy_reference(scores, count):
    """The definition, one entry at a time: mutual best matches by score, then every entry in
    descending order whose row and column are both unused."""
    n_rows, n_cols = scores.shape
    best_col, best_row = scores.argmax(dim=1).tolist(), scores.argmax(dim=0).tolist()
    mutual = sorted((r for r in range(n_rows) if best_row[best_col[r]] == r), key=lambda r: -float(scores[r, best_col[r]]))
    pairs = [(r, best_col[r]) for r in mutual][:count]
    for r, c in sorted(((r, c) for r in range(n_rows) for c in range(n_cols)), key=lambda rc: -float(scores[rc])):
        if len(pairs) == count:
            break
        if all(r != a and c != b for a, b in pairs):
            pairs.append((r, c))
    return pairs


@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_greedy_matching_equals_the_one_entry_at_a_time_definition(chunk):
    g = torch.Generator().manual_seed(chunk)
    for n_rows, n_cols in [(30, 30), (25, 40), (40, 25)]:
        scores = torch.randn(n_rows, n_cols, generator=g, dtype=torch.float64)
        scores[:, :3] += 2  # three columns every row prefers: few mutual matches, a long fill
        for count in (1, 12, min(n_rows, n_cols)):
            rows, cols = greedy_matching(scores, count, chunk=chunk)
            assert list(zip(rows.tolist(), cols.tolist())) == greedy_reference(scores, count)
    # a chain: row k's best entry is in column k-1 (row k-1's), then its own: one take unblocks the next
    scores = torch.rand(40, 40, generator=g, dtype=torch.float64) * 0.01
    for k in range(40):
        scores[k, k] = 10 - 0.2 * k
        if k:
            scores[k, k - 1] = 10.1 - 0.2 * k
    rows, cols = greedy_matching(scores, 40, chunk=chunk)
    assert list(zip(rows.tolist(), cols.tolist())) == greedy_reference(scores, 40)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num": 100, "seeds": 1}, "anchors.seeds=1: bootstrapping needs at least 2 known pairs"),
        ({"num": 10, "seeds": 10}, "anchors.seeds=10 must be fewer than anchors.num=10"),
    ],
)
def test_bootstrap_setting_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BootstrapAnchors(**kwargs)


def test_bootstrap_needs_enough_candidates():
    with pytest.raises(ConfigError, match=r"needs 190 discovered pairs, but only 100 candidates"):
        BootstrapAnchors(num=200, seeds=10, pool=100).check(500)
    BootstrapAnchors(num=200, seeds=10, pool=190).check(500)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "issue9-cache"  # shared with the other issue-9 test files


@pytest.mark.slow  # 20 s; every strategy is tested in-process above, bootstrap cells in score_spaces
def test_anchor_strategies_from_the_command_line(tmp_path, cache):
    """kmeans, fps and bootstrap cells side by side in one sweep; bootstrap reports its precision
    and the stitched accuracy of true anchors of the same count."""
    import pandas as pd

    r = run_cli(["-m", *TINY, "threads=1", "anchors=kmeans,fps,bootstrap"], tmp_path, cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    grid = pd.read_csv(r.run_dir / "grid.csv").set_index("anchors")
    assert set(grid.index) == {"kmeans", "fps", "bootstrap-seeds=15"} and (grid["status"] == "ok").all()
    assert (grid["num_anchors"] == 300).all() and (grid["stitched_acc"] > 0.9).all()
    boot = grid.loc["bootstrap-seeds=15"]
    assert 0.3 < boot["anchor_precision"] < 1.0 and boot["anchor_label_agreement"] > 0.9  # 0.64 and 0.98 measured
    assert pd.isna(grid.loc["kmeans", "anchor_precision"])
    assert boot["stitched_acc_true_anchors"] > 0.9 and pd.isna(grid.loc["kmeans", "stitched_acc_true_anchors"])
    summary = pd.read_csv(r.run_dir / "summary.csv").set_index("anchors")  # beside the translators' columns
    assert summary.loc["bootstrap-seeds=15", "stitched_acc_true_anchors"] == boot["stitched_acc_true_anchors"]


def test_bootstrap_config_error_names_the_group():
    from omegaconf import OmegaConf

    from latentstitch import pipeline

    from conftest import ROOT

    node = OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "anchors" / "bootstrap.yaml"), {"num": 300, "seeds": 1})
    with pytest.raises(ConfigError, match=r"^anchors: anchors.seeds=1: bootstrapping needs at least 2 known pairs$"):
        pipeline.instantiate_setting(node, "anchors")
