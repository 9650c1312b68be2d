"""How well the openWakeWord speech embedding tells spoken words apart, per preprocessing setting.

    .venv/bin/python scripts/speech_probe.py                           # lead 0 vs 0.5 s, 50 voices
    .venv/bin/python scripts/speech_probe.py --lead 0 0.25 0.5 --voices 50 --flite

On dataset spoken_words (10 command words x ``--voices`` espeak voices, English, split 0.3), for each
``lead_seconds``: a linear probe (standardise + logistic regression, fit on train) scored on the
test split, and the mean centred cosine of same-word / different-voice pairs against
different-word / same-voice pairs (a word embedding should put the first above the second).
``--flite`` also scores the probe on the test words spoken by flite (another synthesiser).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def embed(encoder, clips, batch: int = 64) -> np.ndarray:
    parts = [
        encoder({"audio": clips.waveforms[i : i + batch], "length": clips.lengths[i : i + batch]})
        for i in range(0, len(clips), batch)
    ]
    return torch.cat(parts).numpy()


def pair_cosines(x: np.ndarray, words: np.ndarray, voices: np.ndarray, train: np.ndarray) -> tuple[float, float]:
    c = x - x[train].mean(0)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    sim = c @ c.T
    same_word = (words[:, None] == words[None]) & (voices[:, None] != voices[None])
    same_voice = (words[:, None] != words[None]) & (voices[:, None] == voices[None])
    return float(sim[same_word].mean()), float(sim[same_voice].mean())


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from latentstitch.data.speech import load_spoken_words
    from latentstitch.encoders.pretrained import OpenWakeWord

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lead", type=float, nargs="+", default=[0.0, 0.5], help="lead_seconds settings to compare")
    ap.add_argument("--voices", type=int, default=50, help="voices per word")
    ap.add_argument("--flite", action="store_true", help="also score on the test words spoken by flite")
    ap.add_argument("--data-dir", default=None, help="where synthesised clips are cached (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="speech_probe-"))
    ds = load_spoken_words(data_dir, languages=["en"], voices_per_word=args.voices)
    held = (
        load_spoken_words(data_dir, languages=["en"], voices_per_word=args.voices, test_synthesizer="flite")
        if args.flite
        else None
    )
    train, test = ds.splits["train"].numpy(), ds.splits["test"].numpy()
    words, voices = ds.labels.numpy(), np.arange(len(ds)) % args.voices
    print(
        f"spoken_words: {len(ds)} clips ({len(train)} train, {len(test)} test), mean {ds.views['audio:en'].lengths.float().mean() / 16000:.2f} s"
    )
    for lead in args.lead:
        encoder = OpenWakeWord(lead_seconds=lead)
        encoder.load()
        t0 = time.perf_counter()
        x = embed(encoder, ds.views["audio:en"])
        seconds = time.perf_counter() - t0
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x[train], words[train])
        word, voice = pair_cosines(x, words, voices, train)
        line = f"lead {lead:.2f} s: probe {probe.score(x[test], words[test]):.3f}"
        if held is not None:
            line += f"  flite test {probe.score(embed(encoder, held.views['audio:en'])[test], words[test]):.3f}"
        print(f"{line}  same-word cos {word:.3f}  same-voice cos {voice:.3f}  ({len(ds) / seconds:.0f} clips/s)")


if __name__ == "__main__":
    main()
