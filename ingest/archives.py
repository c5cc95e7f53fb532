"""The nested-archive resolver: every member of every archive inside a file, bounded, as a stream.

One library for every content check (malware, secrets, inventory) and for the applier:

    for member in iter_members("/opt/app.tar.gz", data, limits, warnings=warnings):
        content = member.read()          # bytes, or None when a limit cut it (a warning says why)
        ... member.path                  # "/opt/app.tar.gz!/lib/app.jar!/META-INF/x.properties"

Formats: zip and the formats built on it (jar, war, ear, Android apk, whl, egg, ...), tar (ustar,
GNU, PAX), cpio (newc, crc and odc), rpm packages (lead and headers, then the cpio payload, plain or
gzip, bzip2, xz, lzma or zstd compressed), gzip, bzip2, xz, zstd and their combinations (a `.tar.gz`
or an `.rpm` is one level: its members are named `x.tar.gz!/member`), and 7z through py7zr. The
format is told by the content (magic bytes), not by the name, except for a zip with a prefix (a
self-running jar), found through its name. What is recognised but cannot be read (RAR, CAB, a zip
member compressed with implode, shrink or another method no reader here knows, rpm's large-file
payload) is one warning saying `not opened: <format>`, never a silent skip (`not_opened()` reads
them back for the report's coverage).

cpio and rpm are read here rather than through libarchive: both are small fixed-header formats read
in one forward pass, and reading them in Python keeps every byte under the limits below.

Nothing is extracted to disk. Compressed streams and tars are read in one pass; a member's bytes are
read only when asked for (or when it must be looked into), and at most `max_member_bytes` of it.
Every limit is shared by all levels of one outer file, checked before its cost is paid where the
archive declares the size, and while reading where it does not; every cut is one warning naming the
path, the limit and its policy key (`[archives]`, docs/policy.md):

    max_depth         archive levels opened (the outer archive is level 1; 0 opens nothing)
    max_member_bytes  largest member read (and largest tar header, PAX or GNU long name)
    max_members       members yielded from one outer file, all levels together
    max_total_bytes   bytes decompressed or read out of one outer file, all levels together
    max_ratio         largest decompressed/compressed ratio of a member or stream, past ratio_floor
    ratio_floor       decompressed bytes before the ratio is checked

An archive nested in itself (a zip quine, or a copy of an ancestor) is not opened again.

`Member.read()` is valid while the iterator stands on that member (tars are read in one pass);
its result is cached, so reading it twice costs nothing.
"""
from __future__ import annotations

import bz2
import dataclasses
import hashlib
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator

from .failures import plain

ZIP_MAGIC = b"PK\x03\x04"
ZIP_EMPTY = b"PK\x05\x06"
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SEVENZ_MAGIC = b"7z\xbc\xaf\x27\x1c"
CPIO_MAGICS = (b"070701", b"070702", b"070707")  # newc, crc (newc with checksums), odc (portable ASCII)
RPM_MAGIC = b"\xed\xab\xee\xdb"
RPM_HEADER_MAGIC = b"\x8e\xad\xe8\x01"
LZMA_ALONE_MAGIC = b"\x5d\x00\x00"  # legacy .lzma, as old rpm payloads
# recognised, but no reader here: each is reported as 'not opened: <format>'
UNREAD_MAGICS = ((b"Rar!\x1a\x07", "rar"), (b"MSCF\x00\x00\x00\x00", "cab"))
NOT_OPENED = "not opened: "
MAX_CPIO_NAME = 4096
MAX_RPM_HEADER = 64 << 20
SNIFF = 512 + 8  # enough for the ustar magic at offset 257
CHUNK = 1 << 20
MAX_WARNINGS = 20  # warnings from one outer file; the rest are counted in one more
SPOOL_OVER = 8 << 20  # a nested archive larger than this is walked from a temporary file, not memory

# names that are zips even with bytes before the first local header (self-running jars, installers)
ZIP_SUFFIXES = (".zip", ".jar", ".war", ".ear", ".apk", ".whl", ".egg", ".par", ".jpi", ".hpi", ".sar", ".aar",
                ".nupkg", ".xpi")
# names worth opening when content is not sniffed (callers passing sniff=False)
ARCHIVE_SUFFIXES = ZIP_SUFFIXES + (".tar", ".tgz", ".tbz", ".tbz2", ".txz", ".tzst", ".gz", ".bz2", ".xz", ".zst",
                                   ".7z", ".cpio", ".rpm", ".rar", ".cab")
