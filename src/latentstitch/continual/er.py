"""Experience replay (ER) as a LightningModule, a small CNN, and class-incremental tasks.

ER (as in mammoth's ``er``): each step draws a replay batch from a reservoir buffer, trains on
the stream batch and the replay batch together with cross-entropy, and after the optimiser step
offers the stream batch to the buffer. One Trainer per task (``max_epochs`` = epochs per task);
the module keeps its buffer and ``current_task`` across them.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from latentstitch.continual.buffer import ReservoirBuffer


class SmallCNN(nn.Module):
    """Two conv blocks and a hidden layer: ``features`` (the penultimate layer, ``hidden`` dims,
    after ReLU) and a linear ``classifier``. About 0.2M parameters at the defaults."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 16, hidden: int = 128):
        super().__init__()
        side = image_size // 4
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * side * side, hidden), nn.ReLU(),
        )  # fmt: skip
        self.classifier = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


class ERModule(L.LightningModule):
    """Experience replay around any ``net`` with ``features`` and ``forward``.

    ``buffer``, ``features`` and ``current_task`` are what :class:`CasperCallback` needs, so any
    rehearsal module shaped like this one takes CaSpeR unchanged.
    """

    def __init__(
        self, net: nn.Module, buffer: ReservoirBuffer, lr: float = 0.1, replay_batch_size: int = 32, replay_seed: int = 0
    ):
        super().__init__()
        self.net = net
        self.buffer = buffer
        self.lr = lr
        self.replay_batch_size = replay_batch_size
        self.replay_generator = torch.Generator().manual_seed(replay_seed)
        self.current_task = 0
        self.losses: list[float] = []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if len(self.buffer) > 0 and self.replay_batch_size > 0:
            bx, by = self.buffer.sample(self.replay_batch_size, self.replay_generator)
            x, y = torch.cat([x, bx.to(x.device)]), torch.cat([y, by.to(y.device)])
        loss = F.cross_entropy(self.net(x), y)
        self.losses.append(float(loss.detach()))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.buffer.add(*batch)  # after the step, as in mammoth: the stream batch is not replayed at once

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.net.parameters(), lr=self.lr)


class TensorBatches(Dataset):
    """In-memory (inputs, labels) served a whole batch at a time (no per-item collation)."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.inputs[i], self.labels[i]

    def __getitems__(self, idx: list[int]):
        idx_t = torch.as_tensor(idx)
        return self.inputs[idx_t], self.labels[idx_t]


class ShuffledBatches(Sampler[list[int]]):
    """Seeded shuffled batches; a new permutation every epoch, the same ones for the same seed."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        perm = torch.randperm(self.n, generator=self.generator).tolist()
        for i in range(0, self.n, self.batch_size):
            yield perm[i : i + self.batch_size]


def task_loader(inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int) -> DataLoader:
    return DataLoader(
        TensorBatches(inputs, labels), batch_sampler=ShuffledBatches(len(labels), batch_size, seed), collate_fn=_identity
    )


def _identity(batch):
    return batch


@dataclass
class Task:
    """One class-incremental task: its classes and the ids (into the split's arrays) of its items."""

    classes: list[int]
    train: torch.Tensor
    test: torch.Tensor


def class_incremental_split(num_tasks: int, classes_per_task: int, class_order: list[int] | None = None) -> list[list[int]]:
    """Classes of each task: consecutive groups of ``class_order`` (default 0, 1, 2, ...)."""
    needed = num_tasks * classes_per_task
    order = list(range(needed)) if class_order is None else [int(c) for c in class_order]
    if len(order) < needed or len(set(order)) != len(order):
        raise ValueError(f"{num_tasks} tasks x {classes_per_task} classes need {needed} distinct classes, got order {order}")
    return [order[t * classes_per_task : (t + 1) * classes_per_task] for t in range(num_tasks)]


def make_tasks(train_labels: torch.Tensor, test_labels: torch.Tensor, task_classes: list[list[int]]) -> list[Task]:
    """Positions of each task's items in the train and test label arrays."""
    tasks = []
    for classes in task_classes:
        c = torch.tensor(classes)
        tasks.append(
            Task(classes, torch.isin(train_labels, c).nonzero().squeeze(1), torch.isin(test_labels, c).nonzero().squeeze(1))
        )
    return tasks


@torch.no_grad()
def evaluate(
    net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, tasks: list[Task], seen: int, batch_size: int = 1000
) -> list[float]:
    """Class-incremental accuracy on each of the first ``seen`` tasks' test items: argmax over the
    classes seen so far (logits of classes not yet trained are masked out)."""
    was_training = net.training
    net.eval()
    seen_classes = torch.tensor([c for task in tasks[:seen] for c in task.classes])
    device = next(net.parameters()).device
    accuracies = []
    for task in tasks[:seen]:
        correct = 0
        for start in range(0, len(task.test), batch_size):
            idx = task.test[start : start + batch_size]
            logits = net(inputs[idx].to(device)).cpu()
            masked = torch.full_like(logits, -torch.inf)
            masked[:, seen_classes] = logits[:, seen_classes]
            correct += int((masked.argmax(1) == labels[idx]).sum())
        accuracies.append(correct / max(1, len(task.test)))
    net.train(was_training)
    return accuracies


def average_accuracy(row: list[float]) -> float:
    return sum(row) / len(row)


def forgetting(matrix: list[list[float]]) -> float:
    """Average forgetting after the last task (Chaudhry et al. 2018): for every task but the last,
    its best accuracy after any earlier training stage minus its final accuracy. 0 for one task."""
    last = len(matrix) - 1
    if last < 1:
        return 0.0
    drops = [max(matrix[t][j] for t in range(j, last)) - matrix[last][j] for j in range(last)]
    return sum(drops) / len(drops)
