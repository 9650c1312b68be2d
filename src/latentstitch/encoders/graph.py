"""Graph encoders in plain torch: GCN, GraphSAGE, GAT and the no-graph node MLP baseline.

They are transductive and full-batch: a model is bound to one graph (:meth:`GraphEncoder.bind_graph`,
the graph's features and propagation matrices become non-persistent buffers: data, not weights,
so they stay out of ``state_dict`` and the weights cache), its input is a tensor of node ids, and
every forward embeds all nodes and returns the rows asked for. That is what lets the framework's
``ClassifierModule`` / ``fit_module`` / ``extract_features`` train and read them as they do any
encoder: a split's ids are its inputs, one batch of them is one full-graph step.

Every model has two layers: ``in_features -> hidden`` (ReLU, dropout) ``-> num_features``, the
latent. Dropout also applies to the input features (Kipf & Welling). The latent is the second
layer's output as it is, except for the GCN, whose latent goes through a ReLU by default
(``latent_relu``): measured on the Cora-sized WordNet graph, a seed-0 GCN stitched into a seed-1
head by ortho on 300 anchors kept 0.998 of native accuracy with the ReLU and 0.985 without; the
other encoders were alike either way and keep the plain output. Propagation is sparse
(``torch.sparse.mm`` with the graph's COO matrices), so memory is O(nodes x width + edges x heads);
sparse node features (a bag of words over 82k nodes) enter the first layer the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentstitch.data.graphs import Graph
from latentstitch.errors import ConfigError

__all__ = ["GAT", "GCN", "GraphEncoder", "GraphSAGE", "NodeMLP", "edge_softmax"]

# Dense features with fewer non-zeros than this are multiplied as sparse: a gloss's bag of words is
# 0.3% ones, and the sparse first layer made a training step of the 3,000-node WordNet graph 9x faster.
SPARSE_BELOW = 0.05


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout of a dense or sparse COO tensor (a sparse one drops its stored values)."""
    if not training or p == 0.0:
        return x
    if x.is_sparse:
        return torch.sparse_coo_tensor(
            x.indices(), F.dropout(x.values(), p, True), x.shape, is_coalesced=True, check_invariants=False
        )
    return F.dropout(x, p, True)


def _linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)`` for a dense or sparse COO ``x``."""
    if not x.is_sparse:
        return layer(x)
    out = torch.sparse.mm(x, layer.weight.t())
    return out if layer.bias is None else out + layer.bias


def edge_softmax(scores: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Softmax of edge ``scores`` (E, heads) over the edges of each destination node."""
    index = dst.unsqueeze(1).expand_as(scores)
    peak = scores.new_full((num_nodes, scores.shape[1]), float("-inf"))
    peak = peak.scatter_reduce(0, index, scores, reduce="amax", include_self=True)
    weights = (scores - peak[dst].detach()).exp()  # any shift gives the same softmax: no gradient through the max
    total = scores.new_zeros((num_nodes, scores.shape[1])).index_add_(0, dst, weights)
    return weights / total[dst]


