"""Hydra launchers of latentstitch (Hydra finds launchers only in the ``hydra_plugins`` package).

``SlurmLauncher`` is submitit's SLURM launcher with one change: a job that ends without a result
(cancelled with ``scancel``, killed at its time limit, out of memory, its node lost) becomes a
failed cell of the grid instead of an exception that stops the sweep. Hydra's sweeper reads every
job's return value and re-raises the first failure, so without this a single killed job loses the
grid of all the others, and the sweep ends in a traceback.
"""
