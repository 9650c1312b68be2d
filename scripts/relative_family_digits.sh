#!/usr/bin/env bash
# The relative-representation family on digits (mlp <-> cnn, 300 anchors): every number of the
# docs/results.md paragraph "Measured on digits (mlp <-> cnn, 300 anchors ...". Runs the sweeps below into
# $OUT (default outputs/relative_family_digits), then prints one compact table from their
# grid.csv / summary.csv / results files. Scores are the mean stitched accuracy of the two
# cross-architecture cells (mlp -> cnn, cnn -> mlp); the diagonal cells are in grid.csv too.
#
#   bash scripts/relative_family_digits.sh               # 14-19 min on 2 busy cores (19 with a cold cache)
#   OUT=/tmp/rf bash scripts/relative_family_digits.sh   # elsewhere; a rerun into the same $OUT resumes
#   TABLE_ONLY=1 bash scripts/relative_family_digits.sh  # only print the table of an earlier run
#
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/relative_family_digits}
COMMON=(dataset=digits logger=none trainer.enable_progress_bar=false)
PAIRS=(encoder=mlp,cnn decoder=mlp,cnn)

sweep() {  # sweep <name> <overrides...>: one multirun into $OUT/<name>
  local name=$1
  shift
  echo "== $name: python run.py -m ${COMMON[*]} $*" >&2
  "$PY" run.py -m "${COMMON[@]}" "$@" "hydra.sweep.dir=$OUT/$name" >"$OUT/$name.log" 2>&1 \
    || { echo "sweep $name failed, see $OUT/$name.log" >&2; tail -20 "$OUT/$name.log" >&2; exit 1; }
}

if [[ -z "${TABLE_ONLY:-}" ]]; then
  mkdir -p "$OUT"
  start=$SECONDS
  # the family side by side
  sweep family "${PAIRS[@]}" translator=ortho,inverse_relative,unsupervised,relative
  # inverse relative projection without its ridge; the anchor-free translator with mini-vec2vec's 20 clusters
  sweep inverse_relative_ridge0 "${PAIRS[@]}" translator=inverse_relative translator.ridge=0
  sweep unsupervised_clusters20 "${PAIRS[@]}" translator=unsupervised translator.clusters=20
  # product of invariances: each projection alone, all four concatenated, summed, mlp-summed
  sweep invariances "${PAIRS[@]}" translator=relative 'translator.projections=[euclidean],[l1],[linf],[cosine,euclidean,l1,linf]'
  sweep invariances_agg "${PAIRS[@]}" translator=relative 'translator.projections=[cosine,euclidean,l1,linf]' translator.aggregation=sum,mlp_sum
  # anchor strategies; bootstrap grows 15 true pairs to 300 and reports precision and the true-anchor score
  sweep anchors "${PAIRS[@]}" translator=ortho,relative anchors=random,kmeans,fps,bootstrap
  # the bootstrap's 15 seeds alone (anchors=random with seed 0 draws the same 15 samples)
  sweep seeds_only "${PAIRS[@]}" translator=ortho,relative anchors=random anchors.num=15
  # similarity analysis (mlp vs cnn, ortho after translation)
  echo "== similarity: python run.py +analysis=similarity ${COMMON[*]}" >&2
  "$PY" run.py +analysis=similarity "${COMMON[@]}" "hydra.run.dir=$OUT/similarity" >"$OUT/similarity.log" 2>&1 \
    || { echo "similarity failed, see $OUT/similarity.log" >&2; exit 1; }
  # relative latent space aggregation: mlp encoders on disjoint classes / disjoint samples, the paper's cosine / centred
  # (single runs: the grid callback of a multirun takes aggregation's metrics.json for a stitching cell and fails)
  for split in classes samples; do
    for scaling in none center; do
      echo "== aggregation: python run.py +experiment=aggregation ${COMMON[*]} encoder=mlp aggregation.split=$split aggregation.scaling=$scaling" >&2
      "$PY" run.py +experiment=aggregation "${COMMON[@]}" encoder=mlp "aggregation.split=$split" "aggregation.scaling=$scaling" \
        "hydra.run.dir=$OUT/aggregation/$split-$scaling" >"$OUT/aggregation-$split-$scaling.log" 2>&1 \
        || { echo "aggregation $split $scaling failed, see $OUT/aggregation-$split-$scaling.log" >&2; exit 1; }
    done
  done
  echo "all sweeps done in $((SECONDS - start)) s" >&2
