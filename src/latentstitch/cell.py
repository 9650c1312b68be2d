"""A cell: the source space, the target space, a method, its anchors and a task, built once from
the config and evaluated in one generic pass.

The method declares what it needs (``paired``: parallel anchors, or unpaired samples of the two
train splits) and what it does (``projection_method``: a translator maps source latents into the
target space; a projection method maps both spaces into a shared one, and the decoder is trained
on the target's projection). Whatever it is, the cell reduces it to two maps, one for each side,
and hands the task a decoder spec and latents to score:

- ``native``: the decoder on the (mapped) target's test latents;
- ``stitched``: the decoder on the mapped source test latents;
- ``untranslated``: the decoder on the raw source test latents (translators, equal widths only);
- for discovered anchors (``anchors=bootstrap``), the *true-anchor twin*: the same method fitted on
  the true partners of the discovered pairs, scored the same way (``stitched_<score>_true_anchors``);
- the translation fidelity (latent MSE / cosine to the target, CKA of the two spaces).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from latentstitch import metrics
from latentstitch.anchors import ANCHORS, AnchorPairs, AnchorStrategy, split_anchors
from latentstitch.decoders import DecoderSpec
from latentstitch.encoders import Space, SpaceBuilder, encoder_label
from latentstitch.errors import ConfigError
from latentstitch.tasks import Task
from latentstitch.translation import METHODS, TRANSLATORS, TranslationError
from latentstitch.translation.relative import anchor_digest

Anchors = torch.Tensor | AnchorPairs | None


def instantiate_setting(node: DictConfig, group: str) -> Any:
    """``instantiate(node)``; a bad setting becomes one ConfigError line naming its ``group``."""
    try:
        return instantiate(node)
    except Exception as e:  # noqa: BLE001 - report which setting is wrong, in one line
        cause = e.__cause__ or e
        raise ConfigError(f"{group}: {cause}") from None


# ------------------------------------------------------------------------------------- identity


def _class_name(node: DictConfig) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1]


def _name_of_target(node: DictConfig, registry: dict[str, type]) -> str:
    cls_name = _class_name(node)
    return next((name for name, cls in registry.items() if cls.__name__ == cls_name), cls_name)


def _method_class(node: DictConfig) -> type | None:
    return next((cls for cls in METHODS.values() if cls.__name__ == _class_name(node)), None)


def method_label(node: DictConfig) -> str:
    """The ``translator`` column: the translator's name, or for the relative family and the
    unsupervised translator the name plus the settings that differ from the defaults (so a sweep
    over ``translator.projections`` gives one grid per product of invariances)."""
    cls = _method_class(node)
    if cls is None:
        return _name_of_target(node, TRANSLATORS)
    return cls.label(OmegaConf.to_container(node, resolve=True))


def anchors_label(node: DictConfig) -> str:
    name = _name_of_target(node, ANCHORS)
    if name == "bootstrap":
        return f"bootstrap-seeds={node.get('seeds', 15)}"
    if name in ("kmeans", "fps") and node.get("space", "source") != "source":
        return f"{name}-space={node.space}"
    return name


def task_of(cfg: DictConfig) -> Task:
    """The cell's task (``task=classification|retrieval|reconstruction`` or any ``_target_``)."""
    node = cfg.get("task")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(
            f"task={node!r}: pick a task config (task=classification|retrieval|reconstruction) or set task._target_"
        )
    settings = OmegaConf.masked_copy(node, [k for k in node if k != "name"])
    task = instantiate_setting(settings, "task")
    if not isinstance(task, Task):
        raise ConfigError(f"task._target_={node._target_} is not a latentstitch.tasks.Task")
    return task


def cell_identity(cfg: DictConfig) -> dict[str, Any]:
    """What identifies a cell in a grid (from the config alone, so failed cells have it too)."""
    cls = _method_class(cfg.translator)
    paired = cls is None or cls.paired
    task = task_of(cfg)
    return {
        "encoder": encoder_label(cfg.encoder),
        "decoder": encoder_label(cfg.decoder.space),
        "translator": method_label(cfg.translator),
        "scaling": cfg.translator.get("scaling", "standard"),
        "head": task.head_label(cfg.head),
        "anchors": anchors_label(cfg.anchors) if paired else "none",
        "num_anchors": (int(cfg.anchors.num) if str(cfg.anchors.num).isdigit() else None) if paired else 0,  # None: still auto
        "anchor_seed": int(cfg.anchors.seed),
        "dataset": cfg.dataset.name,
        "task": task.name,
        "score": task.primary,
    }


# ------------------------------------------------------------------------------------- fitting


