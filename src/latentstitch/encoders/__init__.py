"""Encoders: the model zoo, Lightning training and latent extraction, and cached spaces.

The names below load on first use (PEP 562), so importing a model module alone
(``latentstitch.encoders.scratch``, ``latentstitch.encoders.pretrained``) pulls in neither
Lightning nor Hydra: a stitched model is rebuilt from them in processes that have neither.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Space": "spaces",
    "SpaceBuilder": "spaces",
    "dataset_spec": "spaces",
    "encoder_spec": "spaces",
    "build_encoder": "zoo",
    "encoder_label": "zoo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
