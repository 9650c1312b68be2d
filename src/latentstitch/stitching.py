"""One cell: translate the source space into the target space on parallel anchors and score the
target's decoder on native, stitched and untranslated test latents; on data without labels, a
retrieval cell scores how well translated source embeddings find their own item among the
target's."""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from latentstitch import metrics
from latentstitch.anchors import ANCHORS, AnchorPairs, split_anchors
from latentstitch.decoders import predict
from latentstitch.encoders import Space, encoder_label
from latentstitch.translation import METHODS, TRANSLATORS, Translator
from latentstitch.translation.relative import anchor_digest

SCORES = ("native", "stitched", "untranslated")


def _name_of_target(node: DictConfig, registry: dict[str, type]) -> str:
    cls_name = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    return next((name for name, cls in registry.items() if cls.__name__ == cls_name), cls_name)


def _method_class(node: DictConfig) -> type | None:
    cls_name = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    return next((cls for cls in METHODS.values() if cls.__name__ == cls_name), None)


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


def is_projection(method: Any) -> bool:
    """A projection method trains the decoder on the target's projection (``translator=relative``)."""
    return bool(getattr(method, "projection_method", False))


def is_paired(method: Any) -> bool:
    """False for methods fitted on unpaired samples (``translator=unsupervised``)."""
    return bool(getattr(method, "paired", True))


def cell_identity(cfg: DictConfig) -> dict[str, Any]:
    """What identifies a cell in a grid (from the config alone, so failed cells have it too)."""
    task = cfg.get("task", "classification")
    cls = _method_class(cfg.translator)
    return {
        "encoder": encoder_label(cfg.encoder),
        "decoder": encoder_label(cfg.decoder.space),
        "translator": method_label(cfg.translator),
        "scaling": cfg.translator.get("scaling", "standard"),
        "head": {"classification": cfg.head.name, "reconstruction": "own-decoder"}.get(task, "none"),
        "anchors": anchors_label(cfg.anchors) if cls is None or cls.paired else "none",
        "num_anchors": int(cfg.anchors.num) if cls is None or cls.paired else 0,
        "anchor_seed": int(cfg.anchors.seed),
        "dataset": cfg.dataset.name,
        "task": task,
    }


def fit_method(method: Any, source: Space, target: Space, anchors: torch.Tensor | AnchorPairs | None, seed: int = 0) -> dict[str, Any]:
    """Fit a translator (or projection method) on the cell's anchors; returns what the cell
    reports about them: ``num_anchors``, and for discovered anchors their ``anchor_precision``.

    An unpaired method (``paired = False``) is fitted on two disjoint halves of the train split
    instead (source latents of one half, target latents of the other), so no pair exists at all.
    """
    if not is_paired(method):
        order = torch.randperm(len(source.train), generator=torch.Generator().manual_seed(seed))
        half = len(order) // 2
        method.fit(source.train[order[:half]], target.train[order[half:]])
        return {"num_anchors": 0, "unpaired_samples": half}
    src, tgt = split_anchors(anchors)
    method.fit(source.train[src], target.train[tgt])
    info: dict[str, Any] = {"num_anchors": int(len(src))}
    if isinstance(anchors, AnchorPairs):
        info.update(anchor_precision=anchors.precision, anchor_seeds=anchors.seeds, anchor_label_agreement=_label_agreement(source, anchors))
    return info


def true_anchor_twin(method: Any, anchors: torch.Tensor | AnchorPairs | None) -> tuple[Any, torch.Tensor] | None:
    """For discovered anchors (:class:`AnchorPairs`): an unfitted copy of ``method`` and the true
    parallel anchors of the same count, i.e. the source sample of each discovered pair with its own
    partner (the same item) in the target space; None for any other anchors. Call before fitting
    ``method``; the cell reports the copy's score as ``stitched_<score>_true_anchors``."""
    if not isinstance(anchors, AnchorPairs) or not is_paired(method):
        return None
    return copy.deepcopy(method), anchors.source


def _label_agreement(source: Space, pairs: AnchorPairs) -> float | None:
    """Share of the discovered pairs whose two items have the same class (a softer precision);
    None on data without labels."""
    if source.train_labels.unique().numel() < 2 or len(pairs) == pairs.seeds:
        return None
    found = slice(pairs.seeds, None)
    return float((source.train_labels[pairs.source[found]] == source.train_labels[pairs.target[found]]).double().mean())


