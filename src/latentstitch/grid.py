"""Aggregate the cells of a sweep into grids (encoders x decoders), plots and W&B tables.

Works from files only (each job's ``metrics.json``), so it serves every launcher and can be rerun
after the fact: ``python scripts/grid.py <sweep dir>``.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

log = logging.getLogger(__name__)

# what can vary between cells besides the two axes; each distinct combination gets its own grid
SETTING_KEYS = ("translator", "scaling", "head", "anchors", "num_anchors", "anchor_seed", "dataset")


class EmptySweepError(RuntimeError):
    pass


# touched when a multirun starts; job dirs whose config is older belong to an earlier, other sweep
SWEEP_START_MARKER = ".sweep-start"


def mark_sweep_start(sweep_dir: str | Path) -> None:
    path = Path(sweep_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / SWEEP_START_MARKER).touch()


def current_job_dirs(sweep_dir: str | Path) -> list[Path]:
    """The sweep's job dirs, without those left by an earlier sweep into the same dir.

    Hydra rewrites ``<job>/.hydra/config.yaml`` whenever a job starts, resumed ones included, so a
    job dir whose config is older than the last sweep start was not part of that sweep (a wider
    sweep run earlier into the same ``hydra.sweep.dir``): its cells would be stale.
    """
    jobs = sorted(p for p in Path(sweep_dir).iterdir() if (p / ".hydra").is_dir())
    marker = Path(sweep_dir) / SWEEP_START_MARKER
    if not marker.exists():
        return jobs
    started = marker.stat().st_mtime_ns
    stale = [job for job in jobs if _config_mtime(job) < started]
    if stale:
        print(f"grid: left out {len(stale)} job dirs from an earlier sweep into this dir: {', '.join(job.name for job in stale)}")
    return [job for job in jobs if job not in stale]


def _config_mtime(job: Path) -> int:
    try:
        return (job / ".hydra" / "config.yaml").stat().st_mtime_ns
    except OSError:
        return (job / ".hydra").stat().st_mtime_ns


def read_cells(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job dir of the sweep; jobs without a readable metrics.json count as failed."""
    rows = []
    for job in current_job_dirs(sweep_dir):
        metrics = job / "metrics.json"
        try:
            row = json.loads(metrics.read_text())
        except (OSError, ValueError):
            row = {**_identity_from_job(job), "status": "failed", "error": "no metrics.json (job crashed or was killed)"}
        if row.get("status") == "ok" and (row.get("experiment", "cells") != "cells" or not {"encoder", "decoder"} <= row.keys()):
            continue  # an experiment that is not a stitching cell (casper, aggregation, similarity, ...) reports itself
        row.pop("experiment", None)
        rows.append({**row, "job": job.name})
    if not rows and not any((p / ".hydra").is_dir() for p in Path(sweep_dir).iterdir()):
        raise EmptySweepError(f"no cells in {sweep_dir}: no job directories with a .hydra/ folder (is this a sweep dir?)")
    return pd.DataFrame(rows)


def _identity_from_job(job: Path) -> dict[str, Any]:
    from latentstitch.cell import cell_identity

    try:
        return cell_identity(OmegaConf.load(job / ".hydra" / "config.yaml"))
    except Exception:  # noqa: BLE001 - a job that failed before writing its config
        return {}


def _settings(cells: pd.DataFrame) -> list[str]:
    """The settings that vary for some translator (the translator itself always names a grid)."""
    return [
        k for k in SETTING_KEYS if k in cells and cells.groupby("translator", dropna=False)[k].nunique(dropna=False).max() > 1
    ]


def _is_anchor_curve(cells: pd.DataFrame) -> bool:
    """The anchor count varies within one dataset (each dataset's own default is not a curve)."""
    by = [k for k in ("translator", "dataset") if k in cells]
    return "num_anchors" in cells and cells.groupby(by, dropna=False)["num_anchors"].nunique(dropna=False).max() > 1


def grid_name(setting: dict[str, Any], varying: list[str]) -> str:
    parts = [str(setting["translator"])] + [f"{k}={setting[k]}" for k in varying if k != "translator"]
    return "_".join(parts).replace("/", "-")


KIND_LABELS = {"acc": "accuracy", "top1": "retrieval top-1", "mse": "pixel MSE"}
TASK_KINDS = {"classification": "acc", "retrieval": "top1", "reconstruction": "mse"}