class GraphEncoder(nn.Module):
    """Base class: validation, binding to a graph, and ``forward(ids)`` = rows of :meth:`embed`."""

    def __init__(
        self, in_features: int, hidden: int = 64, num_features: int = 64, dropout: float = 0.5, latent_relu: bool = False
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(in_features, str) or int(in_features) < 1:
            raise ConfigError(
                f"encoder {name}: in_features={in_features!r} must be the graph's feature count (dataset.node_features)"
            )
        if int(hidden) < 1 or int(num_features) < 1:
            raise ConfigError(f"encoder {name}: hidden={hidden} and num_features={num_features} must be at least 1")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"encoder {name}: dropout={dropout} must be in [0, 1)")
        self.in_features, self.hidden, self.num_features = int(in_features), int(hidden), int(num_features)
        self.out_dim = self.num_features
        self.dropout = float(dropout)
        self.latent_relu = bool(latent_relu)
        self._bound = False

    def bind_graph(self, graph: Graph) -> None:
        """Make ``graph`` the one this model reads: its features and this model's propagation
        matrices become non-persistent buffers (they follow ``.to(device)``, stay out of ``state_dict``)."""
        if graph.num_features != self.in_features:
            raise ConfigError(
                f"encoder {type(self).__name__}: in_features={self.in_features}, but the graph's nodes have "
                f"{graph.num_features} features (set encoder.model.in_features=${{dataset.node_features}})"
            )
        features = graph.features.float()
        if not features.is_sparse and features.numel() and float((features != 0).float().mean()) < SPARSE_BELOW:
            features = features.to_sparse()
        self.register_buffer("node_features", features.coalesce() if features.is_sparse else features, persistent=False)
        for name, tensor in self.graph_buffers(graph).items():
            self.register_buffer(name, tensor, persistent=False)
        self._bound = True

    def graph_buffers(self, graph: Graph) -> dict[str, torch.Tensor]:
        """What this model propagates with, besides the features (none for the MLP)."""
        return {}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The latents of all nodes from their features ``x``."""
        raise NotImplementedError

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self._bound:
            raise RuntimeError(f"{type(self).__name__} has no graph: call bind_graph(graph) before forward")
        z = self.embed(self.node_features)
        z = F.relu(z) if self.latent_relu else z
        return z[torch.as_tensor(ids, device=z.device).long().reshape(-1)]


class NodeMLP(GraphEncoder):
    """The no-graph baseline: each node's own features through two layers."""

    def __init__(
        self, in_features: int, hidden: int = 64, num_features: int = 64, dropout: float = 0.5, latent_relu: bool = False
    ) -> None:
        super().__init__(in_features, hidden, num_features, dropout, latent_relu)
        self.lin1 = nn.Linear(self.in_features, self.hidden)
        self.lin2 = nn.Linear(self.hidden, self.num_features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(_linear(_dropout(x, self.dropout, self.training), self.lin1))
        return self.lin2(F.dropout(h, self.dropout, self.training))


class GCN(GraphEncoder):
    """Kipf & Welling's graph convolution, twice: ``Â (h W) + b`` with Â = D^-1/2 (A + I) D^-1/2.

    Its latent goes through a ReLU by default (``latent_relu``): see the module docstring."""

    def __init__(
        self, in_features: int, hidden: int = 64, num_features: int = 64, dropout: float = 0.5, latent_relu: bool = True
    ) -> None:
        super().__init__(in_features, hidden, num_features, dropout, latent_relu)
        self.lin1 = nn.Linear(self.in_features, self.hidden, bias=False)
        self.lin2 = nn.Linear(self.hidden, self.num_features, bias=False)
        self.bias1 = nn.Parameter(torch.zeros(self.hidden))
        self.bias2 = nn.Parameter(torch.zeros(self.num_features))

    def graph_buffers(self, graph: Graph) -> dict[str, torch.Tensor]:
        return {"adjacency": graph.normalized_adjacency()}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = _linear(_dropout(x, self.dropout, self.training), self.lin1)
        h = F.relu(torch.sparse.mm(self.adjacency, h) + self.bias1)
        h = self.lin2(F.dropout(h, self.dropout, self.training))
        return torch.sparse.mm(self.adjacency, h) + self.bias2


class GraphSAGE(GraphEncoder):
    """GraphSAGE with the mean aggregator, twice: ``h' = W_self h + W_neigh mean(h of the neighbours)``."""

    def __init__(
        self, in_features: int, hidden: int = 64, num_features: int = 64, dropout: float = 0.5, latent_relu: bool = False
    ) -> None:
        super().__init__(in_features, hidden, num_features, dropout, latent_relu)
        self.self1 = nn.Linear(self.in_features, self.hidden)
        self.neigh1 = nn.Linear(self.in_features, self.hidden, bias=False)
        self.self2 = nn.Linear(self.hidden, self.num_features)
        self.neigh2 = nn.Linear(self.hidden, self.num_features, bias=False)

    def graph_buffers(self, graph: Graph) -> dict[str, torch.Tensor]:
        return {"adjacency": graph.mean_adjacency()}

    def _layer(self, h: torch.Tensor, own: nn.Linear, neigh: nn.Linear) -> torch.Tensor:
        # aggregate after the linear map: the same result, and the sparse product runs at the narrow width
        return _linear(h, own) + torch.sparse.mm(self.adjacency, _linear(h, neigh))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self._layer(_dropout(x, self.dropout, self.training), self.self1, self.neigh1))
        return self._layer(F.dropout(h, self.dropout, self.training), self.self2, self.neigh2)


