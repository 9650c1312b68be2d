"""Speech encoders trained from scratch: a small CNN on log-mel spectrograms (``encoder=audio_cnn``).

The spectrogram is computed inside the model from the audio view's waveforms (16 kHz, zero-padded
at the end), so a scratch audio encoder trains, extracts and caches through the same path as an
image encoder. ``torchaudio`` has the same transform, but every torchaudio wheel pins its own torch
and would replace the pinned one; the mel filterbank is a few lines of arithmetic (the HTK mel scale,
triangular filters as torchaudio's ``melscale_fbanks(norm=None, mel_scale="htk")`` builds them), so it
is written here and checked against a direct evaluation of the triangles in the tests.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from latentstitch.errors import ConfigError

__all__ = ["AudioCNN", "LogMel", "hz_to_mel", "mel_filterbank", "mel_to_hz"]


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """The HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor | float) -> torch.Tensor:
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters, equally spaced on the mel scale, peak 1."""
    f_max = sample_rate / 2 if f_max is None else float(f_max)
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ConfigError(f"mel filterbank: need 0 <= f_min={f_min} < f_max={f_max} <= sample_rate / 2 = {sample_rate / 2}")
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64))
    low, centre, high = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - low) / (centre - low)
    falling = (high - bins[:, None]) / (high - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class LogMel(nn.Module):
    """Waveforms (B, S) -> log-mel spectrograms (B, 1, n_mels, frames): 25 ms Hann windows every
    10 ms, power spectrum, mel filters, ``log(x + 1e-6)``."""

    def __init__(self, sample_rate: int = 16_000, n_mels: int = 40, win_ms: float = 25.0, hop_ms: float = 10.0) -> None:
        super().__init__()
        if int(n_mels) < 1:
            raise ConfigError(f"encoder AudioCNN: n_mels={n_mels} must be at least 1")
        self.win = int(round(sample_rate * win_ms / 1000))
        self.hop = int(round(sample_rate * hop_ms / 1000))
        self.n_fft = 2 ** math.ceil(math.log2(self.win))
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)
        self.register_buffer("filters", mel_filterbank(self.n_fft, int(n_mels), int(sample_rate)), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio, self.n_fft, self.hop, self.win, self.window, center=True, return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (B, freq, frames)
        mel = torch.einsum("bft,fm->bmt", power, self.filters)
        return torch.log(mel + 1e-6).unsqueeze(1)


class AudioCNN(nn.Module):
    """Log-mel spectrogram, then conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool) of
    ``channels``, a mean over time and frequency, and a dense layer to ``num_features`` (ReLU).

    Reads the audio view's waveforms (B, samples) at ``sample_rate``, or a collated
    ``{"audio", "length"}`` batch; the spectrogram's global batch norm (one mean and scale, learnt)
    puts log energies near zero without per-clip statistics, so a clip's vector depends on it alone
    in eval mode. Padding is silence: the mean over time counts it, which the training sees too.
    """

    def __init__(
        self,
        sample_rate: int = 16_000,
        n_mels: int = 40,
        channels: tuple[int, ...] = (32, 64, 128),
        num_features: int = 128,
    ) -> None:
        super().__init__()
        if not channels:
            raise ConfigError("encoder AudioCNN: channels must name at least one conv block")
        self.melspec = LogMel(int(sample_rate), int(n_mels))
        self.norm = nn.BatchNorm2d(1)
        blocks: list[nn.Module] = []
        width = 1
        for out in channels:
            blocks += [
                nn.Conv2d(width, int(out), 3, padding=1),
                nn.BatchNorm2d(int(out)),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            width = int(out)
        self.conv = nn.Sequential(*blocks)
        self.fc = nn.Sequential(nn.Linear(width, int(num_features)), nn.ReLU())
        self.num_features = self.out_dim = int(num_features)

    def forward(self, batch: torch.Tensor | dict) -> torch.Tensor:
        audio = batch["audio"] if isinstance(batch, dict) else batch
        if audio.ndim != 2:
            raise ConfigError(f"AudioCNN reads mono waveforms (B, samples), got shape {tuple(audio.shape)}")
        x = self.conv(self.norm(self.melspec(audio.float())))
        return self.fc(x.mean(dim=(2, 3)))
