"""Emoji: paired images and names in several languages, from Debian packages.

Items are the fully-qualified emoji of ``emoji-test.txt`` (unicode-data) without skin-tone
variants that have a CLDR spoken name (``type="tts"``, unicode-cldr-core) in every requested
language, in the file's (CLDR) order. The label is the emoji group (9 classes) or subgroup.
Views: ``image`` (uint8 (N, 3, S, S), Noto Color Emoji rendered by Pillow, cropped to the ink,
centred on a white square, resized to S) and ``text:<lang>`` (the CLDR name); with ``audio``,
``audio:<lang>`` (the name spoken by espeak-ng: ``dataset=emoji_speech``).
"""

from __future__ import annotations

import hashlib
import logging
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from latentstitch.data.debian import file_fingerprint, package_versions, require, save_array_atomic
from latentstitch.data.items import ItemDataset, check_test_fraction, split_items, text_view
from latentstitch.data.speech import PACKAGES as SPEECH_PACKAGES
from latentstitch.data.speech import audio_view, check_language, speak_items
from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/usr/share")
FONT = Path("fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("unicode/emoji/emoji-test.txt")
CLDR = Path("unicode/cldr/common")
PACKAGES = {"font": "fonts-noto-color-emoji", "names": "unicode-data", "cldr": "unicode-cldr-core"}
DEFAULT_LANGUAGES = ("en", "fr", "de", "es", "it")
FONT_SIZE = 109  # the only bitmap size NotoColorEmoji.ttf has
CANVAS = 160  # one glyph at 109 is at most ~136 x 128 px
RENDER_VERSION = 1  # bump when render_emoji changes, to invalidate cached arrays
SKIN_TONES = range(0x1F3FB, 0x1F400)
VS16 = "\ufe0f"


@dataclass(frozen=True)
class Emoji:
    char: str
    group: str
    subgroup: str
    name: str  # the English name in emoji-test.txt


def read_emoji_test(path: Path) -> list[Emoji]:
    """Fully-qualified emoji without skin-tone modifiers, in file order."""
    out, group, subgroup = [], "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            codes, rest = line.split(";", 1)
            status, comment = rest.split("#", 1)
            cps = [int(c, 16) for c in codes.split()]
            if status.strip() != "fully-qualified" or any(c in SKIN_TONES for c in cps):
                continue
            # comment: "<emoji> E<version> <name>"
            name = comment.strip().split(" ", 2)[2]
            out.append(Emoji("".join(map(chr, cps)), group, subgroup, name))
    return out


def _cldr_parents(cldr: Path) -> dict[str, str]:
    root = ET.parse(cldr / "supplemental" / "supplementalData.xml").getroot()
    parents = {}
    for p in root.iter("parentLocale"):
        for loc in p.get("locales", "").split():
            parents[loc] = p.get("parent", "root")
    return parents


def _locale_chain(lang: str, cldr: Path) -> list[str]:
    """``lang`` and its CLDR ancestors, most general first (es_MX -> [es, es_419, es_MX])."""
    chain, parents = [lang], _cldr_parents(cldr) if "_" in lang else {}
    while True:
        parent = parents.get(chain[-1]) or (chain[-1].rsplit("_", 1)[0] if "_" in chain[-1] else "root")
        if parent == "root":
            return chain[::-1]
        chain.append(parent)


def cldr_names(lang: str, cldr: Path) -> tuple[dict[str, str], list[Path]]:
    """Spoken (tts) names keyed by emoji without U+FE0F, and the files read."""
    if not (cldr / "annotations" / f"{lang}.xml").exists():
        available = sorted(p.stem for p in (cldr / "annotations").glob("*.xml"))
        raise ConfigError(f"dataset emoji: CLDR has no annotations for language {lang!r}; available: {' '.join(available)}")
    names: dict[str, str] = {}
    files = []
    for loc in _locale_chain(lang, cldr):
        for sub in ("annotations", "annotationsDerived"):
            path = cldr / sub / f"{loc}.xml"
            if not path.exists():
                continue
            files.append(path)
            for a in ET.parse(path).getroot().iter("annotation"):
                if a.get("type") == "tts" and a.text and a.text.strip() != "↑↑↑":
                    names[a.get("cp", "")] = a.text.strip()
    return names, files


_FONTS: dict[str, object] = {}


def render_emoji(char: str, size: int, font_path: Path = DEFAULT_ROOT / FONT) -> np.ndarray:
    """One emoji as uint8 (3, size, size): drawn at 109 px, cropped to the ink, centred on white."""
    from PIL import Image, ImageDraw, ImageFont

    key = str(font_path)
    if key not in _FONTS:
        _FONTS[key] = ImageFont.truetype(key, FONT_SIZE)
    im = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((8, 8), char, font=_FONTS[key], embedded_color=True)
    box = im.getchannel("A").getbbox()
    if box is None:
        raise ConfigError(f"dataset emoji: the font {font_path} draws nothing for {char!r} (U+{ord(char[0]):04X})")
    im = im.crop(box)
    side = max(im.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(im, ((side - im.width) // 2, (side - im.height) // 2))
    rgb = square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(rgb).transpose(2, 0, 1).copy()


def _render_all(chars: list[str], size: int, font: Path, cache_dir: Path | None) -> tuple[np.ndarray, dict]:
    import PIL
    from PIL import features

    renderer = f"Pillow {PIL.__version__} freetype {features.version('freetype2')} raqm {features.version('raqm')}"
    key = hashlib.sha256(
        "\n".join([*chars, file_fingerprint([font]), str(size), str(RENDER_VERSION), renderer]).encode()
    ).hexdigest()[:16]
    path = cache_dir / f"images-{size}px-{key}.npy" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            images = np.load(path)
            if images.shape == (len(chars), 3, size, size) and images.dtype == np.uint8:
                return images, {"cache": str(path), "cache_hit": True, "renderer": renderer}
        except (OSError, ValueError):
            pass  # unreadable: render again and overwrite it
        log.warning("emoji image cache %s is unreadable or stale; rendering again", path)
    t0 = time.perf_counter()
    images = np.stack([render_emoji(c, size, font) for c in chars])
    info = {"render_seconds": round(time.perf_counter() - t0, 2), "cache_hit": False, "renderer": renderer}
    if path is not None:
        try:
            save_array_atomic(path, images)
            info["cache"] = str(path)
        except OSError as e:  # a read-only data_dir only costs the rendering next time
            log.warning("could not cache the emoji images in %s: %s", path, e)
    return images, info


def load_emoji(
    data_dir: Path,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    image_size: int = 64,
    label: str = "group",
    test_fraction: float = 0.3,
    split_seed: int = 0,
    root: str | Path = DEFAULT_ROOT,
    cache: bool = True,
    audio: Sequence[str] = (),
    voice_seed: int = 0,
    max_seconds: float = 4.0,
) -> ItemDataset:
    """Emoji images paired with their names in ``languages``, labelled by group (or subgroup).

    ``root`` is where the Debian packages put their files (/usr/share). Rendered images are cached
    under ``data_dir/emoji/`` (``cache=false`` renders every time, ~2 s at 64 px).

    ``audio`` (a subset of ``languages``) adds an ``audio:<lang>`` view per language: each name
    spoken by espeak-ng in a voice drawn from (``voice_seed``, language, item), cut at
    ``max_seconds`` (``latentstitch.data.speech``; cached under ``data_dir/speech/``, the 1,872
    names take about 30 s per language on 2 cores the first time).
    """
    languages = list(dict.fromkeys([languages] if isinstance(languages, str) else languages))
    if not languages:
        raise ConfigError("dataset.languages is empty: name at least one language (e.g. [en, fr])")
    if label not in ("group", "subgroup"):
        raise ConfigError(f"dataset.label={label!r} must be 'group' or 'subgroup'")
    if int(image_size) < 8:
        raise ConfigError(f"dataset.image_size={image_size} must be at least 8")
    test_fraction = check_test_fraction(test_fraction)
    audio = list(dict.fromkeys([audio] if isinstance(audio, str) else (audio or [])))
    unspoken = [lang for lang in audio if lang not in languages]
    if unspoken:
        raise ConfigError(f"dataset.loader.audio={audio}: {unspoken} not in dataset.loader.languages={languages} (speech reads those names)")
    for lang in audio:
        check_language(lang, "espeak")  # a missing espeak-ng or voice fails before rendering
    root = Path(root)
    font = require(root / FONT, "emoji", PACKAGES["font"])
    emoji_test = require(root / EMOJI_TEST, "emoji", PACKAGES["names"])
    cldr = require(root / CLDR / "annotations", "emoji", PACKAGES["cldr"]).parent

    emoji = read_emoji_test(emoji_test)
    names, files, missing = {}, [font, emoji_test], {}
    for lang in languages:
        names[lang], read = cldr_names(lang, cldr)
        files += read
        missing[lang] = sum(1 for e in emoji if e.char.replace(VS16, "") not in names[lang])
    kept = [e for e in emoji if all(e.char.replace(VS16, "") in names[lang] for lang in languages)]
    if not kept:
        raise ConfigError(f"dataset emoji: no emoji has a CLDR name in all of {languages}")

    keys = [getattr(e, label) for e in kept]
    class_names = list(dict.fromkeys(keys))  # file (CLDR) order
    labels = torch.tensor([class_names.index(k) for k in keys], dtype=torch.long)
    images, render_info = _render_all([e.char for e in kept], int(image_size), font, Path(data_dir) / "emoji" if cache else None)
    views: dict = {"image": torch.from_numpy(images)}
    for lang in languages:
        views[text_view(lang)] = [names[lang][e.char.replace(VS16, "")] for e in kept]
    speech_info = {}
    for lang in audio:
        speech_dir = Path(data_dir) / "speech" if cache else None
        views[audio_view(lang)], speech_info[lang] = speak_items(views[text_view(lang)], lang, int(voice_seed), speech_dir, float(max_seconds))

    info = {
        "source": "Debian packages: Noto Color Emoji glyphs, emoji-test.txt groups, CLDR tts names",
        "packages": package_versions(PACKAGES.values()),
        "files": [str(f) for f in files],
        "emoji_fully_qualified_no_skin_tone": len(emoji),
        "missing_name": missing,
        "items": len(kept),
        "languages": languages,
        "label": label,
        "class_counts": dict(zip(class_names, torch.bincount(labels, minlength=len(class_names)).tolist())),
        "image_size": int(image_size),
        **render_info,
    }
    if audio:
        info["speech"] = speech_info
        info["voice_seed"] = int(voice_seed)
        info["packages"] = {**info["packages"], **package_versions(SPEECH_PACKAGES["espeak"])}
    return ItemDataset(
        name="emoji",
        views=views,
        labels=labels,
        splits=split_items(labels, len(kept), test_fraction, split_seed),
        num_classes=len(class_names),
        class_names=class_names,
        info=info,
    )
