"""The exception types the command line turns into a one-line message and a non-zero exit."""

from __future__ import annotations

import errno
from pathlib import Path

# what a failed write looks like: a full disk or quota, an I/O error, a read-only file system, a file too big
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}
_STORAGE_WORDS = ("no space left", "storagefull", "os error 28", "disk quota", "read-only file system", "input/output error")


class ConfigError(ValueError):
    """Bad input or an unusable setting. The message names the setting and how to fix it."""


class WriteError(ConfigError):
    """A write that failed (full disk, I/O error, read-only file system): names the path and the
    setting that moves it elsewhere. Whatever was being written has been removed."""


def is_storage_error(e: BaseException) -> bool:
    """An OSError of a failed write, or a library's wrapped one (safetensors reports a full disk
    as ``SafetensorError: ... os error 28``)."""
    if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
        return True
    text = str(e).lower()
    return any(word in text for word in _STORAGE_WORDS)


def write_error(path: str | Path, e: BaseException, setting: str) -> WriteError:
    """The one line for a failed write of ``path``: the reason, and which setting to change."""
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0] if str(e) else type(e).__name__
    return WriteError(f"cannot write {path}: {reason}; free space there or set {setting} to another disk")
