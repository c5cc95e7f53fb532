"""The image model every part of Stowaway speaks: plain frozen dataclasses, importing nothing else here.

Sources produce `ImageSpec`s (an image's manifest, config and layer descriptors); the layer walker
produces `FileInfo`s; analyzers produce `Package`s and `Finding`s; the database stores them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

# The eight report items a scan can be asked for (the seed's risk types).
RISK_TYPES = (
    "vulnerabilities",
    "malicious",
    "software",
    "files",
    "unsafe_settings",
    "secrets",
    "compliance",
    "base_image",
)

# Finding kinds in the narrow findings table.
KINDS = ("vulnerability", "malware", "secret", "unsafe_setting", "compliance", "base_image")

SEVERITIES = ("critical", "high", "medium", "low", "negligible", "unknown")

# the report formats of ingest/render.py, here so that the CLI's parser does not import the renderers
FORMATS = ("table", "json", "sarif", "cyclonedx", "spdx", "csv")

# tar member types we keep, by a short name
REG, DIR, SYMLINK, HARDLINK, CHAR, BLOCK, FIFO = "file", "dir", "symlink", "hardlink", "char", "block", "fifo"


class ScanError(Exception):
    """An image could not be scanned: the message is the one line a user sees and the database keeps."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A tar member as the layer walker saw it. `path` is absolute and normalized ('/etc/passwd')."""

    path: str
    type: str
    size: int = 0
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str = ""  # symlink target as written, or the absolute path of a hard link's target
    mtime: int = 0

    @property
    def is_file(self) -> bool:
        return self.type in (REG, HARDLINK)


class LayerFile:
    """One file handed to analyzers: its metadata and its content, read once and shared by all.

    A file up to the walker's in-memory limit is bytes. A larger one (limits.max_in_memory_file) is
    spooled to an unnamed temporary file (`Spool`) so that memory stays bounded by design, whatever
    the size of the files an image holds:

    - `data`: the whole content as bytes. For a spooled file this reads it whole, each time: use it
      only where the whole content is needed and capped (Analyzer.size_cap).
    - `view`: bytes for a small file; a read-only memory map of a spooled one. Slicing, find(),
      struct.unpack_from() and len() work on both; only the pages touched are read.
    - `open()`: a new, independent, seekable binary file object over the content (zipfile, streams).
    - `disk_path`: a path that opens a spooled file (for libraries that take a path), else None.
    """

    __slots__ = ("info", "layer_index", "_bytes", "_spool")

    def __init__(self, info: FileInfo, data, layer_index: int):
        self.info = info
        self.layer_index = layer_index
        self._bytes = data if isinstance(data, (bytes, bytearray)) else None
        self._spool: Any = None if self._bytes is not None else data  # ingest.layers.Spool

    @property
    def path(self) -> str:
        return self.info.path

    @property
    def size(self) -> int:
        return len(self._bytes) if self._bytes is not None else self._spool.size

    @property
    def spooled(self) -> bool:
        return self._spool is not None

    @property
    def data(self) -> bytes:
        if self._bytes is not None:
            return bytes(self._bytes)
        return self._spool.read_all()

    @property
    def view(self):
        return self._bytes if self._bytes is not None else self._spool.map()

    @property
    def disk_path(self) -> str | None:
        return None if self._spool is None else self._spool.path

    def open(self):
        import io

        return io.BytesIO(self._bytes) if self._bytes is not None else self._spool.open()

    def text(self, errors: str = "replace") -> str:
        return self.data.decode("utf-8", errors)


@dataclass(frozen=True)
class LayerDescriptor:
    """A layer as the manifest and config describe it, before reading it."""

    index: int
    digest: str  # the blob digest (compressed) as the manifest names it; "" when unknown
    diff_id: str  # sha256 of the uncompressed tar, from the config's rootfs.diff_ids
    media_type: str = ""
    size: int = 0
    created_by: str = ""
    key: str = ""  # where the source finds the blob ('blobs/sha256/…', '<id>/layer.tar')


@dataclass
class ImageSpec:
    """An image found by a source: enough to decide what to read before reading any layer."""

    reference: str  # as the user knows it: 'corpus/shop:1.0', or the source string when untagged
    source: str  # the SOURCE argument it came from
    manifest_digest: str
    config_digest: str
    config: dict
    layers: list[LayerDescriptor]
    platform: str = ""
    index_digest: str = ""  # the image index (multi-platform) this manifest was listed in
    media_type: str = ""
    size: int = 0

    @property
    def created(self) -> str:
        return self.config.get("created", "") or ""

    @property
    def runtime(self) -> dict:
        return self.config.get("config") or {}


@dataclass(frozen=True)
class Package:
    """An installed OS or application package. `path` is where it was recorded (archives as OUTER!/INNER)."""

    ecosystem: str  # deb, rpm, apk, maven, pypi, npm, go, gem, composer, nuget, ...
    name: str
    version: str
    path: str
    layer_index: int | None = None
    arch: str = ""
    source_name: str = ""
    source_version: str = ""
    purl: str = ""
    licenses: tuple[str, ...] = ()
    os_owned: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.ecosystem, self.name, self.version, self.path)


@dataclass(frozen=True)
class Finding:
    """One finding of one kind. `detail` holds the kind's own columns (see db.DETAIL_TABLES)."""

    kind: str
    title: str
    severity: str = "unknown"
    path: str = ""
    layer_index: int | None = None
    visible: bool = True
    rule: str = ""
    status: str = "fail"  # fail | pass | not_applicable (checks); fail for everything else
    package: tuple[str, str, str, str] | None = None  # Package.key of the package it is about
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OSInfo:
    family: str = ""  # debian, ubuntu, centos, rhel, euleros, hce, kylin, sles, opensuse, uos, alpine, ...
    version: str = ""  # as the matcher keys on it: '11', '22.04', '2.0 (SP10)' -> '2.0sp10' per family rules
    name: str = ""  # human name
    id_like: tuple[str, ...] = ()
    source_file: str = ""
    raw: Mapping[str, str] = field(default_factory=dict)


Reader = Callable[[], bytes]
