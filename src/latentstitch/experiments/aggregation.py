"""Relative latent space aggregation (``python run.py +experiment=aggregation``; Crisostomi et al.,
"From Charts to Atlas", 2023).

Several encoders of one architecture (``encoder=...``), each trained on one part of the task:
``aggregation.split=classes`` gives each task its own classes (disjoint classes), ``samples`` the
same classes with disjoint samples; ``aggregation.shared`` is the fraction of the train split
that every task sees besides its own part (the anchors are drawn from it, as in the paper). Each
task's space is projected on the shared anchors (cosine relative representation) and the relative
vectors are averaged: the *aggregated* space. A decoder (``head=...``) trained on it is compared
with decoders on an end-to-end encoder trained on everything (absolute and relative), on each task
encoder alone, and on the naive concatenation of the task encoders' absolute latents; plus the
linear CKA of each representation with the end-to-end one (relative with relative, absolute with
absolute).

Writes ``results.csv``, ``aggregation.png`` and ``metrics.json`` into the run dir.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from latentstitch import metrics  # noqa: E402
from latentstitch.data import load_dataset  # noqa: E402
from latentstitch.decoders import predict, train_head  # noqa: E402
from latentstitch.encoders import SpaceBuilder, encoder_label, encoder_spec  # noqa: E402
from latentstitch.encoders.spaces import epoch_cap  # noqa: E402
from latentstitch.encoders.training import extract_features, fit_module, quiet_lightning  # noqa: E402
from latentstitch.encoders.zoo import build_encoder, is_frozen  # noqa: E402
from latentstitch.errors import ConfigError  # noqa: E402
from latentstitch.experiments.outputs import RunOutputs  # noqa: E402
from latentstitch.translation import RelativeProjection  # noqa: E402

log = logging.getLogger(__name__)

SPLITS = ("classes", "samples")


def settings(cfg: DictConfig) -> dict[str, Any]:
    a = cfg.get("aggregation")
    if a is None:
        raise ConfigError("task=aggregation needs the aggregation block: python run.py +experiment=aggregation")
    s = {"tasks": int(a.get("tasks", 2)), "split": str(a.get("split", "classes")), "shared": float(a.get("shared", 0.1)),
         "anchors": None if a.get("anchors") is None else int(a.anchors), "seed": int(a.get("seed", 0)),
         "scaling": str(a.get("scaling", "none"))}  # fmt: skip
    if s["split"] not in SPLITS:
        raise ConfigError(f"aggregation.split={s['split']!r} is not one of {list(SPLITS)}")
    if s["tasks"] < 2:
        raise ConfigError(f"aggregation.tasks={s['tasks']} must be >= 2")
    if not 0 < s["shared"] < 1:
        raise ConfigError(
            f"aggregation.shared={s['shared']} must be in (0, 1): the anchors come from the samples every task sees"
        )
    if s["scaling"] not in ("none", "center"):
        raise ConfigError(f"aggregation.scaling={s['scaling']!r} is not one of ['none', 'center']")
    if is_frozen(cfg.encoder):
        raise ConfigError(f"aggregation trains its encoders: encoder={encoder_label(cfg.encoder)} is a frozen pretrained one")
    return s


def task_parts(
    labels: torch.Tensor, num_classes: int, tasks: int, split: str, shared: float, seed: int
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Train indices of each task (the shared samples included) and the shared samples."""
    if split == "classes" and tasks > num_classes:
        raise ConfigError(
            f"aggregation.tasks={tasks} with split=classes needs at least as many classes, the dataset has {num_classes}"
        )
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    n_shared = int(round(shared * len(labels)))
    common, rest = order[:n_shared], order[n_shared:]
    if split == "classes":
        owner = torch.empty(num_classes, dtype=torch.long)
        owner[torch.randperm(num_classes, generator=gen)] = torch.arange(num_classes) % tasks
        own = [rest[owner[labels[rest]] == t] for t in range(tasks)]
    else:
        own = list(rest.chunk(tasks))
    return [torch.cat([common, part]).sort().values for part in own], common.sort().values


