"""Decoder heads trained on one space: ``mlp`` and ``linear`` (Lightning), ``svm`` (scikit-learn).

Every head ends up as a torch module mapping latents to class logits, so evaluation is one code
path; the SVM is fitted with scikit-learn and exported as the equivalent linear layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from latentstitch.encoders import Space, dataset_spec
from latentstitch.encoders.training import ClassifierModule, fit_module
from latentstitch.encoders.zoo import to_container
from latentstitch.errors import ConfigError
from latentstitch.heads import HEADS, build_head, input_dim, with_input_layer

__all__ = ["HEADS", "DecoderSpec", "build_head", "get_decoder", "predict", "train_head", "with_input_layer"]

if TYPE_CHECKING:
    from latentstitch.encoders import SpaceBuilder

log = logging.getLogger(__name__)


def _fit_svm(head: nn.Module, latents: torch.Tensor, labels: torch.Tensor, head_cfg: DictConfig | dict) -> None:
    """Standard-scaled linear SVM (one-vs-rest), folded into ``head``'s single Linear layer.

    The scaling floors each dimension's deviation at ``std_floor`` times the median deviation.
    Without the floor, a (near-)constant dimension (MiniLM has three with std 1e-33) is divided by
    its tiny deviation, the SVM puts a weight of 1e31 on it, and any translation error there, even
    1e-5, decides the prediction: stitching *into* such a space collapsed (0.14 accuracy at latent
    cosine 1.000) while the opposite direction was fine.
    """
    from sklearn.svm import LinearSVC

    x, y = latents.double().numpy(), labels.numpy()
    mean, std = x.mean(axis=0), x.std(axis=0)
    scale = np.maximum(std, float(head_cfg.get("std_floor", 1e-3)) * max(float(np.median(std)), 1e-12))
    clf = LinearSVC(C=float(head_cfg.get("C", 1.0)), max_iter=int(head_cfg.get("max_iter", 2000)), random_state=0)
    clf.fit((x - mean) / scale, y)
    coef, intercept = clf.coef_ / scale, clf.intercept_ - (clf.coef_ / scale) @ mean
    if coef.shape[0] == 1:  # binary: one decision function -> two logits
        coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
    full_w = np.zeros((head[0].out_features, coef.shape[1]))
    full_b = np.full(head[0].out_features, -np.inf)
    full_w[clf.classes_], full_b[clf.classes_] = coef, intercept
    with torch.no_grad():
        head[0].weight.copy_(torch.from_numpy(full_w))
        head[0].bias.copy_(torch.from_numpy(np.nan_to_num(full_b, neginf=-1e9)))


def train_head(
    head_cfg: DictConfig | dict,
    train: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    trainer_cfg: dict[str, Any],
    logger: Any = False,
    name: str = "decoder",
    max_epochs: int | None = None,
    input_layer: nn.Module | None = None,
    checkpoint_every: int = 0,
) -> nn.Module:
    """A freshly trained head on ``train = (latents, labels)`` (``max_epochs``: the dataset's cap).

    ``input_layer`` (a projection method's normalisation / aggregation layer) goes in front of the
    head and is trained with it; the SVM head can only use a layer that needs no training.
    """
    L.seed_everything(int(head_cfg.get("seed", 0)), workers=True, verbose=False)
    head = build_head(head_cfg, input_dim(input_layer, train[0].shape[1]), num_classes)
    if head_cfg["name"] == "svm":
        latents = train[0]
        if input_layer is not None:
            if getattr(input_layer, "trainable", False):
                raise ConfigError("head=svm cannot train the relative decoder's input layer (aggregation=mlp_sum or decoder_norm=batchnorm): "
                                  "use head=mlp or head=linear")  # fmt: skip
            with torch.no_grad():
                latents = torch.cat([input_layer.eval()(chunk) for chunk in latents.split(4096)])
        _fit_svm(head, latents, train[1], head_cfg)
        return with_input_layer(input_layer, head)
    model = with_input_layer(input_layer, head)
    module = ClassifierModule(
        nn.Identity(), model, lr=float(head_cfg["lr"]), weight_decay=float(head_cfg.get("weight_decay", 0.0)), name=name
    )
    fit_module(module, train, None, int(head_cfg["steps"]), int(head_cfg["batch_size"]), trainer_cfg, logger, max_epochs,
               checkpoint_every=checkpoint_every)  # fmt: skip
    return model


@dataclass(frozen=True)
class DecoderSpec:
    """Everything that determines a decoder, in one object.

    ``space``: the latents it is trained on (the target space, or a projection method's projection
    of it); ``space_cfg``: the encoder config of the target space (its identity in the cache key);
    ``head``: the head config; ``projection``: the method's settings and anchors for a projected
    space (``{"name": "identity"}`` otherwise); ``input_layer``: makes the layer a projection method
    puts in front of the head (normalisation, aggregation), or None.
    """

    space: Space
    space_cfg: DictConfig | None
    head: DictConfig | None
    projection: dict[str, Any] = field(default_factory=lambda: {"name": "identity"})
    input_layer: Callable[[], nn.Module] | None = None

    @property
    def label(self) -> str:
        return f"{self.head['name']} on {self.space.label}"

    def cache_key(self, dataset_cfg: DictConfig) -> dict[str, Any]:
        """The decoder's cache spec: the dataset, the target space, the head and the projection."""
        return {"dataset": dataset_spec(dataset_cfg), "space": to_container(self.space_cfg), "head": to_container(self.head),
                "projection": self.projection}  # fmt: skip


def get_decoder(spec: DecoderSpec, builder: SpaceBuilder) -> nn.Module:
    """The head ``spec`` describes, trained on its space's train latents (with the builder's
    trainer settings and logger), from the builder's cache when present."""
    head_cfg, target, dataset_cfg = spec.head, spec.space, builder.dataset_cfg

    def build() -> dict[str, torch.Tensor]:
        log.info("training decoder %s", spec.label)
        head = train_head(head_cfg, (target.train, target.train_labels), builder.items.num_classes, builder.trainer_cfg, builder.logger,
                          name=f"decoder/{target.label}", max_epochs=dataset_cfg.get("max_epochs"),
                          input_layer=spec.input_layer() if spec.input_layer else None,
                          checkpoint_every=builder.checkpoint_every)  # fmt: skip
        return {k: v.clone() for k, v in head.state_dict().items()}

    layer = spec.input_layer() if spec.input_layer else None
    head = with_input_layer(layer, build_head(head_cfg, input_dim(layer, target.dim), builder.items.num_classes))
    head.load_state_dict(builder.cache.get_or_build("decoder", spec.cache_key(dataset_cfg), build, spec.label))
    return head.eval()


@torch.no_grad()
def predict(head: nn.Module, latents: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Class predictions of ``head`` on ``latents`` (in eval mode, batched)."""
    head.eval()
    return torch.cat([head(chunk).argmax(dim=1) for chunk in latents.split(batch_size)])
