"""One cell of a stitching grid: ``python run.py encoder=vit decoder=resnet translator=ortho``.

The cell (:class:`latentstitch.cell.Cell`) is built from the config and checked before anything
is trained or written; then its two spaces come from the cache (trained and encoded on a miss),
its task scores it, and the outputs are written: ``metrics.json`` (the cell: identity and scores;
the grid of a sweep is made from these), ``results.csv`` (the same, one row), the task's pictures
and the logger's run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from latentstitch.cache import global_rank
from latentstitch.cell import Cell, cell_identity
from latentstitch.data import load_dataset
from latentstitch.encoders import SpaceBuilder
from latentstitch.encoders.training import quiet_lightning
from latentstitch.experiments.outputs import RunOutputs
from latentstitch.export import check_export, write_export
from latentstitch.logging import format_cell
from latentstitch.runtime import ensure_writable


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the cell described by ``cfg``; returns (and writes) the cell's identity and scores.

    Everything that can be checked without training (settings, dataset, task, anchor count,
    whether the method can map the two widths) is checked before anything is written.
    """
    quiet_lightning()
    ensure_writable(cfg.paths.cache_dir, "paths.cache_dir")
    items = load_dataset(cfg.dataset, cfg.paths.data_dir)  # first: it resolves dataset.anchors=auto, which anchors.num reads
    cell = Cell.from_config(cfg)
    builder = SpaceBuilder.from_config(cfg, items)
    cell.check(builder)
    rank0 = global_rank() == 0
    with RunOutputs(cfg, group=_sweep_name()) as out:
        export = check_export(cfg, cell, builder, out.dir)  # +export=stitched: before anything trains
        builder.logger = out.logger
        scores, images = cell.evaluate(builder, out.dir if rank0 else None)
        result = {**cell_identity(cfg), **scores}
        if export is not None and rank0:
            result["export_dir"] = str(write_export(export, cfg, cell, builder, result))
        return out.finish(result, [result], images, console=format_cell(result), write=rank0)


def _sweep_name() -> str | None:
    """The sweep's dir name in a multirun: all cells of a sweep form one W&B group."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return None
