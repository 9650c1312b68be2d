"""WordNet glosses labelled by lexicographer class (noun.animal, noun.artifact, ...), Debian wordnet-base.

Items are synsets of the requested classes, ``per_class`` of each (seeded), ordered by class and
synset offset. The view ``text:en`` is the definition without its example sentences (``gloss``),
optionally led by the synset's first lemma (``with_lemma``: "dog: a member of the genus Canis ...").
The gloss alone is the default: it is a natural-language sentence of the kind sentence encoders
are trained on, the class must be read from its meaning rather than looked up from a head word,
and lemmas repeat across the senses of polysemous words. Glosses shared by several synsets of the
requested classes are dropped, so no text has two labels.

Item keys are WordNet's own synset ids, ``f"{offset:08d}-{pos}"`` (``02084071-n`` is dog): the
byte offset of the synset in its ``data.<pos>`` file and the file's part-of-speech letter (n, v, a,
r; adjective satellites keep ``a``, their file's letter). ``dataset=wordnet_graph``
(``latentstitch.data.graphs``) keys its nodes the same way, so a gloss and its graph node are one
item across both datasets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import torch

from latentstitch.data.debian import package_versions, require
from latentstitch.data.items import ItemDataset, check_test_fraction, split_items, text_view
from latentstitch.errors import ConfigError

DEFAULT_ROOT = Path("/usr/share/wordnet")
PACKAGE = "wordnet-base"

# lexnames(5WN): the lex_filenum of a data line indexes this list (the package ships no lexnames file)
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
POS_FILE = {"noun": "noun", "verb": "verb", "adj": "adj", "adv": "adv"}
POS_LETTER = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}  # the part of speech in a synset id

# the 10 largest noun classes of WordNet 3.0 (2,983 to 11,587 synsets each)
DEFAULT_CLASSES = (
    "noun.artifact", "noun.person", "noun.plant", "noun.animal", "noun.act",
    "noun.communication", "noun.state", "noun.location", "noun.attribute", "noun.substance",
)  # fmt: skip


class Synset(NamedTuple):
    """One line of a ``data.<pos>`` file: what the WordNet loaders read of it."""

    offset: int  # byte offset in its file: the synset's id there
    lexname: str  # lexicographer class, e.g. noun.animal
    lemmas: list[str]  # words, underscores as spaces, adjective markers dropped
    definition: str  # the gloss without its quoted example sentences
    pointers: list[tuple[str, int, str]]  # (symbol, target offset, target pos letter), e.g. ("@", 2083346, "n")


def parse_synsets(path: Path) -> Iterator[Synset]:
    """Every synset of a ``data.<pos>`` file (wndb(5WN)), pointers included.

    A line is ``offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt (symbol offset pos
    source/target)* [frames] | gloss``; ``w_cnt`` is hexadecimal, ``p_cnt`` decimal.
    """
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # license header
                continue
            head, gloss = line.split(" | ", 1)
            fields = head.split()
            n = int(fields[3], 16)  # word count is hexadecimal
            lemmas = [w.split("(")[0].replace("_", " ") for w in fields[4 : 4 + 2 * n : 2]]  # adj markers: "big(a)"
            at = 4 + 2 * n
            count = int(fields[at])
            pointers = [(fields[i], int(fields[i + 1]), fields[i + 2]) for i in range(at + 1, at + 1 + 4 * count, 4)]
            definition = gloss.strip().split('; "')[0].strip().rstrip(";").strip()
            yield Synset(int(fields[0]), LEXNAMES[int(fields[1])], lemmas, definition, pointers)


def read_synsets(path: Path) -> Iterator[tuple[int, str, list[str], str]]:
    """(offset, lexname, lemmas, definition) for each synset of a ``data.<pos>`` file."""
    for synset in parse_synsets(path):
        yield synset.offset, synset.lexname, synset.lemmas, synset.definition


def synset_key(offset: int, pos: str) -> str:
    """WordNet's synset id, ``02084071-n``: the item key of a synset in every WordNet dataset."""
    return f"{offset:08d}-{pos}"


def _class_name(name: str) -> str:
    name = name if "." in name else f"noun.{name}"
    if name not in LEXNAMES:
        raise ConfigError(f"dataset.classes: {name!r} is not a WordNet lexicographer class; known: {' '.join(LEXNAMES)}")
    return name


def load_wordnet(
    data_dir: Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    per_class: int = 300,
    with_lemma: bool = False,
    subset_seed: int = 0,
    test_fraction: float = 0.3,
    split_seed: int = 0,
    root: str | Path = DEFAULT_ROOT,
) -> ItemDataset:
    """``per_class`` glosses of each lexicographer class in ``classes`` (``artifact`` = ``noun.artifact``)."""
    del data_dir  # parsing data.noun takes under a second: nothing to cache
    test_fraction = check_test_fraction(test_fraction)
    class_names = list(dict.fromkeys(_class_name(c) for c in ([classes] if isinstance(classes, str) else classes)))
    if len(class_names) < 2:
        raise ConfigError(f"dataset.classes={list(classes)} needs at least two classes")
    if int(per_class) < 1:
        raise ConfigError(f"dataset.per_class={per_class} must be at least 1")
    root = Path(root)
    t0 = time.perf_counter()
    pool: dict[str, list[tuple[int, str, str]]] = {c: [] for c in class_names}  # class -> [(offset, text, gloss)]
    definitions: dict[str, int] = {}
    files = []
    for pos in sorted({c.split(".")[0] for c in class_names}):
        path = require(root / f"data.{POS_FILE[pos]}", "wordnet", PACKAGE)
        files.append(str(path))
        for offset, lexname, lemmas, definition in read_synsets(path):
            if lexname in pool:
                definitions[definition] = definitions.get(definition, 0) + 1
                text = f"{lemmas[0]}: {definition}" if with_lemma else definition
                pool[lexname].append((offset, text, definition))
    sizes = {c: len(v) for c, v in pool.items()}
    duplicates = {d for d, n in definitions.items() if n > 1}
    gen = torch.Generator().manual_seed(subset_seed)
    texts, labels, keys = [], [], []
    for label, c in enumerate(class_names):
        members = sorted((o, t) for o, t, d in pool[c] if d not in duplicates)
        if len(members) < per_class:
            raise ConfigError(
                f"dataset wordnet: class {c} has only {len(members)} synsets with a distinct gloss, "
                f"fewer than dataset.per_class={per_class}"
            )
        chosen = sorted(torch.randperm(len(members), generator=gen)[:per_class].tolist())
        texts += [members[i][1] for i in chosen]
        keys += [synset_key(members[i][0], POS_LETTER[c.split(".")[0]]) for i in chosen]
        labels += [label] * len(chosen)
    labels_t = torch.tensor(labels, dtype=torch.long)
    info = {
        "source": "WordNet 3.0 glosses (Debian wordnet-base), labelled by lexicographer file",
        "packages": package_versions([PACKAGE]),
        "files": files,
        "synsets_per_class": sizes,
        "duplicate_glosses_dropped": len(duplicates),
        "per_class": int(per_class),
        "items": len(texts),
        "with_lemma": bool(with_lemma),
        "parse_seconds": round(time.perf_counter() - t0, 2),
    }
    return ItemDataset(
        name="wordnet",
        views={text_view("en"): texts},
        labels=labels_t,
        splits=split_items(labels_t, len(texts), test_fraction, split_seed),
        num_classes=len(class_names),
        class_names=class_names,
        info=info,
        keys=keys,
    )
