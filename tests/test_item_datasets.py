"""Item datasets (emoji, gettext, wordnet, Hugging Face): alignment of views, counts, splits, errors."""

from __future__ import annotations

import gettext
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentstitch.data.emoji import DEFAULT_ROOT as SHARE
from latentstitch.data.emoji import EMOJI_TEST, FONT, load_emoji, read_emoji_test, render_emoji
from latentstitch.data.gettext_catalogs import load_gettext
from latentstitch.data.item_loaders import ITEM_LOADERS, load_items
from latentstitch.data.wordnet import DEFAULT_CLASSES, LEXNAMES, load_wordnet
from latentstitch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EMOJI_GROUPS = {
    "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
    "Activities", "Objects", "Symbols", "Flags",
}  # fmt: skip
CLDR = SHARE / "unicode/cldr/common"
WORDNET = Path("/usr/share/wordnet/data.noun")
LOCALE = Path("/usr/share/locale")

needs_emoji = pytest.mark.skipif(
    not ((SHARE / FONT).exists() and (SHARE / EMOJI_TEST).exists() and (CLDR / "annotations").exists()),
    reason="needs the Debian packages fonts-noto-color-emoji unicode-data unicode-cldr-core (make data)",
)
needs_wordnet = pytest.mark.skipif(not WORDNET.exists(), reason="needs the Debian package wordnet-base (make data)")
needs_catalogs = pytest.mark.skipif(
    not (LOCALE / "fr/LC_MESSAGES/libc.mo").exists(), reason="needs the gettext catalogs of requirements/debian.txt"
)


def assert_splits_partition(ds, n: int) -> None:
    train, test = ds.splits["train"], ds.splits["test"]
    assert len(set(train.tolist()) & set(test.tolist())) == 0
    assert sorted(train.tolist() + test.tolist()) == list(range(n))
    assert len(ds.splits["val"]) == 0  # the caller carves val


def assert_stratified(ds, test_fraction: float) -> None:
    test = torch.zeros(len(ds), dtype=torch.bool)
    test[ds.splits["test"]] = True
    for c in range(ds.num_classes):
        members = ds.labels == c
        assert int(test[members].sum()) == round(test_fraction * int(members.sum())), ds.class_names[c]


def assert_same(a, b) -> None:
    assert a.view_names == b.view_names
    for name in a.view_names:
        va, vb = a.views[name], b.views[name]
        assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, name
    assert (a.labels is None and b.labels is None) or torch.equal(a.labels, b.labels)
    assert all(torch.equal(a.splits[k], b.splits[k]) for k in ("train", "val", "test"))
    assert a.class_names == b.class_names


# --------------------------------------------------------------------------------------- emoji


@pytest.fixture(scope="module")
def emoji_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def emoji(emoji_dir):
    return load_emoji(emoji_dir)


def tts_name(char: str, lang: str) -> str:
    """The CLDR spoken name, read straight from the XML text (no XML parser, no inheritance)."""
    key = char.replace("\ufe0f", "")
    for sub in ("annotations", "annotationsDerived"):
        for line in (CLDR / sub / f"{lang}.xml").read_text(encoding="utf-8").splitlines():
            if f'cp="{key}" type="tts"' in line:
                return line.split(">", 1)[1].split("<", 1)[0]
    raise KeyError(char)


@needs_emoji
def test_emoji_counts_and_classes(emoji):
    n = len(emoji)
    assert 1800 <= n <= 4000  # 1,849 with unicode-data 15.0 and CLDR 41
    assert set(emoji.class_names) == EMOJI_GROUPS and emoji.num_classes == 9
    assert emoji.view_names == ["image", "text:de", "text:en", "text:es", "text:fr", "text:it"]
    image = emoji.views["image"]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (n, 3, 64, 64)
    counts = torch.bincount(emoji.labels, minlength=9)
    assert counts.min() >= 50 and counts.max() <= 0.25 * n
    assert counts.tolist() == list(emoji.info["class_counts"].values())
    for lang in ("en", "fr", "de", "es", "it"):
        names = emoji.views[f"text:{lang}"]
        assert len(names) == n and all(isinstance(s, str) and s for s in names)
        assert len(set(names)) > 0.99 * n  # names, not a constant
    assert emoji.info["items"] == n and emoji.info["packages"]["fonts-noto-color-emoji"]