_STREAM_SUFFIXES = {".tgz": ".tar", ".tbz": ".tar", ".tbz2": ".tar", ".txz": ".tar", ".tzst": ".tar",
                    ".gz": "", ".bz2": "", ".xz": "", ".zst": "", ".zstd": ""}


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits shared by every level of one outer file (policy section `[archives]`)."""

    max_depth: int = 5
    max_member_bytes: int = 64 << 20
    max_members: int = 50_000
    max_total_bytes: int = 256 << 20
    max_ratio: float = 200.0
    ratio_floor: int = 1 << 20

    @classmethod
    def from_policy(cls, policy: dict | None, **overrides: int | float) -> "ArchiveLimits":
        """The `[archives]` section over the defaults, then `overrides` (an analyzer's own older keys)."""
        conf = (policy or {}).get("archives") or {}
        if not isinstance(conf, dict):
            raise ValueError("archives: expected an [archives] section")
        values: dict[str, int | float] = {}
        for f in dataclasses.fields(cls):
            if f.name not in conf:
                continue
            value = conf[f.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"archives.{f.name}: expected a number >= 0, got {value!r}")
            values[f.name] = float(value) if f.name == "max_ratio" else int(value)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def key(self) -> list:
        """For cache fingerprints: records made under other limits differ."""
        return list(dataclasses.astuple(self))


class _Stop(Exception):
    """A limit of the whole walk was reached: nothing more is read from this outer file."""


class _Cut(Exception):
    """One container or member cannot be read further; the walk goes on with its siblings."""


class Member:
    """One regular file inside an archive."""

    __slots__ = ("path", "name", "size", "depth", "container", "_reader", "_data", "_done", "_walk")

    def __init__(self, path: str, name: str, size: int, depth: int, container: str,
                 reader: Callable[[], bytes | None], walk: "_Walk | None" = None):
        self.path = path  # OUTER!/INNER!/NAME
        self.name = name  # its name inside the archive that holds it
        self.size = size  # as the archive declares it; -1 when unknown (a compressed stream)
        self.depth = depth  # 1 for members of the outer file
        self.container = container  # format of the archive that holds it: zip, tar, gzip, 7z, ...
        self._reader = reader
        self._data: bytes | None = None
        self._done = False
        self._walk = walk

    def read(self) -> bytes | None:
        """Its bytes, at most max_member_bytes; None when a limit or damage stopped the read (warned)."""
        if not self._done:
            self._done = True
            try:
                self._data = self._reader()
            except _Stop:
                if self._walk is not None:
                    self._walk.stopped = True  # the iterator ends at its next step
                self._data = None
            except _Cut as cut:
                if self._walk is not None:
                    self._walk.warn(str(cut))
                self._data = None
            self._reader = _nothing
        return self._data

    def __repr__(self) -> str:
        return f"Member({self.path!r}, size={self.size})"


def _nothing() -> bytes | None:
    return None


def kind_of(name: str, head: bytes) -> str:
    """The archive or compression format of a file from its first bytes (and, for prefixed zips, its name)."""
    if head.startswith(ZIP_MAGIC) or head.startswith(ZIP_EMPTY):
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return "bzip2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(SEVENZ_MAGIC):
        return "7z"
    if head[:6] in CPIO_MAGICS:
        return "cpio"
    if head.startswith(RPM_MAGIC):
        return "rpm"
    for magic, kind in UNREAD_MAGICS:
        if head.startswith(magic):
            return kind
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if name.lower().endswith(ZIP_SUFFIXES) and len(head) >= 4:
        return "zip?"  # maybe a zip after a prefix: zipfile finds the directory from the end
    return ""


def is_archive(name: str, head: bytes) -> bool:
    return kind_of(name, head) not in ("", "zip?")


def not_opened(warnings: list[str]) -> list[dict]:
    """{path, format, reason} of every archive or member the warnings say was recognised but not opened."""
    out: dict[str, dict] = {}
    for w in warnings:
        at = w.find(": " + NOT_OPENED)
        if at < 0:
            continue
        path = w[:at].rsplit(": ", 1)[-1]  # after the "layer N: analyzer: " a scan warning starts with
        reason = w[at + 2:]
        fmt = reason[len(NOT_OPENED):].split(" (", 1)[0].split(";", 1)[0]
        out.setdefault(path, {"path": path, "format": fmt, "reason": reason})
    return list(out.values())


def iter_members(name: str, source: bytes | IO[bytes], limits: ArchiveLimits | None = None, *,
                 warnings: list[str] | None = None, want: Callable[[str], bool] | None = None,
                 sniff: bool = True) -> Iterator[Member]:
    """Every regular file inside `source` (the bytes or a binary stream of the file `name`), nested
    archives included, depth first. Nothing is yielded when `source` is not an archive.

    want(member_name): only members it accepts are yielded (others are still looked into when they
    are archives). sniff=False: a member is looked into only when its name says it is an archive,
    which spares reading members nobody wants (inventory reads only jars and their metadata).
    Every cut is appended to `warnings` as one sentence."""
    walk = _Walk(limits or ArchiveLimits(), warnings if warnings is not None else [], want, sniff)
    if isinstance(source, (bytes, bytearray, memoryview)):
        blob = _Blob(bytes(source), None)
    elif _seekable(source):
        blob = _Blob(None, source)  # a large file stays where it is: zipfile and the streams seek in it
    else:
        data = _read_bounded(source, walk.limits.max_total_bytes + 1)
        if len(data) > walk.limits.max_total_bytes:
            walk.warn(f"{name}: larger than {walk.limits.max_total_bytes} bytes (archives.max_total_bytes); not opened")
            return
        blob = _Blob(data, None)
    try:
        yield from walk.container(name, blob, 0, ())
    except _Stop:
        pass
    finally:
        if walk.suppressed:
            walk.warnings.append(f"{name}: {walk.suppressed} more archive limit warning(s) not shown")


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _Blob:
    """An archive's bytes: in memory, or in a seekable file (a large file spooled by the layer walker)."""

    def __init__(self, data: bytes | None, fh: IO[bytes] | None):
        self.data = data
        self.fh = fh

    def head(self, n: int) -> bytes:
        if self.data is not None:
            return self.data[:n]
        assert self.fh is not None
        self.fh.seek(0)
        return self.fh.read(n)

    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.fh is not None
        return self.fh.seek(0, io.SEEK_END)

    def tail(self, n: int) -> bytes:
        if self.data is not None:
            return self.data[-n:]
        assert self.fh is not None
        self.fh.seek(max(0, self.size() - n))
        return self.fh.read(n)

    def digest(self) -> bytes:
        if self.data is not None:
            return hashlib.sha1(self.data).digest()
        assert self.fh is not None
        h = hashlib.sha1()
        self.fh.seek(0)
        for chunk in iter(lambda: self.fh.read(CHUNK), b""):  # type: ignore[union-attr]
            h.update(chunk)
        return h.digest()

    def stream(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.fh is not None
        self.fh.seek(0)
        return self.fh


def _read_bounded(stream: IO[bytes] | _BoundedStream, limit: int) -> bytes:
    parts, got = [], 0
    while got < limit:
        chunk = stream.read(min(CHUNK, limit - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class _Walk:
    def __init__(self, limits: ArchiveLimits, warnings: list[str], want: Callable[[str], bool] | None, sniff: bool):
        self.limits = limits
        self.warnings = warnings
        self.want = want
        self.sniff = sniff
        self.total = 0
        self.members = 0
        self.outer = ""
        self.stopped = False
        self.warned = 0
        self.suppressed = 0

    def warn(self, message: str) -> None:
        if self.warnings and self.warnings[-1] == message:
            return  # a torn stream is found torn by the member read and again by the next header
        # a zip of a thousand zips would otherwise say the same thing a thousand times
        if self.warned >= MAX_WARNINGS:
            self.suppressed += 1
            return
        self.warned += 1
        self.warnings.append(message)

    def charge(self, n: int) -> None:
        self.total += n
        if self.total > self.limits.max_total_bytes:
            self.warn(f"{self.outer}: archive contents exceed {self.limits.max_total_bytes} bytes"
                      " (archives.max_total_bytes); the rest not read")
            raise _Stop

    def room(self) -> int:
        """Bytes one member may still take: the member cap, or what is left of the total."""
        return max(0, min(self.limits.max_member_bytes, self.limits.max_total_bytes - self.total))

    def count(self, path: str) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            self.warn(f"{self.outer}: more than {self.limits.max_members} archive members"
                      " (archives.max_members); the rest not read")
            raise _Stop

    def container(self, path: str, blob: _Blob, depth: int, ancestors: tuple[bytes, ...]) -> Iterator[Member]:
        """The members of `blob` (a file at `path`, `depth` archive levels down) if it is an archive."""
        kind = kind_of(path, blob.head(SNIFF))
        if not kind:
            return
        if depth == 0:
            self.outer = path
        if depth >= self.limits.max_depth:
            if kind != "zip?":
                self.warn(f"{path}: archive nested deeper than {self.limits.max_depth} levels"
                          " (archives.max_depth); not opened")
            return
        digest = blob.digest()
        if digest in ancestors:
            self.warn(f"{path}: contains an archive it is nested in (recursive nesting); not opened again")
            return
        ancestors = ancestors + (digest,)
        try:
            if kind in ("zip", "zip?"):
                yield from self._zip(path, blob, depth + 1, ancestors, kind == "zip?")
            elif kind == "tar":
                yield from self._tar(path, blob.stream(), depth + 1, ancestors, "tar", charged=False)
            elif kind == "7z":
                yield from self._sevenzip(path, blob, depth + 1, ancestors)
            elif kind == "cpio":
                yield from self._cpio(path, blob.stream(), depth + 1, ancestors, "cpio", charged=False)
            elif kind == "rpm":
                yield from self._rpm(path, blob, depth + 1, ancestors)
            elif kind in ("rar", "cab"):
                self.warn(f"{path}: {NOT_OPENED}{kind} archive (no reader for this format here); its members are"
                          " not checked")
            else:
                yield from self._compressed(path, kind, blob, depth + 1, ancestors)
        except _Cut as cut:
            self.warn(str(cut))

    def _descend(self, member: Member, ancestors: tuple[bytes, ...]) -> Iterator[Member]:
        if not self.sniff and not member.name.lower().endswith(ARCHIVE_SUFFIXES):
            return
        data = member.read()
        if data is None:
            return
        if len(data) <= SPOOL_OVER or not kind_of(member.name, data[:SNIFF]):
            yield from self.container(member.path, _Blob(data, None), member.depth, ancestors)
            return
        # a large nested archive: its consumers have had its bytes; it is walked from an unnamed temporary
        # file, so that memory holds one large member at a time, not one per nesting level
        import tempfile

        with tempfile.TemporaryFile(prefix="stowaway-member-") as spool:
            spool.write(data)
            member._data = data = None  # type: ignore[assignment]
            yield from self.container(member.path, _Blob(None, spool), member.depth, ancestors)

    def _emit(self, member: Member, ancestors: tuple[bytes, ...]) -> Iterator[Member]:
        self.count(member.path)
        member._walk = self
        if self.want is None or self.want(member.name):
            yield member
        if self.stopped:
            raise _Stop
        yield from self._descend(member, ancestors)
        if self.stopped:
            raise _Stop

    # -- zip ---------------------------------------------------------------------------------------

    def _zip(self, path: str, blob: _Blob, depth: int, ancestors: tuple[bytes, ...], maybe: bool) -> Iterator[Member]:
        directory = _central_directory_size(blob.tail(65535 + 22))
        cap = max(self.limits.max_member_bytes // 4, 64 << 10)
        if directory is not None and directory > cap:
            # zipfile keeps an object per entry: 16 MiB of directory is about 200,000 of them
            raise _Cut(f"{path}: zip directory of {directory} bytes, larger than {cap}"
                       " (a quarter of archives.max_member_bytes); members not read")
        try:
            zf = zipfile.ZipFile(blob.stream())
            infos = zf.infolist()
        except ZIP_ERRORS as exc:
            if maybe:
                return  # a file named like a zip that is not one: just a file
            raise _Cut(f"{path}: not a readable zip archive ({_why(exc)}); members not read") from None
        with zf:
            for info in infos:
                if info.is_dir():
                    continue
                inner = f"{path}!/{info.filename}"
                member = Member(inner, info.filename, info.file_size, depth, "zip",
                                _zip_reader(self, zf, blob.data, info, inner))
                yield from self._emit(member, ancestors)

    # -- tar ---------------------------------------------------------------------------------------

    def _tar(self, path: str, stream: Any, depth: int, ancestors: tuple[bytes, ...], container: str,
             charged: bool) -> Iterator[Member]:
        """A tar read in one pass; `charged`: the stream below already counts its bytes to the total."""
        try:
            tf = tarfile.open(fileobj=stream, mode="r|", tarinfo=_capped_tarinfo(self.limits.max_member_bytes))
        except _Stop:
            raise
        except _Cut:
            raise
        except TAR_ERRORS as exc:
            raise _Cut(f"{path}: not a readable tar archive ({_why(exc)}); members not read") from None
        with tf:
            while True:
                try:
                    ti = tf.next()
                except (_Stop, _Cut):
                    raise
                except TAR_ERRORS as exc:
                    raise _Cut(f"{path}: damaged tar archive ({_why(exc)}); the rest not read") from None
                if ti is None:
                    return
                if not ti.isreg():
                    continue
                inner = f"{path}!/{ti.name}"
                member = Member(inner, ti.name, ti.size, depth, container,
                                _tar_reader(self, tf, ti, inner, charged))
                yield from self._emit(member, ancestors)

    # -- single-stream compression (gzip, bzip2, xz, zstd) -----------------------------------------

    def _compressed(self, path: str, kind: str, blob: _Blob, depth: int, ancestors: tuple[bytes, ...]) -> Iterator[Member]:
        raw = blob.stream()
        stream = _BoundedStream(_decompressor(kind, raw), raw, self, path)
        head = stream.peek(SNIFF)
        if kind_of("", head) == "tar":
            yield from self._tar(path, stream, depth, ancestors, kind, charged=True)
            return
        if head[:6] in CPIO_MAGICS:  # a compressed cpio (initramfs) is one level, as a .tar.gz is
            yield from self._cpio(path, stream, depth, ancestors, kind, charged=True)
            return
        inner_name = _stream_member_name(path.rsplit("!/", 1)[-1].rsplit("/", 1)[-1])
        inner = f"{path}!/{inner_name}"

        def reader() -> bytes | None:
            room = self.room()
            try:
                content = stream.read_all(room + 1)
            except _Cut as cut:
                self.warn(str(cut))
                return None
            if len(content) > room:
                self._too_large(inner, room)
                return None
            return content

        member = Member(inner, inner_name, -1, depth, kind, reader)
        yield from self._emit(member, ancestors)

    # -- 7z ----------------------------------------------------------------------------------------

    def _sevenzip(self, path: str, blob: _Blob, depth: int, ancestors: tuple[bytes, ...]) -> Iterator[Member]:
        try:
            import py7zr
        except ImportError:
            raise _Cut(f"{path}: 7z archive, but py7zr is not installed; members not read") from None
        try:
            with py7zr.SevenZipFile(blob.stream(), mode="r") as archive:
                infos = [i for i in archive.list() if not i.is_directory]
                if archive.needs_password():
                    raise _Cut(f"{path}: encrypted 7z archive; members not read")
                declared = sum(int(i.uncompressed or 0) for i in infos)
                packed = max(blob.size(), 1)
                if declared > self.limits.ratio_floor and declared > self.limits.max_ratio * packed:
                    raise _Cut(f"{path}: compression ratio over {self.limits.max_ratio:g}:1 (archives.max_ratio);"
                               " members not read")
                factory = _SevenZipFactory(self, path)
                archive.extract(factory=factory)
        except (_Stop, _Cut):
            raise
        except Exception as exc:  # py7zr raises its own errors, and those of its decompressors, freely
            raise _Cut(f"{path}: not a readable 7z archive ({_why(exc)}); members not read") from None
        for info in infos:
            name = info.filename
            inner = f"{path}!/{name}"
            got = factory.files.get(name)
            content = got.content() if got is not None else None

            def reader(content: bytes | None = content, got=got, inner: str = inner) -> bytes | None:
                if got is None or got.over or content is None:
                    self._too_large(inner, self.room())
                    return None
                self.charge(len(content))
                return content

            member = Member(inner, name, int(info.uncompressed or 0), depth, "7z", reader)
            yield from self._emit(member, ancestors)

    # -- cpio ----------------------------------------------------------------------------------------

    def _cpio(self, path: str, stream: Any, depth: int, ancestors: tuple[bytes, ...], container: str,
              charged: bool) -> Iterator[Member]:
        """A cpio archive read in one pass (newc/crc: hex fields, 4-byte alignment; odc: octal, none)."""
        while True:
            head = _read_exact(stream, 6)
            if len(head) < 6:
                raise _Cut(f"{path}: truncated cpio archive (no trailer); the rest not read")
            try:
                if head in (b"070701", b"070702"):
                    raw = _read_exact(stream, 104)
                    fields = [int(raw[i * 8:(i + 1) * 8], 16) for i in range(13)]
                    mode, size, name_size, align = fields[1], fields[6], fields[11], 4
                elif head == b"070707":
                    raw = _read_exact(stream, 70)
                    mode, name_size, size, align = int(raw[12:18], 8), int(raw[53:59], 8), int(raw[59:70], 8), 1
                elif head == b"07070X":
                    raise _Cut(f"{path}: {NOT_OPENED}rpm large-file payload (rpm's own stripped cpio); members"
                               " not read")
                else:
                    raise _Cut(f"{path}: damaged cpio archive (bad header magic); the rest not read")
            except ValueError:
                raise _Cut(f"{path}: damaged cpio archive (a header field is not a number); the rest not read") from None
            if name_size > MAX_CPIO_NAME:
                raise _Cut(f"{path}: damaged cpio archive (a name of {name_size} bytes); the rest not read")
            header = (110 if align == 4 else 76) + name_size
            raw_name = _read_exact(stream, name_size + (-header % align))
            name = raw_name[:name_size].rstrip(b"\0").decode("utf-8", "replace")
            if name == "TRAILER!!!":
                return
            padding = -size % align
            name = name[2:] if name.startswith("./") else name.lstrip("/")
            if mode & 0o170000 != 0o100000 or not name:
                _skip(stream, size + padding)
                continue
            inner = f"{path}!/{name}"
            state = {"left": size}
            member = Member(inner, name, size, depth, container, _cpio_reader(self, stream, size, inner, charged, state))
            yield from self._emit(member, ancestors)
            _skip(stream, state["left"] + padding)

    # -- rpm -----------------------------------------------------------------------------------------

    def _rpm(self, path: str, blob: _Blob, depth: int, ancestors: tuple[bytes, ...]) -> Iterator[Member]:
        """An rpm package: the 96-byte lead, the signature header (padded to 8 bytes), the header, then
        the payload, a cpio archive, compressed as the header says (told here by its magic bytes)."""
        raw = blob.stream()
        if len(_read_exact(raw, 96)) < 96:
            raise _Cut(f"{path}: truncated rpm package; members not read")
        for padded in (True, False):
            intro = _read_exact(raw, 16)
            if len(intro) < 16 or not intro.startswith(RPM_HEADER_MAGIC):
                raise _Cut(f"{path}: damaged rpm package (bad header magic); members not read")
            count, data_size = struct.unpack(">II", intro[8:16])
            size = 16 * count + data_size
            if size > MAX_RPM_HEADER:
                raise _Cut(f"{path}: rpm header of {size} bytes, larger than {MAX_RPM_HEADER}; members not read")
            _skip(raw, size + (-size % 8 if padded else 0))
        payload: Any = _Tail(raw, raw.tell())
        head = payload.read(SNIFF)
        payload.seek(0)
        kind = "lzma" if head.startswith(LZMA_ALONE_MAGIC) else kind_of("", head)
        if head[:6] in CPIO_MAGICS or head[:6] == b"07070X":
            yield from self._cpio(path, payload, depth, ancestors, "rpm", charged=False)
            return
        if kind not in ("gzip", "bzip2", "xz", "zstd", "lzma"):
            raise _Cut(f"{path}: {NOT_OPENED}rpm payload of an unknown compression; members not read")
        stream = _BoundedStream(_decompressor(kind, payload), payload, self, path)
        yield from self._cpio(path, stream, depth, ancestors, "rpm", charged=True)

    def _too_large(self, inner: str, room: int) -> None:
        if room < self.limits.max_member_bytes:
            self.charge(self.limits.max_total_bytes + 1)  # raises _Stop with its warning
        self.warn(f"{inner}: larger than {self.limits.max_member_bytes} bytes (archives.max_member_bytes); not read")


def _central_directory_size(tail: bytes) -> int | None:
    """From the end-of-central-directory record (in the archive's last 64 KiB), before zipfile builds an
    object per entry."""
    at = tail.rfind(ZIP_EMPTY)
    if at < 0 or at + 22 > len(tail):
        return None
    return int(struct.unpack_from("<I", tail, at + 12)[0])


ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
              RuntimeError, struct.error, zlib.error, lzma.LZMAError, KeyError, IndexError)
TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, struct.error,
              UnicodeDecodeError, KeyError, IndexError)


def _why(exc: BaseException) -> str:
    return plain(exc)


def _stream_member_name(name: str) -> str:
    low = name.lower()
    for suffix, replacement in _STREAM_SUFFIXES.items():
        if low.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)] + replacement
    return name + ".out"


ZIP_DEFLATE64 = 9
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
ZIP_METHOD_NAMES = {1: "shrink", 2: "reduce", 3: "reduce", 4: "reduce", 5: "reduce", 6: "implode", 9: "deflate64",
                    10: "PKWARE DCL implode", 18: "IBM TERSE", 19: "IBM LZ77", 93: "zstd", 94: "MP3", 95: "xz",
                    96: "JPEG", 97: "WavPack", 98: "PPMd", 99: "AES-encrypted"}


def _has_inflate64() -> bool:
    try:
        import inflate64  # noqa: F401
    except ImportError:
        return False
    return True


def read_zip_member(data: bytes, info: zipfile.ZipInfo, limit: int) -> bytes | None:
    """At most `limit` + 1 bytes of a stored, deflated or Deflate64 member, straight from the archive's bytes.

    zipfile's file objects cost more than the inflating itself on jars of thousands of small classes;
    this reads the local header and inflates in one call. zipfile cannot read Deflate64 (Windows'
    "compressed folders" write it past 2 GB, and some tools always); inflate64 can. None: not a
    plain member (encrypted, another method, a local header, size or CRC that does not agree with
    the directory), for zipfile to handle or refuse."""
    if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, ZIP_DEFLATE64):
        return None
    offset = info.header_offset
    if offset < 0 or offset + 30 > len(data) or data[offset:offset + 4] != ZIP_MAGIC:
        return None
    flags, = struct.unpack_from("<H", data, offset + 6)
    name_len, extra_len = struct.unpack_from("<HH", data, offset + 26)
    name = data[offset + 30:offset + 30 + name_len].decode("utf-8" if flags & 0x800 else "cp437", "replace")
    if name != info.orig_filename:
        return None
    start = offset + 30 + name_len + extra_len
    raw = memoryview(data)[start:start + info.compress_size]
    if info.compress_type == zipfile.ZIP_STORED:
        member = bytes(raw[:limit + 1])
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        member = zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, limit + 1)
    else:
        inflated = _inflate64(raw, limit)
        if inflated is None:
            return None
        member = inflated
    if len(member) <= limit and (len(member) != info.file_size or zlib.crc32(member) != info.CRC):
        return None  # not what the directory says: zipfile tells how the member is broken
    return member


