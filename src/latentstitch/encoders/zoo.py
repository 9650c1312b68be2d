"""Build any encoder from its config: ``model`` is instantiated with Hydra (``_target_`` is
``timm.create_model`` for timm models or one of our scratch classes), and a linear classifier is
put on top of its pooled features for training."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from latentstitch.encoders.training import AutoencoderModule, ClassifierModule, EncoderModule


def encoder_label(encoder_cfg: DictConfig | dict) -> str:
    """Short readable name used in logs, tables and grids, e.g. ``vit:s0``."""
    return f"{encoder_cfg['name']}:s{encoder_cfg['seed']}"


@torch.no_grad()
def feature_dim(backbone: nn.Module, input_shape: tuple[int, ...]) -> int:
    was_training = backbone.training
    backbone.eval()
    dim = backbone(torch.zeros(2, *input_shape)).shape[-1]
    backbone.train(was_training)
    return int(dim)


def build_encoder(encoder_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> EncoderModule:
    """The untrained encoder with its training objective, initialised from ``encoder_cfg.seed``:
    a linear classifier on the pooled features, or (``objective: reconstruction``) the decoder
    network of an autoencoder."""
    L.seed_everything(int(encoder_cfg.seed), workers=True, verbose=False)
    model_cfg: Any = encoder_cfg.model
    backbone = instantiate(model_cfg, _convert_="all")
    train = encoder_cfg.get("train") or {}
    options = {"lr": float(train.get("lr", 1e-3)), "weight_decay": float(train.get("weight_decay", 0.0)), "name": f"encoder/{encoder_label(encoder_cfg)}"}
    if encoder_cfg.get("objective", "classification") == "reconstruction":
        return AutoencoderModule(backbone, instantiate(encoder_cfg.decoder_model, _convert_="all"), **options)
    return ClassifierModule(backbone, nn.Linear(feature_dim(backbone, input_shape), num_classes), **options)


def to_container(cfg: DictConfig | dict) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
