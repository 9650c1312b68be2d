"""Decoder heads as torch modules: built here from their config with nothing but torch, so a
stitched model rebuilds its head where Lightning and Hydra are not installed (training them is
:mod:`latentstitch.decoders`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from latentstitch.errors import ConfigError

HEADS = ("mlp", "linear", "svm")


def build_head(head_cfg: Any, dim: int, num_classes: int) -> nn.Module:
    """The head network (latents -> logits) for ``head_cfg.name``."""
    name = head_cfg["name"]
    if name == "mlp":
        hidden = int(head_cfg.get("hidden", 256))
        layers: list[nn.Module] = [nn.LayerNorm(dim)] if head_cfg.get("input_norm", False) else []
        layers += [
            nn.Linear(dim, hidden),
            nn.ReLU(),
            nn.Dropout(float(head_cfg.get("dropout", 0.0))),
            nn.Linear(hidden, num_classes),
        ]
        return nn.Sequential(*layers)
    if name in ("linear", "svm"):
        return nn.Sequential(nn.Linear(dim, num_classes))
    raise ConfigError(f"head.name={name!r} is not one of {list(HEADS)}")


def input_dim(input_layer: nn.Module | None, dim: int) -> int:
    """The head's input width: ``dim``, or what ``input_layer`` turns ``dim`` features into."""
    if input_layer is None:
        return dim
    if hasattr(input_layer, "out_dim"):
        return int(input_layer.out_dim)
    with torch.no_grad():
        return int(input_layer.eval()(torch.zeros(2, dim)).shape[1])


def with_input_layer(input_layer: nn.Module | None, head: nn.Module) -> nn.Module:
    """``head`` behind ``input_layer`` (a projection method's normalisation / aggregation)."""
    return head if input_layer is None else nn.Sequential(input_layer, head)