def _inflate64(raw: memoryview, limit: int) -> bytes | None:
    """Deflate64, fed in small pieces so that the output is checked against the limit as it grows
    (inflate64 takes no output bound; a piece of 16 KiB inflates to 17 MiB at most)."""
    try:
        import inflate64
    except ImportError:
        return None
    inflater = inflate64.Inflater()
    parts, got = [], 0
    try:
        for at in range(0, len(raw), 16 << 10):
            out = inflater.inflate(bytes(raw[at:at + (16 << 10)]))
            parts.append(out)
            got += len(out)
            if got > limit:
                break
    except (ValueError, EOFError, OSError):
        return None
    return b"".join(parts)[:limit + 1]


def _zip_reader(walk: _Walk, zf: zipfile.ZipFile, data: bytes | None, info: zipfile.ZipInfo,
                inner: str) -> Callable[[], bytes | None]:
    def read() -> bytes | None:
        lim = walk.limits
        if info.flag_bits & 0x1:
            walk.warn(f"{inner}: encrypted zip member; not read")
            return None
        method = info.compress_type
        if method not in _ZIP_METHODS and not (method == ZIP_DEFLATE64 and _has_inflate64()):
            name = ZIP_METHOD_NAMES.get(method, f"method {method}")
            walk.warn(f"{inner}: {NOT_OPENED}{name}-compressed zip member (no reader for this method here)")
            return None
        if info.file_size > lim.max_member_bytes:
            walk.warn(f"{inner}: declares {info.file_size} bytes, larger than {lim.max_member_bytes}"
                      " (archives.max_member_bytes); not read")
            return None
        if info.file_size > lim.ratio_floor and info.file_size > lim.max_ratio * max(info.compress_size, 1):
            walk.warn(f"{inner}: compression ratio over {lim.max_ratio:g}:1 (archives.max_ratio, zip bomb?); not read")
            return None
        room = walk.room()
        if info.file_size > room:
            walk.charge(info.file_size)  # past the total: raises _Stop with its warning
        try:
            content = read_zip_member(data, info, room) if data is not None else None
            if content is None:
                with zf.open(info) as fh:
                    # zipfile stops at the declared size, so a lying header cannot inflate past it
                    content = fh.read(room + 1)
        except ZIP_ERRORS as exc:
            walk.warn(f"{inner}: unreadable zip member ({_why(exc)}); not read")
            return None
        if len(content) > room:
            walk._too_large(inner, room)
            return None
        walk.charge(len(content))
        return content
    return read


