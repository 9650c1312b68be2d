"""Spaces: the latents one encoder gives for one dataset split, trained and cached on demand.

Scratch encoders are trained here (Lightning) on the view they read: the dataset's normalised
images, the waveforms of an ``audio:<lang>`` view, or the node ids of a ``graph`` view (a graph
encoder is transductive: the graph is bound to the model, and a split is a set of nodes). Frozen
pretrained encoders only run inference, on the view they read (``image``, ``text:<lang>``,
``audio:<lang>``), each with its own per-batch preprocessing. Either way a space is keyed in the cache by everything
that determines it: the dataset and its splits, the encoder's config and, for a frozen encoder,
its identity (package version or weights hash, preprocessing).

Embeddings made elsewhere (``encoder=precomputed``) read the pseudo-view ``id``: they get the
split's item positions, matched to the file's rows by the dataset's item keys when the encoder is
built, so an item without an embedding fails before anything trains.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from latentstitch.cache import Cache
from latentstitch.data import DatasetSplits, ItemDataset, Split, image_splits, text_view
from latentstitch.encoders.pretrained.precomputed import ID_VIEW
from latentstitch.encoders.training import EncoderModule, FrozenModule, budget_steps, extract_features, fit_module
from latentstitch.encoders.zoo import (
    build_encoder,
    build_frozen,
    encoder_label,
    feature_dim,
    is_frozen,
    to_container,
    user_kind,
)
from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
FP32 = ("32-true", "32", "fp32", "None")  # Lightning's spellings of full precision


@dataclass
class Space:
    """Latents of the train and test splits of one dataset under one encoder (rows parallel across spaces)."""

    label: str
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


# what only trains scratch encoders (normalisation, budget): irrelevant to a frozen encoder's space
TRAINING_KEYS = ("mean", "std", "channels", "image_size", "max_epochs", "num_classes")
# where a user's file is and what it is called: its identity holds the file's sha256 instead, so a
# moved or renamed file keeps its cached spaces (``encoder=precomputed`` / ``encoder=module``)
LOCATION_KEYS = ("path", "checkpoint", "label")


def epoch_cap(dataset_max_epochs: int | None, train_cfg: DictConfig) -> int | None:
    """The dataset's cap on passes over its train split, times the encoder's ``epochs_scale``.

    A small dataset caps every step budget (beyond the cap a typical model only overfits), but
    data-hungry models need more passes than that: a ViT on the 1,293 digits reaches 0.76 native
    accuracy in 30 epochs, 0.90 in 60 and 0.96 in 120 (so ``vit`` sets ``epochs_scale: 4``).
    """
    if not dataset_max_epochs:
        return None
    return int(dataset_max_epochs * float(train_cfg.get("epochs_scale", 1)))


def dataset_spec(dataset_cfg: DictConfig | dict, frozen: bool = False) -> dict:
    """The dataset settings that change the data (not where it is read from)."""
    spec = to_container(dataset_cfg)
    for key in ("download", "anchors", "task", *(TRAINING_KEYS if frozen else ())):
        spec.pop(key, None)
    return spec


def encoder_spec(dataset_cfg: DictConfig, encoder_cfg: DictConfig) -> dict:
    if is_frozen(encoder_cfg):
        encoder = to_container(encoder_cfg)
        encoder.pop("batch_size", None)  # how many at a time does not change the outputs
        for key in LOCATION_KEYS if user_kind(encoder_cfg) else ():
            encoder.pop(key, None)
        return {"dataset": dataset_spec(dataset_cfg, frozen=True), "encoder": encoder}
    return {"dataset": dataset_spec(dataset_cfg), "encoder": to_container(encoder_cfg)}


LANGUAGE_VIEWS = ("text", "audio")  # views with one entry per language: ``text:en``, ``audio:fr``
GRAPH_VIEW = "graph"


def view_of(encoder_cfg: DictConfig) -> str:
    """The view an encoder reads: ``image``, ``graph``, or ``text:<language>`` / ``audio:<language>``."""
    view = str(encoder_cfg.get("view", "image"))
    if view not in LANGUAGE_VIEWS:
        return view
    language = str(encoder_cfg.get("language", "en"))
    return text_view(language) if view == "text" else f"{view}:{language}"


def full_batch(batch_size: Any, n: int) -> int:
    """``batch_size``, or all ``n`` inputs at once where it is null / 0 (a graph encoder trains
    full-batch: every step propagates over the whole graph)."""
    return int(batch_size) if batch_size else max(1, int(n))


class SpaceBuilder:
    """Gets spaces out of the cache, training scratch encoders and encoding what is missing."""

    def __init__(
        self,
        cache: Cache,
        items: ItemDataset,
        dataset_cfg: DictConfig,
        trainer_cfg: dict[str, Any],
        logger: Any = False,
        checkpoint_every: int = 0,
    ):
        self.cache, self.items, self.dataset_cfg = cache, items, dataset_cfg
        self.trainer_cfg, self.logger = trainer_cfg, logger
        self.checkpoint_every = int(checkpoint_every)  # steps between training checkpoints (resume after preemption)
        self._frozen: dict[str, Any] = {}
        self._scratch: dict[str, DatasetSplits] = {}

    @classmethod
    def from_config(cls, cfg: DictConfig, items: ItemDataset, logger: Any = False) -> SpaceBuilder:
        """The builder for a composed run config: its cache dir, dataset and trainer settings."""
        trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
        return cls(Cache(cfg.paths.cache_dir), items, cfg.dataset, trainer_cfg, logger, int(cfg.get("checkpoint_every") or 0))

    @cached_property
    def data(self) -> DatasetSplits:
        """Normalised image tensors per split: what scratch image encoders train on and read."""
        return image_splits(self.items, list(self.dataset_cfg.mean), list(self.dataset_cfg.std))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.train.images.shape[1:])

    def scratch_data(self, view: str) -> DatasetSplits:
        """What a scratch encoder of ``view`` trains on and reads, per split: normalised images, an
        audio view's waveforms (N, samples), or a graph's node ids (the graph itself is bound to the
        model, see :meth:`build_scratch`)."""
        if view == "image":
            return self.data
        if view not in self._scratch:
            data = self.items.require_view(view)
            if view == GRAPH_VIEW:
                parts = {s: Split(self.items.ids(s).clone(), self.items.labels_of(s)) for s in ("train", "val", "test")}
            elif view.startswith("audio:"):
                parts = {s: Split(data.waveforms[self.items.ids(s)], self.items.labels_of(s)) for s in ("train", "val", "test")}
            else:
                raise ConfigError(
                    f"no scratch encoder reads the view {view!r} (scratch encoders read image, audio:<lang> or graph); "
                    "use a pretrained encoder for it"
                )
            self._scratch[view] = DatasetSplits(name=self.items.name, num_classes=self.items.num_classes, **parts)
        return self._scratch[view]

    def scratch_input_shape(self, view: str) -> tuple[int, ...]:
        return tuple(self.scratch_data(view).train.images.shape[1:])

    def build_scratch(self, encoder_cfg: DictConfig) -> EncoderModule:
        """The untrained scratch encoder of ``encoder_cfg``; a graph encoder gets the dataset's graph."""
        view = self.check_view(encoder_cfg)
        graph = self.items.views[GRAPH_VIEW] if view == GRAPH_VIEW else None
        return build_encoder(encoder_cfg, self.scratch_input_shape(view), self.items.num_classes, graph=graph)

    def frozen(self, encoder_cfg: DictConfig) -> Any:
        """The frozen encoder of ``encoder_cfg`` (built once; weights load on first use)."""
        key = json.dumps(to_container(encoder_cfg), sort_keys=True, default=str)  # two files may share a label
        if key not in self._frozen:
            encoder = build_frozen(encoder_cfg)
            if encoder.view == ID_VIEW:  # embeddings made elsewhere: match the file's rows to our items now
                encoder.bind(self.items.keys, self.items.name)
            self._frozen[key] = encoder
        return self._frozen[key]

    def check_view(self, encoder_cfg: DictConfig) -> str:
        view = view_of(encoder_cfg)
        if view == ID_VIEW:  # item positions: every dataset has them
            return view
        if view not in self.items.views:
            raise ConfigError(
                f"encoder {encoder_label(encoder_cfg)} reads the view {view!r}, which dataset {self.items.name} does not have "
                f"(it has {self.items.view_names}); pick another encoder or encoder.language"
            )
        return view

    def dim(self, encoder_cfg: DictConfig) -> int:
        """Latent dim of an encoder, without training or loading weights (used to validate early)."""
        self.check_view(encoder_cfg)
        if is_frozen(encoder_cfg):
            return int(self.frozen(encoder_cfg).dim)
        return feature_dim(self.build_scratch(encoder_cfg).features, self.scratch_input_shape(view_of(encoder_cfg)))

    def _with_precision(self, spec: dict) -> dict:
        """``spec`` plus the trainer's precision where it is not fp32: a bf16 / fp16 training or
        extraction (``trainer.precision=bf16-mixed``, autocast by Lightning) gives other weights and
        latents than fp32, so it must not share their cache entries. fp32 keys stay as they were."""
        precision = str(self.trainer_cfg.get("precision", "32-true"))
        return spec if precision in FP32 else {**spec, "precision": precision}

    def encoder(self, encoder_cfg: DictConfig) -> EncoderModule:
        if is_frozen(encoder_cfg):
            return FrozenModule(self.frozen(encoder_cfg))
        module = self.build_scratch(encoder_cfg)
        state = self.cache.get_or_build(
            "encoder",
            self._with_precision(encoder_spec(self.dataset_cfg, encoder_cfg)),
            lambda: self._train(module, encoder_cfg),
            encoder_label(encoder_cfg),
        )
        module.load_state_dict(state)
        return module.eval()

    def _train(self, module: EncoderModule, encoder_cfg: DictConfig) -> dict[str, torch.Tensor]:
        train = encoder_cfg.train
        data = self.scratch_data(view_of(encoder_cfg))
        max_epochs = epoch_cap(self.dataset_cfg.get("max_epochs"), train)
        batch_size = full_batch(train.batch_size, len(data.train))
        batches = -(-len(data.train) // batch_size)
        log.info("training encoder %s for %d steps", encoder_label(encoder_cfg), budget_steps(train.steps, batches, max_epochs))
        L.seed_everything(int(encoder_cfg.seed), workers=True, verbose=False)
        start = time.perf_counter()
        fit_module(
            module,
            (data.train.images, data.train.labels),
            (data.val.images, data.val.labels),
            steps=int(train.steps),
            max_epochs=max_epochs,
            batch_size=batch_size,
            trainer_cfg=self.trainer_cfg,
            logger=self.logger,
            checkpoint_every=self.checkpoint_every,
        )
        log.info("trained encoder %s in %.1f s", encoder_label(encoder_cfg), time.perf_counter() - start)
        state = {k: v.clone() for k, v in module.state_dict().items()}
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            raise ConfigError(
                f"encoder {encoder_label(encoder_cfg)} diverged: NaN/inf weights after training "
                f"(lower encoder.train.lr={train.lr})"
            )
        return state

    def _inputs(self, encoder_cfg: DictConfig, split: str) -> Any:
        """What the encoder reads for ``split``: normalised images for a scratch encoder, the raw
        view (pixels or strings) for a frozen one, which preprocesses per batch, or the item
        positions for embeddings made elsewhere (view ``id``)."""
        view = self.check_view(encoder_cfg)
        if is_frozen(encoder_cfg):
            return self.items.ids(split) if view == ID_VIEW else self.items.view_of(view, self.items.ids(split))
        return self.scratch_data(view).split(split).images

    def space(self, encoder_cfg: DictConfig) -> Space:
        label = encoder_label(encoder_cfg)
        spec = encoder_spec(self.dataset_cfg, encoder_cfg)
        if is_frozen(encoder_cfg):
            spec["identity"] = self.frozen(encoder_cfg).identity()
        spec = self._with_precision(spec)
        trained: list[EncoderModule] = []  # the encoder is loaded at most once, and only on a miss

        def encode(split: str) -> dict[str, torch.Tensor]:
            if not trained:
                trained.append(self.encoder(encoder_cfg))
            labels = self.items.labels_of(split)
            train_cfg = encoder_cfg.get("train") or {}
            batch_size = full_batch(
                encoder_cfg.get("batch_size") or encoder_cfg.get("extract_batch_size") or train_cfg.get("batch_size"), len(labels)
            )
            start = time.perf_counter()
            latents = extract_features(trained[0], self._inputs(encoder_cfg, split), labels, batch_size, self.trainer_cfg)
            elapsed = time.perf_counter() - start
            log.info(
                "encoded %s %s split (%d samples) in %.1f s, %.0f samples/s",
                label,
                split,
                len(latents),
                elapsed,
                len(latents) / max(elapsed, 1e-9),
            )
            bad = int((~torch.isfinite(latents)).sum())
            if bad:
                hint = (
                    "a broken checkpoint?"
                    if is_frozen(encoder_cfg)
                    else f"training diverged? lower encoder.train.lr={encoder_cfg.train.lr}"
                )
                raise ConfigError(f"encoder {label} produced {bad} NaN/inf latent values on the {split} split ({hint})")
            return {"latents": latents.float(), "labels": labels}

        parts = {
            split: self.cache.get_or_build("space", {**spec, "split": split}, lambda s=split: encode(s), f"{label} {split}")
            for split in SPLITS
        }
        return Space(
            label, parts["train"]["latents"], parts["train"]["labels"], parts["test"]["latents"], parts["test"]["labels"]
        )
