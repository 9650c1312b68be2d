"""Compare two sweeps cell by cell: are their grid.csv files the same cells with the same scores?

    python scripts/compare_grids.py <before sweep dir or grid.csv> <after sweep dir or grid.csv>

Cells are matched on (encoder, decoder, translator, anchors, num_anchors); every column both
files have is compared exactly (NaN equals NaN), except where the run happened (``job``) and the
config hash (which changes whenever the config's layout does). Prints the columns only one side
has and each differing column with its number of differing cells; exit code 1 if any differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

KEY = ["encoder", "decoder", "translator", "anchors", "num_anchors"]
SKIP = {"config_hash", "job"}


def load(path: str) -> pd.DataFrame:
    p = Path(path)
    return pd.read_csv(p / "grid.csv" if p.is_dir() else p).set_index(KEY).sort_index()


def main(before: str, after: str) -> int:
    a, b = load(before), load(after)
    if not a.index.equals(b.index):
        print(f"error: the two sweeps hold different cells ({len(a)} vs {len(b)})", file=sys.stderr)
        return 1
    common = [c for c in a.columns if c in b.columns and c not in SKIP]
    differing = {c: int((~((a[c] == b[c]) | (a[c].isna() & b[c].isna()))).sum()) for c in common}
    differing = {c: n for c, n in differing.items() if n}
    print(f"{len(a)} cells, {len(common)} columns compared; only before: {sorted(set(a.columns) - set(b.columns) - SKIP)}; "
          f"only after: {sorted(set(b.columns) - set(a.columns) - SKIP)}; differing: {differing or 'none'}")  # fmt: skip
    return 1 if differing else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