fi

"$PY" - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1])


def cross(name):
    """Off-diagonal ok cells of a sweep's grid.csv (checked against its summary.csv)."""
    grid = pd.read_csv(out / name / "grid.csv")
    bad = grid[grid["status"] != "ok"]
    if len(bad):
        raise SystemExit(f"{name}: {len(bad)} failed cells")
    cells = grid[grid["encoder"] != grid["decoder"]]
    summary = pd.read_csv(out / name / "summary.csv")
    mine = cells.groupby(["translator", "anchors"])["stitched_acc"].mean()
    theirs = summary.set_index(["translator", "anchors"])["stitched_acc"]
    assert (mine - theirs.reindex(mine.index)).abs().max() < 1e-12, (mine, theirs)
    return cells


def mean(cells, column, **where):
    for k, v in where.items():
        cells = cells[cells[k] == v]
    assert len(cells) == 2, (where, len(cells))  # mlp -> cnn and cnn -> mlp
    return cells[column].mean()


rows = []
fam = cross("family")
for t in ("ortho", "inverse_relative", "unsupervised", "relative"):
    rows.append(("family", t, mean(fam, "stitched_acc", translator=t)))
for name in ("inverse_relative_ridge0", "unsupervised_clusters20"):
    cells = cross(name)
    rows.append(("family", cells["translator"].iloc[0], mean(cells, "stitched_acc")))
for name in ("invariances", "invariances_agg"):
    cells = cross(name)
    for t in cells["translator"].unique():
        rows.append(("invariances", t, mean(cells, "stitched_acc", translator=t)))
print("stitched accuracy, mean of mlp -> cnn and cnn -> mlp (digits, 300 anchors unless said)")
print(pd.DataFrame(rows, columns=["group", "setting", "stitched_acc"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))

anchors = cross("anchors")
seeds = cross("seeds_only")
table = []
for a in ("random", "kmeans", "fps", "bootstrap-seeds=15"):
    row = {"anchors": a}
    for t in ("ortho", "relative"):
        row[t] = mean(anchors, "stitched_acc", translator=t, anchors=a)
        if a.startswith("bootstrap"):
            row[f"{t}_true_anchors"] = mean(anchors, "stitched_acc_true_anchors", translator=t, anchors=a)
            row["precision"] = mean(anchors, "anchor_precision", translator=t, anchors=a)
            row["same_class"] = mean(anchors, "anchor_label_agreement", translator=t, anchors=a)
    table.append(row)
table.append({"anchors": "the 15 seeds alone", **{t: mean(seeds, "stitched_acc", translator=t) for t in ("ortho", "relative")}})
print("\nanchor strategies (300 anchors; *_true_anchors: the same translator on the true partners of the discovered pairs)")
print(pd.DataFrame(table).to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))

sim = pd.read_csv(out / "similarity" / "similarity.csv")
pair = sim[(sim["source"] != sim["target"])]
cols = ["linear_cka", "rbf_cka", "mutual_knn", "raw_top1", "top1"]
print("\nsimilarity (mlp vs cnn on the test split, at most analysis.samples=1000 items; raw_top1 untranslated, top1 after ortho)")
print(pair[["source", "target", *cols]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
print("mean " + "  ".join(f"{c} {pair[c].mean():.3f}" for c in cols))

agg = []
for job in sorted((out / "aggregation").iterdir()):
    metrics = job / "metrics.json"
    if not metrics.is_file():
        continue
    m = json.loads(metrics.read_text())
    acc = {r["representation"]: r["accuracy"] for r in m["results"]}
    agg.append({"split": m["settings"]["split"], "scaling": m["settings"]["scaling"], "end_to_end": acc["end_to_end_absolute"],
                "concat": acc["concat_absolute"], "aggregated_relative": acc["aggregated_relative"],
                **{k: v for k, v in acc.items() if k.startswith("task")}})
print("\naggregation (mlp, 2 tasks, test accuracy)")
print(pd.DataFrame(agg).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
EOF