@needs_emoji
@pytest.mark.parametrize(
    "char, english, group",
    [
        ("\U0001f600", "grinning face", "Smileys & Emotion"),
        ("\u263a\ufe0f", "smiling face", "Smileys & Emotion"),  # U+FE0F is not in CLDR's keys
        ("\U0001f469\u200d\U0001f680", "woman astronaut", "People & Body"),  # ZWJ, annotationsDerived
        ("\U0001f1eb\U0001f1f7", "flag: France", "Flags"),
        ("\U0001f355", "pizza", "Food & Drink"),
    ],
)
def test_emoji_views_are_aligned(emoji, char, english, group):
    i = emoji.views["text:en"].index(english)
    assert emoji.class_names[int(emoji.labels[i])] == group
    for lang in ("en", "fr", "de", "es", "it"):
        assert emoji.views[f"text:{lang}"][i] == tts_name(char, lang)
    rendered = torch.from_numpy(render_emoji(char, 64))
    assert torch.equal(emoji.views["image"][i], rendered)
    assert not torch.equal(emoji.views["image"][(i + 1) % len(emoji)], rendered)


@needs_emoji
def test_emoji_known_translation(emoji):
    i = emoji.views["text:en"].index("grinning face")
    assert emoji.views["text:fr"][i] == "visage rieur"
    assert emoji.views["text:de"][i] == "grinsendes Gesicht"


@needs_emoji
def test_emoji_images_are_glyphs_on_white(emoji):
    image = emoji.views["image"]
    corners = image[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners.float().mean() > 200).item()  # white padding in most corners
    ink = (image < 250).any(1).flatten(1).float().mean(1)
    assert ink.min() > 0.05  # every image has a drawing
    centre = image[:, :, 32, 32]
    assert len(torch.unique(centre, dim=0)) > 100  # the images differ


@needs_emoji
def test_emoji_deterministic_and_cached(emoji, emoji_dir):
    assert emoji.info["cache_hit"] is False  # the first load in a fresh data_dir renders
    cache_file = Path(emoji.info["cache"])
    assert cache_file.parent == emoji_dir / "emoji" and cache_file.exists()
    again = load_emoji(emoji_dir)
    assert again.info["cache_hit"] is True
    assert_same(emoji, again)
    # the cached pixels are what rendering gives now
    char_of = {e.name: e.char for e in read_emoji_test(SHARE / EMOJI_TEST)}
    sample = torch.randperm(len(emoji), generator=torch.Generator().manual_seed(0))[:20].tolist()
    checked = 0
    for i in sample:
        char = char_of.get(again.views["text:en"][i])  # CLDR's English name is emoji-test's name
        if char is not None:
            assert torch.equal(again.views["image"][i], torch.from_numpy(render_emoji(char, 64))), i
            checked += 1
    assert checked >= 15


@needs_emoji
def test_emoji_splits(emoji):
    assert_splits_partition(emoji, len(emoji))
    assert_stratified(emoji, 0.3)
    other = load_emoji(Path("/nonexistent"), cache=False, split_seed=1, image_size=16)
    assert not torch.equal(other.splits["test"], emoji.splits["test"])
    assert_stratified(other, 0.3)


@needs_emoji
def test_emoji_options(tmp_path):
    ds = load_emoji(tmp_path, languages=["en", "ja"], image_size=32, label="subgroup", test_fraction=0.5)
    assert ds.view_names == ["image", "text:en", "text:ja"]
    assert tuple(ds.views["image"].shape[1:]) == (3, 32, 32)
    assert ds.num_classes > 50  # ~99 subgroups
    i = ds.views["text:en"].index("grinning face")
    assert ds.views["text:ja"][i] == tts_name("\U0001f600", "ja")
    assert ds.class_names[int(ds.labels[i])] == "face-smiling"


