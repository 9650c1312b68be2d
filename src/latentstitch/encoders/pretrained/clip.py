"""CLIP's two towers as separate frozen encoders (transformers ``CLIPModel``), for users online or
with a local model directory: the image tower with CLIPImageProcessor's preprocessing redone on
batch tensors, and the text tower. Both give the projected (joint-space) features."""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from latentstitch.encoders.pretrained.base import (
    ImageEncoder,
    ImagePreprocess,
    TextEncoder,
    one_line,
    package_version,
)
from latentstitch.encoders.pretrained.text import hf_config, hf_weights_identity, quiet_loading, resolve_hf
from latentstitch.errors import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "bicubic", 4: "bilinear", 5: "bicubic"}


def _clip_config(model_name: str, who: str) -> tuple[str, bool, bool, Any]:
    name, is_dir, local_only = resolve_hf(model_name, f"encoder={who}")
    config = hf_config(name, local_only, f"encoder={who} model")
    if getattr(config, "model_type", None) != "clip":
        raise ConfigError(f"encoder={who}: {name!r} is a {getattr(config, 'model_type', '?')} model, not CLIP")
    return name, is_dir, local_only, config


def _load_clip(name: str, local_only: bool, who: str):
    from transformers import CLIPModel

    try:
        with quiet_loading():
            return CLIPModel.from_pretrained(name, local_files_only=local_only, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise ConfigError(f"encoder={who}: cannot load {name!r}: {one_line(e)}") from e


def clip_preprocess(name: str, is_dir: bool, local_only: bool, image_size: int) -> ImagePreprocess:
    """CLIPImageProcessor's settings (preprocessor_config.json; CLIP's defaults where it has none)."""
    settings: dict[str, Any] = {}
    if is_dir:
        path = os.path.join(name, "preprocessor_config.json")
        if os.path.isfile(path):
            with open(path) as f:
                settings = json.load(f)
    else:
        try:
            from transformers import CLIPImageProcessor

            settings, _ = CLIPImageProcessor.get_image_processor_dict(name, local_files_only=local_only)
        except (OSError, ValueError):
            settings = {}
    size = settings.get("size", {"shortest_edge": image_size})
    short = int((size.get("shortest_edge") or size.get("height")) if isinstance(size, dict) else size)
    crop = settings.get("crop_size", {"height": image_size, "width": image_size})
    crop = (crop["height"], crop["width"]) if isinstance(crop, dict) else (int(crop), int(crop))
    if not settings.get("do_center_crop", True):
        crop = (short, short)
    return ImagePreprocess(crop, short, PIL_RESAMPLE.get(int(settings.get("resample", 3)), "bicubic"),
                           settings.get("image_mean", CLIP_MEAN), settings.get("image_std", CLIP_STD))  # fmt: skip


class ClipImage(ImageEncoder):
    """CLIP's image tower + visual projection (``get_image_features``); ``dim`` = projection_dim."""

    config_name = "clip_image"

    def __init__(self, model_name: str = "openai/clip-vit-base-patch32") -> None:
        name, is_dir, local_only, config = _clip_config(model_name, self.config_name)
        super().__init__(clip_preprocess(name, is_dir, local_only, int(config.vision_config.image_size)))
        self.model_name, self.is_dir, self.local_only, self.config = name, is_dir, local_only, config
        self.dim = int(config.projection_dim)
        self.vision: torch.nn.Module | None = None
        self.projection: torch.nn.Module | None = None

    def _weights(self) -> dict:
        return {**hf_weights_identity(self.model_name, self.is_dir, self.config), "tower": "vision",
                "transformers": package_version("transformers")}  # fmt: skip

    def _load(self) -> None:
        model = _load_clip(self.model_name, self.local_only, self.config_name)
        self.vision, self.projection = model.vision_model, model.visual_projection  # the text tower is dropped

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.vision(pixel_values=x).pooler_output)


class ClipText(TextEncoder):
    """CLIP's text tower + text projection (``get_text_features``); ``dim`` = projection_dim;
    texts truncated to the model's position limit (77 for OpenAI CLIP)."""

    config_name = "clip_text"

    def __init__(self, model_name: str = "openai/clip-vit-base-patch32") -> None:
        super().__init__()
        self.model_name, self.is_dir, self.local_only, self.config = _clip_config(model_name, self.config_name)
        self.dim = int(self.config.projection_dim)
        self.max_length = int(self.config.text_config.max_position_embeddings)
        self.tokenizer: Any = None
        self.text: torch.nn.Module | None = None
        self.projection: torch.nn.Module | None = None

    def _identity(self) -> dict:
        return {"weights": {**hf_weights_identity(self.model_name, self.is_dir, self.config), "tower": "text",
                            "transformers": package_version("transformers")},
                "preprocess": {"max_length": self.max_length}}  # fmt: skip

    def _load(self) -> None:
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_name, local_files_only=self.local_only)
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"encoder={self.config_name}: cannot load the tokenizer of {self.model_name!r}: {one_line(e)}"
            ) from e
        model = _load_clip(self.model_name, self.local_only, self.config_name)
        self.text, self.projection = model.text_model, model.text_projection  # the image tower is dropped

    def _embed(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(
            self.device
        )
        pooled = self.text(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).pooler_output
        return self.projection(pooled)
