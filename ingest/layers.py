"""Walks one layer tar, once, as a stream: records every entry, hands needed files to analyzers.

Nothing is written to disk. Entry names are normalized to absolute paths inside the image; names
that climb out ('../x') or are absurdly long are recorded as warnings and skipped. Whiteouts and
opaque-directory markers are recorded as entries of their own type; `squash.py` resolves them.
"""
from __future__ import annotations

import io
import os
import posixpath
import tarfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from .model import BLOCK, CHAR, DIR, FIFO, HARDLINK, REG, SYMLINK, FileInfo, LayerFile, ScanError
from .streams import Limits

WHITEOUT, OPAQUE = "whiteout", "opaque"
WH_PREFIX, WH_OPAQUE = ".wh.", ".wh..wh..opq"
MAX_NAME = 4096
MAX_WARNINGS = 200
HARDLINK_CACHE_BYTES = 32 << 20  # recent small files, for hard links to them

# Entry tuples keep the per-layer index small: (path, type, size, mode, uid, gid, linkname)
Entry = tuple


def normalize(name: str) -> str | None:
    """Absolute, normalized path inside the image, or None when the name climbs out of it."""
    name = name.replace("\\", "/") if "\\" in name and "/" not in name else name
    path = posixpath.normpath("/" + name.lstrip("/"))
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    parts = name.split("/")
    if ".." in parts:
        # normpath on an absolute path swallows '..' at the root; a name that needs that is hostile
        depth = 0
        for part in parts:
            if part in ("", "."):
                continue
            depth += -1 if part == ".." else 1
            if depth < 0:
                return None
    return path


class ForwardReader:
    """A file object that can only seek forward, by reading and discarding.

    tarfile's random-access mode then works on a stream: it seeks over the content of members
    nobody needs (in large reads), and never seeks back. Its stream mode ('r|') instead copies its
    whole buffer on every 512-byte header read, which made it the slowest part of a scan.
    """

    def __init__(self, raw):
        self.raw = raw
        self.pos = 0
        self.mode = "rb"
        self.header_budget: int | None = None  # bytes an extended tar header may still read
        self.last = b""  # the last read: when tarfile stops, the header block it stopped at

    def read(self, n: int = -1) -> bytes:
        if self.header_budget is not None:
            if n is None or n < 0 or n > self.header_budget:
                raise TarHeaderTooLarge()
            self.header_budget -= n
        data = self.raw.read(n) if n is not None and n >= 0 else self.raw.read()
        self.pos += len(data)
        self.last = data
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.pos
        elif whence != 0:
            raise OSError("cannot seek from the end of a stream")
        if pos < self.pos:
            raise OSError("cannot seek backwards in a stream")
        while self.pos < pos:
            chunk = self.raw.read(min(1 << 20, pos - self.pos))
            if not chunk:
                raise EOFError("unexpected end of data")
            self.pos += len(chunk)
        return self.pos


class TarHeaderTooLarge(Exception):
    """An entry's extended headers (PAX, GNU long name, sparse map) read past their cap."""


_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.GNUTYPE_SPARSE, tarfile.XHDTYPE,
             tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class CappedTarInfo(tarfile.TarInfo):
    """tarfile reads an extended header whole, at the size its header claims: a PAX header that
    says 1 GiB is 1 GiB of memory, from a few MB of gzip. Every extended header of one entry
    (including chained GNU long names and sparse extension blocks) shares one read budget."""

    max_header = 1 << 20

    def _proc_member(self, tarfile_):
        fileobj = tarfile_.fileobj
        if self.type not in _EXTENDED or not isinstance(fileobj, ForwardReader) or fileobj.header_budget is not None:
            return super()._proc_member(tarfile_)
        if self.size > self.max_header:
            raise TarHeaderTooLarge()
        fileobj.header_budget = self.max_header
        try:
            return super()._proc_member(tarfile_)
        finally:
            fileobj.header_budget = None


def iter_members(tf: tarfile.TarFile):
    """Iterates members without tarfile keeping them all (a layer can list millions)."""
    while True:
        member = tf.next()
        if member is None:
            return
        members = tf.members  # type: ignore[attr-defined]  # the list getmembers() returns, kept by tarfile
        if len(members) > 1024:
            members.clear()
        yield member


def _type_of(member: tarfile.TarInfo) -> str | None:
    if member.isreg():
        return REG
    if member.isdir():
        return DIR
    if member.issym():
        return SYMLINK
    if member.islnk():
        return HARDLINK
    if member.ischr():
        return CHAR
    if member.isblk():
        return BLOCK
    if member.isfifo():
        return FIFO
    return None


