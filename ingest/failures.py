"""What a scan that failed for a reason outside the input says: one sentence a person can act on.

Failures about the input are ScanErrors with their own sentence. What is left are the machine's
limits (a full disk, a read-only or locked database, memory) and bugs. The first are said plainly;
a bug still says it is one ("internal error") with the exception's name, so that it gets reported,
and its traceback goes to the scan's recorded details, never to the terminal.
"""
from __future__ import annotations

import errno
import re
import sqlite3
import struct

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


# Python's own words for what is wrong with an input, without its class names: "BadZipFile: File is not a zip
# file" says "File is not a zip file"; an error a library wraps (urllib3's "Max retries exceeded ... (Caused by
# NewConnectionError(...))") keeps its words, its class names dropped
_CLASS_NAME = re.compile(r"\b(?:[a-z_][\w.]*\.)?[A-Z][A-Za-z]*(?:Error|Exception|Warning)\b(?:\(|: ?)?")
_OBJECT = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>:? ?")


def plain(exc: BaseException, limit: int = 120) -> str:
    """Why an input could not be read, in the exception's words and never its class name (an input
    error is not a bug: "internal error" and class names are kept for bugs, see describe)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"bytes that are not valid {exc.encoding} at position {exc.start}"
    if isinstance(exc, struct.error):
        return "a truncated or malformed binary structure"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:limit]
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = _balanced(_OBJECT.sub("", _CLASS_NAME.sub("", text)).strip(" :"))
    if isinstance(exc, EOFError):
        return text[:limit] or "cut short"
    if isinstance(exc, NotImplementedError):
        return f"not supported: {text[:limit]}" if text else "not supported"
    if isinstance(exc, KeyError):
        return f"no entry {text[:limit]}" if text else "a missing entry"
    return text[:limit] or "malformed data"


def _balanced(text: str) -> str:
    """TEXT without the closing brackets whose opening one went with a class name, and closed."""
    out, depth = [], 0
    for c in text:
        if c == ")":
            if not depth:
                continue
            depth -= 1
        elif c == "(":
            depth += 1
        out.append(c)
    return "".join(out) + ")" * depth
