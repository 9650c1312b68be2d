"""Tasks: what a cell's decoder is and how a cell is scored.

A cell (:mod:`latentstitch.cell`) maps the source space into the target space (or both into a
shared projection) and hands the latents to its task. The task owns the rest:

- :meth:`Task.decoder`: how the decoder for a space is obtained (a head trained on it and cached,
  the autoencoder's own decoder, or none at all for retrieval);
- :meth:`Task.score`: the scores of that decoder on some latents of the target's test items;
- :meth:`Task.check`: what the task needs of the data and the method, checked before any training.

Adding a task is one subclass and one file in ``conf/task/`` naming it by ``_target_``; the cell
and the pipeline do not change. The class attributes tell the grid and the console what to show.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from latentstitch import metrics
from latentstitch.errors import ConfigError

if TYPE_CHECKING:
    from latentstitch.data import ItemDataset
    from latentstitch.decoders import DecoderSpec
    from latentstitch.encoders import Space, SpaceBuilder

Scores = dict[str, Any]


class Task:
    """Base class of the tasks a cell can be scored on.

    Class attributes: ``name`` (the ``task`` column), ``scores`` (the score names of one set of
    latents, reported as ``native_<score>``, ``stitched_<score>``, ``untranslated_<score>``),
    ``primary`` (the grid's score), ``lower_is_better`` (for the heatmap's colours), ``twin_scores``
    (reported as ``stitched_<score>_true_anchors`` for discovered anchors) and ``needs_labels``.
    """

    name: ClassVar[str] = "task"
    scores: ClassVar[tuple[str, ...]] = ()
    primary: ClassVar[str] = ""
    lower_is_better: ClassVar[bool] = False
    twin_scores: ClassVar[tuple[str, ...]] | None = None  # None: all of ``scores``
    needs_labels: ClassVar[bool] = False

    def head_label(self, head_cfg: DictConfig) -> str:
        """The cell's ``head`` column."""
        return "none"

    def check(self, items: ItemDataset, method: Any, head_cfg: DictConfig) -> None:
        """Raise ConfigError when the task cannot run on ``items`` with ``method`` (before any training)."""
        if self.needs_labels and not items.has_labels:
            raise ConfigError(f"dataset {items.name} has no labels: its cells are retrieval cells (task=retrieval)")

    def decoder(self, spec: DecoderSpec, builder: SpaceBuilder) -> Any:
        """The decoder of the space ``spec`` describes (None where the task needs none)."""
        return None

    def score(self, decoder: Any, latents: torch.Tensor, target: Space) -> Scores:
        """Scores of ``decoder`` on ``latents``, rows parallel to ``target``'s test items."""
        raise NotImplementedError

    def native(self, decoder: Any, latents: torch.Tensor, target: Space) -> Scores:
        """The native scores (the decoder on its own space's test latents): by default :meth:`score`."""
        return self.score(decoder, latents, target)

    def missing(self) -> Scores:
        """The scores of latents that do not exist (untranslated latents of another width)."""
        return {k: None for k in self.scores}

    def ratio(self, result: Scores) -> Scores:
        """``stitched_over_native`` of the primary score, where a native score exists."""
        native, stitched = result.get(f"native_{self.primary}"), result.get(f"stitched_{self.primary}")
        return {"stitched_over_native": stitched / native if native and stitched is not None else None}

    def report(self, decoder: Any, target: Space) -> Scores:
        """Keys the cell reports once, beside the scores (e.g. the retrieval pool)."""
        return {}

    def images(self, decoder: Any, parts: dict[str, torch.Tensor], builder: SpaceBuilder, output_dir: Path) -> dict[str, Path]:
        """Pictures of the cell (written into ``output_dir``; logged to W&B)."""
        return {}


