"""Graph and audio views of items (issue 17): the WordNet noun graph beside its glosses, a GCN cell
across seeds through run.py, and speech synthesis that is deterministic and cached."""

import shutil
from pathlib import Path

import pytest
import torch

from latentstitch.data.graphs import load_wordnet_graph
from latentstitch.data.speech import load_spoken_words, synthesize
from latentstitch.data.wordnet import load_wordnet
from latentstitch.errors import ConfigError

from conftest import run_cli

needs_wordnet = pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").exists(), reason="Debian wordnet-base is missing")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="Debian espeak-ng is missing")


@needs_wordnet
def test_wordnet_graph_is_symmetric_and_shares_ids_labels_and_glosses_with_the_text_dataset(tmp_path):
    graph_items = load_wordnet_graph(tmp_path)
    graph = graph_items.views["graph"]
    assert len(graph_items) == graph.num_nodes == 3000 and graph_items.num_classes == 7
    src, dst = graph.edge_index
    assert (src != dst).all()  # no self loops
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert len(pairs) == len(src) and all((b, a) in pairs for a, b in pairs)  # symmetric, no duplicates
    text_items = load_wordnet(tmp_path, classes=graph_items.class_names, per_class=400)
    by_key = {k: i for i, k in enumerate(text_items.keys)}
    shared = [(i, by_key[k]) for i, k in enumerate(graph_items.keys) if k in by_key]
    assert len(shared) > 100
    for g, t in shared:
        assert graph_items.class_names[graph_items.labels[g]] == text_items.class_names[text_items.labels[t]]
        assert graph_items.views["text:en"][g] == text_items.views["text:en"][t]


@needs_wordnet
def test_gcn_cross_seed_cell_stitches_at_least_0_9_of_native(tmp_path):
    r = run_cli(["dataset=wordnet_graph", "encoder=gcn", "decoder=gcn", "decoder.space.seed=1", "dataset.max_epochs=80",
                 "logger=none", "trainer.enable_progress_bar=false"], tmp_path, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    m = r.metrics
    assert m["native_acc"] > 0.8  # seen 0.977 (7 classes; 80 full-batch steps, the preset's 200: 0.974)
    assert m["stitched_acc"] >= 0.9 * m["native_acc"], m  # seen 0.972
    assert m["untranslated_acc"] < 0.5  # a seed-0 GCN straight into a seed-1 head: seen 0.398 (0.284 at 200 steps)


@needs_espeak
def test_speech_is_deterministic_per_seed_and_cached(tmp_path):
    words = ["yes", "no", "stop"]
    a, info_a = synthesize(words, "en", seed=0, cache_dir=tmp_path / "a")
    b, _ = synthesize(words, "en", seed=0, cache_dir=None)
    c, _ = synthesize(words, "en", seed=1, cache_dir=None)
    assert info_a["cache_hit"] is False and torch.equal(a.waveforms, b.waveforms) and torch.equal(a.lengths, b.lengths)
    assert not torch.equal(a.lengths, c.lengths)  # other voices (speed, pitch, variant)
    again, info = synthesize(words, "en", seed=0, cache_dir=tmp_path / "a")
    assert info["cache_hit"] is True and torch.equal(again.lengths, a.lengths)
    assert (again.waveforms - a.waveforms).abs().max() < 1e-6
    assert not list((tmp_path / "a").glob("*.tmp"))
    assert (a.lengths > 0.2 * 16_000).all()


@needs_espeak
def test_spoken_words_pair_each_clip_with_its_text(tmp_path):
    items = load_spoken_words(tmp_path, languages=["en", "fr"], voices_per_word=3)
    assert len(items) == 30 and items.views["text:fr"][items.keys.index("stop-01")] == "arrête"
    clips = items.views["audio:en"]
    first = clips[0]
    assert set(first) == {"audio", "length"} and len(clips[torch.tensor([0, 5])]) == 2
    with pytest.raises(ConfigError, match="no voice"):
        synthesize(["hello"], "xx-nolang", cache_dir=None)
    with pytest.raises(ConfigError, match="English only"):
        synthesize(["bonjour"], "fr", synthesizer="flite", cache_dir=None)