def score_kind(cells: pd.DataFrame) -> str:
    """The score a grid shows: the task's primary score (the cells' ``score`` column: ``acc`` for
    classification, ``top1`` for retrieval, ``mse`` for reconstruction, or whatever a task of the
    user's reports), which failed cells carry too, so a sweep in which every cell failed still has one."""
    if "score" in cells and cells["score"].notna().any():
        return str(cells["score"].dropna().iloc[0])
    if "task" in cells and cells["task"].notna().any():
        return TASK_KINDS.get(str(cells["task"].dropna().iloc[0]), "acc")
    return "mse" if "stitched_mse" in cells and cells["stitched_mse"].notna().any() else "acc"


def pivot(cells: pd.DataFrame, value: str, kind: str = "acc") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, failed) tables, rows = encoders, columns = decoders; the diagonal is the native score."""
    ok = cells[cells["status"] == "ok"]
    table = ok.pivot_table(index="encoder", columns="decoder", values=value, aggfunc="mean")
    native = ok.groupby("decoder")[f"native_{kind}"].mean() if f"native_{kind}" in ok else pd.Series(dtype=float)
    labels = sorted(set(cells["encoder"].dropna()) | set(cells["decoder"].dropna()))
    rows = [r for r in labels if r in set(cells["encoder"])]
    cols = [c for c in labels if c in set(cells["decoder"])]
    table = table.reindex(index=rows, columns=cols)
    for label in set(rows) & set(cols):
        if label in native and pd.notna(native[label]):  # retrieval has no native score
            table.loc[label, label] = native[label]
    failed = (
        cells[cells["status"] != "ok"]
        .assign(flag=1)
        .pivot_table(index="encoder", columns="decoder", values="flag", aggfunc="max")
    )
    failed = failed.reindex(index=rows, columns=cols).fillna(0).astype(bool)
    return table, failed


def plot_grid(table: pd.DataFrame, failed: pd.DataFrame, title: str, path: Path, kind: str = "acc",
              notes: dict[str, str] | None = None) -> Path:  # fmt: skip
    """Annotated heatmap; failed cells are marked 'failed', missing ones 'n/a'. ``notes`` adds a
    line under an encoder's name (its own accuracy and mean latent norm)."""
    n_rows, n_cols = table.shape
    values = table.to_numpy(dtype=float)
    notes = notes or {}
    fig, ax = plt.subplots(figsize=(1.4 * n_cols + 2.5 + (1.0 if notes else 0), 1.0 * n_rows + 1.8))
    if kind in ("acc", "top1"):
        im = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
        dark = lambda v: v < 0.6  # noqa: E731
    else:
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        lower_is_better = kind == "mse"  # pixel MSE; other task scores (R^2, ...) rise with quality
        im = ax.imshow(values, vmin=lo, vmax=hi, cmap="viridis_r" if lower_is_better else "viridis")
        dark = (lambda v: v > lo + 0.4 * (hi - lo)) if lower_is_better else (lambda v: v < lo + 0.6 * (hi - lo))  # noqa: E731
    with_note = lambda label: f"{label}\n{notes[label]}" if label in notes else label  # noqa: E731
    ax.set_xticks(range(n_cols), [with_note(c) for c in table.columns], rotation=30, ha="right")
    ax.set_yticks(range(n_rows), [with_note(r) for r in table.index])
    ax.set_xlabel("decoder (target space)")
    ax.set_ylabel("encoder (source space)")
    for i in range(n_rows):
        for j in range(n_cols):
            value = table.iat[i, j]
            text = "failed" if failed.iat[i, j] else ("n/a" if pd.isna(value) else f"{value:.3f}")
            color = "red" if failed.iat[i, j] else ("white" if pd.isna(value) or dark(value) else "black")
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=10, fontweight="bold" if i == j else None)
    ax.set_title(textwrap.fill(title, width=max(40, 12 * n_cols + 20)), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=KIND_LABELS.get(kind, kind))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_anchor_curve(cells: pd.DataFrame, path: Path, kind: str = "acc") -> Path:
    """Stitched score vs number of anchors, one line per translator (the paper's Figure 3)."""
    ok = cells[(cells["status"] == "ok")]
    fig, ax = plt.subplots(figsize=(6, 4))
    for translator, group in ok.groupby("translator"):
        curve = group.groupby("num_anchors")[f"stitched_{kind}"].agg(["mean", "std"]).sort_index()
        ax.errorbar(curve.index, curve["mean"], yerr=curve["std"].fillna(0), marker="o", capsize=3, label=translator)
    native = ok[f"native_{kind}"].mean()
    ax.axhline(native, color="grey", linestyle="--", label=f"native ({native:.3f})")
    ax.set_xscale("log")
    ax.set_xlabel("number of anchors")
    ax.set_ylabel(f"stitched {KIND_LABELS.get(kind, kind)}")
    if kind in ("acc", "top1"):
        ax.set_ylim(0, 1)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summarise(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean scores per setting over the off-diagonal cells (the stitching ones), failed cells counted."""
    keys = [k for k in SETTING_KEYS if k in cells]
    ok = cells[cells["status"] == "ok"]
    off = ok[ok["encoder"] != ok["decoder"]]
    off = off if len(off) else ok
    kinds = ("acc", "macro_f1", "top1", "top5", "mrr", "mse")
    kinds += tuple(k for k in (cells["score"].dropna().unique() if "score" in cells else ()) if k not in kinds)
    scores = [f"{part}_{kind}" for kind in kinds for part in ("native", "stitched", "untranslated")]
    extra = ("stitched_over_native", "latent_cosine", "latent_mse", "cka", "source_norm", "target_norm",
             "anchor_precision", "anchor_label_agreement", "projected_dim")  # fmt: skip
    extra += tuple(c for c in off if c.endswith("_true_anchors"))  # discovered anchors: the same method on true ones
    numeric = [c for c in (*scores, *extra) if c in off and off[c].notna().any()]
    summary = off.groupby(keys, dropna=False)[numeric].mean(numeric_only=True)
    summary["cells"] = off.groupby(keys, dropna=False).size()
    summary["failed"] = (
        cells[cells["status"] != "ok"].groupby(keys, dropna=False).size().reindex(summary.index).fillna(0).astype(int)
    )
    return summary.reset_index()


def write_report(sweep_dir: str | Path) -> dict[str, Any]:
    """Write grid.csv, summary.csv, grid_<setting>.png (+ untranslated, + anchor curve) into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    cells = read_cells(sweep_dir)
    if cells.empty:  # every job was an experiment that writes its own report
        return {"cells": cells, "summary": pd.DataFrame(), "plots": {}, "failed": cells, "spaces": pd.DataFrame()}
    cells.to_csv(sweep_dir / "grid.csv", index=False)
    failed_cells = cells[cells["status"] != "ok"]
    if len(failed_cells) == len(cells):  # nothing to plot or average: the failures are the report
        return {"cells": cells, "summary": pd.DataFrame(), "plots": {}, "failed": failed_cells}
    summary = summarise(cells)
    summary.to_csv(sweep_dir / "summary.csv", index=False)
    varying = _settings(cells)
    curve = _is_anchor_curve(cells)
    plots: dict[str, Path] = {}
    keys = [k for k in SETTING_KEYS if k in cells]
    spaces = space_table(cells)
    if len(spaces):
        spaces.to_csv(sweep_dir / "encoders.csv", index=False)
    for setting, group in cells.groupby(keys, dropna=False) if keys else [((), cells)]:
        if curve and group["encoder"].nunique() * group["decoder"].nunique() == 1:
            continue  # a curve, not a grid
        kind = score_kind(group)
        name = grid_name(dict(zip(keys, setting)), varying)
        table, failed = pivot(group, f"stitched_{kind}", kind)
        native = "; diagonal: native" if kind != "top1" else ""
        title = f"stitched {KIND_LABELS.get(kind, kind)} ({name}){native}"
        plots[f"grid_{name}"] = plot_grid(table, failed, title, sweep_dir / f"grid_{name}.png", kind, notes=_notes(spaces, group))
    datasets = list(cells["dataset"].dropna().unique()) if "dataset" in cells else [None]
    for dataset in datasets:
        part = cells if dataset is None else cells[cells["dataset"] == dataset]
        kind = score_kind(part)
        if f"untranslated_{kind}" not in part or not part[f"untranslated_{kind}"].notna().any() and kind == "top1":
            continue
        suffix = "" if len(datasets) == 1 else f"_{dataset}"
        table, failed = pivot(part.drop_duplicates(["encoder", "decoder"]), f"untranslated_{kind}", kind)
        title = f"untranslated {KIND_LABELS.get(kind, kind)}{'' if dataset is None else f' ({dataset})'}" + (
            "; diagonal: native" if kind != "top1" else ""
        )
        plots[f"grid_untranslated{suffix}"] = plot_grid(table, failed, title, sweep_dir / f"grid_untranslated{suffix}.png", kind)
    if curve:
        plots["anchors_curve"] = plot_anchor_curve(cells, sweep_dir / "anchors_curve.png", score_kind(cells))
    return {"cells": cells, "summary": summary, "plots": plots, "failed": failed_cells, "spaces": spaces}


def space_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per space (and head): its own accuracy (the native score of the decoder trained
    on it) and its mean latent norm; the paper sets these beside the stitching grid (Figure 5)."""
    ok = cells[cells["status"] == "ok"]
    if "target_norm" not in ok or not len(ok):
        return pd.DataFrame()
    by = [k for k in ("dataset", "decoder", "head") if k in ok]
    agg = {"mean_norm": ("target_norm", "mean")}
    if "native_acc" in ok and ok["native_acc"].notna().any():
        agg["own_acc"] = ("native_acc", "mean")
    table = ok.groupby(by, dropna=False).agg(**agg).reset_index().rename(columns={"decoder": "space"})
    sources = ok.groupby([k for k in ("dataset", "encoder") if k in ok], dropna=False)["source_norm"].mean()
    missing = [(d, e) for (d, e) in sources.index if not ((table["dataset"] == d) & (table["space"] == e)).any()]
    extra = pd.DataFrame([{"dataset": d, "space": e, "mean_norm": sources[(d, e)]} for d, e in missing])
    return pd.concat([table, extra], ignore_index=True) if len(extra) else table


def _notes(spaces: pd.DataFrame, group: pd.DataFrame) -> dict[str, str]:
    if not len(spaces):
        return {}
    rows = spaces[spaces["dataset"].isin(group["dataset"].unique())] if "dataset" in group else spaces
    head = group["head"].iloc[0] if "head" in group else None
    notes = {}
    for label, part in rows.groupby("space"):
        own = part[part["head"] == head]["own_acc"] if "own_acc" in part and "head" in part else pd.Series(dtype=float)
        acc = f"acc {own.iloc[0]:.2f}, " if len(own) and pd.notna(own.iloc[0]) else ""
        notes[label] = f"{acc}|z| {part['mean_norm'].mean():.2g}"
    return notes


def log_report_to_wandb(report: dict[str, Any], logger_cfg: DictConfig, group: str, sweep_dir: Path) -> None:
    """One extra W&B run in the sweep's group holding the grid table, the summary and the plots."""
    import wandb

    from latentstitch.logging import wandb_offline_by_default

    wandb_offline_by_default()
    run = wandb.init(
        project=logger_cfg.get("project", "latentstitch"), group=group, name=f"{group}-grid", job_type="grid", dir=str(sweep_dir)
    )
    cells = report["cells"].astype(object).where(report["cells"].notna(), None)
    run.log({"grid": wandb.Table(dataframe=cells.astype(str)), "summary": wandb.Table(dataframe=report["summary"].astype(str))})
    run.log({name: wandb.Image(str(path)) for name, path in report["plots"].items()})
    run.finish()


def report_and_exit_code(sweep_dir: str | Path, logger_cfg: DictConfig | None = None) -> int:
    """Write the report; 0 if every cell ran, 1 if some failed (they are marked), 2 if there are no cells."""
    from latentstitch.logging import is_wandb

    try:
        report = write_report(sweep_dir)
    except EmptySweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a broken report must fail the sweep, loudly
        log.exception("grid report failed")
        print(f"error: could not build the grid of {sweep_dir}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    cells, failed = report["cells"], report["failed"]
    if cells.empty:
        return 0
    plots = ", ".join(p.name for p in report["plots"].values()) or "none"
    print(
        f"grid: {len(cells)} cells ({len(cells) - len(failed)} ok, {len(failed)} failed) -> {Path(sweep_dir) / 'grid.csv'}; plots: {plots}"
    )
    if len(report["summary"]):
        print(report["summary"].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if "resumed" in cells:
        print(f"resumed: {int(cells['resumed'].fillna(False).astype(bool).sum())} cells kept from an earlier run of this sweep")
    if logger_cfg is not None and is_wandb(logger_cfg):
        try:
            log_report_to_wandb(report, logger_cfg, Path(sweep_dir).name, Path(sweep_dir))
        except Exception as e:  # noqa: BLE001 - the files are written; say what did not reach W&B
            print(f"error: the grid was written but not logged to W&B: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    for _, row in failed.iterrows():
        print(
            f"error: cell {row.get('encoder')} -> {row.get('decoder')} ({row.get('translator')}) failed: {row.get('error')}",
            file=sys.stderr,
        )
    return 1 if len(failed) else 0


class GridCallback(Callback):
    """Hydra callback: at the end of a multirun, build the sweep's grids; exit non-zero if cells failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        mark_sweep_start(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns an exception raised here into a warning and exits 0; SystemExit goes through
        try:
            code = report_and_exit_code(config.hydra.sweep.dir, config.get("logger"))
        except BaseException as e:  # noqa: BLE001
            print(f"error: grid callback failed: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
        if code:
            sys.exit(code)