class GATLayer(nn.Module):
    """One graph attention layer (Velickovic et al.): per head, node i averages ``W h_j`` over its
    neighbours and itself with weights softmax_j(LeakyReLU(a_dst . W h_i + a_src . W h_j)).

    The attention lives on the edges, (E, heads), normalised per destination by a scatter softmax;
    messages are gathered per edge and summed with ``index_add_`` (memory O(edges x width), as PyG's
    GATConv: a sparse product per head was slower, its backward to the attention values costly).
    """

    def __init__(self, in_features: int, out_per_head: int, heads: int, concat: bool, dropout: float) -> None:
        super().__init__()
        self.heads, self.out_per_head, self.concat, self.dropout = heads, out_per_head, concat, dropout
        self.lin = nn.Linear(in_features, heads * out_per_head, bias=False)
        self.att_src = nn.Parameter(torch.empty(heads, out_per_head))
        self.att_dst = nn.Parameter(torch.empty(heads, out_per_head))
        self.bias = nn.Parameter(torch.zeros(heads * out_per_head if concat else out_per_head))
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)

    def attention(self, h: torch.Tensor, edges: torch.Tensor, num_nodes: int) -> torch.Tensor:
        """(E, heads) attention of each edge ``edges[:, e]`` = (destination, source), given ``h`` = W x (N, heads, d)."""
        dst, src = edges
        scores = (h * self.att_src).sum(-1)[src] + (h * self.att_dst).sum(-1)[dst]
        return edge_softmax(F.leaky_relu(scores, 0.2), dst, num_nodes)

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h = _linear(x, self.lin).view(n, self.heads, self.out_per_head)
        alpha = F.dropout(self.attention(h, edges, n), self.dropout, self.training)
        dst, src = edges
        out = h.new_zeros(h.shape).index_add_(0, dst, alpha.unsqueeze(-1) * h[src])
        out = out.reshape(n, -1) if self.concat else out.mean(dim=1)
        return out + self.bias


class GAT(GraphEncoder):
    """Two graph attention layers: ``heads`` heads of width hidden / heads, concatenated, then
    ``heads`` heads of width ``num_features``, averaged (the paper's output layer)."""

    def __init__(
        self,
        in_features: int,
        hidden: int = 64,
        num_features: int = 64,
        dropout: float = 0.5,
        heads: int = 4,
        latent_relu: bool = False,
    ) -> None:
        super().__init__(in_features, hidden, num_features, dropout, latent_relu)
        if int(heads) < 1 or self.hidden % int(heads):
            raise ConfigError(f"encoder GAT: heads={heads} must be at least 1 and divide hidden={hidden}")
        self.heads = int(heads)
        self.layer1 = GATLayer(self.in_features, self.hidden // self.heads, self.heads, concat=True, dropout=self.dropout)
        self.layer2 = GATLayer(self.hidden, self.num_features, self.heads, concat=False, dropout=self.dropout)

    def graph_buffers(self, graph: Graph) -> dict[str, torch.Tensor]:
        # (destination, source) pairs, every node attending to itself too, sorted: a coalesced COO index
        loops = torch.arange(graph.num_nodes).expand(2, graph.num_nodes)
        edges = torch.cat([graph.edge_index.flip(0), loops], dim=1)
        order = (edges[0] * graph.num_nodes + edges[1]).argsort()
        return {"edges": edges[:, order].contiguous()}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.layer1(_dropout(x, self.dropout, self.training), self.edges))
        return self.layer2(F.dropout(h, self.dropout, self.training), self.edges)
