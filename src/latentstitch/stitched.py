"""A stitched model you can keep: source encoder -> fitted translator -> target decoder, as one
``nn.Module`` loaded from a directory written by ``+export=stitched``.

``load_stitched(dir)`` needs torch, safetensors and the model code of the source encoder; it
imports neither Hydra nor Lightning (the configs in ``config.json`` are resolved, and their
``_target_`` paths are built by :mod:`latentstitch.instantiate`). The directory holds:

- ``model.safetensors``: ``encoder.*`` (the weights of a scratch encoder, or of a user's
  ``encoder=module`` network), ``method.*`` (the fitted translator or projection: see
  :mod:`latentstitch.translation.state`) and ``head.*`` (the decoder head trained on the target);
- ``config.json``: how to rebuild each part, the class names, the anchors and the cell's scores;
- ``README.md``: the model card.

A pretrained source encoder is stored as a reference (its config and identity: package version
or weights hash), not as weights: loading it needs the same package, and a different identity is
reported as a warning.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from latentstitch.errors import ConfigError
from latentstitch.heads import build_head, input_dim, with_input_layer
from latentstitch.instantiate import instantiate
from latentstitch.translation.state import Persistent

FORMAT = "latentstitch.stitched/1"
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"


class ScratchPreprocess:
    """Raw images -> what a scratch encoder was trained on: the dataset's size, channels and
    normalisation (``(x / 255 - mean) / std`` per channel, as :func:`latentstitch.data.datasets.normalise_images`)."""

    def __init__(self, image_size: int, channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.image_size, self.channels = int(image_size), int(channels)
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.unsqueeze(1) if batch.ndim == 3 else batch
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[1] != self.channels:
            x = x.mean(dim=1, keepdim=True) if self.channels == 1 else x.expand(-1, self.channels, -1, -1)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()


def image_tensor(image: Any, mode: str) -> torch.Tensor:
    """One image (a path, a PIL image or a (C, H, W) / (H, W) tensor) as a uint8 or float (C, H, W) tensor."""
    if isinstance(image, torch.Tensor):
        return image if image.ndim == 3 else image.unsqueeze(0)
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            image = Image.open(image)
            image.load()
        except OSError as e:
            raise ConfigError(f"cannot read the image {image}: {e}") from None
    if not isinstance(image, Image.Image):
        raise ConfigError(f"a stitched image model reads image tensors, PIL images or image paths, got {type(image).__name__}")
    import numpy as np

    array = np.asarray(image.convert(mode))
    x = torch.from_numpy(array.copy())
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)


class StitchedModel(nn.Module):
    """``head(method(encoder(inputs)))``: raw inputs in, the target decoder's class scores out.

    ``forward(inputs)`` returns logits (B, classes); ``predict(inputs)`` the class names (or ids
    where the dataset has none). Inputs: for an image model a batch tensor (B, C, H, W), or a list
    of PIL images, tensors or paths; for a text model a list of strings (or one string).
    """

    def __init__(self, encoder: nn.Module, preprocess: ScratchPreprocess | None, method: Persistent, head: nn.Module,
                 view: str, class_names: list[str], config: dict[str, Any]) -> None:  # fmt: skip
        super().__init__()
        self.encoder, self.head = encoder.eval(), head.eval()
        self.preprocess, self.method, self.view = preprocess, method, view
        self.class_names, self.config = class_names, config

    def train(self, mode: bool = True) -> StitchedModel:  # inference only: BatchNorm / dropout stay in eval mode
        return super().train(False)

    @torch.no_grad()
    def encode(self, inputs: Any, batch_size: int = 256) -> torch.Tensor:
        """The source encoder's latents of ``inputs`` (float32, one row per input)."""
        if self.view == "text":
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            return torch.cat([self.encoder(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]).float()
        if isinstance(inputs, torch.Tensor) and inputs.ndim in (3, 4) and (inputs.ndim == 4 or self.preprocess is not None):
            return torch.cat([self._encode_images(chunk) for chunk in inputs.split(batch_size)])
        images = [
            image_tensor(x, "L" if self.preprocess is not None and self.preprocess.channels == 1 else "RGB") for x in inputs
        ]
        return torch.cat([self._encode_images(x.unsqueeze(0)) for x in images])  # one at a time: their sizes may differ

    def _encode_images(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(batch) if self.preprocess is not None else batch
        return self.encoder(x).float()

    @torch.no_grad()
    def translate(self, latents: torch.Tensor) -> torch.Tensor:
        """Source latents -> what the head reads: the target space (a translator) or the shared projection."""
        method: Any = self.method
        return method.transform_source(latents) if method.projection_method else method.transform(latents)

    @torch.no_grad()
    def forward(self, inputs: Any) -> torch.Tensor:
        return self.head(self.translate(self.encode(inputs)))

    def predict(self, inputs: Any) -> list[str]:
        """The predicted class name of each input."""
        return [self.class_names[i] for i in self(inputs).argmax(dim=1).tolist()]


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"{directory} is not a stitched model directory: it has no {CONFIG_FILE} (write one with +export=stitched)"
        )
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ConfigError(f"{path}: format {config.get('format')!r} is not {FORMAT!r}")
    return config


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    start = f"{prefix}."
    return {k[len(start) :]: v for k, v in state.items() if k.startswith(start)}


def build_source(source: dict[str, Any], weights: dict[str, torch.Tensor]) -> tuple[nn.Module, ScratchPreprocess | None]:
    """The source encoder of an exported ``config.json`` (and the preprocessing a scratch one needs)."""
    from latentstitch.encoders.pretrained.base import FrozenEncoder

    kind = source["kind"]
    if kind == "scratch":
        network = instantiate(source["model"], "source.model")
        network.load_state_dict(weights)
        return network.eval(), ScratchPreprocess(**source["preprocess"])
    if kind == "module":  # a user's network (encoder=module): rebuilt from its config, weights from the export
        from latentstitch.encoders.pretrained.module import ModuleEncoder, load_weights

        module = ModuleEncoder.from_config({**source["config"], "checkpoint": None}, "source.config").load()
        load_weights(module.net, weights, "the exported encoder weights")
        return module, None
    encoder = instantiate(source["model"], "source.model")
    if not isinstance(encoder, FrozenEncoder):
        raise ConfigError(f"source.model._target_={source['model'].get('_target_')} did not build a frozen encoder")
    identity = encoder.identity()
    if identity != source["identity"]:
        warnings.warn(f"the source encoder's identity differs from the exported one ({identity} vs {source['identity']}): "
                      "another package version or weights file; predictions may differ", stacklevel=2)  # fmt: skip
    return encoder.load(), None


def load_stitched(directory: str | Path) -> StitchedModel:
    """The stitched model exported into ``directory`` (by ``+export=stitched``), ready to predict."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = _read_config(directory)
    weights = load_file(str(directory / WEIGHTS_FILE))
    encoder, preprocess = build_source(config["source"], _part(weights, "encoder"))
    spec = config["method"]
    method = Persistent.from_state(spec["class"], spec["config"], _part(weights, "method"))
    head_spec = config["head"]
    layer = None
    if head_spec.get("input_layer"):
        layer = method.decoder_input()  # type: ignore[attr-defined]
    head = with_input_layer(
        layer, build_head(head_spec["config"], input_dim(layer, int(head_spec["input_dim"])), len(config["class_names"]))
    )
    head.load_state_dict(_part(weights, "head"))
    return StitchedModel(encoder, preprocess, method, head, config["source"]["view"], list(config["class_names"]), config)