class Classification(Task):
    """A head trained on the target space (``head=mlp|linear|svm``, cached), scored by accuracy
    and macro-F1 of the predicted classes."""

    name = "classification"
    scores = ("acc", "macro_f1")
    primary = "acc"
    needs_labels = True

    def head_label(self, head_cfg: DictConfig) -> str:
        return str(head_cfg.name)

    def check(self, items: ItemDataset, method: Any, head_cfg: DictConfig) -> None:
        super().check(items, method, head_cfg)
        if getattr(method, "projection_method", False) and head_cfg.name == "svm" and method.decoder_input_trainable:
            raise ConfigError(
                "head=svm cannot train the relative decoder's input layer (aggregation=mlp_sum or decoder_norm=batchnorm): "
                "use head=mlp or head=linear"
            )

    def decoder(self, spec: DecoderSpec, builder: SpaceBuilder) -> nn.Module:
        from latentstitch.decoders import get_decoder

        return get_decoder(spec, builder)

    def score(self, decoder: nn.Module, latents: torch.Tensor, target: Space) -> Scores:
        from latentstitch.decoders import predict

        pred = predict(decoder, latents)
        return {"acc": metrics.accuracy(pred, target.test_labels), "macro_f1": metrics.macro_f1(pred, target.test_labels)}


class Retrieval(Task):
    """No decoder: each item's stitched latent looks up its own item among the target's test
    latents (cosine). ``top1``, ``top5``, ``mrr`` and ``foscttm`` (lower is better: see
    ``metrics.retrieval``); a space retrieving itself is trivially 1, so there is no native score."""

    name = "retrieval"
    scores = ("top1", "top5", "mrr", "foscttm")
    primary = "top1"
    twin_scores = ("top1", "mrr")

    def score(self, decoder: None, latents: torch.Tensor, target: Space) -> Scores:
        scores = metrics.retrieval(latents, target.test)
        scores.pop("pool")
        return scores

    def native(self, decoder: None, latents: torch.Tensor, target: Space) -> Scores:
        return {"top1": None}

    def ratio(self, result: Scores) -> Scores:
        return {}

    def report(self, decoder: None, target: Space) -> Scores:
        return {"pool": len(target.test)}


class Reconstruction(Task):
    """The target autoencoder's own decoder (``encoder=ae decoder=ae``), scored by pixel MSE
    against the original test images; writes ``reconstructions.png``."""

    name = "reconstruction"
    scores = ("mse",)
    primary = "mse"
    lower_is_better = True

    def __init__(self, strip: int = 10) -> None:
        self.strip = int(strip)
        self._images: torch.Tensor | None = None

    def head_label(self, head_cfg: DictConfig) -> str:
        return "own-decoder"

    def check(self, items: ItemDataset, method: Any, head_cfg: DictConfig) -> None:
        if getattr(method, "projection_method", False):
            raise ConfigError(
                f"translator={method.name} trains the decoder on the target's projection; task=reconstruction uses "
                "the autoencoder's own decoder: pick a translator (ortho, linear, inverse_relative, ...)"
            )

    def decoder(self, spec: DecoderSpec, builder: SpaceBuilder) -> nn.Module:
        self._images = builder.data.test.images
        self._mean, self._std = list(builder.dataset_cfg.mean), list(builder.dataset_cfg.std)
        module = builder.encoder(spec.space_cfg)
        if not hasattr(module, "decoder"):
            raise ConfigError(f"task=reconstruction needs an autoencoder as the target (decoder=ae), not {spec.space.label}")
        return module.decoder.eval()

    @torch.no_grad()
    def decode(self, decoder: nn.Module, latents: torch.Tensor) -> torch.Tensor:
        decoder.eval()
        return torch.cat([decoder(chunk) for chunk in latents.split(1024)])

    def score(self, decoder: nn.Module, latents: torch.Tensor, target: Space) -> Scores:
        assert self._images is not None, "decoder() first"
        return {"mse": metrics.latent_mse(self.decode(decoder, latents), self._images)}

    def images(
        self, decoder: nn.Module, parts: dict[str, torch.Tensor], builder: SpaceBuilder, output_dir: Path
    ) -> dict[str, Path]:
        from latentstitch.logging import save_image_strip

        assert self._images is not None, "decoder() first"
        rows = {"original": self._images[: self.strip], **{k: self.decode(decoder, v[: self.strip]) for k, v in parts.items()}}
        output_dir.mkdir(parents=True, exist_ok=True)
        return {"reconstructions": save_image_strip(rows, output_dir / "reconstructions.png", self._mean, self._std, self.strip)}
