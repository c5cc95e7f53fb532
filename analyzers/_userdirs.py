"""Per-user directories: a cache (compiled rule packs, the schema template new databases are copied from;
safe to delete) and a data dir (keys to keep).

XDG locations with the usual fallbacks; STOWAWAY_CACHE_DIR / STOWAWAY_DATA_DIR override them, so
tests and CI never touch a real home directory.
"""
from __future__ import annotations

import os
import pathlib


def cache_dir() -> pathlib.Path:
    explicit = os.environ.get("STOWAWAY_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "stowaway"


def data_dir() -> pathlib.Path:
    explicit = os.environ.get("STOWAWAY_DATA_DIR")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return pathlib.Path(base) / "stowaway"
