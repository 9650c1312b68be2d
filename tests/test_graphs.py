"""The graph view: the WordNet noun graph, Planetoid files, and the plain-torch graph encoders."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from latentstitch.data.graphs import (
    DEFAULT_GRAPH_CLASSES,
    Graph,
    bfs_subset,
    load_planetoid,
    load_wordnet_graph,
    planetoid_files,
    symmetric_edges,
)
from latentstitch.data.wordnet import LEXNAMES, load_wordnet, parse_synsets, read_synsets
from latentstitch.encoders.graph import GAT, GCN, GraphSAGE, NodeMLP, edge_softmax
from latentstitch.errors import ConfigError

WORDNET = Path("/usr/share/wordnet/data.noun")
needs_wordnet = pytest.mark.skipif(not WORDNET.exists(), reason="needs the Debian package wordnet-base (make data)")
ENCODERS = [GCN, GraphSAGE, GAT, NodeMLP]
DEFAULT_NODES = 3000  # max_nodes: the BFS subset takes exactly that many of the 29,694 nodes
DEFAULT_EDGES = 3884  # recorded: a change here changes every wordnet_graph result


def tiny_graph(n: int = 12, features: int = 6, seed: int = 0) -> Graph:
    """A ring with chords and random binary features: small enough to check by brute force."""
    gen = torch.Generator().manual_seed(seed)
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    chords = torch.tensor([[0, 3, 5, 2], [6, 9, 11, 2]])  # (2, 2) is a self loop: dropped
    x = (torch.rand(n, features, generator=gen) < 0.4).float()
    return Graph(x, symmetric_edges(torch.cat([ring, chords, ring.flip(0)], dim=1), n))


def assert_clean_edges(edge_index: torch.Tensor, n: int) -> None:
    src, dst = edge_index
    assert edge_index.dtype == torch.long and (src != dst).all()
    assert int(edge_index.min()) >= 0 and int(edge_index.max()) < n
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert len(pairs) == edge_index.shape[1]  # no duplicates
    assert all((b, a) in pairs for a, b in pairs)  # symmetric


# ------------------------------------------------------------------------------------- Graph


def test_graph_matrices_are_sparse_normalised_and_cached():
    g = tiny_graph()
    assert_clean_edges(g.edge_index, 12)
    assert len(g) == g.num_nodes == 12 and g.num_edges == 12 + 3 and g.num_features == 6
    a = torch.zeros(12, 12)
    a[g.edge_index[0], g.edge_index[1]] = 1.0
    deg = a.sum(1)
    gcn = g.normalized_adjacency()
    assert gcn.is_sparse and gcn is g.normalized_adjacency()  # computed once
    expected = (a + torch.eye(12)) / torch.outer(deg + 1, deg + 1).sqrt()
    torch.testing.assert_close(gcn.to_dense(), expected)
    mean = g.mean_adjacency()
    assert mean.is_sparse and mean._nnz() == g.edge_index.shape[1]
    torch.testing.assert_close(mean.to_dense(), a / deg[:, None])
    labels = torch.tensor([0] * 6 + [1] * 6)
    same = (labels[g.edge_index[0]] == labels[g.edge_index[1]]).float().mean()
    assert g.edge_homophily(labels) == pytest.approx(float(same))
    assert np.isnan(Graph(torch.zeros(3, 2), torch.zeros(2, 0, dtype=torch.long)).edge_homophily(torch.zeros(3)))


def test_graph_rejects_edges_outside_its_nodes():
    with pytest.raises(ValueError, match="outside"):
        Graph(torch.zeros(3, 2), torch.tensor([[0, 3], [3, 0]]))


def test_bfs_subset_is_seeded_and_takes_the_limit():
    g = tiny_graph(40)
    a = bfs_subset(g.edge_index, 40, 17, seed=3, patch=5)
    assert len(a) == 17 and len(set(a.tolist())) == 17 and torch.equal(a, a.sort().values)
    assert torch.equal(a, bfs_subset(g.edge_index, 40, 17, seed=3, patch=5))
    assert not torch.equal(a, bfs_subset(g.edge_index, 40, 17, seed=4, patch=5))
    isolated = torch.zeros(2, 0, dtype=torch.long)  # every search ends at its root: restarts until the limit
    assert len(bfs_subset(isolated, 10, 7, seed=0)) == 7


# ----------------------------------------------------------------------------------- WordNet


def test_parse_synsets_keeps_read_synsets_output():
    if not WORDNET.exists():
        pytest.skip("needs the Debian package wordnet-base (make data)")
    first = next(parse_synsets(WORDNET))
    assert first.offset == 1740 and first.lexname == "noun.Tops" and first.lemmas == ["entity"]
    assert first.pointers == [("~", 1930, "n"), ("~", 2137, "n"), ("~", 4424418, "n")]
    assert next(read_synsets(WORDNET)) == (first.offset, first.lexname, first.lemmas, first.definition)


@pytest.fixture(scope="module")
def wordnet_graph(tmp_path_factory):
    if not WORDNET.exists():
        pytest.skip("needs the Debian package wordnet-base (make data)")
    return load_wordnet_graph(tmp_path_factory.mktemp("data"))


@needs_wordnet
def test_wordnet_graph_counts_edges_and_splits(wordnet_graph):
    ds = wordnet_graph
    g = ds.views["graph"]
    assert ds.class_names == list(DEFAULT_GRAPH_CLASSES) and ds.num_classes == 7
    assert len(ds) == g.num_nodes == DEFAULT_NODES and g.num_edges == DEFAULT_EDGES
    assert ds.info["nodes"] == DEFAULT_NODES and ds.info["edges"] == DEFAULT_EDGES
    assert_clean_edges(g.edge_index, DEFAULT_NODES)
    assert ds.info["edge_homophily"] == pytest.approx(g.edge_homophily(ds.labels), abs=1e-4) and ds.info["edge_homophily"] > 0.9
    assert min(ds.info["class_counts"].values()) >= 100  # patches keep every class present
    assert ds.info["packages"] == {"wordnet-base": ds.info["packages"]["wordnet-base"]}
    train, test = ds.splits["train"], ds.splits["test"]
    assert sorted(train.tolist() + test.tolist()) == list(range(DEFAULT_NODES)) and len(ds.splits["val"]) == 0
    assert all(k.endswith("-n") and len(k) == 10 for k in ds.keys)
    assert ds.info["build_seconds"] < 10


@needs_wordnet
def test_wordnet_graph_features_are_a_binary_bag_of_words(wordnet_graph):
    g = wordnet_graph.views["graph"]
    x = g.dense_features()
    assert x.shape == (DEFAULT_NODES, 1433) and x.dtype == torch.float32 and not g.features.is_sparse
    assert set(x.unique().tolist()) == {0.0, 1.0} and wordnet_graph.info["vocab_size"] == 1433
    assert "the" not in g.feature_names and len(set(g.feature_names)) == 1433
    vocabulary = set(g.feature_names)
    for i, gloss in enumerate(wordnet_graph.views["text:en"][:300]):
        words = {g.feature_names[j] for j in x[i].nonzero().flatten().tolist()}
        assert words == set(re.findall("[a-z]+", gloss.lower())) & vocabulary, gloss


@needs_wordnet
def test_wordnet_graph_items_match_the_text_dataset(wordnet_graph, tmp_path):
    text = load_wordnet(tmp_path, classes=wordnet_graph.class_names, per_class=400)
    by_key = {k: i for i, k in enumerate(text.keys)}
    shared = [(i, by_key[k]) for i, k in enumerate(wordnet_graph.keys) if k in by_key]
    assert len(shared) > 100
    for g, t in shared:
        assert wordnet_graph.class_names[wordnet_graph.labels[g]] == text.class_names[text.labels[t]]
        assert wordnet_graph.views["text:en"][g] == text.views["text:en"][t]
    offsets = {s.offset: LEXNAMES.index(s.lexname) for s in parse_synsets(WORDNET)}
    for key, label in zip(wordnet_graph.keys[::97], wordnet_graph.labels[::97].tolist()):
        assert LEXNAMES[offsets[int(key[:8])]] == wordnet_graph.class_names[label]


@needs_wordnet
def test_wordnet_graph_options_and_errors(tmp_path):
    small = load_wordnet_graph(tmp_path, classes=["animal", "plant"], max_nodes=200, vocab_size=50, subset_seed=1)
    assert len(small) == 200 and small.views["graph"].num_features == 50 and small.class_names == ["noun.animal", "noun.plant"]
    again = load_wordnet_graph(tmp_path, classes=["noun.animal", "noun.plant"], max_nodes=200, vocab_size=50, subset_seed=1)
    assert again.keys == small.keys and torch.equal(again.views["graph"].edge_index, small.views["graph"].edge_index)
    other = load_wordnet_graph(tmp_path, classes=["animal", "plant"], max_nodes=200, vocab_size=50, subset_seed=2)
    assert other.keys != small.keys
    with pytest.raises(ConfigError, match="noun classes only"):
        load_wordnet_graph(tmp_path, classes=["noun.animal", "verb.motion"])
    with pytest.raises(ConfigError, match="not a WordNet lexicographer class"):
        load_wordnet_graph(tmp_path, classes=["noun.dragons", "noun.food"])
    with pytest.raises(ConfigError, match="max_nodes"):
        load_wordnet_graph(tmp_path, max_nodes=1)
    with pytest.raises(ConfigError, match=r"needs the Debian package wordnet-base"):
        load_wordnet_graph(tmp_path, root=tmp_path / "nowhere")


@pytest.mark.slow
@needs_wordnet
def test_full_wordnet_graph(tmp_path):
    ds = load_wordnet_graph(tmp_path, classes="all", max_nodes=None)
    g = ds.views["graph"]
    assert ds.num_classes == 26 and g.num_nodes == 82115 and g.num_edges == 115310
    assert g.features.is_sparse and g.features.shape == (82115, 1433)
    assert ds.info["build_seconds"] < 30


# ---------------------------------------------------------------------------------- Planetoid


def write_planetoid(root: Path, name: str = "cora") -> dict:
    """A tiny 3-class graph in the Planetoid format: x / y labelled training rows, allx / ally all
    non-test rows, tx / ty test rows in file order, test.index their (unsorted) node ids."""
    root.mkdir(parents=True, exist_ok=True)
    n_train, n_val, n_test, classes, f = 6, 500, 8, 3, 5
    n_all = n_train + n_val + 4  # 4 unlabelled-in-split nodes after the val block
    n = n_all + n_test
    gen = np.random.default_rng(0)
    features = (gen.random((n, f)) < 0.5).astype(np.float32)
    labels = np.arange(n) % classes
    test_nodes = np.arange(n_all, n)
    test_order = gen.permutation(test_nodes)  # the file lists test nodes in this order
    onehot = np.eye(classes, dtype=np.int64)
    parts = {
        "x": sp.csr_matrix(features[:n_train]),
        "y": onehot[labels[:n_train]],
        "allx": sp.csr_matrix(features[:n_all]),
        "ally": onehot[labels[:n_all]],
        "tx": sp.csr_matrix(features[test_order]),
        "ty": onehot[labels[test_order]],
        "graph": {i: [(i + 1) % n, (i + 7) % n] + ([i] if i == 3 else []) for i in range(n)},  # node 3 loops to itself
    }
    for part, value in parts.items():
        with open(root / f"ind.{name}.{part}", "wb") as fh:
            pickle.dump(value, fh, protocol=2)
    (root / f"ind.{name}.test.index").write_text("\n".join(str(i) for i in test_order) + "\n")
    return {"features": features, "labels": labels, "n": n, "test": test_nodes, "n_train": n_train, "n_val": n_val}


def test_planetoid_files_load_with_the_official_split(tmp_path):
    truth = write_planetoid(tmp_path / "planetoid" / "Cora" / "raw")
    ds = load_planetoid(tmp_path, name="cora")
    g = ds.views["graph"]
    assert ds.view_names == ["graph"] and len(ds) == truth["n"] and ds.num_classes == 3
    assert torch.equal(ds.labels, torch.from_numpy(truth["labels"]))
    torch.testing.assert_close(g.dense_features(), torch.from_numpy(truth["features"]))  # test rows back in place
    assert ds.splits["train"].tolist() == list(range(truth["n_train"]))
    assert ds.splits["val"].tolist() == list(range(truth["n_train"], truth["n_train"] + truth["n_val"]))
    assert ds.splits["test"].tolist() == truth["test"].tolist()
    assert_clean_edges(g.edge_index, truth["n"])
    n = truth["n"]
    expected = {(i, j) for i in range(n) for j in ((i + 1) % n, (i + 7) % n)}
    expected |= {(b, a) for a, b in expected}
    assert set(zip(*g.edge_index.tolist())) == expected and ds.info["self_loops_dropped"] == 1


def test_planetoid_pads_citeseer_test_gaps(tmp_path):
    root = tmp_path / "raw"
    truth = write_planetoid(root, "citeseer")
    index = [int(i) for i in (root / "ind.citeseer.test.index").read_text().split()]
    gap = truth["test"][3]  # a test node missing from the files: CiteSeer's isolated nodes
    keep = [k for k, i in enumerate(index) if i != gap]
    for part in ("tx", "ty"):
        with open(root / f"ind.citeseer.{part}", "rb") as fh:
            value = pickle.load(fh)
        with open(root / f"ind.citeseer.{part}", "wb") as fh:
            pickle.dump(value[keep], fh)
    (root / "ind.citeseer.test.index").write_text("\n".join(str(index[k]) for k in keep))
    ds = load_planetoid(tmp_path, name="CiteSeer", root=root)
    assert len(ds) == truth["n"] and gap not in ds.splits["test"].tolist()
    x = ds.views["graph"].dense_features()
    assert x[gap].abs().sum() == 0 and int(ds.labels[gap]) == 0
    others = [i for i in truth["test"] if i != gap]
    torch.testing.assert_close(x[others], torch.from_numpy(truth["features"][others]))


def test_planetoid_missing_files_name_them(tmp_path):
    with pytest.raises(ConfigError, match=r"missing ind\.pubmed\.x .*ind\.pubmed\.test\.index in .*download=true"):
        load_planetoid(tmp_path, name="PubMed")
    assert planetoid_files("Cora")[0] == "ind.cora.x"
    with pytest.raises(ConfigError, match="not a Planetoid graph"):
        load_planetoid(tmp_path, name="ogbn-arxiv")


# ----------------------------------------------------------------------------------- encoders


def make(cls, in_features: int = 6, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return cls(in_features, hidden=8, num_features=5, dropout=0.5, **kw)


@pytest.mark.parametrize("cls", ENCODERS)
def test_encoder_basics(cls):
    g = tiny_graph()
    a, b, c = make(cls), make(cls), make(cls, seed=1)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())  # deterministic init
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(RuntimeError, match="bind_graph"):
        a(torch.arange(3))
    keys = set(a.state_dict())
    a.bind_graph(g)
    assert set(a.state_dict()) == keys  # the graph is data, not weights
    assert a.out_dim == 5 and a.eval()(torch.tensor([0, 4, 4, 11])).shape == (4, 5)
    assert a(torch.zeros(2)).shape == (2, 5)  # a float shape probe
    full = a(torch.arange(12))
    torch.testing.assert_close(a(torch.tensor([7, 2])), full[[7, 2]])
    sparse = Graph(g.features.to_sparse(), g.edge_index)
    b.bind_graph(sparse)
    assert b.node_features.is_sparse
    torch.testing.assert_close(b.eval()(torch.arange(12)), full)
    a.train()
    loss = a(torch.arange(12)).pow(2).sum()
    loss.backward()
    assert all(p.grad is not None for p in a.parameters())
    with pytest.raises(ConfigError, match="in_features=7"):
        make(cls, in_features=7).bind_graph(g)


def test_encoder_settings_are_checked():
    with pytest.raises(ConfigError, match="node_features"):
        GCN("auto")
    with pytest.raises(ConfigError, match="dropout"):
        GCN(4, dropout=1.0)
    with pytest.raises(ConfigError, match="divide hidden"):
        GAT(4, hidden=10, heads=4)


def test_gcn_and_sage_layers_match_a_dense_computation():
    g = tiny_graph()
    a = torch.zeros(12, 12)
    a[g.edge_index[0], g.edge_index[1]] = 1.0
    x = g.features
    gcn = make(GCN, latent_relu=False).eval()
    gcn.bind_graph(g)
    norm = (a + torch.eye(12)) / torch.outer(a.sum(1) + 1, a.sum(1) + 1).sqrt()
    h = torch.relu(norm @ x @ gcn.lin1.weight.T + gcn.bias1)
    torch.testing.assert_close(gcn(torch.arange(12)), norm @ h @ gcn.lin2.weight.T + gcn.bias2)
    sage = make(GraphSAGE).eval()
    sage.bind_graph(g)
    mean = a / a.sum(1, keepdim=True)
    h = torch.relu(sage.self1(x) + mean @ x @ sage.neigh1.weight.T)
    torch.testing.assert_close(sage(torch.arange(12)), sage.self2(h) + mean @ h @ sage.neigh2.weight.T)


def test_gat_attention_is_a_softmax_over_each_nodes_neighbourhood():
    g = tiny_graph()
    gat = make(GAT, heads=2).eval()
    gat.bind_graph(g)
    layer, edges = gat.layer1, gat.edges
    h = layer.lin(g.features).view(12, 2, 4)
    alpha = layer.attention(h, edges, 12)
    # brute force: a dense score matrix per head, -inf off the graph, softmax over each row
    mask = torch.eye(12, dtype=torch.bool)
    mask[g.edge_index[1], g.edge_index[0]] = True
    src_score = (h * layer.att_src).sum(-1)
    dst_score = (h * layer.att_dst).sum(-1)
    for k in range(2):
        scores = torch.nn.functional.leaky_relu(dst_score[:, k, None] + src_score[None, :, k], 0.2)
        dense = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        torch.testing.assert_close(alpha[:, k], dense[edges[0], edges[1]])
        out = dense @ h[:, k]
        torch.testing.assert_close(layer(g.features, edges).view(12, 2, 4)[:, k], out + layer.bias.view(2, 4)[k])
    sums = torch.zeros(12, 2).index_add_(0, edges[0], alpha)
    torch.testing.assert_close(sums, torch.ones(12, 2))


def test_edge_softmax_is_stable_for_large_scores():
    scores = torch.tensor([[1000.0], [1001.0], [-5.0]])
    out = edge_softmax(scores, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(out.flatten(), torch.tensor([1 / (1 + np.e), np.e / (1 + np.e), 1.0]))
