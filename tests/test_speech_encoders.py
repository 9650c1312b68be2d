"""Speech encoders: the log-mel AudioCNN trained here, the frozen openWakeWord embedding, and an
audio <-> text cell through run.py (issue 17)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from latentstitch.data.speech import SAMPLE_RATE, load_spoken_words
from latentstitch.encoders.audio import AudioCNN, LogMel, hz_to_mel, mel_filterbank, mel_to_hz
from latentstitch.errors import ConfigError

from conftest import run_cli

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs the Debian package espeak-ng (make data)")
QUIET = ["logger=none", "trainer.enable_progress_bar=false"]


def tone(hz: float, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return torch.sin(2 * torch.pi * hz * t)


# ------------------------------------------------------------------------------------ log-mel


def test_mel_scale_round_trips_and_matches_htk():
    assert float(hz_to_mel(700.0)) == pytest.approx(2595.0 * np.log10(2.0))
    hz = torch.tensor([0.0, 125.0, 1000.0, 7999.0], dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(hz)), hz)


def test_mel_filterbank_equals_the_triangles_evaluated_one_by_one():
    n_fft, n_mels, sr = 512, 10, 16_000
    fb = mel_filterbank(n_fft, n_mels, sr)
    assert fb.shape == (n_fft // 2 + 1, n_mels) and fb.dtype == torch.float32
    mels = np.linspace(0.0, 2595.0 * np.log10(1 + (sr / 2) / 700), n_mels + 2)
    edges = 700.0 * (10 ** (mels / 2595.0) - 1)
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(0, n_fft // 2 + 1, 7):
            f = k * sr / n_fft
            want = (f - lo) / (mid - lo) if lo <= f <= mid else (hi - f) / (hi - mid) if mid < f <= hi else 0.0
            assert float(fb[k, m]) == pytest.approx(want, abs=1e-6), (k, m)
    assert (fb >= 0).all() and (fb.max(0).values > 0.5).all()  # every filter covers at least one bin near its peak
    with pytest.raises(ConfigError, match="f_max"):
        mel_filterbank(n_fft, n_mels, sr, f_max=9000)


def test_log_mel_puts_a_tone_in_its_band():
    melspec = LogMel(n_mels=40)
    centres = mel_to_hz(torch.linspace(0, float(hz_to_mel(8000.0)), 42))[1:-1]
    for hz in (300.0, 1500.0, 5000.0):
        spec = melspec(tone(hz)[None])
        assert spec.shape[:3] == (1, 1, 40) and spec.shape[3] == 0.5 * SAMPLE_RATE // 160 + 1  # 10 ms hop, centred frames
        loudest = int(spec[0, 0].mean(-1).argmax())
        assert abs(loudest - int((centres - hz).abs().argmin())) <= 1, hz


# ------------------------------------------------------------------------------------ AudioCNN


def test_audio_cnn_reads_waveforms_or_batches_and_trains():
    torch.manual_seed(0)
    model = AudioCNN(n_mels=20, channels=(8, 16), num_features=12)
    waves = torch.randn(4, 8000) * 0.1
    assert model.out_dim == 12 and model(waves).shape == (4, 12)
    model.eval()
    alone = model(waves[:1])
    torch.testing.assert_close(model({"audio": waves, "length": torch.full((4,), 8000)})[:1], alone)  # batch-independent in eval
    assert set(model.state_dict()) == {k for k in model.state_dict() if not k.startswith("melspec.")}  # filters: not weights
    model.train()
    model(waves).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ConfigError, match="mono waveforms"):
        model(torch.zeros(2, 1, 8000))
    with pytest.raises(ConfigError, match="channels"):
        AudioCNN(channels=())


# --------------------------------------------------------------------------------- openWakeWord


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs the Debian package espeak-ng (make data)")
    return load_spoken_words(tmp_path_factory.mktemp("data"), languages=["en"], voices_per_word=12)


@pytest.fixture(scope="module")
def openwakeword():
    pytest.importorskip("openwakeword")
    from latentstitch.encoders.pretrained import OpenWakeWord

    encoder = OpenWakeWord()
    encoder.load()
    return encoder


def test_openwakeword_hears_the_word_not_the_voice(spoken, openwakeword):
    """The known answer: two voices saying one word are closer than one voice saying two words."""
    clips = spoken.views["audio:en"]
    x = openwakeword({"audio": clips.waveforms, "length": clips.lengths}).numpy()
    assert x.shape == (len(spoken), 96) and np.isfinite(x).all()
    c = x - x.mean(0)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    sim = c @ c.T
    words, voices = spoken.labels.numpy(), np.arange(len(spoken)) % 12
    same_word = sim[(words[:, None] == words[None]) & (voices[:, None] != voices[None])].mean()
    same_voice = sim[(words[:, None] != words[None]) & (voices[:, None] == voices[None])].mean()
    assert same_word > same_voice + 0.2, (same_word, same_voice)  # measured 0.53 vs 0.04 with 50 voices


def test_openwakeword_vector_depends_on_the_clip_alone(spoken, openwakeword):
    clips = spoken.views["audio:en"]
    batch = {"audio": clips.waveforms[:6], "length": clips.lengths[:6]}
    together = openwakeword(batch)
    i = int(clips.lengths[:6].argmin())
    short = clips.waveforms[i : i + 1, : int(clips.lengths[i])]  # no padding at all
    torch.testing.assert_close(
        openwakeword({"audio": short, "length": clips.lengths[i : i + 1]}), together[i : i + 1], atol=1e-4, rtol=1e-4
    )
    assert openwakeword(torch.zeros(0, 100)).shape == (0, 96)


def test_openwakeword_identity_names_its_models_and_preprocessing(openwakeword):
    from latentstitch.encoders.pretrained import OpenWakeWord

    ident = openwakeword.identity()
    text = repr(ident)
    assert "melspectrogram.onnx" in text and "embedding_model.onnx" in text and "0.4.0" in text
    assert ident != OpenWakeWord(lead_seconds=0.25).identity()  # the preprocessing is in the cache key
    with pytest.raises(ConfigError, match="lead_seconds"):
        OpenWakeWord(lead_seconds=-1)


# ------------------------------------------------------------------------------- cells via CLI


@needs_espeak
@pytest.mark.slow  # 22 s: the encoders' known-answer tests stay fast
def test_speech_stitches_into_a_text_decoder(tmp_path):
    """openWakeWord on spoken command words into a MiniLM head trained on the words' text."""
    pytest.importorskip("openwakeword")
    data = ["dataset=spoken_words", "dataset.loader.voices_per_word=24", "dataset.loader.languages=[en]", "anchors.num=60",
            f"paths.data_dir={tmp_path / 'data'}"]  # fmt: skip
    r = run_cli([*data, "encoder=openwakeword", "decoder=minilm", *QUIET], tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    cell = json.loads((r.run_dir / "metrics.json").read_text())
    assert (cell["encoder"], cell["decoder"]) == ("openwakeword:en", "minilm:en")
    assert cell["native_acc"] == pytest.approx(1.0)  # ten distinct words: the text head is exact
    assert cell["stitched_acc"] > 0.6, cell  # chance 0.1; 0.89 measured with 50 voices and 100 anchors


@needs_espeak
def test_emoji_audio_languages_must_be_text_languages(tmp_path):
    from latentstitch.data.emoji import load_emoji

    with pytest.raises(ConfigError, match=r"\['de'\] not in dataset.loader.languages"):
        load_emoji(tmp_path, languages=["en"], audio=["de"])
    with pytest.raises(ConfigError, match="no voice"):
        load_emoji(tmp_path, languages=["en", "xx"], audio=["xx"])
