"""Frozen speech encoders: Google's speech_embedding as shipped in the ``openwakeword`` wheel."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from latentstitch.encoders.pretrained.base import FrozenEncoder, file_sha256, package_version, require_package
from latentstitch.errors import ConfigError

SAMPLE_RATE = 16_000
MEL_HOP = 160  # samples per melspectrogram frame (10 ms)
FRAME_STEP = 8 * MEL_HOP  # samples per embedding frame (80 ms)
WINDOW = (76 + 3) * MEL_HOP  # the shortest input giving one embedding frame: 76 mel frames (~775 ms of audio)


class OpenWakeWord(FrozenEncoder):
    """Google's speech_embedding (96-d every 80 ms over a 775 ms window) through openWakeWord 0.4.0's
    ONNX models (``melspectrogram.onnx`` + ``embedding_model.onnx``, shipped in the wheel: later
    releases download them instead), run by onnxruntime on the CPU, one thread.

    Reads the collated audio view ``{"audio": (B, S) float in [-1, 1], "length": (B,)}`` (or a bare
    (B, S) tensor: every sample counts) at 16 kHz. Each clip is placed after ``lead_seconds`` of
    silence and followed by ``tail_seconds`` (the model was trained to spot words inside a stream,
    not at its very start); its vector is the mean of the embedding frames whose window fits in
    that padded clip (at least one). The frames a clip gets depend on its own length only, so its
    vector does not depend on the other clips in its batch.

    Measured on spoken_words (10 words x 50 espeak voices, 8 English accents, split 0.3),
    standardise + logistic regression fit on train (``scripts/speech_probe.py --lead 0 0.25 0.5
    0.75 --flite``): test accuracy 0.83 / 0.96 / 0.97 / 0.97 for 0 / 0.25 / 0.5 / 0.75 s of lead
    silence, and on the test words spoken by flite (a synthesiser the probe never saw) 0.19 /
    0.66 / 0.88 / 0.91; without lead, different words of one voice are closer than one word of
    different voices (centred cosine 0.35 vs 0.29), with 0.5 s the word wins (0.53 vs 0.04).
    About 50 clips/s on one core.
    """

    view = "audio"
    dim = 96
    config_name = "openwakeword"
    package = "openwakeword"
    version = "0.4.0"  # the last release that ships its models
    models = ("melspectrogram.onnx", "embedding_model.onnx")

    def __init__(self, lead_seconds: float = 0.5, tail_seconds: float = 0.5, batch_windows: int = 512) -> None:
        super().__init__()
        root = require_package("openwakeword", f"{self.package}=={self.version}", self.config_name)
        self.model_dir = root / "resources" / "models"
        missing = [m for m in self.models if not (self.model_dir / m).is_file()]
        if missing:
            raise ConfigError(
                f"encoder={self.config_name}: openwakeword {package_version(self.package)} ships no {', '.join(missing)} "
                f"(only {self.version} does): pip install {self.package}=={self.version}"
            )
        if lead_seconds < 0 or tail_seconds < 0:
            raise ConfigError(
                f"encoder={self.config_name}: lead_seconds={lead_seconds} and tail_seconds={tail_seconds} must be >= 0"
            )
        self.lead = int(round(float(lead_seconds) * SAMPLE_RATE))
        self.tail = int(round(float(tail_seconds) * SAMPLE_RATE))
        self.batch_windows = int(batch_windows)
        self._features: Any = None

    def _identity(self) -> dict:
        return {
            "weights": {
                "packages": {self.package: package_version(self.package)},
                "sha256": {m: file_sha256(self.model_dir / m) for m in self.models},
            },
            "preprocess": {
                "sample_rate": SAMPLE_RATE,
                "lead_samples": self.lead,
                "tail_samples": self.tail,
                "pooling": "mean over the padded clip's frames",
                "int16": True,
            },
        }

    def _load(self) -> None:
        with warnings.catch_warnings():  # it asks for CUDA first; the CPU build of onnxruntime warns that it has none
            warnings.filterwarnings("ignore", message=".*CUDAExecutionProvider.*")
            from openwakeword.utils import AudioFeatures

            self._features = AudioFeatures(
                melspec_onnx_model_path=str(self.model_dir / self.models[0]),
                embedding_onnx_model_path=str(self.model_dir / self.models[1]),
                sr=SAMPLE_RATE,
                ncpu=1,
            )

    def _encode(self, batch: Any) -> torch.Tensor:
        audio, lengths = audio_batch(batch, type(self).__name__)
        if len(audio) == 0:
            return torch.zeros(0, self.dim, device=audio.device)
        frames = clip_frames(lengths + self.lead + self.tail)
        padded = torch.nn.functional.pad(audio.detach().float().cpu(), (self.lead, 0))
        padded = padded * (torch.arange(padded.shape[1]) < (lengths + self.lead)[:, None])  # nothing past a clip's length
        pcm = fit_width(padded, int(frames.max()))
        pcm = (pcm.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16).numpy()
        emb = self._features.embed_clips(pcm, batch_size=self.batch_windows, ncpu=1)  # (B, frames, 96)
        emb = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        mask = (torch.arange(emb.shape[1])[None, :] < frames[:, None]).float()
        pooled = (emb * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return pooled.to(audio.device)


def audio_batch(batch: Any, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(waveforms (B, S), lengths (B,)) from a collated audio batch dict or a bare (B, S) tensor."""
    if isinstance(batch, dict) and "audio" in batch:
        audio = batch["audio"]
        lengths = torch.as_tensor(batch.get("length", audio.shape[-1]), dtype=torch.long).expand(audio.shape[0])
    elif isinstance(batch, torch.Tensor):
        audio, lengths = batch, torch.full((batch.shape[0],), batch.shape[-1], dtype=torch.long)
    else:
        raise ConfigError(f"{who} reads audio batches {{'audio': (B, samples), 'length': (B,)}}, got {type(batch).__name__}")
    if audio.ndim != 2:
        raise ConfigError(f"{who} reads mono waveforms (B, samples), got shape {tuple(audio.shape)}")
    return audio, lengths.cpu().clamp(min=0, max=audio.shape[1])


def clip_frames(samples: torch.Tensor) -> torch.Tensor:
    """Embedding frames whose window fits in ``samples`` samples: at least one."""
    return (torch.div(samples - WINDOW, FRAME_STEP, rounding_mode="floor") + 1).clamp(min=1)


def fit_width(audio: torch.Tensor, frames: int) -> torch.Tensor:
    """``audio`` cut or zero-padded to the samples that give exactly ``frames`` embedding frames."""
    width = FRAME_STEP * (frames - 1) + WINDOW
    if audio.shape[1] >= width:
        return audio[:, :width]
    return torch.nn.functional.pad(audio, (0, width - audio.shape[1]))