def check_method(method: Any, strategy: AnchorStrategy, train_size: int) -> None:
    """What a method needs of the anchors or samples, checked before any training (one line each)."""
    if method.paired and hasattr(method, "check_anchors"):
        method.check_anchors(strategy.num)
    if not method.paired and hasattr(method, "check_samples"):  # fitted on the two halves of the train split
        method.check_samples(train_size // 2, train_size - train_size // 2)


def fit_method(method: Any, source: Space, target: Space, anchors: Anchors, seed: int = 0) -> dict[str, Any]:
    """Fit a translator (or projection method) on the cell's anchors; returns what the cell
    reports about them: ``num_anchors``, and for discovered anchors their ``anchor_precision``.

    An unpaired method (``paired = False``) is fitted on two disjoint halves of the train split
    instead (source latents of one half, target latents of the other), so no pair exists at all.
    """
    if not method.paired:
        order = torch.randperm(len(source.train), generator=torch.Generator().manual_seed(seed))
        half = len(order) // 2
        method.fit(source.train[order[:half]], target.train[order[half:]])
        return {"num_anchors": 0, "unpaired_samples": half, **getattr(method, "confidence_", {})}  # pair-free confidence
    src, tgt = split_anchors(anchors)
    method.fit(source.train[src], target.train[tgt])
    info: dict[str, Any] = {"num_anchors": int(len(src))}
    if isinstance(anchors, AnchorPairs):
        info.update(
            anchor_precision=anchors.precision,
            anchor_seeds=anchors.seeds,
            anchor_label_agreement=_label_agreement(source, anchors),
        )
    return info


def true_anchor_twin(method: Any, anchors: Anchors) -> tuple[Any, torch.Tensor] | None:
    """For discovered anchors (:class:`AnchorPairs`): an unfitted copy of ``method`` and the true
    parallel anchors of the same count, i.e. the source sample of each discovered pair with its own
    partner (the same item) in the target space; None for any other anchors. Call before fitting
    ``method``; the cell reports the copy's score as ``stitched_<score>_true_anchors``."""
    if not isinstance(anchors, AnchorPairs) or not method.paired:
        return None
    return copy.deepcopy(method), anchors.source


def _label_agreement(source: Space, pairs: AnchorPairs) -> float | None:
    """Share of the discovered pairs whose two items have the same class (a softer precision);
    None on data without labels."""
    if source.train_labels.unique().numel() < 2 or len(pairs) == pairs.seeds:
        return None
    found = slice(pairs.seeds, None)
    return float((source.train_labels[pairs.source[found]] == source.train_labels[pairs.target[found]]).double().mean())


def fidelity(source: Space, target: Space, translated: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, float]:
    """How close T(x) lands to y (or to ``reference``: the target's projection) on the test set,
    and how similar the two spaces are to begin with."""
    reference = target.test if reference is None else reference
    return {
        "latent_mse": metrics.latent_mse(translated, reference),
        "latent_cosine": metrics.mean_cosine(translated, reference),
        "cka": metrics.linear_cka(source.test, target.test),
        "source_norm": metrics.mean_norm(source.test),
        "target_norm": metrics.mean_norm(target.test),
    }


@dataclass
class Fitted:
    """A method fitted on one set of anchors, reduced to what the task needs: the decoder spec of
    the (mapped) target space and the mapped source test latents."""

    method: Any
    info: dict[str, Any]
    decoder: DecoderSpec
    stitched: torch.Tensor

    @property
    def target(self) -> Space:
        return self.decoder.space


def fit(
    method: Any,
    source: Space,
    target: Space,
    anchors: Anchors,
    space_cfg: DictConfig | None = None,
    head_cfg: DictConfig | None = None,
) -> Fitted:
    """Fit ``method`` and map both sides: a translator maps the source into the target space, a
    projection method both into its projection (the decoder then trains on the target's, keyed by
    the method's settings and the anchor samples)."""
    info = fit_method(method, source, target, anchors)
    if not method.projection_method:
        return Fitted(method, info, DecoderSpec(target, space_cfg, head_cfg), method.transform(source.test))
    _, tgt = split_anchors(anchors)
    projected = Space(f"{method.name}({target.label})", method.transform_target(target.train), target.train_labels,
                      method.transform_target(target.test), target.test_labels)  # fmt: skip
    key = {**method.settings(), "anchors": anchor_digest(tgt), "num_anchors": int(len(tgt))}
    spec = DecoderSpec(projected, space_cfg, head_cfg, projection=key, input_layer=method.decoder_input)
    return Fitted(method, info, spec, method.transform_source(source.test))


# ------------------------------------------------------------------------------------- the cell


@dataclass
class Cell:
    """One cell of a stitching grid, built from the config by :meth:`from_config`.

    ``source`` / ``target``: the encoder configs of the two spaces; ``method``: a translator or a
    projection method (``translator=...``); ``anchors``: the anchor strategy; ``task``: how the
    decoder is obtained and the cell scored; ``head``: the head config the task may train.
    """

    source: DictConfig
    target: DictConfig
    method: Any
    anchors: AnchorStrategy
    task: Task
    head: DictConfig

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Cell:
        return cls(cfg.encoder, cfg.decoder.space, instantiate_setting(cfg.translator, "translator"),
                   instantiate_setting(cfg.anchors, "anchors"), task_of(cfg), cfg.head)  # fmt: skip

    def check(self, builder: SpaceBuilder) -> None:
        """Everything that can be checked without training: the task on this data and method, the
        anchor count, the two widths, what the method needs of its anchors or samples."""
        train_size = len(builder.items.ids("train"))
        self.task.check(builder.items, self.method, self.head)
        self.anchors.check(train_size)
        try:
            self.method.check_dims(builder.dim(self.source), builder.dim(self.target))
            check_method(self.method, self.anchors, train_size)
        except TranslationError as e:
            raise ConfigError(str(e)) from None

    def evaluate(self, builder: SpaceBuilder, output_dir: Path | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
        """Scores of the cell (a flat dict) and its pictures (written into ``output_dir``, if given)."""
        source, target = builder.space(self.source), builder.space(self.target)
        # methods fitted on unpaired samples get no anchors; kmeans / fps / bootstrap read the latents
        anchors = (
            self.anchors.select(source.train_labels, source=source.train, target=target.train) if self.method.paired else None
        )
        scored = score_spaces(source, target, self.method, anchors, self.task, lambda spec: self.task.decoder(spec, builder),
                              self.target, self.head)  # fmt: skip
        # the fitted cell, for +export=stitched: its anchors, decoder and the width the decoder reads
        self.anchors_, self.decoder_ = anchors, scored.decoder
        self.decoder_input_dim_ = int(scored.scores.get("projected_dim") or scored.scores["target_dim"])
        images = self.task.images(scored.decoder, scored.parts, builder, output_dir) if output_dir is not None else {}
        return scored.scores, images


@dataclass
class Scored:
    """What :func:`score_spaces` returns: the flat scores, the decoder and the latents it scored."""

    scores: dict[str, Any]
    decoder: Any
    parts: dict[str, torch.Tensor]


def score_spaces(source: Space, target: Space, method: Any, anchors: Anchors, task: Task, decoder_of: Callable[[DecoderSpec], Any],
                 space_cfg: DictConfig | None = None, head_cfg: DictConfig | None = None) -> Scored:  # fmt: skip
    """The generic cell on two spaces: fit ``method`` on ``anchors``, get the decoder of the
    (mapped) target from ``decoder_of(spec)`` and let ``task`` score native, stitched and
    untranslated latents, the true-anchor twin for discovered anchors, and the fidelity."""
    if not torch.equal(source.test_labels, target.test_labels):
        raise ValueError("source and target test latents are not parallel (labels differ)")
    twin = true_anchor_twin(method, anchors)  # an unfitted copy: before the method is fitted
    fitted = fit(method, source, target, anchors, space_cfg, head_cfg)
    decoder = decoder_of(fitted.decoder)
    projecting = method.projection_method
    result: dict[str, Any] = {"source_dim": source.dim, "target_dim": target.dim}
    if projecting:
        result["projected_dim"] = fitted.target.dim
    result.update(fitted.info)
    result.update(task.report(decoder, fitted.target))
    untranslated = source.test if not projecting and source.dim == target.dim else None
    parts = {"native": fitted.target.test, "stitched": fitted.stitched, "untranslated": untranslated}
    for name, latents in parts.items():
        if latents is None:
            scores = task.missing()
        elif name == "native":
            scores = task.native(decoder, latents, fitted.target)
        else:
            scores = task.score(decoder, latents, fitted.target)
        result.update({f"{name}_{k}": v for k, v in scores.items()})
    result.update(task.ratio(result))
    if twin is not None:  # the same method on true anchors of the same count (its own decoder, if projected)
        true = fit(twin[0], source, target, twin[1], space_cfg, head_cfg)
        scores = task.score(decoder_of(true.decoder) if projecting else decoder, true.stitched, true.target)
        result.update({f"stitched_{k}_true_anchors": scores[k] for k in task.twin_scores or task.scores})
    result.update(fidelity(source, target, fitted.stitched, fitted.target.test if projecting else None))
    if projecting and decoder is not None:
        result["decoder_norm"] = getattr(method, "decoder_norm", None)
    return Scored(result, decoder, {k: v for k, v in parts.items() if v is not None})
