"""Does the unsupervised translator's pair-free confidence predict its true stitched score?

    .venv/bin/python scripts/confidence_vs_score.py outputs/multirun/<sweep>/grid.csv [more grid.csv ...]

Reads the unsupervised cells of the given grids (any dataset, classification or retrieval) and
prints each cell's confidences (``confidence_mutual_nn``, ``confidence_restarts``: fit on the
unpaired train halves, no pairs) beside its true score (stitched / native accuracy, or top-1 for
retrieval cells), then the Spearman correlation of each confidence with the score and, for the
threshold on ``confidence_mutual_nn`` that best separates cells that work (score >= 0.8) from the
others, how many cells it gets right.
"""

from __future__ import annotations

import argparse

import pandas as pd


def score(row: pd.Series) -> float:
    if "stitched_over_native" in row and pd.notna(row.get("stitched_over_native")):
        return float(row["stitched_over_native"])
    return float(row["stitched_top1"])


def main() -> None:
    from scipy.stats import spearmanr

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grids", nargs="+")
    ap.add_argument("--works", type=float, default=0.8, help="a cell 'works' at this score or above")
    args = ap.parse_args()
    frames = [pd.read_csv(path).assign(grid=path) for path in args.grids]
    cells = pd.concat(frames, ignore_index=True)
    cells = cells[cells["translator"].astype(str).str.startswith("unsupervised") & (cells["status"] == "ok")].copy()
    if cells.empty:
        raise SystemExit("error: no unsupervised cells with status ok in these grids")
    cells["score"] = cells.apply(score, axis=1)
    columns = ["dataset", "encoder", "decoder", "translator", "confidence_mutual_nn", "confidence_restarts", "score"]
    print(cells[columns].sort_values("confidence_mutual_nn").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for name in ("confidence_mutual_nn", "confidence_restarts"):
        ok = cells[[name, "score"]].dropna()
        rho = spearmanr(ok[name], ok["score"]).statistic if len(ok) > 2 else float("nan")
        print(f"Spearman({name}, score) = {rho:.3f} over {len(ok)} cells")
    works = cells["score"] >= args.works
    best = max(
        ((float(((cells["confidence_mutual_nn"] >= t) == works).sum()), t) for t in cells["confidence_mutual_nn"]), default=(0, 0)
    )
    print(
        f"cells that work (score >= {args.works}): {int(works.sum())} of {len(cells)}; "
        f"confidence_mutual_nn >= {best[1]:.3f} classifies {int(best[0])} of {len(cells)} correctly"
    )


if __name__ == "__main__":
    main()
