"""ASIF zero-shot classification (``python run.py +experiment=asif``; Norelli et al., NeurIPS 2023).

Two single-modality frozen encoders, no training at all: the image encoder (``encoder=...``) and
a text encoder (``decoder=...``: the encoder of its ``decoder.space``). The anchors are N paired
train items (an emoji image and its name). An image becomes its relative vector to the N anchor
images, a class prompt (a template filled with the class name) its relative vector to the N
anchor names: cosine similarities, the top ``k`` kept, raised to ``power`` (sign kept),
L2-normalised. Each test image gets the class whose prompt's vector is closest (max over
templates). Reported against the number of anchor pairs and k, beside a linear probe (the
configured ``head``, a linear SVM by default) trained on the same N anchor images with labels.

Writes ``results.csv``, ``asif.png`` and ``metrics.json`` into the run dir.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from latentstitch import metrics  # noqa: E402
from latentstitch.data import load_dataset  # noqa: E402
from latentstitch.decoders import predict, train_head  # noqa: E402
from latentstitch.encoders import SpaceBuilder, encoder_label  # noqa: E402
from latentstitch.encoders.training import quiet_lightning  # noqa: E402
from latentstitch.encoders.zoo import is_frozen  # noqa: E402
from latentstitch.errors import ConfigError  # noqa: E402
from latentstitch.experiments.outputs import RunOutputs  # noqa: E402
from latentstitch.translation import RelativeProjection  # noqa: E402

log = logging.getLogger(__name__)


def asif_vectors(x: torch.Tensor, anchors: torch.Tensor, k: int, power: float) -> torch.Tensor:
    """ASIF's relative vectors: cosine to the anchors, top ``k`` kept, ``** power``, L2-normalised."""
    return F.normalize(RelativeProjection("cosine", top_k=k, power=power).fit(anchors).transform(x), dim=1)


def zero_shot(images: torch.Tensor, image_anchors: torch.Tensor, prompts: torch.Tensor, text_anchors: torch.Tensor,
              k: int, power: float, templates: int = 1) -> torch.Tensor:  # fmt: skip
    """Predicted class per image; ``prompts`` holds ``templates`` rows per class, class-major."""
    if len(image_anchors) != len(text_anchors):
        raise ConfigError(f"ASIF needs paired anchors: {len(image_anchors)} images vs {len(text_anchors)} texts")
    scores = asif_vectors(images, image_anchors, k, power) @ asif_vectors(prompts, text_anchors, k, power).T
    return scores.argmax(dim=1) // templates


def settings(cfg: DictConfig) -> dict[str, Any]:
    a = cfg.get("asif")
    if a is None:
        raise ConfigError("task=asif needs the asif block: python run.py +experiment=asif")
    s = {"anchors": [int(n) for n in a.get("anchors", [1000])], "k": [int(k) for k in a.get("k", [800])],
         "power": [float(p) for p in a.get("power", [8.0])], "templates": [str(t) for t in a.get("templates", ["{}"])],
         "seed": int(a.get("seed", 0))}  # fmt: skip
    if not s["anchors"] or min(s["anchors"]) < 1 or not s["k"] or min(s["k"]) < 1 or not s["power"] or min(s["power"]) <= 0:
        raise ConfigError("asif.anchors, asif.k and asif.power must be non-empty lists of positive numbers")
    if min(s["k"]) > max(s["anchors"]):
        raise ConfigError(
            f"every asif.k={s['k']} is larger than the most anchors asked for ({max(s['anchors'])}): top-k needs k <= anchors"
        )
    if not s["templates"] or any("{}" not in t for t in s["templates"]):
        raise ConfigError(f"asif.templates={s['templates']} must each contain {{}} (where the class name goes)")
    return s


def run(cfg: DictConfig) -> dict[str, Any]:
    quiet_lightning()
    s = settings(cfg)
    out = RunOutputs(cfg)  # the run and cache dirs are writable, before any work
    start = time.perf_counter()
    items = load_dataset(cfg.dataset, cfg.paths.data_dir)
    if not items.class_names:
        raise ConfigError(f"ASIF classifies by class names: dataset {items.name} has none")
    text_cfg = cfg.decoder.space
    if not is_frozen(text_cfg) or str(text_cfg.get("view", "")) != "text":
        raise ConfigError(f"decoder={encoder_label(text_cfg)} must be a pretrained text encoder (ASIF's second modality)")
    train_size = len(items.ids("train"))
    if max(s["anchors"]) > train_size:
        raise ConfigError(f"asif.anchors={s['anchors']}: at most {train_size} anchor pairs (the train split)")
    builder = SpaceBuilder.from_config(cfg, items)
    builder.dim(cfg.encoder), builder.dim(text_cfg)  # views checked before anything is encoded
    images, texts = builder.space(cfg.encoder), builder.space(text_cfg)
    classes = list(items.class_names)
    prompts = builder.frozen(text_cfg)([t.format(c) for c in classes for t in s["templates"]]).cpu().float()
    order = torch.randperm(train_size, generator=torch.Generator().manual_seed(s["seed"]))
    rows = []
    for n in sorted(set(s["anchors"])):
        idx = order[:n]
        probe = train_head(cfg.head, (images.train[idx], images.train_labels[idx]), items.num_classes, builder.trainer_cfg, name="probe",
                           max_epochs=cfg.dataset.get("max_epochs"))  # fmt: skip
        probe_acc = metrics.accuracy(predict(probe, images.test), images.test_labels)
        for k in sorted(set(s["k"])):
            if k > n:
                continue
            for p in s["power"]:
                pred = zero_shot(images.test, images.train[idx], prompts, texts.train[idx], k, p, len(s["templates"]))
                rows.append({"anchors": n, "k": k, "power": p, "accuracy": metrics.accuracy(pred, images.test_labels),
                             "macro_f1": metrics.macro_f1(pred, images.test_labels), "probe_accuracy": probe_acc})  # fmt: skip
                log.info("asif: %d anchors, k=%d, p=%g: accuracy %.4f (probe %.4f)", n, k, p, rows[-1]["accuracy"], probe_acc)
    table = pd.DataFrame(rows)
    majority = float(torch.bincount(images.test_labels).max()) / len(images.test_labels)
    with out:
        title = f"ASIF on {cfg.dataset.name}: {encoder_label(cfg.encoder)} images, {encoder_label(text_cfg)} names; {len(classes)} classes"
        plots = {"asif": _plot(table, out.dir / "asif.png", majority, title)}
        result = {"dataset": str(cfg.dataset.name), "image_encoder": encoder_label(cfg.encoder), "text_encoder": encoder_label(text_cfg),
                  "classes": classes, "settings": s, "majority_class": majority, "results": rows,
                  "seconds": time.perf_counter() - start}  # fmt: skip
        with pd.option_context("display.width", 200, "display.precision", 4):
            console = table.to_string(index=False)
        return out.finish(result, rows, plots, console=console)


def _plot(table: pd.DataFrame, path: Path, majority: float, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (k, p), group in table.groupby(["k", "power"]):
        ax.plot(group["anchors"], group["accuracy"], marker="o", label=f"ASIF k={k}, p={p:g}")
    probe = table.groupby("anchors")["probe_accuracy"].first()
    ax.plot(probe.index, probe.values, color="black", linestyle="--", marker="s", label="linear probe (same images, labelled)")
    ax.axhline(majority, color="grey", linestyle=":", label=f"majority class ({majority:.3f})")
    ax.set_xscale("log")
    ax.set_xlabel("anchor pairs")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
