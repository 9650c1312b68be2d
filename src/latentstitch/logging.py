"""Run outputs: the experiment logger (W&B offline by default, CSV, or none), atomic JSON and CSV
writers, image strips and the console table of a cell."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from latentstitch.errors import write_error

log = logging.getLogger(__name__)


def is_wandb(logger_cfg: DictConfig | None) -> bool:
    return bool(logger_cfg) and "wandb" in str(logger_cfg.get("_target_", "")).lower()


def wandb_offline_by_default() -> None:
    """W&B runs offline unless the user set WANDB_MODE, so nothing ever waits on a network."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")


def make_logger(logger_cfg: DictConfig | None, group: str | None = None) -> Any:
    """The Lightning logger from the ``logger`` group, or False for ``logger=none``.

    ``group`` (the sweep's name in a multirun) puts all cells of a sweep in one W&B group.
    """
    if not logger_cfg or "_target_" not in logger_cfg:
        return False
    if is_wandb(logger_cfg):
        wandb_offline_by_default()
        Path(logger_cfg.save_dir).mkdir(parents=True, exist_ok=True)
        if group and not logger_cfg.get("group"):
            return instantiate(logger_cfg, group=group)
    return instantiate(logger_cfg)


def finish_logger(logger: Any) -> None:
    if not logger:
        return
    logger.finalize("success")
    if type(logger).__name__ == "WandbLogger":
        import wandb

        wandb.finish()


OUTPUT_SETTING = "hydra.run.dir (hydra.sweep.dir in a multirun)"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: never leaves a half-written file behind (a failed write is one WriteError)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e, OUTPUT_SETTING) from e


def write_cells_csv(path: Path, cells: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for cell in cells for k in cell))
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(cells)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e, OUTPUT_SETTING) from e


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def save_image_strip(rows: dict[str, Any], path: Path, mean: list[float], std: list[float], count: int = 10) -> Path:
    """One row of ``count`` images per entry of ``rows`` (originals, native, stitched, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    fig, axes = plt.subplots(len(rows), count, figsize=(count * 0.9, len(rows) * 1.0 + 0.3), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        shown = (images[:count].float() * s + m).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        for c in range(count):
            ax = axes[r][c]
            ax.imshow(shown[c].squeeze(-1) if shown.shape[-1] == 1 else shown[c], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


SCORE_LABELS = {"acc": "accuracy", "macro_f1": "macro-F1", "top1": "top-1", "top5": "top-5", "mrr": "MRR", "mse": "pixel MSE"}


def format_cell(cell: dict[str, Any]) -> str:
    """A small table for the console: one row per set of latents scored, one column per score
    (whatever the cell's task reports)."""
    scores = [k.removeprefix("stitched_") for k in cell
              if k.startswith("stitched_") and not k.endswith("_true_anchors") and k != "stitched_over_native"]  # fmt: skip
    task = cell.get("task", "classification")
    head = f"  head={cell['head']}" if task == "classification" else ""
    pool = f"  pool {cell['pool']}" if "pool" in cell else ""
    lines = [
        f"{'cell' if task == 'classification' else f'{task} cell'}: {cell['encoder']} -> {cell['decoder']}  "
        f"translator={cell['translator']}{head}  anchors={cell['num_anchors']} ({cell['anchors']})  "
        f"dims {cell['source_dim']} -> {cell['target_dim']}{pool}",
        f"  {'':<13}" + "".join(f"{SCORE_LABELS.get(k, k):>10}" for k in scores),
    ]
    for name in ("native", "stitched", "untranslated"):
        if any(cell.get(f"{name}_{k}") is not None for k in scores) or name != "native":
            lines.append(f"  {name:<13}" + "".join(f"{_fmt(cell.get(f'{name}_{k}')):>10}" for k in scores))
    ratio = f"stitched/native {_fmt(cell['stitched_over_native'])}   " if "stitched_over_native" in cell else ""
    lines.append(
        f"  {ratio}latent MSE {_fmt(cell['latent_mse'])}   latent cosine {_fmt(cell['latent_cosine'])}   CKA {_fmt(cell['cka'])}"
    )
    return "\n".join(lines)
