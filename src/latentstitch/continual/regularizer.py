"""CaSpeR for any rehearsal model: a loss term, and a Lightning callback that adds it.

Loss term (any training loop, Lightning or not)::

    reg = CasperRegularizer(num_classes_per_task=2, samples_per_class=16, k=10, rho=0.01)
    loss = task_loss + reg(model.features, buffer)      # rho * spectral loss; 0 on the first task
                                                        # (call reg.task = t at each task start)

Callback (a LightningModule that has a replay buffer, a ``features`` method giving penultimate
features, and a ``current_task`` attribute; names configurable)::

    trainer = L.Trainer(callbacks=[CasperCallback(reg)], ...)

The callback computes ``rho * loss`` in ``on_after_backward`` and back-propagates it into the
gradients the task loss has just left, before the optimiser step: the same gradient as
back-propagating their sum. So it suits automatic optimisation in full precision; with
mixed-precision loss scaling, gradient accumulation over several batches, or manual
optimisation, use the loss term instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import lightning as L
import torch

from latentstitch.continual.spectral import casper_loss


class BalancedBuffer(Protocol):
    def __len__(self) -> int: ...

    def balanced_sample(
        self, num_classes: int, per_class: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class CasperRegularizer:
    """``rho * casper_loss`` of a class-balanced buffer batch (``p`` classes x ``m`` samples).

    ``num_classes_per_task`` (p): classes per batch, the authors' default is the classes per task.
    ``samples_per_class`` (m): the authors' default batch is the training batch size, so m = batch / p.
    ``start_task``: the loss applies from this task on (the authors: from the second, 1).
    ``task``: the current task index, set by whoever runs the tasks (the callback does it).
    Records the raw loss values and their wall time (``history``, ``seconds``), and ``skipped``:
    the batches whose features or spectrum were not finite (a diverged network: with a large
    ``rho`` the straight-through relaxation's large gradients can make SGD diverge). Those give
    no loss instead of an exception, so a run that diverges finishes and is reported as such.
    """

    num_classes_per_task: int
    samples_per_class: int = 16
    k: int = 10
    rho: float = 0.01
    temperature: float = 1.0
    convention: str = "code"
    start_task: int = 1
    generator: torch.Generator | None = None
    task: int = 0
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    skipped: int = 0

    def active(self, buffer: BalancedBuffer) -> bool:
        return self.rho > 0 and self.task >= self.start_task and len(buffer) >= self.num_classes_per_task + 2

    def loss(
        self, features: Callable[[torch.Tensor], torch.Tensor], buffer: BalancedBuffer, device: Any = None
    ) -> torch.Tensor | None:
        """The unweighted spectral loss of a fresh balanced batch, or None where it cannot apply
        (fewer than ``p + 2`` items, a batch of a single class, non-finite features or spectrum)."""
        start = time.perf_counter()
        inputs, labels = buffer.balanced_sample(self.num_classes_per_task, self.samples_per_class, self.generator)
        if labels.unique().numel() < 2 or len(labels) < self.num_classes_per_task + 2:
            return None
        if device is not None:
            inputs = inputs.to(device)
        z = features(inputs)
        value = None
        if torch.isfinite(z).all():
            try:
                value = casper_loss(z, labels, self.num_classes_per_task, self.k, self.temperature, self.convention)
            except torch.linalg.LinAlgError:  # eigvalsh on an overflowing Laplacian
                value = None
        if value is None or not torch.isfinite(value):
            self.skipped += 1
            return None
        self.history.append(float(value.detach()))
        self.seconds += time.perf_counter() - start
        return value

    def __call__(
        self, features: Callable[[torch.Tensor], torch.Tensor], buffer: BalancedBuffer, device: Any = None
    ) -> torch.Tensor:
        """``rho * loss`` to add to a task loss; a zero tensor where it does not apply."""
        value = self.loss(features, buffer, device) if self.active(buffer) else None
        if value is None:
            return torch.zeros((), device=device)
        return self.rho * value


class CasperCallback(L.Callback):
    """Adds CaSpeR to any rehearsal LightningModule (see the module docstring).

    The module must have ``buffer_attr`` (a buffer with ``balanced_sample``), ``features_attr``
    (a method: inputs -> penultimate features) and ``task_attr`` (the current task index).
    """

    def __init__(
        self,
        regularizer: CasperRegularizer,
        buffer_attr: str = "buffer",
        features_attr: str = "features",
        task_attr: str = "current_task",
    ):
        self.regularizer = regularizer
        self.buffer_attr, self.features_attr, self.task_attr = buffer_attr, features_attr, task_attr

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        reg = self.regularizer
        reg.task = int(getattr(pl_module, self.task_attr, 0))
        buffer = getattr(pl_module, self.buffer_attr)
        if not reg.active(buffer):
            return
        value = reg.loss(getattr(pl_module, self.features_attr), buffer, pl_module.device)
        if value is None:
            return
        start = time.perf_counter()
        (reg.rho * value).backward()
        reg.seconds += time.perf_counter() - start
