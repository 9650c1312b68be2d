"""Do two spaces' shapes single out their correspondence? A Gromov-Wasserstein check on true pairs.

    .venv/bin/python scripts/gw_identifiability.py <source test space> <target test space> [--points 1000]

Each argument is a cached space entry (``.cache/latentstitch/space/<key>``, the key printed in a
run's log as ``cache hit: space use:fr test [<key>]``) or its ``tensors.safetensors``; the two must
hold the same items in the same order (a cell's test spaces do). On ``--points`` of those pairs it
prints the correlation of the two cosine-distance matrices, the Gromov-Wasserstein loss (POT's
square loss, distances scaled to [0, 1]) of the true correspondence, and the loss and share of true
pairs of the coupling an entropic GW solver reaches from the uniform coupling, annealing epsilon
from 0.1 to 3e-4. Anchor-free translation can only work where the truth is clearly the best
coupling: when an unrelated coupling reaches about the same loss, nothing without pairs can tell
the translation from a wrong one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def load(path: str) -> torch.Tensor:
    from safetensors.torch import load_file

    p = Path(path)
    file = p / "tensors.safetensors" if p.is_dir() else p
    if not file.is_file():
        raise SystemExit(f"error: {file} is not a cached space (expected .cache/latentstitch/space/<key>)")
    return load_file(str(file))["latents"].double()


def distances(z: torch.Tensor) -> np.ndarray:
    z = F.normalize(z - z.mean(dim=0), dim=1)
    d = (1 - z @ z.T).clamp_min(0)
    return (d / d.max()).numpy()


def main() -> None:
    import ot

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("target")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    x, y = load(args.source), load(args.target)
    if len(x) != len(y):
        raise SystemExit(f"error: the spaces hold {len(x)} and {len(y)} items: not the same items")
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))[: args.points]
    c1, c2 = distances(x[pick]), distances(y[pick])
    m = len(pick)
    p = np.full(m, 1.0 / m)
    const, h1, h2 = ot.gromov.init_matrix(c1, c2, p, p, "square_loss")

    def loss(coupling: np.ndarray) -> float:
        return float(ot.gromov.gwloss(const, h1, h2, coupling))

    print(f"{m} true pairs: correlation of the cosine distances {np.corrcoef(c1.ravel(), c2.ravel())[0, 1]:.3f}")
    print(f"GW loss of the true correspondence: {loss(np.eye(m) / m):.5f}")
    coupling, start = None, time.time()
    for eps in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4):
        coupling = ot.gromov.entropic_gromov_wasserstein(c1, c2, p, p, "square_loss", epsilon=eps, max_iter=100, G0=coupling)
        print(f"from the uniform coupling, epsilon {eps:g}: GW loss {loss(coupling):.5f}, "
              f"mass on true pairs {np.trace(coupling):.3f}, {time.time() - start:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
