"""Sources turn a SOURCE string into a stream of events: layer blobs to read, then image specs.

Every source yields, in order:

* `LayerBlob` for each layer it can deliver (once, even when several images share it), and
* `ImageSpec` once every layer that image needs has been offered, or
* `SourceFailure` for an image it found but cannot deliver (missing blob, bad JSON, ...).

A random-access source (a directory, a seekable tar, a registry) knows the expected diff_id before
reading, so the pipeline can skip a layer it already has. A streamed archive (docker save | gzip)
can only be read front to back; its layers come before its manifest, so they are analyzed as they
pass and matched to images at the end.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Callable, Iterator

from ..model import ImageSpec, ScanError

TRANSPORTS = ("docker-archive", "oci", "oci-archive", "registry", "docker")

# manifest media types (OCI and Docker v2), here so that a registry rescan's HEAD does not load the archive reader
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
REF_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass
class LayerBlob:
    key: str
    digest: str = ""  # expected blob digest, when known before reading
    diff_id: str = ""  # expected uncompressed digest, when known before reading
    size: int = 0
    open: Callable[[], object] | None = None  # random access: called only if the layer is needed
    stream: object | None = None  # streamed: must be consumed now, or it is skipped


@dataclass
class SourceFailure:
    reference: str
    error: str


Event = LayerBlob | ImageSpec | SourceFailure


def parse_source(text: str) -> tuple[str, str, str]:
    """'oci:DIR:REF' -> ('oci', DIR, REF). REF may itself hold ':' (corpus/shop:1.0)."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        raise ScanError(f"{text}: unknown source; use one of " + ", ".join(f"{t}:…" for t in TRANSPORTS))
    if not rest:
        raise ScanError(f"{text}: missing location after '{transport}:'")
    if transport in ("oci", "oci-archive", "docker-archive"):
        if os.path.exists(rest):
            return transport, _a_file_or_directory(text, rest), ""
        i = rest.find(":")
        while i != -1:
            if os.path.exists(rest[:i]):
                return transport, _a_file_or_directory(text, rest[:i]), rest[i + 1 :]
            i = rest.find(":", i + 1)
        raise ScanError(f"{text}: no such file or directory: {rest}")
    return transport, rest, ""


def _a_file_or_directory(text: str, location: str) -> str:
    """LOCATION, when it is a regular file or a directory (symbolic links followed); a named pipe, socket or
    device is refused before it is opened: opening a pipe nobody writes to waits forever, a device never ends."""
    mode = os.stat(location).st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return location
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    raise ScanError(f"{text}: {location} is {kind}, not a file or directory; save the image to a file and scan that")


def absolute_source(text: str, base: str | None = None) -> str:
    """TEXT with a relative file location (oci:, oci-archive:, docker-archive:) made absolute against
    BASE (default: the current directory) when it exists there; anything else is returned as it is
    (registry and engine references, absolute paths, locations that do not exist from BASE)."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in ("oci", "oci-archive", "docker-archive") or not rest or os.path.isabs(rest):
        return text
    base = base or os.getcwd()
    cuts = [len(rest)] + [i for i, c in enumerate(rest) if c == ":"]
    for cut in cuts:
        location = os.path.join(base, rest[:cut])
        if rest[:cut] and os.path.exists(location):
            return f"{transport}:{os.path.abspath(location)}{rest[cut:]}"
    return text


def open_source(text: str, limits, **options) -> Iterator[Event]:
    transport, location, ref = parse_source(text)
    prescan = bool(options.pop("prescan", False))  # archives only: learn layer digests before reading layers
    if transport in ("oci", "oci-archive", "docker-archive"):
        from .archive import archive_events

        return archive_events(text, transport, location, ref, limits, prescan=prescan)
    if transport == "registry":
        from .registry import registry_events  # type: ignore[import-not-found]

        return registry_events(text, location, limits, **options)
    from .engine import engine_events  # type: ignore[import-not-found]

    return engine_events(text, location, limits, **options)
