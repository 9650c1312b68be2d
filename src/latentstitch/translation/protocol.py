"""What the cell asks of a method: the protocol every translator and projection method follows.

A method declares what it needs and what it does, as class attributes, and the cell reads nothing
else: ``paired`` (True: ``fit`` takes parallel anchors, row i of both sides the same item; False:
two unpaired samples of the spaces) and ``projection_method`` (False: ``transform`` maps source
latents into the target space; True: ``transform_source`` / ``transform_target`` map both spaces
into a shared one, and the decoder is trained on the target's projection behind
``decoder_input()``, keyed by ``settings()``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Method(Protocol):
    """A translator or a projection method."""

    name: str
    paired: bool
    projection_method: bool

    def check_dims(self, source_dim: int, target_dim: int) -> None: ...

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> Any: ...


@runtime_checkable
class TranslatingMethod(Method, Protocol):
    """``projection_method = False``: source latents -> target space."""

    def transform(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ProjectingMethod(Method, Protocol):
    """``projection_method = True``: both spaces -> one shared space the decoder is trained on."""

    def transform_source(self, x: torch.Tensor) -> torch.Tensor: ...

    def transform_target(self, y: torch.Tensor) -> torch.Tensor: ...

    def settings(self) -> dict[str, Any]: ...

    def decoder_input(self) -> torch.nn.Module: ...
