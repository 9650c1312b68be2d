"""Parallel sentences in several languages from the machine's gettext catalogs (no labels).

An item is an English UI message (a gettext msgid) together with its translations, read from
``<root>/<lang>/LC_MESSAGES/<domain>.mo``, into *every* requested language. Only sentence-like
messages are kept (at least ``min_words`` words, capitalised, one line, no format codes, markup or
mnemonics, no surrounding spaces) whose translation differs from the English in each language; all the translations of
an item come from the same catalog (domain), the first one in sorted order that has them all.
Items are sorted by the English text; ``max_items`` of them are kept, seeded.

By default only the catalogs of a fixed list of Debian packages are read (``DEFAULT_DOMAINS``,
listed in requirements/debian.txt), so two machines with the same package versions build the
same dataset whatever else they have installed; ``domains=all`` reads every catalog found.
"""

from __future__ import annotations

import gettext
import logging
import re
from pathlib import Path
from typing import Sequence

import torch

from latentstitch.data.debian import package_versions
from latentstitch.data.items import ItemDataset, check_test_fraction, split_items, stratified_subset, text_view
from latentstitch.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/usr/share/locale")
DEFAULT_LANGUAGES = ("en", "fr", "de", "es", "it")
SOURCE_LANGUAGE = "en"  # msgids are English

# gettext domain -> the Debian package that installs its catalogs. Message catalogs of programs
# and libraries (not lists of names such as iso-codes or xkeyboard-config).
DEFAULT_DOMAINS = {
    "apt": "apt",
    "coreutils": "coreutils",
    "dpkg": "dpkg",
    "gdk-pixbuf": "libgdk-pixbuf2.0-common",
    "glib20": "libglib2.0-data",
    "gnupg2": "gnupg-l10n",
    "gsettings-desktop-schemas": "gsettings-desktop-schemas",
    "gtk20": "libgtk2.0-common",
    "gtk20-properties": "libgtk2.0-common",
    "libc": "libc-l10n",
    "shared-mime-info": "shared-mime-info",
    "tar": "tar",
}

# any "%" (printf %s %1$d %%, strftime %H:%M, Python %(name)s), braces ({0}, {name}), shell ($VAR, ${VAR})
FORMAT_CODE = re.compile(r"%|\{[^{}]*\}|\$\{|\$[A-Za-z_]")
FORBIDDEN = set("\n\r\t_&<>\\|\x00")  # multi-line, mnemonics (_File, &Open), markup, escapes


def clean(text: str) -> bool:
    """One line of plain text: no format codes, mnemonics, markup or escapes."""
    return bool(text.strip()) and not (FORBIDDEN & set(text)) and FORMAT_CODE.search(text) is None


def sentence_like(text: str, min_words: int) -> bool:
    """Clean, at least ``min_words`` words, capitalised, no surrounding spaces (layout variants)."""
    return clean(text) and text == text.strip() and len(text.split()) >= min_words and text[0].isupper()


