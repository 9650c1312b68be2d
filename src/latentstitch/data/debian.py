"""Helpers for datasets read from installed Debian packages: clear errors and provenance.

A loader that reads files a Debian package installs names that package when a file is missing
(``require``), and records the installed versions it read (``package_versions``) so a run's
outputs say which data it was built from.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from latentstitch.errors import ConfigError

DPKG_STATUS = Path("/var/lib/dpkg/status")


def require(path: Path, dataset: str, package: str) -> Path:
    """``path`` if it exists, else a one-line ConfigError naming the Debian package to install."""
    if not path.exists():
        raise ConfigError(
            f"dataset {dataset} needs the Debian package {package} ({path} is missing): "
            f"apt-get install {package} (make data does it)"
        )
    return path


def package_versions(packages: Iterable[str], status_file: Path = DPKG_STATUS) -> dict[str, str | None]:
    """Installed version of each package from dpkg's status file; None when not installed or no dpkg."""
    wanted = dict.fromkeys(packages)
    try:
        text = status_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return wanted
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(" "))
        name = fields.get("Package")
        if name in wanted and fields.get("Status", "").endswith(" installed"):
            wanted[name] = fields.get("Version")
    return wanted


def file_fingerprint(paths: Iterable[Path]) -> str:
    """A short hash of the paths, sizes and modification times of ``paths`` (cache keys)."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` under ``path`` so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
