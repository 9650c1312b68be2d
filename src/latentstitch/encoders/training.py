"""Lightning pieces shared by encoders and decoder heads: the classifier module, the Trainer
factory, and latent extraction that returns every sample exactly once, in dataset order, also
under DDP (where Lightning's predict sampler shards samples across ranks)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Keep Lightning's banner lines (GPU/TPU available, tips) and known-harmless warnings out of
    the console; progress bars, our own logs and real warnings stay."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    for message in (r".*LeafSpec.*", r".*no `val_dataloader`.*", r".*does not have many workers.*", r".*anonymous setting.*"):
        warnings.filterwarnings("ignore", message=message)


class IndexedTensors(Dataset):
    """(index, input, label) triples over in-memory tensors; the index lets predictions be re-ordered."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return i, self.inputs[i], self.labels[i]


class EncoderModule(L.LightningModule):
    """What every trainable model here shares: ``features`` (the encoder proper, what
    ``predict_step`` returns), AdamW with a one-cycle schedule, and per-stage logging."""

    def __init__(self, features: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0, name: str = "model"):
        super().__init__()
        self.features = features
        self.lr, self.weight_decay, self.name = lr, weight_decay, name

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss": ..., and any other metric to log} for one batch."""
        raise NotImplementedError

    def _step(self, batch, stage: str) -> torch.Tensor:
        _, x, y = batch
        scores = self.loss(x, y)
        on_step = stage == "train"
        for key, value in scores.items():
            self.log(f"{self.name}/{stage}_{key}", value, on_step=on_step, on_epoch=True, sync_dist=True)
            # short names for the progress bar only (the full names do not fit beside it)
            self.log(f"{stage}_{key}", value, prog_bar=True, logger=False, on_step=on_step, on_epoch=not on_step, sync_dist=True)
        return scores["loss"]

    def on_fit_start(self) -> None:
        # every rank says it: a DDP launcher that reset the threads would show here
        log.info("rank %d trains %s with %d intra-op threads", self.global_rank, self.name, torch.get_num_threads())

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        idx, x, _ = batch
        return {"idx": idx, "z": self.features(x)}

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class FrozenModule(EncoderModule):
    """A frozen pretrained encoder as a LightningModule, so extraction shares Trainer.predict's
    devices, DDP sharding, ordered gathering and progress bar with the scratch encoders."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__(encoder, name=f"frozen/{type(encoder).__name__}")

    def train(self, mode: bool = True) -> FrozenModule:
        return super().train(False)


class ClassifierModule(EncoderModule):
    """``head(features(x))`` trained with cross-entropy.

    For an encoder, ``features`` is the backbone and ``head`` a linear classifier; for a decoder
    head trained on latents, ``features`` is the identity.
    """

    def __init__(self, features: nn.Module, head: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0, name: str = "model"):
        super().__init__(features, lr, weight_decay, name)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def loss(self, x, y):
        logits = self(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "acc": (logits.argmax(dim=1) == y).float().mean()}


class AutoencoderModule(EncoderModule):
    """``decoder(features(x))`` trained to reconstruct ``x`` (mean squared error)."""

    def __init__(self, features: nn.Module, decoder: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0, name: str = "model"):
        super().__init__(features, lr, weight_decay, name)
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.features(x))

    def loss(self, x, y):
        return {"loss": nn.functional.mse_loss(self(x), x)}


def make_trainer(trainer_cfg: dict[str, Any], logger: Any = False, **overrides: Any) -> L.Trainer:
    """A Lightning Trainer from the ``trainer`` config group; we cache weights ourselves (training
    checkpoints only where :func:`fit_module` asks for them)."""
    kwargs = dict(trainer_cfg)
    kwargs.update(logger=logger, enable_checkpointing=False, enable_model_summary=False)
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


CHECKPOINT = "last.ckpt"


def _checkpointing(every: int, label: str) -> tuple[list[L.Callback], str | None]:
    """Callbacks that checkpoint a training every ``every`` optimizer steps into the scratch dir
    of the cache entry being built, and the checkpoint to resume from if an earlier run of the
    same build (a preempted or requeued job) left one. Outside a cache build, or with
    ``every=0``: nothing."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from latentstitch.cache import build_dir

    folder = build_dir()
    if folder is None or every <= 0:
        return [], None
    callback = ModelCheckpoint(dirpath=folder, filename=CHECKPOINT.removesuffix(".ckpt"), every_n_train_steps=every,
                               save_top_k=1, enable_version_counter=False)  # fmt: skip
    last = folder / CHECKPOINT
    if not last.is_file():
        return [callback], None
    try:
        step = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
    except Exception as e:  # noqa: BLE001 - a checkpoint cut short by the kill: start over
        log.warning("%s: checkpoint %s is unreadable (%s): training from the start", label, last, e)
        last.unlink(missing_ok=True)
        return [callback], None
    log.info("%s: resuming from its checkpoint at step %d (%s)", label, step, last)
    return [callback], str(last)


