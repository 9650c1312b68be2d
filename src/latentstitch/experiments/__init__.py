"""Experiments: one module per kind of run, each selected by ``runner._target_`` in its config.

Every experiment is a function ``run(cfg: DictConfig) -> dict`` and writes the same outputs through
:class:`latentstitch.experiments.outputs.RunOutputs`: ``metrics.json`` (the returned dict, with
``experiment``, ``status`` and ``config_hash``), ``results.csv`` (its main table), its pictures,
and the run of the configured logger (W&B offline by default). ``run.py`` only composes the config;
:func:`latentstitch.pipeline.main` calls the runner.

- ``cells``: one cell of a stitching grid (the default; ``python run.py encoder=... decoder=...``)
- ``similarity``: CKA, mutual k-NN and retrieval between spaces (``+analysis=similarity``)
- ``aggregation``: relative latent space aggregation (``+experiment=aggregation``)
- ``asif``: zero-shot classification from paired anchors (``+experiment=asif``)
- ``casper``: ER vs ER + CaSpeR, continual learning (``+experiment=casper``)
- ``rl``: RL agents stitched from parts (``+experiment=rl_stitching``)

A new experiment is a module with ``run(cfg)`` anywhere on the path and a config that sets
``runner._target_`` to it; nothing here needs to change.
"""
