"""Saving and loading fitted methods: ``state_dict`` / ``load_state_dict`` and ``save`` / ``load``.

Every translator and projection method is a :class:`Persistent`. Its *state* is what ``fit``
computed, as tensors (scalars as 0-d tensors); its *config* is the constructor's keyword arguments.
``save(path)`` writes both to one safetensors file (the config and the class in the file's
metadata), so a fitted translator can be kept, shipped and applied without refitting, and a file
never runs code when it is read: the class is looked up among the classes defined here, not
imported by name from the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import torch

FORMAT = "latentstitch.method/1"
_REGISTRY: dict[str, type[Persistent]] = {}
P = TypeVar("P", bound="Persistent")


class Persistent:
    """Mixin: a fitted method as ``state_dict()`` tensors plus ``config()`` settings."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    # subclasses implement these three
    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-able): ``type(self)(**config())`` is unfitted and equal."""
        raise NotImplementedError

    def _state(self) -> dict[str, torch.Tensor | None]:
        """The fitted tensors by name (None: an optional part this fit did not make)."""
        raise NotImplementedError

    def _restore(self, state: dict[str, torch.Tensor]) -> None:
        """Set the fitted attributes from ``state`` (the inverse of :meth:`_state`)."""
        raise NotImplementedError

    @property
    def fitted(self) -> bool:
        try:
            return bool(self._state())
        except (RuntimeError, AttributeError):
            return False

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What ``fit`` computed, as detached CPU tensors (like ``nn.Module.state_dict``)."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: there is no state to save")
        return {k: v.detach().cpu().contiguous() for k, v in self._state().items() if v is not None}

    def load_state_dict(self: P, state: dict[str, torch.Tensor]) -> P:
        """Make this (unfitted) method the fitted one whose ``state_dict()`` is ``state``."""
        self._restore(dict(state))
        return self

    def save(self, path: str | Path) -> Path:
        """Write the fitted method to ``path`` (safetensors: the state, with class and config in the metadata)."""
        from safetensors.torch import save_file

        path = Path(path)
        metadata = {"format": FORMAT, "class": type(self).__name__, "config": json.dumps(self.config())}
        save_file(self.state_dict(), str(path), metadata=metadata)
        return path

    @classmethod
    def load(cls: type[P], path: str | Path) -> P:
        """The fitted method saved at ``path``; ``Translator.load`` accepts any translator's file."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a saved latentstitch method (format {metadata.get('format')!r}, expected {FORMAT})")
        return cls.from_state(metadata["class"], json.loads(metadata["config"]), load_file(str(path)))

    @classmethod
    def from_state(cls: type[P], class_name: str, config: dict[str, Any], state: dict[str, torch.Tensor]) -> P:
        """``class_name(**config)`` with ``state`` loaded; the class must be ``cls`` or one of its subclasses."""
        method_cls = _REGISTRY.get(class_name)
        if method_cls is None or not issubclass(method_cls, cls):
            raise ValueError(f"{class_name!r} is not a {cls.__name__} (known: {sorted(_REGISTRY)})")
        return method_cls(**config).load_state_dict(state)


def scalar(value: float | int) -> torch.Tensor:
    """A number as a 0-d tensor (a state holds only tensors)."""
    return torch.tensor(value, dtype=torch.float64 if isinstance(value, float) else torch.int64)


def prefixed(prefix: str, state: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = f"{prefix}."
    return {k[len(start) :]: v for k, v in state.items() if k.startswith(start)}


def count_parts(prefix: str, state: dict[str, torch.Tensor]) -> int:
    """How many ``<prefix>.<i>.*`` groups ``state`` holds."""
    start = f"{prefix}."
    return len({k[len(start) :].split(".", 1)[0] for k in state if k.startswith(start)})
