"""Any torch network as a frozen encoder: ``encoder=module encoder.model._target_=pkg.mod.make_net``.

``encoder.model`` is the user's network, not an encoder class: ``_target_`` is an importable
callable returning an ``nn.Module`` and the other keys are its keyword arguments. It is built with
:func:`latentstitch.instantiate.instantiate`, not Hydra, so that :meth:`ModuleEncoder.from_config`
can rebuild it from a resolved config in a process that only has torch and the network's code.

Weights: ``encoder.checkpoint`` is a state_dict, read with ``torch.load(weights_only=True)`` (the
dict itself, or one under ``state_dict`` / ``model``; a DDP ``module.`` prefix is stripped) or
from a ``.safetensors`` file. Nothing is ever unpickled as code. Without a checkpoint the network
keeps its own initialisation under ``torch.manual_seed(encoder.seed)`` (a baseline).

Forward rule, one per view:

* ``view=image``: ``net(x)``, ``x`` the preprocessed float batch (B, 3, image_size, image_size)
  (grayscale repeated, resized, center-cropped, normalised with ``mean`` / ``std``).
* ``view=text``: ``net(input_ids=..., attention_mask=...)`` with the (B, T) tensors of the
  ``tokenizer`` (a Hugging Face name or local directory), as Hugging Face models are called.

Then ``encoder.output`` picks from a tuple / list (an index), a dict (a key) or any object (an
attribute name), and the result is pooled: (B, D) as it is; (B, T, D) by the mean over tokens
(over the attention mask for text) or its first token with ``pooling=cls``; (B, C, H, W) (images)
by the mean over H and W.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentstitch.encoders.pretrained.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrozenEncoder,
    ImagePreprocess,
    check_texts,
    dir_sha256,
    file_sha256,
    hub_offline,
    looks_like_path,
    one_line,
    package_version,
    require_file,
)
from latentstitch.errors import ConfigError
from latentstitch.instantiate import import_object, instantiate

VIEWS = ("image", "text")
POOLINGS = ("mean", "cls")
SHOWN = 4  # state_dict keys quoted in an error
# the constructor arguments an ``encoder=module`` config may set (the rest is for the framework)
SETTINGS = ("view", "checkpoint", "output", "dim", "seed", "pooling", "image_size", "resize", "interpolation",
            "crop_mode", "mean", "std", "tokenizer", "max_length")  # fmt: skip


def _some(keys: Sequence[str]) -> str:
    return ", ".join(keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")


def read_state_dict(path: Path, setting: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, never unpickling code: ``.safetensors``, or a
    ``torch.save``-d state_dict (bare or under ``state_dict`` / ``model``) read with weights_only."""
    where = f"{setting}={path}"
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - SafetensorError and friends: one line
            raise ConfigError(f"{where}: not a readable safetensors file: {one_line(e)}") from None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ConfigError(
            f"{where} holds pickled objects that only code could rebuild, and checkpoints are never unpickled as code: "
            f"save the network's weights instead, torch.save(net.state_dict(), path) or safetensors.torch.save_file"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise ConfigError(f"{where}: cannot read the checkpoint: {one_line(e)}") from None
    return _state_of(saved, where)


def _state_of(saved: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(saved, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(saved.get(key), Mapping):
                saved = saved[key]
                break
    if not isinstance(saved, Mapping) or not saved or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise ConfigError(f"{where}: expected a state_dict (a dict of tensors, or one under 'state_dict' or 'model')")
    return dict(saved)


def strip_ddp_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A DistributedDataParallel save names every key ``module.<name>``: the bare names."""
    if state and all(k.startswith("module.") for k in state):
        return {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``net.load_state_dict(state, strict=True)``, with missing / unexpected keys listed in one line."""
    expected = net.state_dict().keys()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ConfigError(
            f"{where} does not fit the network: {len(missing)} missing keys ({_some(missing)}), "
            f"{len(unexpected)} unexpected keys ({_some(unexpected)})"
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:  # shapes that differ
        raise ConfigError(f"{where} does not fit the network: {one_line(e)}") from None


def select_output(raw: Any, output: int | str | None, setting: str) -> torch.Tensor:
    """The tensor ``encoder.output`` names in a network's output (the output itself when None)."""
    picked = raw
    if output is not None:
        try:
            if isinstance(output, int):
                picked = (raw.to_tuple() if hasattr(raw, "to_tuple") else raw)[output]
            elif isinstance(raw, Mapping) and output in raw:
                picked = raw[output]
            else:
                picked = getattr(raw, str(output))
        except (IndexError, TypeError, KeyError, AttributeError):
            raise ConfigError(
                f"{setting}.output={output!r}: the network's {type(raw).__name__} output has no such item"
            ) from None
    if not isinstance(picked, torch.Tensor):
        raise ConfigError(
            f"the network returns a {type(picked).__name__}, not a tensor: set {setting}.output=<index, key or attribute> to pick one"
        )
    return picked


def pool(out: torch.Tensor, mask: torch.Tensor | None, pooling: str, setting: str) -> torch.Tensor:
    """(B, D) from the network's (B, D), (B, T, D) or (B, C, H, W) output (see the module docstring)."""
    if out.ndim == 2:
        return out
    if out.ndim == 3:
        if pooling == "cls":
            return out[:, 0]
        if mask is None:
            return out.mean(1)
        weights = mask.unsqueeze(-1).to(out.dtype)
        return (out * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    if out.ndim == 4 and mask is None:
        return out.mean((2, 3))
    raise ConfigError(
        f"{setting}: the network's output has shape {tuple(out.shape)}; expected (B, D), (B, T, D) or, for images, (B, C, H, W)"
    )


class ModuleEncoder(FrozenEncoder):
    """A user's ``nn.Module`` with a checkpoint and the preprocessing of its config (see the module
    docstring for the forward rule). ``dim`` is ``dim`` when given, else one dummy forward of the
    freshly built network; the identity is the network's import path and arguments, the
    checkpoint's sha256 and the preprocessing."""

    config_name = "module"

    def __init__(self, model: Mapping[str, Any], view: str = "image", checkpoint: str | None = None,
                 output: int | str | None = None, dim: int | None = None, seed: int = 0, pooling: str = "mean",
                 image_size: int | Sequence[int] = 224, resize: int | Sequence[int] = 256, interpolation: str = "bicubic",
                 crop_mode: str = "center", mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 tokenizer: str | None = None, max_length: int = 256, setting: str = "encoder") -> None:  # fmt: skip
        super().__init__()
        self.setting = setting
        if view not in VIEWS:
            raise ConfigError(f"{setting}.view={view!r}: encoder=module reads image or text")
        if pooling not in POOLINGS:
            raise ConfigError(f"{setting}.pooling={pooling!r}: one of {', '.join(POOLINGS)}")
        self.view, self.pooling, self.seed, self.output = view, pooling, int(seed), output
        self.network_cfg = dict(model or {})
        self.target = self._check_target()
        self.checkpoint = require_file(checkpoint, f"{setting}.checkpoint") if checkpoint else None
        self.preprocessing = ImagePreprocess(image_size, resize, interpolation, mean, std, crop_mode) if view == "image" else None
        self.max_length = int(max_length)
        self.tokenizer_name, self.tokenizer_is_dir = self._check_tokenizer(tokenizer) if view == "text" else (None, False)
        self.tokenizer: Any = None
        self.net: nn.Module | None = None
        if dim is None:
            self.net = self._build()
            self.dim = self._probe_dim(self.net)
        else:
            self.dim = int(dim)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], setting: str = "encoder") -> ModuleEncoder:
        """Rebuild from a resolved ``encoder=module`` config dict, without Hydra (an exported model
        in a fresh process); ``setting`` is where the config sits, for error messages."""
        return cls(model=cfg.get("model") or {}, setting=setting, **{k: cfg[k] for k in SETTINGS if cfg.get(k) is not None})

    # --- construction ---------------------------------------------------------------------------

    def _check_target(self) -> str:
        target = self.network_cfg.get("_target_")
        if not target:
            raise ConfigError(
                f"encoder=module needs {self.setting}.model._target_=<an importable callable returning an nn.Module>"
            )
        if not callable(import_object(str(target), f"{self.setting}.model._target_")):
            raise ConfigError(f"{self.setting}.model._target_={target} is not callable")
        return str(target)

    def _check_tokenizer(self, tokenizer: str | None) -> tuple[str, bool]:
        if not tokenizer:
            raise ConfigError(
                f"{self.setting}.view=text needs {self.setting}.tokenizer=<a Hugging Face tokenizer name or local dir>"
            )
        path = Path(str(tokenizer)).expanduser()
        if path.is_dir():
            return str(path.resolve()), True
        if looks_like_path(str(tokenizer)):
            raise ConfigError(f"{self.setting}.tokenizer: no such directory {path}")
        return str(tokenizer), False

    def _build(self) -> nn.Module:
        """The network, initialised under ``seed`` (its weights when there is no checkpoint)."""
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                net = instantiate(self.network_cfg, f"{self.setting}.model")
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's constructor: its error in one line
            raise ConfigError(f"{self.setting}.model._target_={self.target}: building the network failed: "
                              f"{type(e).__name__}: {one_line(e)}") from None  # fmt: skip
        if not isinstance(net, nn.Module):
            raise ConfigError(
                f"{self.setting}.model._target_={self.target} returned a {type(net).__name__}, not a torch nn.Module"
            )
        return net.eval().requires_grad_(False)

    def _probe_dim(self, net: nn.Module) -> int:
        """The pooled width, from one forward of a dummy input (a zero image, or two token ids 0)."""
        if self.view == "image":
            inputs: tuple[torch.Tensor, ...] = (torch.zeros(1, 3, *self.preprocessing.size),)
        else:
            inputs = (torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
        try:
            with torch.no_grad():
                out = self._run(net, *inputs)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's forward: its error in one line
            rule = "net(x) with x (1, 3, H, W)" if self.view == "image" else "net(input_ids=..., attention_mask=...)"
            raise ConfigError(f"{self.setting}.model._target_={self.target}: a dummy forward, {rule}, failed: "
                              f"{type(e).__name__}: {one_line(e)} (or set {self.setting}.dim)") from None  # fmt: skip
        return int(out.shape[-1])

    # --- identity, loading, encoding ------------------------------------------------------------

    def _identity(self) -> dict:
        if self.checkpoint is not None:
            weights: dict[str, Any] = {"checkpoint_sha256": file_sha256(self.checkpoint)}
        else:
            weights = {"random_init_seed": self.seed, "torch": package_version("torch")}
        if self.view == "image":
            preprocess = self.preprocessing.identity()
        else:
            tokenizer = (
                {"dir_sha256": dir_sha256(self.tokenizer_name)} if self.tokenizer_is_dir else {"hub_id": self.tokenizer_name}
            )
            preprocess = {"tokenizer": tokenizer, "max_length": self.max_length, "transformers": package_version("transformers")}
        return {"network": self.network_cfg, "weights": weights, "output": self.output, "pooling": self.pooling,
                "preprocess": preprocess}  # fmt: skip

    def _load(self) -> None:
        net = self.net if self.net is not None else self._build()
        if self.checkpoint is not None:
            where = f"{self.setting}.checkpoint={self.checkpoint}"
            load_weights(net, strip_ddp_prefix(read_state_dict(self.checkpoint, f"{self.setting}.checkpoint")), where)
        self.net = net
        if self.view == "text":
            self.tokenizer = self._load_tokenizer()

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        local_only = self.tokenizer_is_dir or hub_offline()
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_name, local_files_only=local_only)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self.setting}.tokenizer={self.tokenizer_name}: cannot load it: {one_line(e)}") from None
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # GPT-style tokenizers
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def _run(self, net: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raw = net(x) if self.view == "image" else net(input_ids=x, attention_mask=mask)
        return pool(select_output(raw, self.output, self.setting), mask, self.pooling, self.setting)

    def _encode(self, batch: Any) -> torch.Tensor:
        if self.view == "image":
            if not isinstance(batch, torch.Tensor):
                raise ConfigError(f"{type(self).__name__} reads image tensors (B, C, H, W), got {type(batch).__name__}")
            return self._run(self.net, self.preprocessing(batch, self.device)).float().to(batch.device)
        texts = check_texts(batch, type(self).__name__)
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = enc.to(self.device)
        return self._run(self.net, enc["input_ids"], enc["attention_mask"]).float()
