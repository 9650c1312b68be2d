"""One run = one cell: data -> spaces -> anchors -> decoder -> translator -> scores -> outputs."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, read_write

from latentstitch.anchors import AnchorStrategy
from latentstitch.cache import global_rank
from latentstitch.data import ItemDataset, load_dataset
from latentstitch.decoders import get_decoder
from latentstitch.encoders import Space, SpaceBuilder
from latentstitch.encoders.training import quiet_lightning
from latentstitch.errors import ConfigError
from latentstitch.logging import finish_logger, format_cell, log_run, make_logger, save_image_strip, write_cells_csv, write_json
from latentstitch.runtime import configure_threads, ensure_writable
from latentstitch.stitching import (
    cell_identity,
    evaluate_cell,
    evaluate_projection_cell,
    evaluate_reconstruction_cell,
    evaluate_retrieval_cell,
    is_paired,
    is_projection,
)
from latentstitch.translation import TranslationError, Translator

log = logging.getLogger(__name__)


def instantiate_setting(node: DictConfig, group: str) -> Any:
    """``instantiate(node)``; a bad setting becomes one ConfigError line naming its ``group``."""
    try:
        return instantiate(node)
    except Exception as e:  # noqa: BLE001 - report which setting is wrong, in one line
        cause = e.__cause__ or e
        raise ConfigError(f"{group}: {cause}") from None


TASKS = ("classification", "retrieval", "reconstruction")

# experiments that are not stitching cells: task -> module whose ``run(cfg) -> dict`` does the run
EXPERIMENTS: dict[str, str] = {"casper": "latentstitch.continual.casper", "rl_stitching": "latentstitch.rl.stitching",
                               "similarity": "latentstitch.analysis", "aggregation": "latentstitch.aggregation",
                               "asif": "latentstitch.asif"}  # fmt: skip


def check_task(task: str, items: ItemDataset) -> None:
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not one of {list(TASKS)}")
    if task == "classification" and not items.has_labels:
        raise ConfigError(f"dataset {items.name} has no labels: its cells are retrieval cells (task=retrieval)")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the cell described by ``cfg``; write ``metrics.json`` and ``cells.csv`` into
    ``cfg.paths.output_dir`` and return the cell's scores.

    Everything that can be checked without training (settings, dataset, anchor count, whether
    the translator can map the two dims) is checked before anything is written.
    """
    quiet_lightning()
    ensure_writable(cfg.paths.cache_dir, "paths.cache_dir")
    translator: Translator = instantiate_setting(cfg.translator, "translator")
    strategy: AnchorStrategy = instantiate_setting(cfg.anchors, "anchors")
    items = load_dataset(cfg.dataset, cfg.paths.data_dir)
    task = cfg.get("task", "classification")
    check_task(task, items)
    strategy.check(len(items.ids("train")))
    builder = SpaceBuilder.from_config(cfg, items)
    trainer_cfg = builder.trainer_cfg
    try:
        translator.check_dims(builder.dim(cfg.encoder), builder.dim(cfg.decoder.space))
        check_method(translator, cfg, strategy, len(items.ids("train")))
    except TranslationError as e:
        raise ConfigError(str(e)) from None

    sweep = Path(HydraConfig.get().sweep.dir).name if _hydra_mode() == RunMode.MULTIRUN else None
    builder.logger = logger = make_logger(cfg.logger, group=sweep)
    try:
        source = builder.space(cfg.encoder)
        target = builder.space(cfg.decoder.space)
        # methods fitted on unpaired samples get no anchors; kmeans / fps / bootstrap read the latents
        anchor_idx = strategy.select(source.train_labels, source=source.train, target=target.train) if is_paired(translator) else None
        if task == "reconstruction":
            scores, images = _reconstruction(cfg, builder, source, target, translator, anchor_idx)
        elif task == "retrieval":
            scores, images = evaluate_retrieval_cell(source, target, translator, anchor_idx), {}
        elif is_projection(translator):  # the decoder is trained on the target's projection
            def make_decoder(projected: Space, key: dict[str, Any]) -> Any:
                return get_decoder(builder.cache, projected, cfg.dataset, cfg.decoder.space, cfg.head, items.num_classes, trainer_cfg,
                                   projection=key, logger=logger, input_layer=translator.decoder_input)  # fmt: skip

            scores, images = evaluate_projection_cell(source, target, translator, anchor_idx, make_decoder), {}
        else:
            decoder = get_decoder(builder.cache, target, cfg.dataset, cfg.decoder.space, cfg.head, items.num_classes, trainer_cfg, logger=logger)
            scores, images = evaluate_cell(source, target, decoder, translator, anchor_idx), {}
        cell = {**cell_identity(cfg), **scores, "status": "ok", "config_hash": config_hash(cfg)}
        if global_rank() == 0:
            _write_outputs(Path(cfg.paths.output_dir), cell)
            log_run(logger, cfg, cell, images)
    finally:
        finish_logger(logger)
    return cell


