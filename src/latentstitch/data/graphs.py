"""Graphs as items: the ``graph`` view, the WordNet noun graph, and the Planetoid citation graphs.

A graph dataset is transductive: item i is node i, every split is a set of node ids, and an encoder
reads the whole graph at once (``latentstitch.encoders.graph``). The ``graph`` view is a
:class:`Graph`: node features and a symmetric edge list, with the sparse propagation matrices the
encoders need built on demand and cached. Memory is proportional to nodes + edges (+ the non-zeros
of the features); nothing is ever N x N dense.

``load_wordnet_graph`` (``dataset=wordnet_graph``): nodes are the noun synsets of WordNet 3.0
(Debian wordnet-base), labelled by lexicographer class; edges are all noun -> noun pointers of
``data.noun`` (hypernym, hyponym, meronym, ...), symmetrised; node features are a binary bag of
words of the gloss, as Cora's are of a paper's words. Node keys are the synset ids of
``dataset=wordnet`` (``02084071-n``), and the ``text:en`` view holds the glosses, so the same item is
a graph node for a GNN and a sentence for a text encoder (text <-> graph stitching on parallel
anchors).

The default is Cora-sized: 7 classes, a seeded BFS subgraph of 3,000 nodes. The classes are the
seven whose pointers stay most within the class and whose glosses alone are ambiguous between
them (animal vs plant: both are "a genus of ...", "any of various ..."; body vs substance; state vs
attribute), so the graph carries information the text does not. Measured by
``python run.py +experiment=graphs`` (200 full-batch steps, 70/30 stratified split, seed-1 decoders,
MLP heads on 900 test nodes): GCN 0.974, GraphSAGE 0.979, GAT 0.973, node MLP (no edges) 0.861,
MiniLM on the glosses 0.904, USE 0.878; a seed-0 GCN into the MiniLM head through ortho: 0.973.

``load_planetoid`` (``dataset=planetoid``): Cora, CiteSeer, PubMed in the classic Planetoid files
(``ind.cora.x`` ...), with their official split (20 labelled nodes per class, 500 val, 1,000 test).
Its features are kept as stored (binary word indicators for Cora / CiteSeer, TF-IDF for PubMed),
not row-normalised: scaling is the encoder's business, and the same raw features serve every
encoder.
"""

from __future__ import annotations

import os
import pickle
import re
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from latentstitch.data.debian import package_versions, require
from latentstitch.data.items import ItemDataset, check_test_fraction, split_items, text_view
from latentstitch.data.wordnet import DEFAULT_ROOT, LEXNAMES, PACKAGE, _class_name, parse_synsets, synset_key
from latentstitch.errors import ConfigError

GRAPH_VIEW = "graph"

# Features of more cells than this are a sparse COO tensor (the full WordNet graph: 82k x 1,433).
DENSE_LIMIT = 20_000_000

NOUN_CLASSES = tuple(name for name in LEXNAMES if name.startswith("noun."))  # the 26 noun classes

# See the module docstring: classes whose graph neighbourhoods disambiguate glosses that do not.
DEFAULT_GRAPH_CLASSES = (
    "noun.animal", "noun.plant", "noun.body", "noun.substance",
    "noun.state", "noun.attribute", "noun.food",
)  # fmt: skip

# Function words of English glosses: frequent in every class, so they would fill the vocabulary and say nothing.
STOPWORDS = frozenset(
    "a about above after again against all also an and any are as at be been before being below between both but by "
    "can could did do does doing down during each either especially etc few for from further had has have having he "
    "her here hers him his how i if in into is it its itself just may might more most much must no nor not now of "
    "off often on once one only or other others our out over own same she should so some something such than that "
    "the their them then there these they this those through thus to too under until up upon usually very was we "
    "were what when where whether which while who whom whose why will with within without would you your".split()
)
TOKEN = re.compile(r"[a-z]+")


