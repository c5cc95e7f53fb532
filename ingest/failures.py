"""What a scan that failed for a reason outside the input says: one sentence a person can act on.

Failures about the input are ScanErrors with their own sentence. What is left are the machine's
limits (a full disk, a read-only or locked database, memory) and bugs. The first are said plainly;
a bug still says it is one ("internal error") with the exception's name, so that it gets reported,
and its traceback goes to the scan's recorded details, never to the terminal.
"""
from __future__ import annotations

import errno
import sqlite3

_SQLITE = (
    ("disk is full", "the disk holding the database is full; nothing of this scan was stored"),
    ("database is locked", "the database stayed locked by another writer; nothing of this scan was stored"),
    ("readonly database", "the database is read-only; nothing of this scan was stored"),
    ("disk i/o error", "the database's disk failed to read or write (disk I/O error); nothing of this scan was stored"),
)
_OS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "a file system it writes to is read-only",
    errno.EACCES: "permission denied",
}


def describe(exc: BaseException) -> str:
    """The sentence for an exception that is not a ScanError (no reference prefix)."""
    if isinstance(exc, sqlite3.Error):
        text = str(exc).lower()
        for needle, sentence in _SQLITE:
            if needle in text:
                return sentence
        return f"the database refused a write ({exc})"
    if isinstance(exc, MemoryError):
        return "ran out of memory; lower the [limits] in the policy or give the scan more memory"
    if isinstance(exc, OSError) and exc.errno in _OS:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{_OS[exc.errno]}{where}"
    return f"internal error: {exc.__class__.__name__}: {exc}"