def _tar_reader(walk: _Walk, tf: tarfile.TarFile, ti: tarfile.TarInfo, inner: str,
                charged: bool) -> Callable[[], bytes | None]:
    def read() -> bytes | None:
        room = walk.room()
        if ti.size > walk.limits.max_member_bytes:
            walk.warn(f"{inner}: {ti.size} bytes, larger than {walk.limits.max_member_bytes}"
                      " (archives.max_member_bytes); not read")
            return None
        if ti.size > room:
            walk.charge(ti.size)  # raises _Stop
        try:
            fh = tf.extractfile(ti)
            content = fh.read(ti.size) if fh is not None else b""
        except (_Stop, _Cut):
            raise
        except TAR_ERRORS as exc:
            walk.warn(f"{inner}: unreadable tar member ({_why(exc)}); not read")
            return None
        if not charged:
            walk.charge(len(content))
        return content
    return read


def _capped_tarinfo(cap: int) -> type[tarfile.TarInfo]:
    """A TarInfo that refuses PAX headers and GNU long names larger than `cap` before reading them
    (tarfile would read one whole into memory)."""

    class CappedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tf):  # type: ignore[override]
            if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                             tarfile.SOLARIS_XHDTYPE) and self.size > cap:
                raise _Cut(f"tar header of {self.size} bytes, larger than {cap} (archives.max_member_bytes);"
                           " the rest not read")
            return super()._proc_member(tf)

    return CappedTarInfo


