"""Similarity analysis between spaces (``python run.py +analysis=similarity analysis.encoders=[mlp,cnn,vit]``).

One run loads (or trains and encodes, once, into the cache) the space of every encoder in
``analysis.encoders`` on the run's dataset, and compares every ordered pair on a seeded subset of
the test split:

- ``linear_cka``, ``rbf_cka`` (median heuristic), ``mutual_knn`` (cosine, self excluded, k =
  ``analysis.k``): symmetric, the absolute spaces as they are;
- cross-space retrieval before translation (``raw_top1``, ``raw_mrr``, ``raw_jaccard``: source test
  rows looked up among the target's; only where the dims match) and after the run's translator
  (``translator=...``, fitted on the run's anchors from the train split): ``top1``, ``mrr``,
  ``jaccard`` (Jaccard@``analysis.jaccard_k``) and ``latent_cosine``. A projection method
  (``translator=relative``) compares the two projections instead.

Writes into the run dir: ``similarity.csv`` (one row per ordered pair, one column per measure),
``matrix_<measure>.csv`` (encoders x encoders), ``similarity.png`` (one heatmap per measure),
``norms.csv`` and ``norms.png`` (each encoder's latent-norm distribution on the test split: the
"scale" figure), ``results.csv`` (= ``similarity.csv``) and ``metrics.json``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from latentstitch import metrics  # noqa: E402
from latentstitch.anchors import split_anchors  # noqa: E402
from latentstitch.cell import check_method, instantiate_setting, method_label  # noqa: E402
from latentstitch.data import load_dataset  # noqa: E402
from latentstitch.encoders import Space, SpaceBuilder, encoder_label  # noqa: E402
from latentstitch.encoders.training import quiet_lightning  # noqa: E402
from latentstitch.errors import ConfigError  # noqa: E402
from latentstitch.experiments.outputs import RunOutputs  # noqa: E402
from latentstitch.translation import TranslationError  # noqa: E402

log = logging.getLogger(__name__)

SYMMETRIC = ("linear_cka", "rbf_cka", "mutual_knn")
DIRECTED = ("raw_top1", "raw_mrr", "raw_jaccard", "top1", "mrr", "jaccard", "latent_cosine")


def settings(cfg: DictConfig) -> dict[str, Any]:
    a = cfg.get("analysis")
    if a is None:
        raise ConfigError(
            "task=similarity needs the analysis block: python run.py +analysis=similarity analysis.encoders=[mlp,cnn]"
        )
    s = {"encoders": [str(e) for e in a.get("encoders", [])], "samples": int(a.get("samples", 1000)), "k": int(a.get("k", 10)),
         "jaccard_k": int(a.get("jaccard_k", 5)), "seed": int(a.get("seed", 0)), "bins": int(a.get("bins", 40))}  # fmt: skip
    if len(s["encoders"]) < 2:
        raise ConfigError(
            f"analysis.encoders={s['encoders']} must name at least 2 encoders (config names, 'name:seed' for another seed)"
        )
    if len(set(s["encoders"])) != len(s["encoders"]):
        raise ConfigError(f"analysis.encoders={s['encoders']} repeats an encoder")
    if s["samples"] < 2 or s["k"] < 1 or s["jaccard_k"] < 1:
        raise ConfigError("analysis.samples must be >= 2 and analysis.k, analysis.jaccard_k >= 1")
    if max(s["k"], s["jaccard_k"]) >= s["samples"]:
        raise ConfigError(
            f"analysis.k={s['k']} and analysis.jaccard_k={s['jaccard_k']} must be below analysis.samples={s['samples']}"
        )
    return s


def encoder_config(cfg: DictConfig, entry: str) -> DictConfig:
    """The ``encoder`` node that ``encoder=<name>`` (and ``encoder.seed=<seed>`` for ``name:seed``)
    gives with this run's other overrides: composed by Hydra, as a run would."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    name, _, seed = entry.partition(":")
    task_overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    keep = [o for o in task_overrides if o.lstrip("+~").split("=")[0].split(".")[0] not in ("encoder", "analysis")]
    overrides = [*keep, f"encoder={name}"] + ([f"encoder.seed={int(seed)}"] if seed else [])
    try:
        composed = compose(config_name="config", overrides=overrides)
    except Exception as e:  # noqa: BLE001 - an unknown encoder name: one line
        raise ConfigError(f"analysis.encoders entry {entry!r}: {str(e).splitlines()[0]}") from None
    return OmegaConf.create(OmegaConf.to_container(composed.encoder, resolve=True))


