"""The entry point behind ``run.py``: one Hydra job = one experiment run.

The experiment is the config's ``runner._target_`` (``latentstitch.experiments.cells.run`` by
default: one stitching cell), a function ``run(cfg) -> dict``. Around it this module does what
every job needs: threads sized to the processes running at once, a sweep job that resumes a
finished run of itself, DDP ranks that join their job, and bad input reported as one ``error:``
line (a failed sweep job leaves a ``metrics.json`` saying so, and the grid marks its cell).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf, read_write
from omegaconf.errors import InterpolationKeyError

from latentstitch.cell import cell_identity, instantiate_setting
from latentstitch.errors import ConfigError, is_storage_error, write_error
from latentstitch.experiments.outputs import JOB_CONFIG_HASH, config_hash, experiment_name
from latentstitch.logging import write_json
from latentstitch.runtime import configure_threads
from latentstitch.translation import TranslationError

__all__ = ["config_hash", "finished_cell", "instantiate_setting", "main", "runner"]

log = logging.getLogger(__name__)

DEFAULT_RUNNER = "latentstitch.experiments.cells.run"


def runner(cfg: DictConfig) -> Callable[[DictConfig], dict[str, Any]]:
    """The experiment function named by ``runner._target_`` (one ConfigError line if it cannot be imported)."""
    target = str(OmegaConf.select(cfg, "runner._target_", default=DEFAULT_RUNNER))
    try:
        return get_method(target)
    except Exception as e:  # noqa: BLE001 - hydra wraps the import error; say which setting is wrong
        cause = e.__cause__ or e
        raise ConfigError(f"runner._target_={target}: {cause}") from None


def finished_cell(cfg: DictConfig) -> dict[str, Any] | None:
    """The result a previous run of this very sweep job finished, if its config is identical.

    Re-running a multirun into the same ``hydra.sweep.dir`` after a crash or ``kill -9`` then
    runs only the missing and failed jobs (cells or any other experiment).
    """
    try:
        cell = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if cell.get("status") != "ok" or cell.get("config_hash") != config_hash(cfg):
        return None
    return cell


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
        name = experiment_name(cfg)
        identity = cell_identity(cfg) if name == "cells" else {}
    except Exception:  # noqa: BLE001 - the config itself may be what is broken
        name, identity = "cells", {}
    out = Path(cfg.paths.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(
            out / "metrics.json",
            {"experiment": name, **identity, "status": "failed", "error": f"{type(error).__name__}: {error}"},
        )
    except (OSError, ConfigError) as e:  # the run dir's disk itself: the grid counts a job without metrics.json as failed
        log.error("could not record the failure in %s: %s", out, e)


# settings that only some datasets define, and what needs them
IMAGE_ONLY = "a scratch image encoder reads an image view, which this dataset lacks: pick encoder= and decoder= for its views"
DATASET_ONLY = {
    "dataset.node_features": "a graph encoder reads a graph view: choose a dataset with one (dataset=wordnet_graph, dataset=planetoid)",
    "dataset.channels": IMAGE_ONLY,
    "dataset.image_size": IMAGE_ONLY,
}


def missing_setting(e: InterpolationKeyError, cfg: DictConfig) -> ConfigError:
    """A config that refers to a setting the chosen configs do not define: most often an encoder
    for a view the dataset lacks (``encoder=gcn`` on an image dataset)."""
    match = re.search(r"Interpolation key '([^']+)' not found", str(e))
    key = match.group(1) if match else "?"
    where = getattr(e, "full_key", None) or "a setting"
    hint = DATASET_ONLY.get(key, "set it, or choose configs that define it")
    dataset = OmegaConf.select(cfg, "dataset.name", default="?", throw_on_missing=False)
    return ConfigError(f"{where} refers to {key}, which dataset={dataset} does not set: {hint}")


def user_error(e: BaseException, cfg: DictConfig) -> ConfigError | TranslationError | None:
    """The one-line error ``e`` is for the user (a bad setting, a failed write), or None for a bug.

    A failed write that no writer of ours caught (a checkpoint, the W&B dir, a picture) is named by
    its path, with the setting that moves that path: the cache, the run dir or the logger's dir.
    """
    if isinstance(e, (ConfigError, TranslationError)):
        return e
    if isinstance(e, InterpolationKeyError):
        return missing_setting(e, cfg)
    if not is_storage_error(e):
        return None
    path = str(getattr(e, "filename", None) or "")
    settings = {
        str(OmegaConf.select(cfg, "paths.cache_dir", default="")): "paths.cache_dir (or LATENTSTITCH_CACHE)",
        str(OmegaConf.select(cfg, "logger.save_dir", default="")): "logger.save_dir",
        str(OmegaConf.select(cfg, "paths.output_dir", default="")): "hydra.run.dir (hydra.sweep.dir in a multirun)",
    }
    setting = next((v for k, v in settings.items() if k and path.startswith(k)), "paths.cache_dir or hydra.run.dir")
    return write_error(path or "a file", e, setting)


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
        run = runner(cfg)
        if multirun and (done := finished_cell(cfg)) is not None:
            log.info("resumed: %s %s finished in an earlier run of this sweep, kept", done.get("experiment", "cells"),
                     " -> ".join(str(done[k]) for k in ("encoder", "decoder", "translator") if k in done))  # fmt: skip
            done["resumed"] = True
            write_json(Path(cfg.paths.output_dir) / "metrics.json", done)
            return done
        token = JOB_CONFIG_HASH.set(config_hash(cfg))  # before the experiment fills in derived settings
        try:
            return run(cfg)
        finally:
            JOB_CONFIG_HASH.reset(token)
    except Exception as e:
        error = user_error(e, cfg)
        if error is None:  # a bug: the traceback is the report
            if not multirun:
                raise
            log.exception("cell failed")
            _record_failure(cfg, e)
            return None
        print(f"error: {error}", file=sys.stderr, flush=True)
        log.error("%s", error)
        if not multirun:
            sys.exit(2)
        _record_failure(cfg, error)
    finally:
        if multirun:
            _finish_multirun_job()
    return None