def _read_exact(stream: Any, n: int) -> bytes:
    """n bytes (fewer only at the end of the stream), however the stream splits its reads."""
    parts, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _skip(stream: Any, n: int) -> None:
    if n <= 0:
        return
    if _seekable(stream):
        stream.seek(n, io.SEEK_CUR)
        return
    while n > 0:
        chunk = stream.read(min(CHUNK, n))
        if not chunk:
            return
        n -= len(chunk)


def _cpio_reader(walk: _Walk, stream: Any, size: int, inner: str, charged: bool,
                 state: dict) -> Callable[[], bytes | None]:
    def read() -> bytes | None:
        lim = walk.limits
        if size > lim.max_member_bytes:
            walk.warn(f"{inner}: {size} bytes, larger than {lim.max_member_bytes} (archives.max_member_bytes); not read")
            return None
        if size > walk.room():
            walk.charge(size)  # raises _Stop
        content = _read_exact(stream, size)
        state["left"] = size - len(content)
        if len(content) < size:
            raise _Cut(f"{inner}: truncated cpio member; the rest not read")
        if not charged:
            walk.charge(len(content))
        return content
    return read


class _Tail(io.RawIOBase):
    """The bytes of a seekable file from `offset` on, as a file of their own (an rpm's payload)."""

    def __init__(self, raw: IO[bytes], offset: int):
        self.raw, self.offset = raw, offset
        raw.seek(offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        return self.raw.read(-1 if n is None else n)

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.raw.read(len(b))
        b[: len(data)] = data
        return len(data)

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == io.SEEK_SET:
            return self.raw.seek(self.offset + pos) - self.offset
        return self.raw.seek(pos, whence) - self.offset

    def tell(self) -> int:
        return self.raw.tell() - self.offset


def _decompressor(kind: str, raw: IO[bytes]) -> Any:
    """A reader of the decompressed bytes (GzipFile, BZ2File, LZMAFile or zstandard's stream reader)."""
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, "rb")
    if kind in ("xz", "lzma"):
        return lzma.LZMAFile(raw, "rb")
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)