def _subset(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(size, n)].sort().values


def compare(
    source: Space, target: Space, method: Any, anchors: Any, rows: torch.Tensor, k: int, jaccard_k: int
) -> dict[str, float | None]:
    """Every measure for one ordered pair on the test rows ``rows``."""
    xs, ys = source.test[rows], target.test[rows]
    out: dict[str, float | None] = {}
    if source.label != target.label:
        out["linear_cka"] = metrics.linear_cka(xs, ys)
        out["rbf_cka"] = metrics.rbf_cka(xs, ys)
        out["mutual_knn"] = metrics.mutual_knn(xs, ys, k)
    else:
        out.update(linear_cka=1.0, rbf_cka=1.0, mutual_knn=1.0)
    same_dim = source.dim == target.dim
    raw = metrics.retrieval(xs, ys) if same_dim else {}
    out["raw_top1"], out["raw_mrr"] = raw.get("top1"), raw.get("mrr")
    out["raw_jaccard"] = metrics.knn_jaccard(xs, ys, jaccard_k) if same_dim else None
    if source.label == target.label:
        out.update(top1=out["raw_top1"], mrr=out["raw_mrr"], jaccard=out["raw_jaccard"], latent_cosine=1.0)
        return out
    if method.paired:
        src_idx, tgt_idx = split_anchors(anchors)
        method.fit(source.train[src_idx], target.train[tgt_idx])
    else:
        half = len(source.train) // 2
        order = torch.randperm(len(source.train), generator=torch.Generator().manual_seed(0))
        method.fit(source.train[order[:half]], target.train[order[half:]])
    if method.projection_method:
        mapped, reference = method.transform_source(xs), method.transform_target(ys)
    else:
        mapped, reference = method.transform(xs), ys
    after = metrics.retrieval(mapped, reference)
    out.update(top1=after["top1"], mrr=after["mrr"], jaccard=metrics.knn_jaccard(mapped, reference, jaccard_k))
    out["latent_cosine"] = metrics.mean_cosine(mapped, reference)
    return out