def _scores(head: nn.Module, latents: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    pred = predict(head, latents)
    return {"acc": metrics.accuracy(pred, labels), "macro_f1": metrics.macro_f1(pred, labels)}


def _fidelity(source: Space, target: Space, translated: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, float]:
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


def evaluate_retrieval_cell(source: Space, target: Space, translator: Translator, anchor_idx: torch.Tensor) -> dict[str, Any]:
    """Retrieval on parallel test items without labels: T(source test) ranked against target test.

    ``stitched_{top1,top5,mrr}`` for the translated embeddings, ``untranslated_*`` for the raw
    source embeddings where the dims match (None otherwise), and ``pool`` (the candidates).
    """
    if is_projection(translator):
        return _projected_retrieval(source, target, translator, anchor_idx)
    twin = true_anchor_twin(translator, anchor_idx)
    result: dict[str, Any] = {"source_dim": source.dim, "target_dim": target.dim, **fit_method(translator, source, target, anchor_idx)}
    translated = translator.transform(source.test)
    stitched = metrics.retrieval(translated, target.test)
    result["pool"] = stitched.pop("pool")
    result.update({f"stitched_{k}": v for k, v in stitched.items()})
    if twin is not None:
        method, idx = twin
        fit_method(method, source, target, idx)
        true = metrics.retrieval(method.transform(source.test), target.test)
        result.update({f"stitched_{k}_true_anchors": true[k] for k in ("top1", "mrr")})
    raw = metrics.retrieval(source.test, target.test) if source.dim == target.dim else {}
    result.update({f"untranslated_{k}": raw.get(k) for k in stitched})
    result["native_top1"] = None  # a space retrieving itself: trivially 1, not a baseline
    result.update(_fidelity(source, target, translated))
    return result


def evaluate_cell(source: Space, target: Space, decoder: nn.Module, translator: Translator, anchor_idx: torch.Tensor) -> dict[str, Any]:
    """Fit ``translator`` on the anchors, then score ``decoder`` (trained on ``target``).

    Returns a flat dict: ``{native,stitched,untranslated}_{acc,macro_f1}`` (untranslated is None
    when the dims differ), the translation fidelity ``latent_mse`` / ``latent_cosine`` between
    T(source test) and target test, and the linear ``cka`` between the two test spaces.

    With discovered anchors (``anchors=bootstrap``) also ``stitched_{acc,macro_f1}_true_anchors``:
    the same translator fitted on true parallel anchors of the same count (see
    :func:`true_anchor_twin`); retrieval cells report ``stitched_{top1,mrr}_true_anchors``,
    reconstruction cells ``stitched_mse_true_anchors``.
    """
    if not torch.equal(source.test_labels, target.test_labels):
        raise ValueError("source and target test latents are not parallel (labels differ)")
    twin = true_anchor_twin(translator, anchor_idx)
    result: dict[str, Any] = {"source_dim": source.dim, "target_dim": target.dim, **fit_method(translator, source, target, anchor_idx)}
    translated = translator.transform(source.test)
    parts = {"native": target.test, "stitched": translated, "untranslated": source.test if source.dim == target.dim else None}
    for name, latents in parts.items():
        scores = _scores(decoder, latents, target.test_labels) if latents is not None else {"acc": None, "macro_f1": None}
        result.update({f"{name}_{k}": v for k, v in scores.items()})
    result["stitched_over_native"] = result["stitched_acc"] / result["native_acc"] if result["native_acc"] else None
    if twin is not None:  # the same translator on true anchors of the same count
        method, idx = twin
        fit_method(method, source, target, idx)
        true = _scores(decoder, method.transform(source.test), target.test_labels)
        result.update({f"stitched_{k}_true_anchors": v for k, v in true.items()})
    result.update(_fidelity(source, target, translated))
    return result


@torch.no_grad()
def evaluate_reconstruction_cell(
    source: Space, target: Space, decoder: nn.Module, translator: Translator, anchor_idx: torch.Tensor, images: torch.Tensor
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Reconstruction stitching: the target autoencoder's decoder on native, translated and
    untranslated test latents, scored by pixel MSE against the original images.

    Returns the scores and the reconstructions (for an image strip).
    """
    twin = true_anchor_twin(translator, anchor_idx)
    result: dict[str, Any] = {"source_dim": source.dim, "target_dim": target.dim, **fit_method(translator, source, target, anchor_idx)}
    translated = translator.transform(source.test)
    decoder.eval()
    parts = {"native": target.test, "stitched": translated, "untranslated": source.test if source.dim == target.dim else None}
    outputs = {}
    for name, latents in parts.items():
        if latents is None:
            result[f"{name}_mse"] = None
            continue
        outputs[name] = torch.cat([decoder(chunk) for chunk in latents.split(1024)])
        result[f"{name}_mse"] = metrics.latent_mse(outputs[name], images)
    result["stitched_over_native"] = result["stitched_mse"] / result["native_mse"]
    if twin is not None:
        method, idx = twin
        fit_method(method, source, target, idx)
        true = torch.cat([decoder(chunk) for chunk in method.transform(source.test).split(1024)])
        result["stitched_mse_true_anchors"] = metrics.latent_mse(true, images)
    result.update(_fidelity(source, target, translated))
    return result, outputs


# ---------------------------------------------------------------------------------- projection methods


def project_target(method: Any, source: Space, target: Space, anchors: torch.Tensor | AnchorPairs) -> tuple[Space, dict[str, Any], dict[str, Any]]:
    """Fit a projection method on the anchors; the target's projected space, the settings that
    key the decoder trained on it (method settings + which samples are the anchors), and the
    anchor report of :func:`fit_method`."""
    info = fit_method(method, source, target, anchors)
    _, tgt = split_anchors(anchors)
    projected = Space(f"{method.name}({target.label})", method.transform_target(target.train), target.train_labels,
                      method.transform_target(target.test), target.test_labels)  # fmt: skip
    key = {**method.settings(), "anchors": anchor_digest(tgt), "num_anchors": int(len(tgt))}
    return projected, key, info


def evaluate_projection_cell(
    source: Space, target: Space, method: Any, anchors: torch.Tensor | AnchorPairs, make_decoder: Callable[[Space, dict[str, Any]], nn.Module]
) -> dict[str, Any]:
    """A cell for a projection method (``translator=relative``): the decoder is trained on the
    target's projection (``make_decoder(projected target, cache key)``), native = that decoder on
    the target's projected test latents, stitched = on the source's, projected w.r.t. the same
    anchor samples; untranslated is n/a. ``latent_mse`` / ``latent_cosine`` compare the two
    projections of the test set (the shared space); ``cka`` the two absolute test spaces. With
    discovered anchors, ``stitched_{acc,macro_f1}_true_anchors`` come from a second decoder trained
    on the target's projection w.r.t. true anchors of the same count.
    """
    if not torch.equal(source.test_labels, target.test_labels):
        raise ValueError("source and target test latents are not parallel (labels differ)")
    twin = true_anchor_twin(method, anchors)
    projected, key, info = project_target(method, source, target, anchors)
    decoder = make_decoder(projected, key)
    stitched = method.transform_source(source.test)
    result: dict[str, Any] = {"source_dim": source.dim, "target_dim": target.dim, "projected_dim": projected.dim, **info}
    for name, latents in {"native": projected.test, "stitched": stitched, "untranslated": None}.items():
        scores = _scores(decoder, latents, target.test_labels) if latents is not None else {"acc": None, "macro_f1": None}
        result.update({f"{name}_{k}": v for k, v in scores.items()})
    result["stitched_over_native"] = result["stitched_acc"] / result["native_acc"] if result["native_acc"] else None
    if twin is not None:  # true anchors of the same count: their own projection, their own decoder
        true_method, idx = twin
        true_projected, true_key, _ = project_target(true_method, source, target, idx)
        true = _scores(make_decoder(true_projected, true_key), true_method.transform_source(source.test), target.test_labels)
        result.update({f"stitched_{k}_true_anchors": v for k, v in true.items()})
    result.update(_fidelity(source, target, stitched, projected.test))
    result["decoder_norm"] = getattr(method, "decoder_norm", None)
    return result


def _projected_retrieval(source: Space, target: Space, method: Any, anchors: torch.Tensor | AnchorPairs) -> dict[str, Any]:
    """Retrieval in the shared space of a projection method: source test projections ranked
    against the target test projections."""
    twin = true_anchor_twin(method, anchors)
    info = fit_method(method, source, target, anchors)
    src, tgt = method.transform_source(source.test), method.transform_target(target.test)
    result: dict[str, Any] = {"source_dim": source.dim, "target_dim": target.dim, "projected_dim": src.shape[1], **info}
    stitched = metrics.retrieval(src, tgt)
    result["pool"] = stitched.pop("pool")
    result.update({f"stitched_{k}": v for k, v in stitched.items()})
    if twin is not None:
        true_method, idx = twin
        fit_method(true_method, source, target, idx)
        true = metrics.retrieval(true_method.transform_source(source.test), true_method.transform_target(target.test))
        result.update({f"stitched_{k}_true_anchors": true[k] for k in ("top1", "mrr")})
    result.update({f"untranslated_{k}": None for k in stitched})
    result["native_top1"] = None
    result.update(_fidelity(source, target, src, tgt))
    return result