def check_method(method: Any, cfg: DictConfig, strategy: AnchorStrategy, train_size: int) -> None:
    """What a method needs of the cell, checked before any training (one line each)."""
    task = cfg.get("task", "classification")
    if is_projection(method) and task == "classification" and cfg.head.name == "svm" and method.decoder_input_trainable:
        raise ConfigError("head=svm cannot train the relative decoder's input layer (aggregation=mlp_sum or decoder_norm=batchnorm): "
                          "use head=mlp or head=linear")  # fmt: skip
    if is_projection(method) and task == "reconstruction":
        raise ConfigError(f"translator={method.name} trains the decoder on the target's projection; task=reconstruction uses "
                          "the autoencoder's own decoder: pick a translator (ortho, linear, inverse_relative, ...)")  # fmt: skip
    if is_paired(method) and hasattr(method, "check_anchors"):
        method.check_anchors(strategy.num)
    if not is_paired(method) and hasattr(method, "check_samples"):  # fitted on the two halves of the train split
        method.check_samples(train_size // 2, train_size - train_size // 2)


def _reconstruction(cfg: DictConfig, builder: SpaceBuilder, source: Space, target: Space, translator: Translator, anchor_idx) -> tuple[dict, dict]:
    """Reconstruction cell: the target autoencoder's own decoder; saves the image strip."""
    images = builder.data.test.images
    decoder = builder.encoder(cfg.decoder.space).decoder
    scores, outputs = evaluate_reconstruction_cell(source, target, decoder, translator, anchor_idx, images)
    if global_rank() != 0:
        return scores, {}
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    strip = save_image_strip({"original": images, **outputs}, output_dir / "reconstructions.png", list(cfg.dataset.mean), list(cfg.dataset.std))
    return scores, {"reconstructions": strip}


# settings that change how a run goes, not what it computes: a resumed cell may differ in them
RUNTIME_ONLY_KEYS = ("paths", "threads", "trainer.enable_progress_bar")


def config_hash(cfg: DictConfig) -> str:
    """Hash of the resolved config: a resumed sweep keeps a finished cell only if it matches.

    Where the run happens (``paths``: cwd, cache, data; the results are content-addressed), its
    thread count and its progress bar are left out, so resuming from another directory or with
    other threads keeps the finished cells.
    """
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for key in RUNTIME_ONLY_KEYS:
        *parents, leaf = key.split(".")
        node = resolved
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    blob = json.dumps(resolved, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def finished_cell(cfg: DictConfig) -> dict[str, Any] | None:
    """The cell a previous run of this very sweep job finished, if its config is identical.

    Re-running a multirun into the same ``hydra.sweep.dir`` after a crash or ``kill -9`` then
    runs only the missing and failed cells.
    """
    try:
        cell = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if cell.get("status") != "ok" or cell.get("config_hash") != config_hash(cfg):
        return None
    return cell


def _write_outputs(output_dir: Path, cell: dict[str, Any]) -> None:
    ensure_writable(output_dir, "hydra output dir")
    write_json(output_dir / "metrics.json", cell)
    write_cells_csv(output_dir / "cells.csv", [cell])
    print(format_cell(cell), flush=True)


def _hydra_mode() -> RunMode | None:
    return HydraConfig.get().mode if HydraConfig.initialized() else None


def _prepare_multirun_job() -> None:
    """Make a sweep job look like a single run to processes Lightning launches for DDP.

    Lightning re-executes ``sys.argv`` for the other ranks; with ``-m`` they would start a sweep of
    their own in another directory. Handing them this job's overrides and output dir makes them
    join this job instead.
    """
    hc = HydraConfig.get()
    sys.argv = [sys.argv[0], *hc.overrides.task]
    with read_write(hc.run):
        hc.run.dir = hc.runtime.output_dir


def _finish_multirun_job() -> None:
    """Leave the process clean for the next sweep job in it (the basic and joblib launchers
    reuse processes): no process group, no launcher environment."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "RANK"):
        os.environ.pop(key, None)


def _record_failure(cfg: DictConfig, error: BaseException) -> None:
    """A failed sweep job leaves a metrics.json saying so, and the grid marks its cell."""
    try:
        identity = cell_identity(cfg)
    except Exception:  # noqa: BLE001 - the config itself may be what is broken
        identity = {}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", {**identity, "status": "failed", "error": f"{type(error).__name__}: {error}"})


def main(cfg: DictConfig) -> dict[str, Any] | None:
    """Entry point behind ``run.py``.

    Single run: bad input becomes one line on stderr and exit code 2. Sweep job: any failure is
    recorded in the job's ``metrics.json`` so the other jobs go on and the grid marks the cell;
    the grid callback then exits non-zero.
    """
    multirun = _hydra_mode() == RunMode.MULTIRUN
    if multirun:
        _prepare_multirun_job()
    try:
        hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
        configure_threads(cfg.get("threads"), cfg.trainer, hydra_cfg.launcher if multirun else None)
        if cfg.get("task") in EXPERIMENTS:
            return importlib.import_module(EXPERIMENTS[cfg.task]).run(cfg)
        if multirun and (cell := finished_cell(cfg)) is not None:
            log.info("resumed: cell %s -> %s (%s) finished in an earlier run of this sweep, kept",
                     cell.get("encoder"), cell.get("decoder"), cell.get("translator"))  # fmt: skip
            cell["resumed"] = True
            write_json(Path(cfg.paths.output_dir) / "metrics.json", cell)
            return cell
        return run(cfg)
    except (ConfigError, TranslationError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        log.error("%s", e)
        if not multirun:
            sys.exit(2)
        _record_failure(cfg, e)
    except Exception as e:
        if not multirun:
            raise
        log.exception("cell failed")
        _record_failure(cfg, e)
    finally:
        if multirun:
            _finish_multirun_job()
    return None