@dataclass(eq=False)
class Graph:
    """The ``graph`` view: node features and a symmetric edge list; item i is node i.

    ``features`` is (N, F) float32, dense or sparse COO (a bag of words over 82k nodes is 99.6%
    zeros); ``edge_index`` is (2, E) int64 with both directions of every undirected edge, no self
    loops and no duplicates (what :func:`symmetric_edges` makes). The propagation matrices are
    sparse, built on first use and cached: the encoders of one run share them.
    """

    features: torch.Tensor
    edge_index: torch.Tensor
    feature_names: list[str] | None = None  # the word of each feature column, where there is one
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.features.ndim != 2:
            raise ValueError(f"graph features must be (nodes, features), got shape {tuple(self.features.shape)}")
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be (2, edges), got shape {tuple(self.edge_index.shape)}")
        self.edge_index = self.edge_index.long()
        if self.edge_index.numel() and (int(self.edge_index.min()) < 0 or int(self.edge_index.max()) >= self.num_nodes):
            raise ValueError(f"edge_index refers to nodes outside 0..{self.num_nodes - 1}")

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_nodes(self) -> int:
        return len(self)

    @property
    def num_edges(self) -> int:
        """Undirected edges (``edge_index`` holds each twice)."""
        return int(self.edge_index.shape[1]) // 2

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    def degrees(self) -> torch.Tensor:
        """Neighbours per node (float32)."""
        return torch.bincount(self.edge_index[0], minlength=self.num_nodes).float()

    def normalized_adjacency(self) -> torch.Tensor:
        """Sparse D^-1/2 (A + I) D^-1/2 (Kipf & Welling's GCN propagation), degrees counting the self loop."""
        if "gcn" not in self._cache:
            n = self.num_nodes
            loops = torch.arange(n).expand(2, n)
            index = torch.cat([self.edge_index, loops], dim=1)
            scale = (self.degrees() + 1.0).rsqrt()
            self._cache["gcn"] = _sparse(index, scale[index[0]] * scale[index[1]], n)
        return self._cache["gcn"]

    def mean_adjacency(self) -> torch.Tensor:
        """Sparse row-normalised A: row i averages i's neighbours (GraphSAGE's mean aggregator;
        an isolated node's row is empty, its mean zero)."""
        if "mean" not in self._cache:
            deg = self.degrees().clamp(min=1.0)
            self._cache["mean"] = _sparse(self.edge_index, 1.0 / deg[self.edge_index[0]], self.num_nodes)
        return self._cache["mean"]

    def edge_homophily(self, labels: torch.Tensor) -> float:
        """The fraction of edges whose two ends share a label (NaN for a graph without edges)."""
        if self.edge_index.shape[1] == 0:
            return float("nan")
        labels = torch.as_tensor(labels)
        return float((labels[self.edge_index[0]] == labels[self.edge_index[1]]).float().mean())

    def dense_features(self) -> torch.Tensor:
        return self.features.to_dense() if self.features.is_sparse else self.features


