"""Pure-Python readers of the three rpm database formats, chosen by content, not by file name."""
from __future__ import annotations

import struct

from . import bdb, header, ndb, sqlite


class RpmDBError(ValueError):
    pass


def header_blobs(data: bytes) -> tuple[str, list[bytes], list[str]]:
    """(format, rpm header blobs, problems). Raises RpmDBError when the file is none of the formats."""
    for name, module in (("sqlite", sqlite), ("ndb", ndb), ("bdb", bdb)):
        probe = getattr(module, f"is_{name}")
        if probe(data):
            try:
                blobs, problems = module.read(data)
            except (ValueError, struct.error) as exc:
                raise RpmDBError(str(exc)) from None
            return name, blobs, problems
    raise RpmDBError("not an rpm database (no Berkeley DB, ndb or SQLite signature)")


def read_packages(data: bytes, files: bool = True) -> tuple[str, list[dict], list[str]]:
    """(format, packages, problems): each package a header.package() dict, plus 'files' when asked."""
    fmt, blobs, problems = header_blobs(data)
    packages = []
    for number, blob in enumerate(blobs):
        try:
            tags = header.parse(blob, files=files)
        except (header.HeaderError, struct.error) as exc:
            problems.append(f"header {number + 1}: {exc}")
            continue
        p = header.package(tags)
        if p is None:
            problems.append(f"header {number + 1}: no package name")
            continue
        if files:
            p["files"] = header.file_paths(tags)
        packages.append(p)
    return fmt, packages, problems
