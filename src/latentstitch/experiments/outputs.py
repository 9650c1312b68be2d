"""The outputs every experiment writes, in one place.

``metrics.json`` holds the experiment's result (plus ``experiment``, ``status`` and
``config_hash``, so a resumed sweep can keep it), ``results.csv`` its main table, and the
configured logger (W&B offline by default, CSV, or none) gets the config, the numeric results,
the table and the pictures. Files are written atomically: a killed run leaves no half file.
"""

from __future__ import annotations

import hashlib
import json
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latentstitch.logging import finish_logger, make_logger, write_cells_csv, write_json
from latentstitch.runtime import ensure_run_dirs

# settings that change how a run goes, not what it computes: a resumed cell may differ in them
RUNTIME_ONLY_KEYS = ("paths", "threads", "trainer.enable_progress_bar", "checkpoint_every")


# the hash of the job's config as composed, set by the pipeline before the experiment runs: an
# experiment may fill in derived settings (``dataset.anchors: auto``), and a resumed sweep compares
# the composed config, so that is what metrics.json records
JOB_CONFIG_HASH: ContextVar[str | None] = ContextVar("job_config_hash", default=None)


def config_hash(cfg: DictConfig) -> str:
    """Hash of the resolved config: a resumed sweep keeps a finished job only if it matches.

    Where the run happens (``paths``: cwd, cache, data; the results are content-addressed), its
    thread count and its progress bar are left out, so resuming from another directory or with
    other threads keeps the finished jobs.
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


def experiment_name(cfg: DictConfig) -> str:
    """The runner's module name (``cells``, ``similarity``, ...): the ``experiment`` key of its outputs."""
    target = str(OmegaConf.select(cfg, "runner._target_", default="latentstitch.experiments.cells.run"))
    return target.rsplit(".", 2)[-2] if target.count(".") >= 1 else target


class RunOutputs:
    """Output dir, logger and result files of one experiment run; use as a context manager so the
    logger is finished whatever happens::

        with RunOutputs(cfg) as out:
            ...                       # out.dir: the run dir, out.logger: the Lightning logger (or False)
            return out.finish(result, rows, images, console=table)
    """

    def __init__(self, cfg: DictConfig, group: str | None = None) -> None:
        self.cfg, self.group = cfg, group
        self.name = experiment_name(cfg)
        self.dir: Path = ensure_run_dirs(cfg)
        self.logger: Any = False

    def __enter__(self) -> RunOutputs:
        logger_cfg = self.cfg.get("logger")
        if logger_cfg and "name" in logger_cfg and self.name != "cells":
            logger_cfg = OmegaConf.merge(logger_cfg, {"name": self.name})
        self.logger = make_logger(logger_cfg, group=self.group)
        return self

    def __exit__(self, *exc: object) -> None:
        finish_logger(self.logger)

    def finish(self, result: dict[str, Any], rows: list[dict[str, Any]], images: dict[str, Path] | None = None,
               console: str | None = None, write: bool = True) -> dict[str, Any]:  # fmt: skip
        """Write ``metrics.json`` (``result`` + experiment, status, config hash) and
        ``results.csv`` (``rows``), log everything, print ``console``; returns the written result.
        ``write=False`` (the other ranks of a DDP job) returns the result and writes nothing."""
        result = {
            "experiment": self.name,
            **result,
            "status": "ok",
            "config_hash": JOB_CONFIG_HASH.get() or config_hash(self.cfg),
        }
        if not write:
            return result
        write_json(self.dir / "metrics.json", result)
        if rows:
            write_cells_csv(self.dir / "results.csv", rows)
        if console:
            print(console, flush=True)
        self.log(result, rows, images or {})
        return result

    def log(self, result: dict[str, Any], rows: list[dict[str, Any]], images: dict[str, Path]) -> None:
        """Config, the result's numbers (as the run's summary), the table and the pictures."""
        logger = self.logger
        if not logger:
            return
        logger.log_hyperparams(OmegaConf.to_container(self.cfg, resolve=True))
        prefix = "cell" if self.name == "cells" else self.name
        self.log_numbers(
            {f"{prefix}/{k}": float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
        if rows and len(rows) > 1 and hasattr(logger, "log_table"):
            import pandas as pd

            logger.log_table(key=f"{prefix}/results", dataframe=pd.DataFrame(rows))
        if hasattr(logger, "log_image"):
            for key, path in images.items():
                logger.log_image(key=key, images=[str(path)])

    def log_numbers(self, numbers: dict[str, float], step: int | None = None) -> None:
        """Numbers to the logger, and into the W&B run's summary (the values a sweep compares)."""
        if not self.logger or not numbers:
            return
        self.logger.log_metrics(numbers, step=step)
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "summary"):
            experiment.summary.update(numbers)
