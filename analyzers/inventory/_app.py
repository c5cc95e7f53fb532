"""What the application-package analyzers share: record shape, visibility, package URLs, warnings.

Each analyzer's `analyze` returns plain records:

    {"ecosystem", "name", "version", "path", "file"?, "licenses"?, "metadata"?}   a package
    {"warning": "...", "file": "..."}                                              a problem worth a scan warning

`path` is where the package was recorded (an archive member as OUTER!/INNER); `file` is the image
file that holds it (the outer archive), when that differs from `path`. Only the copy of a file that
the final image shows counts, with the layer that wrote that copy.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from packageurl import PackageURL

from stowaway.ingest.model import Package

from ..ecosystems import purl_type

MAX_WARNINGS = 20

def purl_of(ecosystem: str, name: str, version: str) -> str:
    kind = purl_type(ecosystem)
    namespace = None
    if ecosystem == "maven" and ":" in name:
        namespace, name = name.split(":", 1)
    elif ecosystem in ("npm", "composer", "go") and "/" in name:
        namespace, name = name.rsplit("/", 1)
    if version.startswith((">", "<")):
        version = ""  # a range (a library found by its classes): the purl names no version
    try:
        return PackageURL(type=kind, namespace=namespace or None, name=name, version=version or None).to_string()
    except ValueError:
        return ""


def package(ecosystem: str, name: str, version: str, path: str, *, file: str | None = None,
            licenses=(), metadata: dict | None = None) -> dict:
    record: dict[str, Any] = {"ecosystem": ecosystem, "name": name, "version": version, "path": path}
    if file and file != path:
        record["file"] = file
    lic = [x for x in dict.fromkeys(str(x).strip() for x in licenses or ()) if x]
    if lic:
        record["licenses"] = lic
    if metadata:
        record["metadata"] = metadata
    return record


def warning(file: str, message: str) -> dict:
    return {"warning": message, "file": file}


def read_json(file, max_size: int, warn_invalid: bool = True):
    """(document, warning records) of a JSON manifest; the document is None when it was not parsed."""
    if len(file.data) > max_size:
        return None, [warning(file.path, f"{file.path}: {len(file.data)} bytes, larger than {max_size}; not parsed")]
    try:
        return json.loads(file.data), []
    except (ValueError, RecursionError) as exc:
        return None, [warning(file.path, f"{file.path}: not JSON ({str(exc)[:100]})")] if warn_invalid else []


def collect_packages(ctx, layers: list[list[dict]], analyzer: str) -> Iterator[Package]:
    """Packages of the visible copies of their files; warnings about visible files go to the scan."""
    owned = ctx.owned_files
    problems: list[str] = []
    for index, records in enumerate(layers):
        for r in records:
            file = r.get("file") or r.get("path")
            if not file or not ctx.fs.visible(file, index):
                continue
            if "warning" in r:
                problems.append(f"{r['warning']} (layer {index})")
                continue
            yield Package(ecosystem=r["ecosystem"], name=r["name"], version=r["version"], path=r["path"],
                          layer_index=index, purl=purl_of(r["ecosystem"], r["name"], r["version"]),
                          licenses=tuple(r.get("licenses") or ()), os_owned=file in owned,
                          metadata=r.get("metadata") or {})
    for p in problems[:MAX_WARNINGS]:
        ctx.warn(f"{analyzer}: {p}")
    if len(problems) > MAX_WARNINGS:
        ctx.warn(f"{analyzer}: {len(problems) - MAX_WARNINGS} further problems")
