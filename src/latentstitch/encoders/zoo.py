"""Build any encoder from its config: ``model`` is instantiated with Hydra (``_target_`` is
``timm.create_model`` for timm models or one of our scratch classes), and a linear classifier is
put on top of its pooled features for training.

The user's own frozen encoders say ``kind:`` instead (``precomputed``: a file of embeddings;
``module``: their torch network, which is what ``model`` holds there): their wrapper class reads
the whole resolved config, without Hydra (see :data:`USER_KINDS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from latentstitch.encoders.training import AutoencoderModule, ClassifierModule, EncoderModule


def is_frozen(encoder_cfg: DictConfig | dict) -> bool:
    """A pretrained encoder: inference only, never trained here."""
    return bool(encoder_cfg.get("frozen", False))


def user_kind(encoder_cfg: DictConfig | dict) -> str | None:
    """``precomputed`` or ``module`` for the user's own frozen encoders, None for the others."""
    kind = encoder_cfg.get("kind")
    return None if kind is None else str(kind)


def _label_suffix(encoder_cfg: DictConfig | dict) -> str | None:
    """What tells two frozen encoders of one kind apart: ``label`` when set, else the model name's
    last part (timm, hf_text, clip_*), the file's stem (precomputed) or the network's name (module)."""
    if encoder_cfg.get("label"):
        return str(encoder_cfg["label"])
    if encoder_cfg.get("model_name"):
        return str(encoder_cfg["model_name"]).rstrip("/").rsplit("/", 1)[-1]
    kind = user_kind(encoder_cfg)
    if kind == "precomputed" and encoder_cfg.get("path"):
        return Path(str(encoder_cfg["path"])).stem
    if kind == "module":
        target = (encoder_cfg.get("model") or {}).get("_target_")
        return str(target).rsplit(".", 1)[-1].lower() if target else None
    return None


def encoder_label(encoder_cfg: DictConfig | dict) -> str:
    """Short readable name used in logs, tables and grids: ``vit:s0`` for a scratch encoder (its
    seed; ``audio_cnn:fr:s0`` on a language's view), ``minilm:en`` for a text or audio encoder
    (its language), ``timm-resnet18`` or ``precomputed-tfidf`` for one by name or file,
    ``efficientnet_lite0`` otherwise."""
    language = f":{encoder_cfg.get('language', 'en')}" if encoder_cfg.get("view") in ("text", "audio") else ""
    if not is_frozen(encoder_cfg):
        return f"{encoder_cfg['name']}{language}:s{encoder_cfg['seed']}"
    name = str(encoder_cfg["name"])
    suffix = _label_suffix(encoder_cfg)
    if suffix:
        name = f"{name}-{suffix}"
    return f"{name}{language}"


def setting_of(encoder_cfg: DictConfig | dict) -> str:
    """Where the config sits in the run config (``encoder``, ``decoder.space``): errors name settings by it."""
    if isinstance(encoder_cfg, DictConfig):
        return encoder_cfg._get_full_key(None) or "encoder"
    return "encoder"


def build_user_encoder(encoder_cfg: DictConfig | dict) -> nn.Module:
    """The wrapper of a ``kind:`` config (``precomputed`` / ``module``), from its resolved dict."""
    from latentstitch.encoders.pretrained import ModuleEncoder, PrecomputedEmbeddings
    from latentstitch.errors import ConfigError

    kinds = {"precomputed": PrecomputedEmbeddings, "module": ModuleEncoder}
    kind, setting = user_kind(encoder_cfg), setting_of(encoder_cfg)
    if kind not in kinds:
        raise ConfigError(f"{setting}.kind={kind!r} is not one of {', '.join(kinds)}")
    return kinds[kind].from_config(to_container(encoder_cfg), setting)


def build_frozen(encoder_cfg: DictConfig) -> nn.Module:
    """The frozen pretrained encoder of ``encoder_cfg.model`` (cheap: weights load on first use),
    or the wrapper of a user's ``kind:`` config."""
    from latentstitch.errors import ConfigError

    if user_kind(encoder_cfg) is not None:
        model = build_user_encoder(encoder_cfg)
    else:
        model = _instantiate_frozen(encoder_cfg)
    if str(encoder_cfg.get("view", model.view)) != model.view:
        raise ConfigError(
            f"encoder {encoder_cfg.get('name')} has view={encoder_cfg.get('view')} but its model reads {model.view}"
        )
    return model


def _instantiate_frozen(encoder_cfg: DictConfig) -> nn.Module:
    from latentstitch.errors import ConfigError

    try:
        model = instantiate(encoder_cfg.model, _convert_="all")
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - Hydra wraps the constructor's error; report its cause in one line
        cause = e.__cause__ or e
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"encoder {encoder_cfg.get('name')}: {type(cause).__name__}: {cause}") from None
    return model


@torch.no_grad()
def feature_dim(backbone: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The width of ``backbone``'s output: its ``out_dim`` where it says, else from a probe batch of two."""
    if getattr(backbone, "out_dim", None):
        return int(backbone.out_dim)  # type: ignore[arg-type]
    was_training = backbone.training
    backbone.eval()
    dim = backbone(torch.zeros(2, *input_shape)).shape[-1]
    backbone.train(was_training)
    return int(dim)


def build_encoder(encoder_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int, graph: Any = None) -> EncoderModule:
    """The untrained encoder with its training objective, initialised from ``encoder_cfg.seed``:
    a linear classifier on the pooled features, or (``objective: reconstruction``) the decoder
    network of an autoencoder. A graph encoder (``view: graph``) is bound to ``graph``: its inputs
    are node ids, and every forward propagates over the whole graph (transductive)."""
    L.seed_everything(int(encoder_cfg.seed), workers=True, verbose=False)
    model_cfg: Any = encoder_cfg.model
    backbone = instantiate(model_cfg, _convert_="all")
    if hasattr(backbone, "bind_graph"):
        if graph is None:
            from latentstitch.errors import ConfigError

            raise ConfigError(f"encoder {encoder_cfg.get('name')} is a graph encoder: it needs a dataset with a graph view")
        backbone.bind_graph(graph)
    train = encoder_cfg.get("train") or {}
    options = {
        "lr": float(train.get("lr", 1e-3)),
        "weight_decay": float(train.get("weight_decay", 0.0)),
        "name": f"encoder/{encoder_label(encoder_cfg)}",
    }
    if encoder_cfg.get("objective", "classification") == "reconstruction":
        return AutoencoderModule(backbone, instantiate(encoder_cfg.decoder_model, _convert_="all"), **options)
    return ClassifierModule(backbone, nn.Linear(feature_dim(backbone, input_shape), num_classes), **options)


def to_container(cfg: DictConfig | dict) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
