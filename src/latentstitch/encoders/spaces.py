"""Spaces: the latents one encoder gives for one dataset split, trained and cached on demand."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from latentstitch.cache import Cache
from latentstitch.data import DatasetSplits
from latentstitch.encoders.training import EncoderModule, extract_features, fit_module
from latentstitch.encoders.zoo import build_encoder, encoder_label, feature_dim, to_container
from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")


@dataclass
class Space:
    """Latents of the train and test splits of one dataset under one encoder (rows parallel across spaces)."""

    label: str
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def dataset_spec(dataset_cfg: DictConfig | dict) -> dict:
    """The dataset settings that change the data (not where it is read from)."""
    spec = to_container(dataset_cfg)
    for key in ("download", "anchors"):  # where it comes from, and a default for the anchors
        spec.pop(key, None)
    return spec


def encoder_spec(dataset_cfg: DictConfig, encoder_cfg: DictConfig) -> dict:
    return {"dataset": dataset_spec(dataset_cfg), "encoder": to_container(encoder_cfg)}


class SpaceBuilder:
    """Gets trained encoders and their spaces out of the cache, training and encoding what is missing."""

    def __init__(self, cache: Cache, data: DatasetSplits, dataset_cfg: DictConfig, trainer_cfg: dict[str, Any], logger: Any = False):
        self.cache, self.data, self.dataset_cfg = cache, data, dataset_cfg
        self.trainer_cfg, self.logger = trainer_cfg, logger

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.train.images.shape[1:])

    def dim(self, encoder_cfg: DictConfig) -> int:
        """Latent dim of an encoder, from its untrained network (cheap; used to validate early)."""
        return feature_dim(build_encoder(encoder_cfg, self.input_shape, self.data.num_classes).features, self.input_shape)

    def encoder(self, encoder_cfg: DictConfig) -> EncoderModule:
        module = build_encoder(encoder_cfg, self.input_shape, self.data.num_classes)
        state = self.cache.get_or_build(
            "encoder", encoder_spec(self.dataset_cfg, encoder_cfg), lambda: self._train(module, encoder_cfg), encoder_label(encoder_cfg)
        )
        module.load_state_dict(state)
        return module.eval()

    def _train(self, module: EncoderModule, encoder_cfg: DictConfig) -> dict[str, torch.Tensor]:
        train = encoder_cfg.train
        log.info("training encoder %s for %d steps", encoder_label(encoder_cfg), train.steps)
        L.seed_everything(int(encoder_cfg.seed), workers=True, verbose=False)
        start = time.perf_counter()
        fit_module(
            module,
            (self.data.train.images, self.data.train.labels),
            (self.data.val.images, self.data.val.labels),
            steps=int(train.steps),
            max_epochs=self.dataset_cfg.get("max_epochs"),
            batch_size=int(train.batch_size),
            trainer_cfg=self.trainer_cfg,
            logger=self.logger,
        )
        log.info("trained encoder %s in %.1f s", encoder_label(encoder_cfg), time.perf_counter() - start)
        state = {k: v.clone() for k, v in module.state_dict().items()}
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            raise ConfigError(
                f"encoder {encoder_label(encoder_cfg)} diverged: NaN/inf weights after training "
                f"(lower encoder.train.lr={train.lr})"
            )
        return state

    def space(self, encoder_cfg: DictConfig) -> Space:
        label = encoder_label(encoder_cfg)
        trained: list[EncoderModule] = []  # the encoder is loaded at most once, and only on a miss

        def encode(split: str) -> dict[str, torch.Tensor]:
            if not trained:
                trained.append(self.encoder(encoder_cfg))
            data = self.data.split(split)
            batch_size = int(encoder_cfg.get("extract_batch_size") or encoder_cfg.train.batch_size)
            start = time.perf_counter()
            latents = extract_features(trained[0], data.images, data.labels, batch_size, self.trainer_cfg)
            log.info("encoded %s %s split (%d samples) in %.1f s", label, split, len(latents), time.perf_counter() - start)
            bad = int((~torch.isfinite(latents)).sum())
            if bad:
                raise ConfigError(
                    f"encoder {label} produced {bad} NaN/inf latent values on the {split} split "
                    f"(training diverged? lower encoder.train.lr={encoder_cfg.train.lr})"
                )
            return {"latents": latents.float(), "labels": data.labels}

        parts = {
            split: self.cache.get_or_build(
                "space", {**encoder_spec(self.dataset_cfg, encoder_cfg), "split": split}, lambda s=split: encode(s), f"{label} {split}"
            )
            for split in SPLITS
        }
        return Space(label, parts["train"]["latents"], parts["train"]["labels"], parts["test"]["latents"], parts["test"]["labels"])