def _digest(idx: torch.Tensor) -> str:
    return hashlib.sha256(idx.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


def _encoder(builder: SpaceBuilder, encoder_cfg: DictConfig, train_idx: torch.Tensor | None, name: str):
    """Train and test latents of an encoder trained on the train samples ``train_idx`` (None: all,
    the ordinary cached space), cached."""
    if train_idx is None:
        space = builder.space(encoder_cfg)
        return {"train": space.train, "test": space.test}
    data = builder.data
    module = build_encoder(encoder_cfg, builder.input_shape, data.num_classes)
    spec = {
        **encoder_spec(builder.dataset_cfg, encoder_cfg),
        "train_subset": {"digest": _digest(train_idx), "size": int(len(train_idx))},
    }

    def train() -> dict[str, torch.Tensor]:
        images, labels = data.train.images[train_idx], data.train.labels[train_idx]
        log.info("aggregation: training %s on %d samples", name, len(labels))
        L.seed_everything(int(encoder_cfg.seed), workers=True, verbose=False)  # as SpaceBuilder._train
        fit_module(module, (images, labels), (data.val.images, data.val.labels), steps=int(encoder_cfg.train.steps),
                   batch_size=int(encoder_cfg.train.batch_size), trainer_cfg=builder.trainer_cfg,
                   max_epochs=epoch_cap(builder.dataset_cfg.get("max_epochs"), encoder_cfg.train))  # fmt: skip
        return {k: v.clone() for k, v in module.state_dict().items()}

    module.load_state_dict(builder.cache.get_or_build("encoder", spec, train, name))
    module.eval()
    batch = int(encoder_cfg.train.batch_size)
    return {split: extract_features(module, data.split(split).images, data.split(split).labels, batch, builder.trainer_cfg).float()
            for split in ("train", "test")}  # fmt: skip


def run(cfg: DictConfig) -> dict[str, Any]:
    quiet_lightning()
    s = settings(cfg)
    out = RunOutputs(cfg)  # the run and cache dirs are writable, before any work
    start = time.perf_counter()
    items = load_dataset(cfg.dataset, cfg.paths.data_dir)
    if not items.has_labels:
        raise ConfigError(f"aggregation classifies: dataset {items.name} has no labels")
    builder = SpaceBuilder.from_config(cfg, items)
    data = builder.data
    labels, test_labels = data.train.labels, data.test.labels
    parts, common = task_parts(labels, data.num_classes, s["tasks"], s["split"], s["shared"], s["seed"])
    dim = builder.dim(cfg.encoder)
    num_anchors = s["anchors"] or dim
    if not 1 <= num_anchors <= len(common):
        raise ConfigError(
            f"aggregation.anchors={num_anchors} must be between 1 and {len(common)} (the shared samples; raise aggregation.shared)"
        )
    anchors = common[torch.randperm(len(common), generator=torch.Generator().manual_seed(s["seed"] + 1))[:num_anchors]]

    label = encoder_label(cfg.encoder)
    e2e = _encoder(builder, cfg.encoder, None, f"{label} end-to-end")
    tasks = [_encoder(builder, cfg.encoder, idx, f"{label} task {t}") for t, idx in enumerate(parts)]

    def relative(space: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        proj = RelativeProjection("cosine", center=s["scaling"] == "center").fit(space["train"][anchors])
        return {split: proj.transform(space[split]) for split in ("train", "test")}

    task_rel = [relative(t) for t in tasks]
    e2e_rel = relative(e2e)
    reps: dict[str, tuple[str, dict[str, torch.Tensor]]] = {
        "end_to_end_absolute": ("absolute", e2e),
        "end_to_end_relative": ("relative", e2e_rel),
        **{f"task{t}_absolute": ("absolute", tasks[t]) for t in range(len(tasks))},
        "concat_absolute": ("absolute", {k: torch.cat([t[k] for t in tasks], dim=1) for k in ("train", "test")}),
        "aggregated_relative": ("relative", {k: torch.stack([r[k] for r in task_rel]).mean(dim=0) for k in ("train", "test")}),
    }
    rows = []
    for name, (kind, space) in reps.items():
        head = train_head(cfg.head, (space["train"], labels), data.num_classes, builder.trainer_cfg, name=f"decoder/{name}",
                          max_epochs=cfg.dataset.get("max_epochs"))  # fmt: skip
        pred = predict(head, space["test"])
        reference = e2e_rel if kind == "relative" else e2e
        rows.append({"representation": name, "kind": kind, "dim": int(space["test"].shape[1]), "accuracy": metrics.accuracy(pred, test_labels),
                     "macro_f1": metrics.macro_f1(pred, test_labels),
                     "cka_vs_end_to_end": metrics.linear_cka(space["test"], reference["test"]) if "end_to_end" not in name else 1.0})  # fmt: skip
        log.info("aggregation: %s accuracy %.4f", name, rows[-1]["accuracy"])
    table = pd.DataFrame(rows)
    with out:
        title = f"{cfg.dataset.name}, {label}, {s['tasks']} tasks split by {s['split']}, shared {s['shared']:g}"
        images = {"aggregation": _plot(table, out.dir / "aggregation.png", title)}
        result = {"dataset": str(cfg.dataset.name), "encoder": label, "settings": s, "num_anchors": int(num_anchors),
                  "task_sizes": [int(len(p)) for p in parts], "results": rows, "seconds": time.perf_counter() - start}  # fmt: skip
        with pd.option_context("display.width", 200, "display.precision", 4):
            console = table.to_string(index=False)
        return out.finish(result, rows, images, console=console)


def _plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(1.1 * len(table) + 2, 4))
    colors = [
        "tab:green" if n.startswith("aggregated") else "tab:grey" if n.startswith("end_to_end") else "tab:blue"
        for n in table["representation"]
    ]
    bars = ax.bar(range(len(table)), table["accuracy"], color=colors)
    for bar, acc, cka in zip(bars, table["accuracy"], table["cka_vs_end_to_end"]):
        ax.text(bar.get_x() + bar.get_width() / 2, acc + 0.01, f"{acc:.3f}\nCKA {cka:.2f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(table)), table["representation"], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