class _BoundedStream(io.RawIOBase):
    """A decompressed stream charged to the walk's total, with the ratio checked against the input read."""

    def __init__(self, inner: Any, raw: IO[bytes], walk: _Walk, path: str):
        self.inner = inner
        self.raw = raw
        self.walk = walk
        self.path = path
        self.out = 0
        self.head = b""

    def readable(self) -> bool:
        return True

    def _pull(self, n: int) -> bytes:
        try:
            data = self.inner.read(n)
        except Exception as exc:  # gzip, bz2, lzma and zstandard each raise their own errors on damage
            raise _Cut(f"{self.path}: corrupt compressed data ({_why(exc)}); the rest not read") from None
        self.out += len(data)
        lim = self.walk.limits
        if self.out > lim.ratio_floor and self.out > lim.max_ratio * max(self.raw.tell(), 1):
            raise _Cut(f"{self.path}: compression ratio over {lim.max_ratio:g}:1 (archives.max_ratio,"
                       " decompression bomb?); the rest not read")
        self.walk.charge(len(data))
        return data

    def peek(self, n: int) -> bytes:
        while len(self.head) < n:
            more = self._pull(n - len(self.head))
            if not more:
                break
            self.head += more
        return self.head[:n]

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = CHUNK
        if self.head:
            data, self.head = self.head[:n], self.head[n:]
            return data
        return self._pull(min(n, CHUNK))

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def read_all(self, limit: int) -> bytes:
        return _read_bounded(self, limit)


