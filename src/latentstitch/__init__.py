"""latentstitch: latent space translation and zero-shot model stitching.

``latentstitch.load_stitched(dir)`` loads a model exported with ``+export=stitched`` (it imports
torch only when called, and never Hydra or Lightning).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_stitched"]


def __getattr__(name: str) -> Any:
    if name == "load_stitched":
        from latentstitch.stitched import load_stitched

        return load_stitched
    raise AttributeError(f"module 'latentstitch' has no attribute {name!r}")