@needs_emoji
def test_emoji_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="no annotations for language 'xx'"):
        load_emoji(tmp_path, languages=["en", "xx"], cache=False)
    with pytest.raises(ConfigError, match="label"):
        load_emoji(tmp_path, label="colour")
    with pytest.raises(ConfigError, match="test_fraction"):
        load_emoji(tmp_path, test_fraction=1.0)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


@needs_emoji
def test_emoji_missing_packages(tmp_path):
    root = tmp_path / "share"
    with pytest.raises(ConfigError) as e:
        load_emoji(tmp_path, root=root)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("dataset emoji needs the Debian package fonts-noto-color-emoji")
    assert msg.endswith("apt-get install fonts-noto-color-emoji (make data does it)")
    _link(SHARE / FONT, root / FONT)
    with pytest.raises(ConfigError, match="needs the Debian package unicode-data .*apt-get install unicode-data"):
        load_emoji(tmp_path, root=root)
    _link(SHARE / "unicode/emoji", root / "unicode/emoji")
    with pytest.raises(ConfigError, match="apt-get install unicode-cldr-core"):
        load_emoji(tmp_path, root=root)
    _link(CLDR, root / "unicode/cldr/common")
    assert len(load_emoji(tmp_path, root=root, image_size=8, languages=["en"])) >= 1800


# ------------------------------------------------------------------------------------- gettext


