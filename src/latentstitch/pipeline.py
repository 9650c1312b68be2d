"""One run = one cell: data -> spaces -> anchors -> decoder -> translator -> scores -> outputs."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from latentstitch.anchors import ANCHORS, AnchorStrategy
from latentstitch.cache import Cache, global_rank
from latentstitch.data import load_splits
from latentstitch.decoders import get_decoder
from latentstitch.encoders import SpaceBuilder
from latentstitch.errors import ConfigError
from latentstitch.logging import finish_logger, format_cell, log_run, make_logger, write_cells_csv, write_json
from latentstitch.stitching import evaluate_cell
from latentstitch.translation import TRANSLATORS, TranslationError, Translator

log = logging.getLogger(__name__)


def _registry_name(obj: object, registry: dict[str, type]) -> str:
    return next((name for name, cls in registry.items() if type(obj) is cls), type(obj).__name__)


def cell_identity(cfg: DictConfig, translator: Translator, strategy: AnchorStrategy) -> dict[str, Any]:
    """What identifies a cell in a grid: encoder, decoder, translator, head, anchors."""
    return {
        "encoder": f"{cfg.encoder.name}:s{cfg.encoder.seed}",
        "decoder": f"{cfg.decoder.space.name}:s{cfg.decoder.space.seed}",
        "translator": _registry_name(translator, TRANSLATORS),
        "scaling": translator.scaling,
        "head": cfg.head.name,
        "anchors": _registry_name(strategy, ANCHORS),
        "anchor_seed": strategy.seed,
        "dataset": cfg.dataset.name,
    }


def _instantiate(node: DictConfig, group: str) -> Any:
    try:
        return instantiate(node)
    except Exception as e:  # noqa: BLE001 - report which setting is wrong, in one line
        cause = e.__cause__ or e
        raise ConfigError(f"{group}: {cause}") from None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the cell described by ``cfg``; write ``metrics.json`` and ``cells.csv`` into
    ``cfg.paths.output_dir`` and return the cell's scores."""
    output_dir = Path(cfg.paths.output_dir)
    translator: Translator = _instantiate(cfg.translator, "translator")
    strategy: AnchorStrategy = _instantiate(cfg.anchors, "anchors")
    ds = cfg.dataset
    data = load_splits(ds.name, cfg.paths.data_dir, list(ds.mean), list(ds.std), int(ds.num_classes),
                       float(ds.val_fraction), int(ds.split_seed), bool(ds.get("download", False)))  # fmt: skip
    strategy.check(len(data.train))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    builder = SpaceBuilder(Cache(cfg.paths.cache_dir), data, cfg.dataset, trainer_cfg)
    try:
        translator.check_dims(builder.dim(cfg.encoder), builder.dim(cfg.decoder.space))
    except TranslationError as e:
        raise ConfigError(str(e)) from None

    logger = make_logger(cfg.logger)
    builder.logger = logger
    source = builder.space(cfg.encoder)
    target = builder.space(cfg.decoder.space)
    anchor_idx = strategy.select(source.train_labels)
    decoder = get_decoder(builder.cache, target, cfg.dataset, cfg.decoder.space, cfg.head, data.num_classes, trainer_cfg, logger=logger)
    cell = {**cell_identity(cfg, translator, strategy), **evaluate_cell(source, target, decoder, translator, anchor_idx)}
    cell["status"] = "ok"

    if global_rank() == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(output_dir / "metrics.json", cell)
        write_cells_csv(output_dir / "cells.csv", [cell])
        print(format_cell(cell), flush=True)
        log_run(logger, cfg, cell)
    finish_logger(logger)
    return cell


def main(cfg: DictConfig) -> dict[str, Any] | None:
    """Entry point behind ``run.py``: bad input becomes one line on stderr and exit code 2."""
    try:
        return run(cfg)
    except (ConfigError, TranslationError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        log.error("%s", e)
        sys.exit(2)
