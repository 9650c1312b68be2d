"""submitit's SLURM launcher, where a killed job is a failed cell (see the package docstring)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)


class SlurmLauncher(SubmititSlurmLauncher):
    """``hydra/launcher=slurm``: submitit's SLURM job array, every job's outcome collected."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        executor = self._executor(submitit)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        return [self._outcome(job, params) for job, params in zip(jobs, job_params, strict=True)]

    def _executor(self, submitit: Any) -> Any:
        """The executor the parent builds, with the same split of init and queue parameters."""
        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init["slurm_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster="slurm", **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
        return executor

    def _outcome(self, job: Any, params: tuple) -> JobReturn:
        """The job's JobReturn; a job the scheduler ended without a result is recorded as a failed
        cell (its ``metrics.json``) and returns None, as a failed cell of the local launchers does."""
        import submitit

        overrides, _, idx = params[0], params[1], params[2]
        try:
            return job.results()[0]
        except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as e:
            state = job.state
            log.error("error: job %s (cell %d) ended %s without a result: %s", job.job_id, idx, state, str(e).splitlines()[0])
            self._record_killed(idx, overrides, f"SLURM job {job.job_id} ended {state} without a result")
            return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)

    def _record_killed(self, idx: int, overrides: list[str], error: str) -> None:
        """Write the failure into the job's dir (its config too, if it never started) atomically."""
        assert self.config is not None and self.hydra_context is not None
        from latentstitch.experiments.outputs import experiment_name
        from latentstitch.grid import _identity_from_job

        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(sweep_config.hydra.job) as job:
            job.num = idx
        job_dir = Path(str(self.config.hydra.sweep.dir)) / str(OmegaConf.select(sweep_config, "hydra.sweep.subdir", default=idx))
        hydra_dir = job_dir / ".hydra"
        if not (hydra_dir / "config.yaml").is_file():
            hydra_dir.mkdir(parents=True, exist_ok=True)
            task_cfg = OmegaConf.masked_copy(sweep_config, [k for k in sweep_config if k != "hydra"])
            OmegaConf.save(task_cfg, hydra_dir / "config.yaml")
        name = experiment_name(sweep_config)
        identity = _identity_from_job(job_dir) if name == "cells" else {}
        failure = {"experiment": name, **identity, "status": "failed", "error": error}
        tmp = job_dir / "metrics.json.tmp"
        tmp.write_text(json.dumps(failure, indent=2, sort_keys=True))
        os.replace(tmp, job_dir / "metrics.json")
