"""Does the unsupervised translator's pair-free confidence predict its true stitched score?

    .venv/bin/python scripts/confidence_vs_score.py outputs/multirun/<sweep>/grid.csv [more grid.csv ...]

Reads the unsupervised cells of the given grids (any dataset, classification or retrieval) and
prints each cell's confidences (``confidence_mutual_nn``, ``confidence_gram``,
``confidence_restarts``: fit on the unpaired train halves, no pairs) beside its true score
(stitched / native accuracy, or top-1 for retrieval cells), then the Spearman correlation of each
confidence with the score and, for the threshold on ``confidence_mutual_nn`` that best separates
cells that work (score >= 0.8) from the others, how many cells it gets right. ``cka`` (linear CKA
of the two spaces on the test pairs, which the 2026 follow-up to mini-vec2vec reports to predict
success) is shown beside them as a reference that *does* need pairs.
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
    ap.add_argument("--diagonal", action="store_true", help="keep the cells whose encoder is the decoder's (trivially aligned)")
    args = ap.parse_args()
    frames = [pd.read_csv(path).assign(grid=path) for path in args.grids]
    cells = pd.concat(frames, ignore_index=True)
    cells = cells[cells["translator"].astype(str).str.startswith("unsupervised") & (cells["status"] == "ok")].copy()
    if not args.diagonal:
        cells = cells[cells["encoder"] != cells["decoder"]]
    if cells.empty:
        raise SystemExit("error: no unsupervised cells with status ok in these grids")
    cells["score"] = cells.apply(score, axis=1)
    names = [
        c for c in ("confidence_mutual_nn", "confidence_gram", "confidence_restarts", "confidence_stability", "cka") if c in cells
    ]
    columns = ["dataset", "encoder", "decoder", "translator", *names, "score"]
    print(cells[columns].sort_values("confidence_mutual_nn").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nSpearman correlation with the score (cka needs pairs; the others do not), over {len(cells)} cells:")
    groups = [("all", cells), *((str(d), part) for d, part in cells.groupby("dataset"))]
    table = {}
    for label, part in groups:
        row = {}
        for name in names:
            ok = part[[name, "score"]].dropna()
            row[name] = spearmanr(ok[name], ok["score"]).statistic if len(ok) > 2 and ok[name].nunique() > 1 else float("nan")
        row["cells"] = len(part)
        row["work"] = int((part["score"] >= args.works).sum())
        table[label] = row
    print(pd.DataFrame(table).T.to_string(float_format=lambda v: f"{v:.3f}"))
    for name in names:
        if name == "cka":
            continue
        ok = cells[[name, "score"]].dropna()
        works = ok["score"] >= args.works
        right, threshold = max(((int(((ok[name] >= t) == works).sum()), t) for t in ok[name]), default=(0, 0.0))
        print(f"{name} >= {threshold:.3f} tells the cells that work (score >= {args.works}) from the others "
              f"in {right} of {len(ok)} cells")  # fmt: skip


if __name__ == "__main__":
    main()
