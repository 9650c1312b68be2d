"""Anchor-free translation against anchored ortho, cell by cell: how close does it come?

    .venv/bin/python scripts/anchor_free_vs_ortho.py <ortho sweep> <unsupervised sweep> [more ...]

Each argument is a sweep dir (or its grid.csv). The first holds the anchored reference cells;
every unsupervised cell of the others (one column per distinct translator label, e.g.
``unsupervised(combine=best)``) is put beside the reference cell of the same encoder -> decoder.
Prints the score (stitched accuracy for classification cells, stitched top-1 for retrieval cells),
its ratio to the reference, the pair-free confidence ``confidence_mutual_nn`` and, per variant,
the ratios as one variant x cell table, and, per variant, the mean ratio and how many
off-diagonal cells reach 0.8 of the reference (the issue's goal).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def load(path: str) -> pd.DataFrame:
    p = Path(path)
    grid = pd.read_csv(p / "grid.csv" if p.is_dir() else p)
    grid = grid[grid["status"] == "ok"].copy()
    grid["score"] = grid["stitched_acc"] if "stitched_acc" in grid else grid["stitched_top1"]
    return grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference")
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--goal", type=float, default=0.8, help="the ratio to the reference a cell should reach")
    args = ap.parse_args()
    ref = load(args.reference).set_index(["encoder", "decoder"])["score"]
    cells = pd.concat([load(v) for v in args.variants], ignore_index=True)
    cells = cells[cells["translator"].astype(str).str.startswith("unsupervised")]
    if cells.empty:
        raise SystemExit("error: no unsupervised cells with status ok in the variant sweeps")
    cells = cells[cells["encoder"] != cells["decoder"]].copy()
    cells["reference"] = [ref.get((e, d), float("nan")) for e, d in zip(cells["encoder"], cells["decoder"])]
    cells["ratio"] = cells["score"] / cells["reference"]
    columns = ["encoder", "decoder", "translator", "reference", "score", "ratio", "confidence_mutual_nn"]
    columns += [c for c in ("confidence_gram", "confidence_restarts") if c in cells]
    fmt = {"float_format": lambda v: f"{v:.3f}"}
    print(cells[columns].sort_values(["encoder", "decoder", "translator"]).to_string(index=False, **fmt))
    summary = cells.groupby("translator").agg(
        cells=("ratio", "size"), mean_ratio=("ratio", "mean"), min_ratio=("ratio", "min"),
        at_goal=("ratio", lambda r: int((r >= args.goal).sum())),
    )  # fmt: skip
    print("\nratio to the reference, variant x cell:")
    wide = cells.assign(cell=cells["encoder"].str.split(":").str[0] + "->" + cells["decoder"].str.split(":").str[0])
    print(wide.pivot_table(index="translator", columns="cell", values="ratio").to_string(**fmt))
    print(f"\nper variant (off-diagonal cells; at_goal: ratio >= {args.goal}):")
    print(summary.to_string(**fmt))


if __name__ == "__main__":
    main()