def _sparse(index: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    return torch.sparse_coo_tensor(index, values.float(), (n, n), check_invariants=False).coalesce()


def symmetric_edges(pairs: torch.Tensor | np.ndarray, num_nodes: int) -> torch.Tensor:
    """(2, E) int64: ``pairs`` (2, M) in both directions, without self loops or duplicates, sorted."""
    pairs = torch.as_tensor(np.asarray(pairs), dtype=torch.long).reshape(2, -1)
    pairs = pairs[:, pairs[0] != pairs[1]]
    both = torch.cat([pairs, pairs.flip(0)], dim=1)
    flat = torch.unique(both[0] * num_nodes + both[1])
    return torch.stack([flat // num_nodes, flat % num_nodes])


def node_features(rows: list[list[int]], num_columns: int) -> torch.Tensor:
    """Binary (len(rows), num_columns) float32 with ones at each row's columns: sparse COO
    past :data:`DENSE_LIMIT` cells, dense below."""
    row = torch.tensor([i for i, cols in enumerate(rows) for _ in cols], dtype=torch.long)
    col = torch.tensor([c for cols in rows for c in cols], dtype=torch.long)
    shape = (len(rows), num_columns)
    values = torch.ones(len(row), dtype=torch.float32)
    if len(rows) * num_columns > DENSE_LIMIT:
        return torch.sparse_coo_tensor(torch.stack([row, col]), values, shape, check_invariants=False).coalesce()  # rows hold no repeats
    dense = torch.zeros(shape, dtype=torch.float32)
    dense[row, col] = 1.0
    return dense


# ---------------------------------------------------------------------------------- WordNet graph


def _graph_classes(classes: str | Sequence[str]) -> list[str]:
    """The requested noun classes, in order; ``"all"`` is all 26."""
    if isinstance(classes, str):
        classes = NOUN_CLASSES if classes == "all" else [classes]
    names = list(dict.fromkeys(_class_name(c) for c in classes))
    verbs = [c for c in names if not c.startswith("noun.")]
    if verbs:
        raise ConfigError(f"dataset.loader.classes: the WordNet graph has noun classes only, not {verbs}")
    if len(names) < 2:
        raise ConfigError(f"dataset.loader.classes={list(classes)} needs at least two classes (or 'all')")
    return names


def bfs_subset(edge_index: torch.Tensor, num_nodes: int, limit: int, seed: int, patch: int | None = None) -> torch.Tensor:
    """Sorted ids of ``limit`` nodes reached by breadth-first searches from seeded random roots.

    A search runs until its component is exhausted or it has taken ``patch`` nodes (None: no
    cap), then the next starts from the next unvisited node of a seeded permutation, until
    ``limit`` nodes are taken. Neighbours are visited in id order, so the result depends on the
    seed only. The subgraph is connected-ish: a few dozen neighbourhoods of ``patch`` nodes, plus
    the small components the roots hit; roots are uniform over nodes, so classes keep about their
    share of the graph (one search alone would fill the subset with the class of its root).
    """
    order = edge_index[0].argsort(stable=True)
    dst = edge_index[1][order].numpy()
    start = np.concatenate([[0], np.cumsum(np.bincount(edge_index[0].numpy(), minlength=num_nodes))])
    seen = np.zeros(num_nodes, dtype=bool)
    taken: list[int] = []
    roots = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed)).tolist()
    for root in roots:
        if len(taken) >= limit:
            break
        if seen[root]:
            continue
        budget = min(limit - len(taken), patch or limit)
        seen[root] = True
        queue, head = [root], 0
        while head < len(queue) and len(queue) < budget:
            node = queue[head]
            head += 1
            for nb in dst[start[node] : start[node + 1]]:
                if not seen[nb]:
                    seen[nb] = True
                    queue.append(int(nb))
        for node in queue[budget:]:  # reached but not taken: a later search may take them
            seen[node] = False
        taken += queue[:budget]
    return torch.tensor(sorted(taken), dtype=torch.long)


def induced_subgraph(edge_index: torch.Tensor, nodes: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """The edges among ``nodes`` (sorted ids), renumbered to positions in ``nodes``."""
    position = torch.full((num_nodes,), -1, dtype=torch.long)
    position[nodes] = torch.arange(len(nodes))
    mapped = position[edge_index]
    return mapped[:, (mapped >= 0).all(dim=0)]


def bag_of_words(texts: list[str], vocab_size: int) -> tuple[torch.Tensor, list[str]]:
    """Binary bag of words over the ``vocab_size`` words found in most texts (ties: alphabetical),
    and that vocabulary. Words are lowercase alphabetic tokens that are not :data:`STOPWORDS`."""
    docs = [set(TOKEN.findall(t.lower())) - STOPWORDS for t in texts]
    counts = Counter(w for d in docs for w in d)
    vocabulary = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:vocab_size]]
    column = {w: i for i, w in enumerate(vocabulary)}
    rows = [sorted(column[w] for w in d if w in column) for d in docs]
    return node_features(rows, len(vocabulary)), vocabulary


def _read_noun_graph(path: Path, class_names: list[str]) -> tuple[list[tuple[int, int, str]], torch.Tensor]:
    """Nodes [(label, offset, gloss)] in (class, offset) order and their symmetric edges, from ``data.noun``."""
    label_of = {c: i for i, c in enumerate(class_names)}
    synsets = [(label_of[s.lexname], s.offset, s.definition, s.pointers) for s in parse_synsets(path) if s.lexname in label_of]
    synsets.sort(key=lambda s: (s[0], s[1]))
    index = {offset: i for i, (_, offset, _, _) in enumerate(synsets)}
    pairs = [(i, index[o]) for i, s in enumerate(synsets) for _, o, pos in s[3] if pos == "n" and o in index]
    edges = symmetric_edges(torch.tensor(pairs, dtype=torch.long).T.reshape(2, -1), len(synsets))
    return [(label, offset, gloss) for label, offset, gloss, _ in synsets], edges