def loader(
    inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool = False, pin_memory: bool = False
) -> DataLoader:
    """Batches of in-memory inputs; ``pin_memory`` (on a GPU) makes their copy to the device asynchronous."""
    return DataLoader(
        IndexedTensors(inputs, labels), batch_size=batch_size, shuffle=shuffle, num_workers=0, pin_memory=pin_memory
    )


def on_gpu(trainer_cfg: dict[str, Any]) -> bool:
    return str(trainer_cfg.get("accelerator", "cpu")) in ("gpu", "cuda", "auto") and torch.cuda.is_available()


def budget_steps(steps: int, batches_per_epoch: int, max_epochs: int | None) -> int:
    """``steps``, capped at ``max_epochs`` epochs of ``batches_per_epoch`` (no cap when None)."""
    return int(steps) if not max_epochs else int(min(steps, max_epochs * batches_per_epoch))


def fit_module(
    module: EncoderModule,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    steps: int,
    batch_size: int,
    trainer_cfg: dict[str, Any],
    logger: Any = False,
    max_epochs: int | None = None,
    evaluations: int = 5,
    checkpoint_every: int = 0,
) -> EncoderModule:
    """Train for ``steps`` optimizer steps, but at most ``max_epochs`` passes over ``train``.

    The models' budgets are in steps, sized for the large datasets (633 steps of 256 are 3
    epochs of Fashion-MNIST); a small dataset caps them with its ``max_epochs`` (30 epochs of the
    1,293 digits are 180 steps: beyond that more steps only overfit and cost time). Validation
    runs once an epoch, but at most ``evaluations`` times in all. Inside a cache build,
    ``checkpoint_every`` > 0 checkpoints the training every that many steps and resumes from the
    build's last checkpoint (see :func:`_checkpointing`).
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"training needs steps >= 1 and batch_size >= 1, got steps={steps}, batch_size={batch_size}")
    train_loader = loader(*train, batch_size, shuffle=True)
    steps = budget_steps(steps, len(train_loader), max_epochs)
    val_loader = loader(*val, batch_size) if val is not None and len(val[1]) else None
    interval = max(len(train_loader), steps // max(1, evaluations))
    callbacks, resume = _checkpointing(checkpoint_every, getattr(module, "name", "model"))
    trainer = make_trainer(trainer_cfg, logger=logger, max_steps=steps, max_epochs=-1, check_val_every_n_epoch=None,
                           val_check_interval=min(interval, steps), callbacks=callbacks, enable_checkpointing=bool(callbacks))  # fmt: skip
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume)
    return module


class OrderedGather(BasePredictionWriter):
    """Collects the predictions of all ranks and puts them back in dataset order, dropping the
    duplicates a padding sampler may add. Every rank ends up holding the full result."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")
        self.result: torch.Tensor | None = None

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        idx = torch.cat([p["idx"].cpu() for p in predictions])
        z = torch.cat([p["z"].detach().cpu() for p in predictions])
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            parts: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(parts, (idx, z))
            idx = torch.cat([p[0] for p in parts])
            z = torch.cat([p[1] for p in parts])
        order = idx.argsort(stable=True)
        idx, z = idx[order], z[order]
        keep = torch.ones_like(idx, dtype=torch.bool)
        keep[1:] = idx[1:] != idx[:-1]
        self.result = z[keep]


@torch.no_grad()
def extract_features(
    module: EncoderModule, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, trainer_cfg: dict[str, Any]
) -> torch.Tensor:
    """``module.features`` over ``inputs`` via ``Trainer.predict``: one row per input, in order.

    The trainer's ``precision`` applies (``bf16-mixed`` / ``16-mixed``: Lightning autocasts the
    forward; the latents come back float32); on a GPU the input batches are pinned."""
    gather = OrderedGather()
    trainer = make_trainer(trainer_cfg, callbacks=[gather])
    batches = loader(inputs, labels, batch_size, pin_memory=on_gpu(trainer_cfg) and isinstance(inputs, torch.Tensor))
    trainer.predict(module, batches, return_predictions=False)
    result = gather.result
    if result is None or len(result) != len(labels):
        got = None if result is None else len(result)
        raise RuntimeError(f"latent extraction returned {got} rows for {len(labels)} inputs")
    return result