class _CappedWriter:
    """py7zr writes each member here; past the cap it keeps counting but stores nothing more."""

    def __init__(self, walk: _Walk, cap: int):
        self.walk = walk
        self.cap = cap
        self.buf = io.BytesIO()
        self.over = False
        self.length = 0

    def write(self, s: bytes | bytearray) -> int:
        self.length += len(s)
        if self.over or self.length > self.cap:
            self.over = True
            return len(s)
        self.buf.write(s)
        return len(s)

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        return None

    def size(self) -> int:
        return self.length

    def close(self) -> None:
        return None

    def content(self) -> bytes | None:
        return None if self.over else self.buf.getvalue()


class _SevenZipFactory:
    def __init__(self, walk: _Walk, path: str):
        self.walk = walk
        self.path = path
        self.files: dict[str, _CappedWriter] = {}

    def create(self, filename: str) -> _CappedWriter:
        # what is kept in memory at once is bounded by the total: members beyond it are dropped
        stored = sum(w.buf.tell() for w in self.files.values())
        lim = self.walk.limits
        cap = max(0, min(lim.max_member_bytes, lim.max_total_bytes - self.walk.total - stored))
        writer = _CappedWriter(self.walk, cap)
        self.files[filename] = writer
        return writer


# -- one pass for every content check ------------------------------------------------------------------