def load_wordnet_graph(
    data_dir: Path,
    classes: str | Sequence[str] = DEFAULT_GRAPH_CLASSES,
    max_nodes: int | None = 3000,
    vocab_size: int = 1433,
    test_fraction: float = 0.3,
    split_seed: int = 0,
    subset_seed: int = 0,
    patch: int | None = 30,
    root: str | Path = DEFAULT_ROOT,
) -> ItemDataset:
    """The WordNet noun graph of ``classes`` (``"all"``: all 26 noun classes), cut to ``max_nodes``
    nodes by :func:`bfs_subset` in searches of at most ``patch`` nodes (None: the whole graph),
    views ``graph`` and ``text:en``."""
    del data_dir  # parsing data.noun takes under a second: nothing to cache
    t0 = time.perf_counter()
    test_fraction = check_test_fraction(test_fraction)
    class_names = _graph_classes(classes)
    if max_nodes is not None and int(max_nodes) < 2:
        raise ConfigError(f"dataset.loader.max_nodes={max_nodes} must be at least 2 (or null: the whole graph)")
    if int(vocab_size) < 1:
        raise ConfigError(f"dataset.loader.vocab_size={vocab_size} must be at least 1")
    if patch is not None and int(patch) < 1:
        raise ConfigError(f"dataset.loader.patch={patch} must be at least 1 (or null: one search per component)")
    patch = None if patch is None else int(patch)
    path = require(Path(root) / "data.noun", "wordnet_graph", PACKAGE)
    nodes, edges = _read_noun_graph(path, class_names)
    total = (len(nodes), edges.shape[1] // 2)
    if max_nodes is not None and int(max_nodes) < len(nodes):
        chosen = bfs_subset(edges, len(nodes), int(max_nodes), subset_seed, patch)
        edges = induced_subgraph(edges, chosen, len(nodes))
        nodes = [nodes[i] for i in chosen.tolist()]
    glosses = [gloss for _, _, gloss in nodes]
    features, vocabulary = bag_of_words(glosses, int(vocab_size))
    graph = Graph(features, edges, feature_names=vocabulary)
    labels = torch.tensor([label for label, _, _ in nodes], dtype=torch.long)
    counts = torch.bincount(labels, minlength=len(class_names)).tolist()
    info = {
        "source": "WordNet 3.0 noun graph (Debian wordnet-base): synsets, noun->noun pointers, bag of words of the glosses",
        "packages": package_versions([PACKAGE]),
        "files": [str(path)],
        "nodes": graph.num_nodes,
        "edges": graph.num_edges,
        "nodes_before_subset": total[0],
        "edges_before_subset": total[1],
        "classes": class_names,
        "class_counts": dict(zip(class_names, counts)),
        "edge_homophily": round(graph.edge_homophily(labels), 4),
        "vocab_size": len(vocabulary),
        "sparse_features": bool(features.is_sparse),
        "max_nodes": None if max_nodes is None else int(max_nodes),
        "patch": patch,
        "subset_seed": int(subset_seed),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    return ItemDataset(
        name="wordnet_graph",
        views={GRAPH_VIEW: graph, text_view("en"): glosses},
        labels=labels,
        splits=split_items(labels, len(nodes), test_fraction, split_seed),
        num_classes=len(class_names),
        class_names=class_names,
        info=info,
        keys=[synset_key(offset, "n") for _, offset, _ in nodes],
    )


# ---------------------------------------------------------------------------------- Planetoid

PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data/"
PLANETOID_VAL = 500  # the official split's validation nodes follow the labelled training nodes


def planetoid_files(name: str) -> list[str]:
    """The file names of a Planetoid graph: ``ind.cora.x``, ... ``ind.cora.test.index``."""
    return [f"ind.{name.lower()}.{part}" for part in PLANETOID_PARTS]


def _download(url: str, path: Path) -> None:
    """``url`` into ``path``, via ``path.partial`` renamed on success: a cut download leaves no file."""
    partial = path.with_name(path.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
        os.replace(partial, path)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"dataset planetoid: downloading {url} failed ({e}); put the file in {path.parent}") from None


def _planetoid_paths(name: str, root: Path, download: bool) -> dict[str, Path]:
    paths = {part: root / f for part, f in zip(PLANETOID_PARTS, planetoid_files(name))}
    missing = [p for p in paths.values() if not p.is_file()]
    if missing and not download:
        raise ConfigError(
            f"dataset planetoid ({name}): missing {' '.join(p.name for p in missing)} in {root}: put the Planetoid files "
            f"there (from {PLANETOID_URL}) or set dataset.loader.download=true"
        )
    for path in missing:
        root.mkdir(parents=True, exist_ok=True)
        _download(PLANETOID_URL + path.name, path)
    return paths


def _unpickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # the files were pickled by Python 2


def _dense(matrix: Any) -> np.ndarray:
    return np.asarray(matrix.todense() if hasattr(matrix, "todense") else matrix, dtype=np.float32)


def read_planetoid(paths: dict[str, Path], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(features, labels, edge pairs (2, M), official splits) as PyG's ``read_planetoid_data`` reads them.

    Nodes are ``allx`` then ``tx``, test rows put back at ``test.index``; CiteSeer's test indices have
    gaps (isolated nodes without features), padded with zero rows and label 0, in no split.
    """
    x, tx, allx = (_dense(_unpickle(paths[p])) for p in ("x", "tx", "allx"))
    y, ty, ally = (np.asarray(_unpickle(paths[p])) for p in ("y", "ty", "ally"))
    adjacency = _unpickle(paths["graph"])
    test_index = np.array([int(line) for line in paths["test.index"].read_text().split()], dtype=np.int64)
    sorted_test = np.sort(test_index)
    if name.lower() == "citeseer":
        span = int(test_index.max() - test_index.min()) + 1
        tx_ext = np.zeros((span, tx.shape[1]), dtype=np.float32)
        ty_ext = np.zeros((span, ty.shape[1]), dtype=ty.dtype)
        tx_ext[sorted_test - test_index.min()] = tx
        ty_ext[sorted_test - test_index.min()] = ty
        tx, ty = tx_ext, ty_ext
    features = np.concatenate([allx, tx])
    labels = np.concatenate([ally, ty]).argmax(axis=1)
    features[test_index] = features[sorted_test]
    labels[test_index] = labels[sorted_test]
    pairs = np.array([(int(a), int(b)) for a, nbs in adjacency.items() for b in nbs], dtype=np.int64).T.reshape(2, -1)
    splits = {
        "train": np.arange(len(y)),
        "val": np.arange(len(y), len(y) + PLANETOID_VAL),
        "test": sorted_test,
    }
    return features, labels, pairs, splits


def load_planetoid(data_dir: Path, name: str = "Cora", root: str | Path | None = None, download: bool = False) -> ItemDataset:
    """A Planetoid citation graph (Cora, CiteSeer, PubMed) with its official train / val / test split.

    Files are read from ``root`` (default ``<data_dir>/planetoid/<Name>/raw``, PyG's layout, so a
    PyG download is found as it is); ``download`` fetches the missing ones from the Planetoid
    repository first. View ``graph`` only: the papers' texts are not in the files.
    """
    t0 = time.perf_counter()
    if str(name).lower() not in PLANETOID_NAMES:
        raise ConfigError(f"dataset.loader.name={name!r} is not a Planetoid graph; known: {sorted(PLANETOID_NAMES.values())}")
    title = PLANETOID_NAMES[str(name).lower()]
    root = Path(root) if root is not None else Path(data_dir) / "planetoid" / title / "raw"
    paths = _planetoid_paths(title, root, bool(download))
    features, labels, pairs, splits = read_planetoid(paths, title)
    n = len(features)
    if pairs.size and int(pairs.max()) >= n:
        raise ConfigError(f"dataset planetoid ({title}): ind.{title.lower()}.graph names node {int(pairs.max())} of {n}")
    x = torch.from_numpy(features)
    if x.numel() > DENSE_LIMIT:
        x = x.to_sparse().coalesce()
    graph = Graph(x, symmetric_edges(pairs, n))
    labels_t = torch.from_numpy(labels).long()
    num_classes = int(labels_t.max()) + 1
    info = {
        "source": f"Planetoid {title} (Yang et al. 2016), official split",
        "files": [str(p) for p in paths.values()],
        "nodes": n,
        "edges": graph.num_edges,
        "self_loops_dropped": int((pairs[0] == pairs[1]).sum()) if pairs.size else 0,
        "features": graph.num_features,
        "classes": num_classes,
        "class_counts": torch.bincount(labels_t, minlength=num_classes).tolist(),
        "edge_homophily": round(graph.edge_homophily(labels_t), 4),
        "split_sizes": {k: len(v) for k, v in splits.items()},
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    return ItemDataset(
        name="planetoid",
        views={GRAPH_VIEW: graph},
        labels=labels_t,
        splits={k: torch.from_numpy(v) for k, v in splits.items()},
        num_classes=num_classes,
        info=info,
    )