def read_catalog(path: Path) -> dict[str, str]:
    """msgid -> msgstr of one .mo file: singular messages only, msgctxt stripped, untranslated dropped."""
    with open(path, "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog
    out: dict[str, str] = {}
    for msgid, msgstr in catalog.items():
        if not isinstance(msgid, str) or not msgid:  # plural entries have (msgid, n) keys; "" is the header
            continue
        msgid = msgid.split("\x04", 1)[-1]  # "context\x04msgid"
        if msgstr and msgstr != msgid:
            out.setdefault(msgid, msgstr)
    return out


def _domains_found(root: Path, languages: list[str]) -> set[str]:
    return {p.stem for lang in languages for p in (root / lang / "LC_MESSAGES").glob("*.mo")}


def load_gettext(
    data_dir: Path,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    domains: str | Sequence[str] = "default",
    max_items: int | None = 3000,
    min_items: int = 200,
    min_words: int = 3,
    subset_seed: int = 0,
    test_fraction: float = 0.3,
    split_seed: int = 0,
    root: str | Path = DEFAULT_ROOT,
) -> ItemDataset:
    """English UI messages and their translations into ``languages`` (views ``text:<lang>``).

    ``domains``: ``default`` (the fixed list ``DEFAULT_DOMAINS``), ``all`` (every catalog under
    ``root``), or a list of gettext domains. English is always a view (the messages are English).
    """
    del data_dir  # nothing is cached: reading the catalogs takes about a second
    test_fraction = check_test_fraction(test_fraction)
    root = Path(root)
    languages = list(dict.fromkeys([SOURCE_LANGUAGE, *([languages] if isinstance(languages, str) else languages)]))
    targets = [lang for lang in languages if lang != SOURCE_LANGUAGE]
    if not targets:
        raise ConfigError(f"dataset.languages={languages} needs at least one language besides {SOURCE_LANGUAGE}")
    if not root.is_dir():
        raise ConfigError(f"dataset gettext: no locale directory {root} (dataset.root)")
    for lang in targets:
        if not (root / lang / "LC_MESSAGES").is_dir():
            have = sorted(p.parent.name for p in root.glob("*/LC_MESSAGES"))
            raise ConfigError(f"dataset gettext: no catalogs for language {lang!r} under {root}; found: {' '.join(have)}")

    found = _domains_found(root, targets)
    if domains == "all":
        chosen = sorted(found)
    else:
        chosen = (
            sorted(DEFAULT_DOMAINS) if domains == "default" else sorted({domains} if isinstance(domains, str) else set(domains))
        )
        absent = [d for d in chosen if d not in found]
        if absent:
            pkgs = sorted({DEFAULT_DOMAINS[d] for d in absent if d in DEFAULT_DOMAINS})
            fix = f"apt-get install {' '.join(pkgs)} (make data does it)" if pkgs else "check dataset.domains"
            raise ConfigError(
                f"dataset gettext: no catalog of the domains {' '.join(absent)} in {' '.join(targets)} under {root}: {fix}"
            )

    texts: dict[str, dict[str, str]] = {}  # English -> {lang: text}
    per_domain: dict[str, int] = {}
    read, unreadable, missing = 0, [], []
    pairs = dict.fromkeys(targets, 0)
    for domain in chosen:
        catalogs = {}
        for lang in targets:
            path = root / lang / "LC_MESSAGES" / f"{domain}.mo"
            if not path.exists():
                missing.append(f"{lang}/{domain}")
                continue
            try:
                catalogs[lang] = read_catalog(path)
                read += 1
                pairs[lang] += len(catalogs[lang])
            except (OSError, UnicodeDecodeError, ValueError) as e:  # e.g. a header in Latin-1
                unreadable.append(f"{lang}/{domain}: {type(e).__name__}")
        if len(catalogs) < len(targets):
            continue
        n = 0
        for english in catalogs[targets[0]]:
            if english in texts or not sentence_like(english, min_words):
                continue
            translated = {lang: catalogs[lang].get(english) for lang in targets}
            if all(t and clean(t) and t.strip() != english for t in translated.values()):
                texts[english] = {SOURCE_LANGUAGE: english, **{k: v.strip() for k, v in translated.items()}}
                n += 1
        per_domain[domain] = n

    english = sorted(texts)
    if len(english) < min_items:
        raise ConfigError(
            f"dataset gettext: only {len(english)} sentences translated into all of {' '.join(targets)} "
            f"(domains {' '.join(chosen) or 'none'}; at least {min_items} needed): install more translated "
            "packages, use dataset.domains=all, fewer languages, or lower dataset.min_items"
        )
    found_items = len(english)
    keep = stratified_subset(torch.arange(found_items), None, max_items, subset_seed).tolist()
    english = [english[i] for i in keep]
    views = {text_view(lang): [texts[e][lang] for e in english] for lang in languages}
    used_packages = sorted({DEFAULT_DOMAINS[d] for d in chosen if d in DEFAULT_DOMAINS})
    info = {
        "source": f"gettext catalogs under {root}",
        "languages": languages,
        "domains": chosen,
        "items_per_domain": per_domain,
        "catalogs_read": read,
        "catalogs_missing": missing,
        "catalogs_unreadable": unreadable,
        "translated_pairs": pairs,
        "items_found": found_items,
        "items": len(english),
        "packages": package_versions(used_packages),
    }
    return ItemDataset(
        name="gettext",
        views=views,
        labels=None,
        splits=split_items(None, len(english), test_fraction, split_seed),
        info=info,
    )
