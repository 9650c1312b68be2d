"""``+export=stitched``: write a cell's stitched model into ``<run dir>/stitched/`` (see
:mod:`latentstitch.stitched` for the layout and :func:`latentstitch.load_stitched` to use it).

What can be exported is checked before anything trains (:func:`check_export`): a classification
cell (its decoder is a head), a source encoder that is a network (not ``encoder=precomputed``),
and an export directory that does not exist yet. The directory is written under a temporary name
and renamed when complete, so a failed or killed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from latentstitch import __version__
from latentstitch.errors import ConfigError, is_storage_error, write_error
from latentstitch.stitched import CARD_FILE, CONFIG_FILE, FORMAT, WEIGHTS_FILE

if TYPE_CHECKING:
    from latentstitch.cell import Cell
    from latentstitch.encoders import SpaceBuilder


def export_dir(cfg: DictConfig, run_dir: Path) -> Path | None:
    """Where ``+export=stitched`` writes (``export.dir``, relative to the run dir), or None without export."""
    node = cfg.get("export")
    if not node:
        return None
    path = Path(str(node.get("dir") or "stitched")).expanduser()
    return path if path.is_absolute() else run_dir / path


def check_export(cfg: DictConfig, cell: Cell, builder: SpaceBuilder, run_dir: Path) -> Path | None:
    """The export directory, after checking the cell can be exported there (one ConfigError line each)."""
    target = export_dir(cfg, run_dir)
    if target is None:
        return None
    if cell.task.name != "classification":
        raise ConfigError(f"+export=stitched exports a classifier; task={cell.task.name} has no decoder head to export")
    if cell.source.get("kind") == "precomputed" or _is_precomputed(cell.source):
        raise ConfigError("+export=stitched: encoder=precomputed has no network to export (the source must encode raw inputs)")
    view = _view(cell.source)
    if view != "image" and not view.startswith("text:"):
        raise ConfigError(
            f"+export=stitched exports image and text sources; encoder {cell.source.get('name')} reads {view!r} "
            "(a graph encoder is bound to its training graph; audio sources are not exportable yet)"
        )
    if target.exists():
        raise ConfigError(f"export.dir={target} already exists: pick another export.dir or remove it")
    return target


def _view(encoder_cfg: DictConfig) -> str:
    from latentstitch.encoders.spaces import view_of

    return view_of(encoder_cfg)


def _is_precomputed(encoder_cfg: DictConfig) -> bool:
    return str(OmegaConf.select(encoder_cfg, "model._target_", default="")).endswith("PrecomputedEmbeddings")


def _resolved(node: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def source_entry(cell: Cell, builder: SpaceBuilder) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """How to rebuild the source encoder (``config.json``'s ``source``) and the weights that travel with it."""
    from latentstitch.encoders.spaces import view_of
    from latentstitch.encoders.zoo import encoder_label, is_frozen

    cfg = cell.source
    entry: dict[str, Any] = {"label": encoder_label(cfg), "config": _resolved(cfg)}
    if not is_frozen(cfg):
        module = builder.encoder(cfg)
        ds = builder.dataset_cfg
        entry.update(kind="scratch", view="image", model=_resolved(cfg.model),
                     preprocess={"image_size": int(ds.image_size), "channels": int(ds.channels),
                                 "mean": list(ds.mean), "std": list(ds.std)})  # fmt: skip
        return entry, {k: v.detach().clone() for k, v in module.features.state_dict().items()}
    encoder = builder.frozen(cfg)
    view = view_of(cfg)
    entry.update(kind="frozen", view="text" if view.startswith("text:") else view, identity=encoder.identity())
    if cfg.get("kind") == "module":  # a user's network: its weights travel with the export, not its checkpoint path
        entry["kind"] = "module"
        return entry, {k: v.detach().clone() for k, v in encoder.load().net.state_dict().items()}
    entry["model"] = _resolved(cfg.model)  # a pretrained model by reference: its class (package and version in identity)
    return entry, {}


def _class_names(builder: SpaceBuilder) -> list[str]:
    items = builder.items
    return list(items.class_names) if items.class_names else [str(i) for i in range(items.num_classes)]


def _anchor_keys(cell: Cell, builder: SpaceBuilder) -> list[str] | None:
    anchors = getattr(cell, "anchors_", None)
    if anchors is None:
        return None
    from latentstitch.anchors import split_anchors

    src, _ = split_anchors(anchors)
    train = builder.items.ids("train")
    keys = builder.items.keys or []
    return [keys[int(i)] for i in train[src].tolist()]


def write_export(target: Path, cfg: DictConfig, cell: Cell, builder: SpaceBuilder, result: dict[str, Any]) -> Path:
    """Write the fitted cell's stitched model into ``target`` (atomically: a temporary dir renamed at the end)."""
    from safetensors.torch import save_file

    source, encoder_weights = source_entry(cell, builder)
    method = cell.method
    decoder = cell.decoder_
    scores = {
        k: v for k, v in result.items() if k.startswith(("native_", "stitched_", "untranslated_")) or k == "stitched_over_native"
    }
    anchor_keys = _anchor_keys(cell, builder)
    config = {
        "format": FORMAT,
        "latentstitch_version": __version__,
        "task": cell.task.name,
        "cell": {k: result.get(k) for k in ("encoder", "decoder", "translator", "head", "anchors", "num_anchors", "dataset")},
        "class_names": _class_names(builder),
        "source": source,
        "method": {"class": type(method).__name__, "config": method.config(), "projection_method": method.projection_method},
        "head": {
            "config": _resolved(cell.head),
            "input_dim": int(cell.decoder_input_dim_),
            "input_layer": bool(method.projection_method),
        },  # fmt: skip
        "target": {"label": result.get("decoder"), "config": _resolved(cell.target)},
        "dataset": _resolved(cfg.dataset),
        "anchors": {
            "strategy": result.get("anchors"),
            "num": result.get("num_anchors"),
            "seed": result.get("anchor_seed"),
            "keys": anchor_keys,
        },  # fmt: skip
        "scores": scores,
    }
    tensors = {f"encoder.{k}": v for k, v in encoder_weights.items()}
    tensors.update({f"method.{k}": v for k, v in method.state_dict().items()})
    tensors.update({f"head.{k}": v.detach() for k, v in decoder.state_dict().items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)  # a killed earlier try of this very process id
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS_FILE))
        os.chmod(tmp / WEIGHTS_FILE, 0o666 & ~_umask())  # safetensors writes 0600; the others follow the umask
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
        (tmp / CARD_FILE).write_text(model_card(config, target))
        tmp.rename(target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) or is_storage_error(e):
            raise write_error(target, e, "export.dir") from None
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(config: dict[str, Any], target: Path) -> str:
    """The README of an exported stitched model: what it is, its scores, its anchors, how to load it."""
    cell, scores, anchors = config["cell"], config["scores"], config["anchors"]
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in scores.items() if v is not None)
    example = '["a photo of a cat"]' if config["source"]["view"] == "text" else '["image.png"]'
    return f"""# Stitched model: {cell["encoder"]} -> {cell["translator"]} -> {cell["decoder"]} ({cell["head"]} head)

Zero-shot stitching by latentstitch {config["latentstitch_version"]}: the encoder **{cell["encoder"]}**, the
translator **{cell["translator"]}** fitted on {anchors["num"]} parallel anchors ({anchors["strategy"]}, seed
{anchors["seed"]}) of the dataset **{cell["dataset"]}**, and the **{cell["head"]}** head trained only on
**{cell["decoder"]}** latents. Nothing was retrained on the stitched pair.

Classes ({len(config["class_names"])}): {", ".join(config["class_names"][:20])}{" ..." if len(config["class_names"]) > 20 else ""}

## Scores on the test split of {cell["dataset"]}

| score | value |
|---|---|
{rows}

## Use

```python
import latentstitch
model = latentstitch.load_stitched("{target}")
model.predict({example})   # class names; model(inputs) gives the logits
```

or `python scripts/predict.py {target} <{"strings" if config["source"]["view"] == "text" else "image files"}...>`.

Files: `model.safetensors` (encoder.*: {"the encoder weights" if config["source"]["kind"] == "scratch" else "a reference to " + config["source"]["label"] + " in config.json"};
method.*: the fitted {config["method"]["class"]}; head.*: the decoder head), `config.json` (how each part
is rebuilt, the anchors' item keys, the scores).
"""
