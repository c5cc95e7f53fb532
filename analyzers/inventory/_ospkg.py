"""What the dpkg, rpm and apk analyzers share: layer attribution and package URLs.

A package database is rewritten whole by every layer that installs anything, so the layer of the
visible database file says nothing about when a given package arrived. Like Trivy and Syft, a package
is attributed to the lowest layer of the unbroken run of database copies, ending at the visible one,
that all list it with the same version: a later layer that rewrote the database without touching
the package does not claim it, while a removal (or another version) in between breaks the run.
"""
from __future__ import annotations

from typing import Hashable, Iterable

from packageurl import PackageURL

from stowaway.ingest.streams import Limits

DEFAULT_MAX_PACKAGE_DB = Limits.max_package_db


def max_package_db(policy: dict) -> int:
    """`limits.max_package_db`: the largest dpkg status, apk installed or rpm database read."""
    return int((policy.get("limits") or {}).get("max_package_db") or DEFAULT_MAX_PACKAGE_DB)


def package_db_fingerprint(policy: dict) -> str:
    cap = max_package_db(policy)
    return "" if cap == DEFAULT_MAX_PACKAGE_DB else f"max_package_db={cap}"


def attribute(final_layer: int, key: Hashable, history: list[tuple[int, set]]) -> int:
    """The layer that installed or last changed `key`.

    `history` is [(layer_index, keys present in that layer's copy of the database)] in ascending layer
    order, for the layers that wrote the database at all (a layer that did not write it changed nothing).
    """
    layer = final_layer
    for index, keys in reversed(history):
        if index >= final_layer:
            continue
        if key not in keys:
            break
        layer = index
    return layer


def distro_qualifier(os_info) -> str:
    if os_info is None or not os_info.family:
        return ""
    return f"{os_info.family}-{os_info.version}" if os_info.version else os_info.family


def purl(kind: str, namespace: str, name: str, version: str, qualifiers: dict[str, str]) -> str:
    try:
        return PackageURL(type=kind, namespace=namespace or None, name=name, version=version or None,
                          qualifiers={k: v for k, v in qualifiers.items() if v}).to_string()
    except ValueError:
        return ""


def report_problems(ctx, analyzer: str, path: str, warnings: Iterable[str], limit: int = 20) -> None:
    """The visible database's parse problems as scan warnings: a few named, the rest counted."""
    warnings = list(warnings)
    for w in warnings[:limit]:
        ctx.warn(f"{analyzer}: {path}: {w}")
    if len(warnings) > limit:
        ctx.warn(f"{analyzer}: {path}: {len(warnings) - limit} further problems")
