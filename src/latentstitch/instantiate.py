"""Build objects from ``_target_`` dicts without Hydra.

Hydra's ``instantiate`` is what run configs use; a stitched model loaded with
:func:`latentstitch.load_stitched` (and an ``encoder=module`` network rebuilt there) must not need
Hydra at all: a service that only predicts should import torch and the model's own code. This is
the small part of ``instantiate`` those configs use: ``_target_`` (a dotted import path) called
with the other keys as keyword arguments, nested dicts and lists built first. ``_partial_``,
``_args_`` and interpolation are deliberately not supported: exported configs are resolved.
"""

from __future__ import annotations

import importlib
from typing import Any

from latentstitch.errors import ConfigError


def import_object(path: str, setting: str = "_target_") -> Any:
    """The object at the dotted ``path`` (``package.module.Name``); a ConfigError naming ``setting`` otherwise."""
    module_name, _, attr = str(path).rpartition(".")
    if not module_name:
        raise ConfigError(f"{setting}={path!r} is not a dotted import path (package.module.name)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{setting}={path}: cannot import {module_name} ({e})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{setting}={path}: module {module_name} has no attribute {attr!r}") from None


def instantiate(node: Any, setting: str = "_target_") -> Any:
    """``node`` with every ``{"_target_": path, **kwargs}`` dict replaced by ``path(**kwargs)``."""
    if isinstance(node, dict):
        built = {k: instantiate(v, f"{setting}.{k}") for k, v in node.items() if k != "_target_"}
        if "_target_" not in node:
            return built
        target = import_object(node["_target_"], setting if setting.endswith("_target_") else f"{setting}._target_")
        if not callable(target):
            raise ConfigError(f"{setting}={node['_target_']} is not callable")
        try:
            return target(**built)
        except TypeError as e:
            raise ConfigError(f"{setting}={node['_target_']}: {e}") from None
    if isinstance(node, (list, tuple)):
        return [instantiate(v, setting) for v in node]
    return node