def write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU .mo file (what msgfmt writes) holding ``messages`` and a UTF-8 header."""
    entries = {"": "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n != 1);\n", **messages}
    keys = sorted(entries)
    ids = [k.encode() for k in keys]
    strs = [entries[k].encode() for k in keys]
    n = len(keys)
    start = 7 * 4 + 16 * n
    table_ids, table_strs, blob = [], [], b""
    for b in ids:
        table_ids.append((len(b), start + len(blob)))
        blob += b + b"\0"
    for b in strs:
        table_strs.append((len(b), start + len(blob)))
        blob += b + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    tables = b"".join(struct.pack("<2I", *t) for t in table_ids + table_strs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tables + blob)


@pytest.fixture
def locale_tree(tmp_path):
    root = tmp_path / "locale"
    write_mo(
        root / "fr/LC_MESSAGES/alpha.mo",
        {
            "Open the selected file": "Ouvrir le fichier sélectionné",
            "Save all open documents": "Enregistrer tous les documents ouverts",
            " Save all open documents": "VARIANTE",  # surrounding spaces (layout variant): dropped
            "menu\x04Close the window now": "Fermer la fenêtre maintenant",  # msgctxt is stripped
            "Same in both languages here": "Same in both languages here",  # untranslated: dropped
            "Cannot open %s for reading": "Impossible d'ouvrir %s en lecture",  # format code: dropped
            "Show _hidden files always": "Afficher les fichiers _cachés",  # mnemonic: dropped
            "two words": "deux mots",  # too short: dropped
            "lower case start is dropped": "minuscule au début",
            "One file was deleted\x00%d files were deleted": "Un fichier\x00%d fichiers",  # plural: dropped
            "Line one of the text\nline two": "Ligne un\nligne deux",  # newline: dropped
            "Only French has this one": "Seulement en français",
        },
    )
    write_mo(
        root / "de/LC_MESSAGES/alpha.mo",
        {
            "Open the selected file": "Die ausgewählte Datei öffnen",
            "Save all open documents": "Alle offenen Dokumente speichern",
            " Save all open documents": "VARIANTE",
            "menu\x04Close the window now": "Das Fenster jetzt schließen",
            "Same in both languages here": "Hier in beiden Sprachen gleich",
            "Cannot open %s for reading": "%s kann nicht gelesen werden",
            "Show _hidden files always": "_Versteckte Dateien anzeigen",
            "two words": "zwei Wörter",
            "lower case start is dropped": "kleiner Anfang",
            "One file was deleted\x00%d files were deleted": "Eine Datei\x00%d Dateien",
            "Line one of the text\nline two": "Zeile eins\nZeile zwei",
        },
    )
    # a second domain: "Open the selected file" again (alpha comes first), and one new sentence
    write_mo(
        root / "fr/LC_MESSAGES/beta.mo", {"Open the selected file": "AUTRE", "Print the whole page": "Imprimer toute la page"}
    )
    write_mo(
        root / "de/LC_MESSAGES/beta.mo", {"Open the selected file": "ANDERE", "Print the whole page": "Die ganze Seite drucken"}
    )
    write_mo(root / "fr/LC_MESSAGES/gamma.mo", {"Only one language has gamma": "Seulement une langue"})
    return root


def test_gettext_filters_and_alignment_on_fake_catalogs(locale_tree, tmp_path):
    ds = load_gettext(tmp_path, languages=["fr", "de"], domains="all", root=locale_tree, min_items=1, max_items=None)
    assert ds.labels is None and ds.num_classes == 0
    assert ds.view_names == ["text:de", "text:en", "text:fr"]
    en = ds.views["text:en"]
    assert en == ["Close the window now", "Open the selected file", "Print the whole page", "Save all open documents"]
    i = en.index("Open the selected file")
    assert ds.views["text:fr"][i] == "Ouvrir le fichier sélectionné"  # from alpha, not beta
    assert ds.views["text:de"][i] == "Die ausgewählte Datei öffnen"
    k = en.index("Save all open documents")
    assert (ds.views["text:fr"][k], ds.views["text:de"][k]) == (
        "Enregistrer tous les documents ouverts",
        "Alle offenen Dokumente speichern",
    )
    j = en.index("Print the whole page")
    assert (ds.views["text:fr"][j], ds.views["text:de"][j]) == ("Imprimer toute la page", "Die ganze Seite drucken")
    assert ds.info["domains"] == ["alpha", "beta", "gamma"]
    assert ds.info["items_per_domain"] == {"alpha": 3, "beta": 1}
    assert ds.info["catalogs_missing"] == ["de/gamma"]
    assert_splits_partition(ds, 4)
    assert (ds.labels_of("test") == -1).all()

    only = load_gettext(tmp_path, languages=["fr", "de"], domains=["beta"], root=locale_tree, min_items=1)
    assert only.views["text:en"] == ["Open the selected file", "Print the whole page"]
    assert only.views["text:fr"] == ["AUTRE", "Imprimer toute la page"]


def test_gettext_errors_on_fake_catalogs(locale_tree, tmp_path):
    with pytest.raises(ConfigError, match=r"only 4 sentences .* at least 200 needed"):
        load_gettext(tmp_path, languages=["fr", "de"], domains="all", root=locale_tree)
    with pytest.raises(ConfigError, match="no catalogs for language 'it'"):
        load_gettext(tmp_path, languages=["fr", "it"], domains="all", root=locale_tree, min_items=1)
    with pytest.raises(ConfigError, match="no catalog of the domains delta"):
        load_gettext(tmp_path, languages=["fr"], domains=["alpha", "delta"], root=locale_tree, min_items=1)
    with pytest.raises(ConfigError, match=r"apt-get install .*libc-l10n"):  # the default domains name their packages
        load_gettext(tmp_path, languages=["fr"], root=locale_tree, min_items=1)
    with pytest.raises(ConfigError, match="no locale directory"):
        load_gettext(tmp_path, root=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="besides en"):
        load_gettext(tmp_path, languages=["en"], root=locale_tree)


@pytest.fixture(scope="module")
def catalogs():
    return load_gettext(Path("/nonexistent"))


def _translations(domains: list[str], languages: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """{domain: {lang: {stripped msgid: stripped msgstr}}} read with the standard library only."""
    out: dict = {}
    for d in domains:
        for lang in languages:
            path = LOCALE / lang / "LC_MESSAGES" / f"{d}.mo"
            if path.exists():
                with open(path, "rb") as f:
                    cat = gettext.GNUTranslations(f)._catalog
                first: dict[str, str] = {}
                for k, v in cat.items():
                    if isinstance(k, str) and k:
                        first.setdefault(k.split("\x04")[-1], v.strip())  # the first msgctxt variant
                out.setdefault(d, {})[lang] = first
    return out


@needs_catalogs
def test_gettext_machine_catalogs_aligned(catalogs):
    ds = catalogs
    langs = ["fr", "de", "es", "it"]
    assert ds.view_names == ["text:de", "text:en", "text:es", "text:fr", "text:it"]
    assert ds.info["items_found"] >= 3000 and len(ds) == 3000  # 3,358 found on Debian 12 with requirements/debian.txt
    en = ds.views["text:en"]
    assert en == sorted(set(en))  # sorted by the English, no duplicates
    cats = _translations(ds.info["domains"], langs)
    for i, english in enumerate(en):
        assert len(english.split()) >= 3 and english[0].isupper()
        assert "%" not in english and "\n" not in english and "_" not in english
        # some catalog (domain) translates it into exactly these texts, in every language
        assert any(all(cats[d].get(lang, {}).get(english) == ds.views[f"text:{lang}"][i] for lang in langs) for d in cats), (
            english
        )
        assert all(ds.views[f"text:{lang}"][i] != english for lang in langs)


@needs_catalogs
def test_gettext_known_pair_and_determinism(catalogs):
    full = load_gettext(Path("/nonexistent"), max_items=None)
    assert len(full) == full.info["items_found"] == sum(full.info["items_per_domain"].values())
    i = full.views["text:en"].index("No such file or directory")  # libc
    assert full.views["text:fr"][i] == gettext.translation("libc", str(LOCALE), ["fr"]).gettext("No such file or directory")
    assert set(catalogs.views["text:en"]) <= set(full.views["text:en"])
    assert_same(catalogs, load_gettext(Path("/elsewhere")))
    other = load_gettext(Path("/nonexistent"), subset_seed=1)
    assert other.views["text:en"] != catalogs.views["text:en"]
    assert_splits_partition(catalogs, len(catalogs))
    assert len(catalogs.splits["test"]) == 900
    assert set(catalogs.info["packages"]) >= {"libc-l10n", "libgtk2.0-common"}


# ------------------------------------------------------------------------------------- wordnet


@pytest.fixture(scope="module")
def wordnet():
    return load_wordnet(Path("/nonexistent"))


@needs_wordnet
def test_wordnet_counts_balance_and_splits(wordnet):
    ds = wordnet
    assert ds.class_names == list(DEFAULT_CLASSES) and ds.num_classes == 10
    assert len(ds) == 3000 and torch.bincount(ds.labels).tolist() == [300] * 10
    assert ds.view_names == ["text:en"]
    assert len(set(ds.views["text:en"])) == 3000
    assert_splits_partition(ds, 3000)
    assert_stratified(ds, 0.3)
    assert ds.info["synsets_per_class"]["noun.artifact"] == 11587


@needs_wordnet
def test_wordnet_texts_are_glosses_of_their_class(wordnet):
    lines = WORDNET.read_text(encoding="utf-8").splitlines()
    gloss_to_lex: dict[str, set[str]] = {}
    for line in lines:
        if not line.startswith("  "):
            head, gloss = line.split(" | ", 1)
            gloss_to_lex.setdefault(gloss.split('; "')[0].strip().rstrip(";").strip(), set()).add(LEXNAMES[int(head.split()[1])])
    for text, label in zip(wordnet.views["text:en"], wordnet.labels.tolist()):
        # the gloss of a synset of its class, and of no synset of another requested class
        assert gloss_to_lex[text] & set(DEFAULT_CLASSES) == {wordnet.class_names[label]}, text


@needs_wordnet
def test_wordnet_options(wordnet):
    lemma = load_wordnet(Path("/x"), with_lemma=True)
    assert torch.equal(lemma.labels, wordnet.labels)
    for a, b in zip(lemma.views["text:en"], wordnet.views["text:en"]):
        assert a.endswith(": " + b) and len(a) > len(b) + 2
    animals = load_wordnet(Path("/x"), classes=["animal", "plant"], per_class=7000, with_lemma=True)
    assert "dog: a member of the genus Canis (probably descended from the common wolf)" in " ".join(animals.views["text:en"])
    small = load_wordnet(Path("/x"), classes=["noun.food", "verb.motion"], per_class=20, subset_seed=3)
    assert small.class_names == ["noun.food", "verb.motion"] and len(small) == 40
    assert_same(small, load_wordnet(Path("/x"), classes=["food", "verb.motion"], per_class=20, subset_seed=3))
    assert small.views != load_wordnet(Path("/x"), classes=["food", "verb.motion"], per_class=20, subset_seed=4).views
    with pytest.raises(ConfigError, match="noun.motive has only"):
        load_wordnet(Path("/x"), classes=["noun.motive", "noun.Tops"], per_class=300)
    with pytest.raises(ConfigError, match="not a WordNet lexicographer class"):
        load_wordnet(Path("/x"), classes=["noun.dragons", "noun.food"])
    with pytest.raises(ConfigError, match=r"needs the Debian package wordnet-base .*apt-get install wordnet-base"):
        load_wordnet(Path("/x"), root=Path("/nonexistent/wordnet"))


# ------------------------------------------------------------------------------- Hugging Face


def test_hf_offline_error_is_quick_and_one_line(tmp_path):
    code = (
        "import sys, time; from latentstitch.data.item_loaders import load_items; from latentstitch.errors import ConfigError\n"
        "t = time.time()\n"
        f"try: load_items('ag_news', {str(tmp_path)!r}, cache_dir={str(tmp_path / 'empty')!r})\n"
        "except ConfigError as e: print(f'{time.time() - t:.1f}|{e}')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    seconds, message = proc.stdout.strip().split("|", 1)
    assert float(seconds) < 10
    assert message.startswith(
        "dataset ag_news is not available offline: set HF_HUB_OFFLINE=0 (online) or point dataset.cache_dir at a copy"
    )
    assert "\n" not in message


@pytest.fixture
def saved_news(tmp_path):
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["World", "Sports", "Business", "Sci/Tech"])}
    )

    def split(name: str, n: int, step: int) -> datasets.Dataset:
        rows = {"text": [f"{name} {i}" for i in range(n)], "label": [(i * step) % 4 for i in range(n)]}
        return datasets.Dataset.from_dict(rows, features=features)

    splits = {"train": split("train", 40, 1), "test": split("test", 12, 3)}
    path = tmp_path / "ag_news_copy"
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


def test_hf_local_copy(saved_news, tmp_path):
    ds = load_items("ag_news", tmp_path, path=str(saved_news))
    assert len(ds) == 52 and ds.class_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert ds.splits["train"].tolist() == list(range(40)) and ds.splits["test"].tolist() == list(range(40, 52))
    for text, label in zip(ds.views["text:en"], ds.labels.tolist()):
        split, i = text.split()
        assert label == (int(i) % 4 if split == "train" else (int(i) * 3) % 4)
    assert ds.info["source"] == f"local copy {saved_news}"

    sub = load_items("ag_news", tmp_path, path=str(saved_news), max_train=20, max_test=8, subset_seed=1)
    assert len(sub.splits["train"]) == 20 and len(sub.splits["test"]) == 8
    assert torch.bincount(sub.labels[sub.splits["train"]]).tolist() == [5, 5, 5, 5]
    for i in sub.splits["test"].tolist():
        assert sub.views["text:en"][i].startswith("test ")
    assert_same(sub, load_items("ag_news", tmp_path, path=str(saved_news), max_train=20, max_test=8, subset_seed=1))


def test_hf_local_copy_errors(saved_news, tmp_path):
    with pytest.raises(ConfigError, match="has no column 'coarse_label'"):
        load_items("trec", tmp_path, path=str(saved_news))  # trec's default label column
    assert load_items("trec", tmp_path, path=str(saved_news), label_field="label").num_classes == 4
    with pytest.raises(ConfigError, match="not a saved Hugging Face dataset"):
        load_items("imdb", tmp_path, path=str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="has no option colour"):
        load_items("dbpedia_14", tmp_path, colour=1)
    with pytest.raises(ConfigError, match="no item loader"):
        load_items("mnist_text", tmp_path)


def test_registry_names():
    assert set(ITEM_LOADERS) == {
        "emoji",
        "gettext",
        "wordnet",
        "ag_news",
        "trec",
        "dbpedia_14",
        "imdb",
        "folder",
        "table",
        "hf",
        "wordnet_graph",
        "planetoid",
        "spoken_words",
    }
