"""One cell: translate the source space into the target space on parallel anchors and score the
target's decoder on native, stitched and untranslated test latents; on data without labels, a
retrieval cell scores how well translated source embeddings find their own item among the
target's."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from latentstitch import metrics
from latentstitch.anchors import ANCHORS
from latentstitch.decoders import predict
from latentstitch.encoders import Space, encoder_label
from latentstitch.translation import TRANSLATORS, Translator

SCORES = ("native", "stitched", "untranslated")


def _name_of_target(node: DictConfig, registry: dict[str, type]) -> str:
    cls_name = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    return next((name for name, cls in registry.items() if cls.__name__ == cls_name), cls_name)


def cell_identity(cfg: DictConfig) -> dict[str, Any]:
    """What identifies a cell in a grid (from the config alone, so failed cells have it too)."""
    task = cfg.get("task", "classification")
    return {
        "encoder": encoder_label(cfg.encoder),
        "decoder": encoder_label(cfg.decoder.space),
        "translator": _name_of_target(cfg.translator, TRANSLATORS),
        "scaling": cfg.translator.get("scaling", "standard"),
        "head": {"classification": cfg.head.name, "reconstruction": "own-decoder"}.get(task, "none"),
        "anchors": _name_of_target(cfg.anchors, ANCHORS),
        "num_anchors": int(cfg.anchors.num),
        "anchor_seed": int(cfg.anchors.seed),
        "dataset": cfg.dataset.name,
        "task": task,
    }


def _scores(head: nn.Module, latents: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    pred = predict(head, latents)
    return {"acc": metrics.accuracy(pred, labels), "macro_f1": metrics.macro_f1(pred, labels)}


def _fidelity(source: Space, target: Space, translated: torch.Tensor) -> dict[str, float]:
    """How close T(x) lands to y on the test set, and how similar the two spaces are to begin with."""
    return {
        "latent_mse": metrics.latent_mse(translated, target.test),
        "latent_cosine": metrics.mean_cosine(translated, target.test),
        "cka": metrics.linear_cka(source.test, target.test),
        "source_norm": metrics.mean_norm(source.test),
        "target_norm": metrics.mean_norm(target.test),
    }


def evaluate_retrieval_cell(source: Space, target: Space, translator: Translator, anchor_idx: torch.Tensor) -> dict[str, Any]:
    """Retrieval on parallel test items without labels: T(source test) ranked against target test.

    ``stitched_{top1,top5,mrr}`` for the translated embeddings, ``untranslated_*`` for the raw
    source embeddings where the dims match (None otherwise), and ``pool`` (the candidates).
    """
    translator.fit(source.train[anchor_idx], target.train[anchor_idx])
    translated = translator.transform(source.test)
    result: dict[str, Any] = {"source_dim": source.dim, "target_dim": target.dim, "num_anchors": int(len(anchor_idx))}
    stitched = metrics.retrieval(translated, target.test)
    result["pool"] = stitched.pop("pool")
    result.update({f"stitched_{k}": v for k, v in stitched.items()})
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
    """
    if not torch.equal(source.test_labels, target.test_labels):
        raise ValueError("source and target test latents are not parallel (labels differ)")
    translator.fit(source.train[anchor_idx], target.train[anchor_idx])
    translated = translator.transform(source.test)
    result: dict[str, Any] = {"source_dim": source.dim, "target_dim": target.dim, "num_anchors": int(len(anchor_idx))}
    parts = {"native": target.test, "stitched": translated, "untranslated": source.test if source.dim == target.dim else None}
    for name, latents in parts.items():
        scores = _scores(decoder, latents, target.test_labels) if latents is not None else {"acc": None, "macro_f1": None}
        result.update({f"{name}_{k}": v for k, v in scores.items()})
    result["stitched_over_native"] = result["stitched_acc"] / result["native_acc"] if result["native_acc"] else None
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
    translator.fit(source.train[anchor_idx], target.train[anchor_idx])
    translated = translator.transform(source.test)
    decoder.eval()
    parts = {"native": target.test, "stitched": translated, "untranslated": source.test if source.dim == target.dim else None}
    result: dict[str, Any] = {"source_dim": source.dim, "target_dim": target.dim, "num_anchors": int(len(anchor_idx))}
    outputs = {}
    for name, latents in parts.items():
        if latents is None:
            result[f"{name}_mse"] = None
            continue
        outputs[name] = torch.cat([decoder(chunk) for chunk in latents.split(1024)])
        result[f"{name}_mse"] = metrics.latent_mse(outputs[name], images)
    result["stitched_over_native"] = result["stitched_mse"] / result["native_mse"]
    result.update(_fidelity(source, target, translated))
    return result, outputs