class MemberConsumer:
    """What an analyzer that looks inside archives declares (malware, secrets, Java inventory): the layer
    walker opens each archive once, with one resolver pass, and hands every member to every consumer
    (`feed`), instead of each analyzer decompressing the same archive again.

    `analyze` (the public entry, used alone) is `analyze_outer` then `feed([self], ...)`."""

    reads_members = True
    member_limits: ArchiveLimits = ArchiveLimits()
    member_sniff = True  # False: look into members only when their name says archive (inventory)

    def analyze_outer(self, file: Any) -> list[dict]:
        """Records of the file itself (not of its members)."""
        return []

    def analyze_member(self, member: Member) -> list[dict]:
        """Records of one member; `member.read()` gives its bytes (read once, shared by every consumer)."""
        return []

    def archive_warnings(self, outer: str, warnings: list[str]) -> list[dict]:
        """Records that carry the resolver's warnings about `outer` into the scan's warnings."""
        return []


def merged_limits(consumers: list) -> ArchiveLimits:
    """The widest of the consumers' limits: one walk serves them all; each is then held to its own depth."""
    limits = [c.member_limits for c in consumers]
    return ArchiveLimits(**{f.name: max(getattr(x, f.name) for x in limits) for f in dataclasses.fields(ArchiveLimits)})


def feed(consumers: list, file: Any, records: dict[str, list[dict]], seconds: dict[str, float] | None = None) -> None:
    """One resolver pass over `file` (a model.LayerFile) feeding every member to every consumer;
    records[consumer.name] grows by what each makes of them. A consumer's exception costs that consumer
    only this member (a warning record); a member is read (decompressed) at most once."""
    import time

    if not consumers or not kind_of(file.path, bytes(file.view[:SNIFF])):
        return
    limits = merged_limits(consumers)
    warnings: list[str] = []
    too_deep: set[tuple[str, str]] = set()  # (consumer, container) already said
    source = file.open() if file.spooled else file.data  # a large archive stays in its spool
    try:
        for member in iter_members(file.path, source, limits, warnings=warnings,
                                   sniff=any(c.member_sniff for c in consumers)):
            for c in consumers:
                if member.depth > c.member_limits.max_depth:
                    # the pass went deeper for another consumer: this one's own depth still holds, and is said
                    container = member.path.rsplit("!/", 1)[0]
                    if (c.name, container) not in too_deep and len(too_deep) < MAX_WARNINGS:
                        too_deep.add((c.name, container))
                        records.setdefault(c.name, []).extend(c.archive_warnings(file.path, [
                            f"{container}: archive nested deeper than {c.member_limits.max_depth} levels"
                            f" (archives.max_depth for {c.name}); not opened"]))
                    continue
                t0 = time.perf_counter()
                try:
                    out = c.analyze_member(member)
                except _Stop:
                    raise
                except Exception as exc:  # an analyzer bug must not lose the other consumers' members
                    out = c.archive_warnings(file.path, [f"{member.path}: {c.name} failed:"
                                                         f" {exc.__class__.__name__}: {str(exc)[:200]}"])
                if out:
                    records.setdefault(c.name, []).extend(out)
                if seconds is not None:
                    seconds[c.name] = seconds.get(c.name, 0.0) + time.perf_counter() - t0
    finally:
        if file.spooled and hasattr(source, "close"):
            source.close()
    if warnings:
        for c in consumers:
            records.setdefault(c.name, []).extend(c.archive_warnings(file.path, warnings))


def analyze_alone(consumer: Any, file: Any) -> list[dict]:
    """A consumer's records of one file and its members, when no walker shares the pass (tests, tools)."""
    records = {consumer.name: list(consumer.analyze_outer(file))}
    feed([consumer], file, records)
    return records[consumer.name]
