"""Process-level settings decided once per run: intra-op threads and writable directories.

Threads: BLAS and torch's intra-op pool spin while they wait; when several processes each start
as many threads as there are cores, they fight for the cores (measured here: a tiny MLP trained
170x slower with 2 threads than with 1 while another process kept one of the 2 cores busy). So
each process takes the cores divided by the processes that run at once: joblib jobs,
submitit's ``cpus_per_task``, DDP processes on the CPU.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may run on (its affinity mask: SLURM and taskset limits included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_processes_per_job(trainer_cfg: Any, cores: int | None = None) -> int:
    """Processes one job starts on this machine: DDP on the CPU runs ``devices`` of them
    (``-1`` means one per core, a list one per entry, ``auto`` one)."""
    accelerator = str(trainer_cfg.get("accelerator", "cpu"))
    strategy = str(trainer_cfg.get("strategy", "auto"))
    if accelerator != "cpu" or "ddp" not in strategy:
        return 1
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int):
        return (cores or available_cores()) if devices == -1 else max(1, devices)
    if isinstance(devices, (list, tuple)) or (hasattr(devices, "__len__") and not isinstance(devices, str)):
        return max(1, len(devices))
    return 1


def launcher_jobs_at_once(launcher_cfg: Any, cores: int) -> tuple[int, int | None]:
    """(jobs that run at once on this machine, cores reserved per process if the launcher says).

    submitit starts every job of a local sweep at once, and we cannot see how many there are:
    without ``cpus_per_task`` each job is given one thread, the setting that never oversubscribes.
    On SLURM with ``tasks_per_node > 1`` each task is one DDP process, with its own ``cpus_per_task``.
    """
    if launcher_cfg is None:
        return 1, None
    target = str(launcher_cfg.get("_target_", "")).lower()
    if "joblib" in target:
        n_jobs = launcher_cfg.get("n_jobs", -1)
        n_jobs = cores if n_jobs is None or int(n_jobs) < 0 else int(n_jobs)
        return max(1, n_jobs), None
    if "submitit" in target:
        cpus = launcher_cfg.get("cpus_per_task")
        if cpus:
            return 1, int(cpus)
        return (cores, None) if "local" in target else (1, None)
    return 1, None


def default_threads(trainer_cfg: Any, launcher_cfg: Any = None, cores: int | None = None) -> tuple[int, str]:
    """Intra-op threads for one process, and why (for the log)."""
    cores = cores or available_cores()
    jobs, cpus_per_task = launcher_jobs_at_once(launcher_cfg, cores)
    per_job = cpu_processes_per_job(trainer_cfg, cores)
    if cpus_per_task:
        tasks = int(launcher_cfg.get("tasks_per_node") or 1)
        if tasks > 1:  # SLURM started one task per process: the cpus are that process's own
            return max(1, cpus_per_task), f"{cpus_per_task} cpus per task, one process per task"
        return max(1, cpus_per_task // per_job), f"{cpus_per_task} cpus per task / {per_job} processes"
    processes = jobs * per_job
    return max(1, cores // processes), f"{cores} cores / {processes} processes at once"


def configure_threads(threads: int | str | None, trainer_cfg: Any, launcher_cfg: Any = None) -> int:
    """Set torch's intra-op threads: ``threads`` if given, else the default above; logs the choice.

    ``OMP_NUM_THREADS`` is set to the same number: Lightning's DDP launchers reset torch's threads
    to cores / processes unless it is set, and the processes they start inherit it.
    """
    if threads in (None, "auto"):
        n, why = default_threads(trainer_cfg, launcher_cfg)
    else:
        try:
            n, why = int(threads), "threads setting"
        except (TypeError, ValueError):
            raise ConfigError(f"threads={threads!r} must be a positive integer or auto") from None
        if n < 1:
            raise ConfigError(f"threads={n} must be a positive integer or auto")
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    log.info("threads: %d intra-op (%s)", n, why)
    return n


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, a scheduler's time limit) raises KeyboardInterrupt
    like Ctrl-C, so joblib / loky shut their worker processes down instead of leaving them
    running orphaned. Outside the main thread signals cannot be set, and nothing changes."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def ensure_run_dirs(cfg: Any) -> Path:
    """Check the run's output dir and the cache dir can be written; returns the output dir."""
    output_dir = ensure_writable(cfg.paths.output_dir, "hydra output dir")
    ensure_writable(cfg.paths.cache_dir, "paths.cache_dir")
    return output_dir


def ensure_writable(directory: str | Path, setting: str) -> Path:
    """Create ``directory`` if needed and check a file can be written there; else one clear line."""
    path = Path(directory)
    probe = path / f".write-test-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(bytes(1 << 16))  # 64 KiB: a disk too full for the run's small files fails here, not in Hydra
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"{setting}={directory} cannot be created or written ({e.strerror or e}); pick another directory"
        ) from None
    return path


class DirectoryCheck(Callback):
    """Hydra callback: an output or cache directory that cannot be written is one line and exit
    code 2 before anything runs (Hydra itself would fail later with a traceback)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, output_key: str) -> None:
        try:
            ensure_writable(OmegaConf.select(config, output_key), output_key)
            cache_dir = _select_with_hydra(config, "paths.cache_dir")
            if cache_dir:
                ensure_writable(cache_dir, "paths.cache_dir")
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)


def _select_with_hydra(config: DictConfig, key: str) -> Any:
    """``key`` resolved with ``${hydra:...}`` available: a multirun starts before Hydra sets its
    config for the jobs, and the default cache dir lies below ``${hydra:runtime.cwd}``."""
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    if previous is None:
        hydra_config.set_config(config)
    try:
        return _select_or_none(config, key)
    finally:
        hydra_config.cfg = previous


def _select_or_none(config: DictConfig, key: str) -> Any:
    """``key`` resolved, or None where it cannot be resolved yet (``${hydra:...}`` before the job)."""
    try:
        return OmegaConf.select(config, key)
    except Exception:  # noqa: BLE001 - resolution errors only mean: check it later, in the job
        return None
