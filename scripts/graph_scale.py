"""A graph encoder on the full WordNet noun graph: build time, seconds per training step, peak memory.

    .venv/bin/python scripts/graph_scale.py                       # GCN, 82,115 nodes, 20 full-batch steps
    .venv/bin/python scripts/graph_scale.py --encoder gat --steps 5

Memory should grow with nodes + edges (sparse propagation, sparse bag-of-words features), never
nodes squared: a dense 82k x 82k float32 matrix alone would take 27 GB. Peak resident memory is
the process's (``resource.getrusage``), so it includes torch itself (about 0.3 GB).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch


def main() -> None:
    from latentstitch.data.graphs import load_wordnet_graph
    from latentstitch.encoders import graph as graphs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="gcn", choices=["gcn", "sage", "gat", "node_mlp"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ds = load_wordnet_graph(tempfile.mkdtemp(), classes="all", max_nodes=None)
    g = ds.views["graph"]
    built = time.perf_counter() - t0
    cls = {"gcn": graphs.GCN, "sage": graphs.GraphSAGE, "gat": graphs.GAT, "node_mlp": graphs.NodeMLP}[args.encoder]
    torch.manual_seed(0)
    model = cls(g.num_features)
    model.bind_graph(g)
    head = torch.nn.Linear(model.out_dim, ds.num_classes)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=0.01, weight_decay=0.05)
    train, test = ds.splits["train"], ds.splits["test"]
    t0 = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(model.train()(train)), ds.labels[train])
        loss.backward()
        opt.step()
    per_step = (time.perf_counter() - t0) / args.steps
    with torch.no_grad():
        acc = float((head(model.eval()(test)).argmax(1) == ds.labels[test]).float().mean())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"{args.encoder} on {g.num_nodes:,} nodes, {g.num_edges:,} edges, {g.num_features} sparse={g.features.is_sparse} features, "
        f"{ds.num_classes} classes: graph built in {built:.1f} s, {per_step:.2f} s per full-batch step ({args.threads} threads), "
        f"test accuracy after {args.steps} steps {acc:.3f}, peak memory {peak_gb:.2f} GB"
    )


if __name__ == "__main__":
    main()