def _clean(text: str) -> str:
    # tarfile decodes undecodable bytes as surrogates; SQLite and JSON need real text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Spool:
    """A tar member too large to hold in memory, copied to an unnamed temporary file.

    TemporaryFile has no name on Linux (O_TMPFILE, or unlinked at once): nothing is left in TMPDIR
    and nothing can be reached through it. Readers get independent positions through pread."""

    def __init__(self, source, size: int):
        import tempfile

        self.size = size
        self.file = tempfile.TemporaryFile(prefix="stowaway-")
        self._map = None
        left = size
        while left > 0:
            chunk = source.read(min(1 << 20, left))
            if not chunk:
                break
            self.file.write(chunk)
            left -= len(chunk)
        self.file.flush()
        self.written = size - left

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self.file.fileno()}"

    def read_all(self) -> bytes:
        return os.pread(self.file.fileno(), self.written, 0)

    def map(self):
        import mmap

        if self._map is None:
            self._map = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ) if self.written else b""
        return self._map

    def open(self):
        return _PreadFile(self.file.fileno(), self.written)

    def close(self) -> None:
        if self._map is not None and not isinstance(self._map, bytes):
            try:
                self._map.close()
            except BufferError:  # an analyzer still holds a slice view; the mapping goes with the file
                pass
        self.file.close()


class _PreadFile(io.RawIOBase):
    """A read-only, seekable file object of its own over a shared descriptor."""

    def __init__(self, fd: int, size: int):
        self.fd, self.size, self.pos = fd, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, b):
        data = os.pread(self.fd, min(len(b), max(self.size - self.pos, 0)), self.pos)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def seek(self, pos, whence=0):
        self.pos = {0: pos, 1: self.pos + pos, 2: self.size + pos}[whence]
        return self.pos

    def tell(self):
        return self.pos