def norm_table(spaces: dict[str, Space]) -> pd.DataFrame:
    rows = []
    for label, space in spaces.items():
        n = space.test.double().norm(dim=1)
        q = torch.quantile(n, torch.tensor([0.05, 0.5, 0.95], dtype=n.dtype))
        rows.append({"encoder": label, "dim": space.dim, "mean": float(n.mean()), "std": float(n.std()), "cv": float(n.std() / n.mean()),
                     "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "min": float(n.min()), "max": float(n.max())})  # fmt: skip
    return pd.DataFrame(rows)


def plot_norms(spaces: dict[str, Space], path: Path, bins: int) -> Path:
    """Each encoder's distribution of latent norms on the test split (absolute, and over its mean)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, space in spaces.items():
        n = space.test.double().norm(dim=1).numpy()
        axes[0].hist(n, bins=bins, histtype="step", density=True, label=f"{label} (mean {n.mean():.3g})")
        axes[1].hist(n / n.mean(), bins=bins, histtype="step", density=True, label=f"{label} (cv {n.std() / n.mean():.3f})")
    axes[0].set_xlabel("latent L2 norm")
    axes[1].set_xlabel("latent L2 norm / its mean")
    for ax in axes:
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("latent norms on the test split")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_matrices(matrices: dict[str, pd.DataFrame], path: Path, title: str) -> Path:
    n = len(matrices)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    size = len(next(iter(matrices.values())))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (1.1 * size + 2.2), rows * (1.0 * size + 1.6)), squeeze=False)
    for ax, (name, table) in zip(axes.flat, matrices.items()):
        values = table.to_numpy(dtype=float)
        im = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(size), table.columns, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(size), table.index, fontsize=8)
        for i in range(size):
            for j in range(size):
                v = values[i, j]
                ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if np.isnan(v) or v < 0.6 else "black")  # fmt: skip
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.supxlabel("target space")
    fig.supylabel("source space")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(cfg: DictConfig) -> dict[str, Any]:
    """The similarity analysis; see the module docstring for what it writes."""
    quiet_lightning()
    s = settings(cfg)
    method = instantiate_setting(cfg.translator, "translator")  # bad settings: one line, before anything is written
    strategy = instantiate_setting(cfg.anchors, "anchors")
    out = RunOutputs(cfg)  # the run and cache dirs are writable, before any work
    start = time.perf_counter()
    items = load_dataset(cfg.dataset, cfg.paths.data_dir)
    strategy.check(len(items.ids("train")))
    try:  # what the method needs of the anchors / samples (top-k, clusters), before any training
        check_method(method, strategy, len(items.ids("train")))
    except TranslationError as e:
        raise ConfigError(str(e)) from None
    encoder_cfgs = {entry: encoder_config(cfg, entry) for entry in s["encoders"]}
    builder = SpaceBuilder.from_config(cfg, items)
    for enc in encoder_cfgs.values():  # views and dims checked before anything is trained
        builder.dim(enc)
    spaces = {encoder_label(enc): builder.space(enc) for enc in encoder_cfgs.values()}
    labels = list(spaces)
    n_test = len(next(iter(spaces.values())).test)
    rows_idx = _subset(n_test, s["samples"], s["seed"])
    if max(s["k"], s["jaccard_k"]) >= len(rows_idx):
        raise ConfigError(f"analysis.k / jaccard_k must be below the number of test samples compared ({len(rows_idx)})")
    records = []
    for a in labels:
        for b in labels:
            src, tgt = spaces[a], spaces[b]
            anchors = strategy.select(src.train_labels, source=src.train, target=tgt.train) if method.paired and a != b else None
            try:
                scores = compare(src, tgt, method, anchors, rows_idx, s["k"], s["jaccard_k"])
            except TranslationError as e:
                raise ConfigError(f"{a} -> {b}: {e}") from None
            records.append({"source": a, "target": b, **scores})
            log.info("similarity %s -> %s: %s", a, b, {k: None if v is None else round(v, 4) for k, v in scores.items()})
    table = pd.DataFrame(records)
    with out:
        output_dir = out.dir
        table.to_csv(output_dir / "similarity.csv", index=False)
        matrices = {}
        for measure in (*SYMMETRIC, *DIRECTED):
            matrix = (
                table.pivot(index="source", columns="target", values=measure).reindex(index=labels, columns=labels).astype(float)
            )
            matrix.to_csv(output_dir / f"matrix_{measure}.csv")
            matrices[measure] = matrix
        translator = method_label(cfg.translator)
        shown = {
            name: m for name, m in matrices.items() if not name.startswith("raw_") or m.notna().to_numpy().sum() > len(labels)
        }
        images = {"similarity": plot_matrices(shown, output_dir / "similarity.png",
                                              f"{cfg.dataset.name}, {len(rows_idx)} test samples; after translation: {translator}, anchors {strategy!r}")}  # fmt: skip
        norms = norm_table(spaces)
        norms.to_csv(output_dir / "norms.csv", index=False)
        images["norms"] = plot_norms(spaces, output_dir / "norms.png", s["bins"])
        result = {"dataset": str(cfg.dataset.name), "encoders": labels, "translator": translator,
                  "samples": int(len(rows_idx)), "pairs": records, "norms": norms.to_dict(orient="records"),
                  "seconds": time.perf_counter() - start}  # fmt: skip
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
            console = table.to_string(index=False)
        return out.finish(result, records, images, console=console)