@dataclass
class LayerResult:
    index: int
    entries: list[Entry] = field(default_factory=list)
    records: dict[str, list[dict]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    blob_digest: str = ""
    diff_id: str = ""
    size: int = 0

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("further warnings for this layer were dropped")


def walk(tar_stream, index: int, analyzers: list, limits: Limits, what: str) -> LayerResult:
    """Reads a layer's uncompressed tar stream once. `analyzers` are instances with required/analyze."""
    result = LayerResult(index=index)
    for a in analyzers:
        result.records[a.name] = []
        result.seconds[a.name] = 0.0
    sizes: dict[str, int] = {}
    kept: OrderedDict[str, bytes] = OrderedDict()  # recent contents, for hard links to read files
    data: bytes | Spool | None
    kept_bytes = 0
    try:
        capped = type("CappedTarInfo", (CappedTarInfo,), {"max_header": limits.max_tar_header})
        reader = ForwardReader(tar_stream)
        tf = tarfile.open(fileobj=reader, mode="r:", errorlevel=1, tarinfo=capped)  # type: ignore[call-overload]
    except TarHeaderTooLarge:
        raise ScanError(f"{what}: a tar extended header is larger than {limits.max_tar_header} bytes"
                        " (limits.max_tar_header)") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ScanError(f"{what}: not a tar archive ({exc})") from None
    try:
        for member in iter_members(tf):
            if len(result.entries) >= limits.max_entries:
                raise ScanError(f"{what}: more than {limits.max_entries} entries in one layer")
            name = _clean(member.name)
            if len(name) > MAX_NAME:
                result.warn(f"entry name of {len(name)} characters skipped")
                continue
            path = normalize(name)
            if path is None:
                result.warn(f"entry {name[:200]!r} points outside the image; skipped")
                continue
            if name.startswith("/"):
                result.warn(f"entry {name[:200]!r} has an absolute name; read as relative to the image root")
            base = posixpath.basename(path)
            if base.startswith(WH_PREFIX):
                parent = posixpath.dirname(path)
                if base == WH_OPAQUE:
                    result.entries.append((parent, OPAQUE, 0, 0, 0, 0, ""))
                else:
                    result.entries.append((posixpath.join(parent, base[len(WH_PREFIX):]), WHITEOUT, 0, 0, 0, 0, ""))
                continue
            kind = _type_of(member)
            if kind is None:
                result.warn(f"{path}: unsupported tar entry type {member.type!r}; skipped")
                continue
            size = member.size if kind == REG else 0
            link = ""
            if kind == SYMLINK:
                link = _clean(member.linkname)
            elif kind == HARDLINK:
                target = normalize(_clean(member.linkname))
                if target is None:
                    result.warn(f"{path}: hard link to {member.linkname[:200]!r} outside the image; skipped")
                    continue
                link = target
                if target not in sizes:
                    result.warn(f"{path}: hard link to missing target {target}")
                size = sizes.get(target, 0)
            if kind == REG:
                sizes[path] = size
            info = FileInfo(path, kind, size, member.mode & 0o7777, member.uid, member.gid, link, int(member.mtime))
            result.entries.append((path, kind, size, info.mode, info.uid, info.gid, link))
            if kind not in (REG, HARDLINK) or not analyzers:
                continue
            wanted = [a for a in analyzers if a.required(path, info)]
            for a in [a for a in wanted if (cap := a.size_cap(path)) is not None and size > cap]:
                result.warn(f"{path}: {size} bytes, over the {a.size_cap(path)}-byte cap of the {a.name} analyzer;"
                            " not analyzed by it")
                wanted.remove(a)
            if not wanted:
                continue
            if kind == HARDLINK:
                data = kept.get(link)
                if data is None:
                    continue  # the target's content went to analyzers under its own path
            elif size > limits.max_file_read:
                result.warn(f"{path}: {size} bytes, larger than the read limit; not analyzed")
                continue
            elif size > limits.max_in_memory_file:
                spool = Spool(tf.extractfile(member) or io.BytesIO(), size)
                if spool.written != size:
                    spool.close()
                    raise ScanError(f"{what}: truncated tar (file {path} cut short)")
                data = spool
            else:
                fh = tf.extractfile(member)
                data = fh.read() if fh is not None else b""
                if len(data) != size:
                    raise ScanError(f"{what}: truncated tar (file {path} cut short)")
                kept[path] = data
                kept_bytes += len(data)
                while kept_bytes > HARDLINK_CACHE_BYTES and len(kept) > 1:
                    _, old = kept.popitem(last=False)
                    kept_bytes -= len(old)
            lf = LayerFile(info, data, index)
            try:
                for a in wanted:
                    t0 = time.perf_counter()
                    try:
                        out = a.analyze(lf)
                        if out:
                            result.records[a.name].extend(out)
                    except ScanError:
                        raise
                    except Exception as exc:  # an analyzer bug must not lose the rest of the scan
                        result.warn(f"{a.name} failed on {path}: {exc.__class__.__name__}: {str(exc)[:200]}")
                    result.seconds[a.name] += time.perf_counter() - t0
            finally:
                if isinstance(data, Spool):
                    data.close()
        _stopped_cleanly(reader, tf, what)
    except ScanError:
        raise
    except TarHeaderTooLarge:
        raise ScanError(f"{what}: a tar extended header is larger than {limits.max_tar_header} bytes"
                        " (limits.max_tar_header)") from None
    except RecursionError:
        raise ScanError(f"{what}: tar extended headers nested too deeply") from None
    except (tarfile.TarError, EOFError) as exc:
        raise ScanError(f"{what}: truncated or corrupt tar ({exc})") from None
    except OSError as exc:
        raise ScanError(f"{what}: read error ({exc})") from None
    _refuse_windows(result, what)
    return result


def _stopped_cleanly(reader: ForwardReader, tf: tarfile.TarFile, what: str) -> None:
    """tarfile ends an archive quietly at the first header it cannot read (past the first one), so
    a corrupt or cut header would hide the rest of the layer. Only end-of-archive zeros, or no
    more data at all, end a layer."""
    block = reader.last
    if 0 < len(block) < tarfile.BLOCKSIZE:
        raise ScanError(f"{what}: truncated tar (a header at byte {tf.offset} is cut short)")
    if block.strip(b"\0"):
        raise ScanError(f"{what}: corrupt tar header at byte {tf.offset}; the rest of the layer cannot be read")


WINDOWS_ROOTS = {"Files", "Hives", "UtilityVM"}


def _refuse_windows(result: LayerResult, what: str) -> None:
    """A Windows container layer keeps its filesystem under Files/ and its registry under Hives/."""
    roots = {e[0].split("/", 2)[1] for e in result.entries if e[0] != "/"}
    if roots and roots <= WINDOWS_ROOTS and roots & {"Files", "Hives"}:
        raise ScanError(f"Windows images are not supported: {what} holds a Windows filesystem (Files/, Hives/)")
