"""Walks one layer tar, once, as a stream: records every entry, hands needed files to analyzers.

Nothing is written to disk. Entry names are normalized to absolute paths inside the image; names
that climb out ('../x') or are absurdly long are recorded as warnings and skipped. Whiteouts and
opaque-directory markers are recorded as entries of their own type; `squash.py` resolves them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import os
import posixpath
import tarfile
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

from .archives import feed
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
    # the usual name ('usr/bin/env', './usr/bin/env') has no empty, '.' or '..' part and no
    # backslash: it is its own normal form
    plain = name[2:] if name.startswith("./") else name
    if plain and plain[0] not in "/." and plain[-1] != "/" and "//" not in plain and "/." not in plain \
            and "\\" not in plain:
        return "/" + plain
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

    It reads `raw` in chunks of `CHUNK` bytes and keeps the current one: a header is a slice of it,
    and content nobody needs is passed over without being copied anywhere.
    """

    CHUNK = 1 << 20

    def __init__(self, raw):
        self.raw = raw
        self.pos = 0
        self.mode = "rb"
        self.header_budget: int | None = None  # bytes an extended tar header may still read
        self.last = b""  # the last read: when tarfile stops, the header block it stopped at
        self._buf = b""  # the current chunk of raw
        self._off = 0  # the position in it
        self._skip = getattr(raw, "skip_to", None)  # a stream read by position moves forward without reading

    def _more(self) -> bool:
        self._buf, self._off = self.raw.read(self.CHUNK), 0
        return bool(self._buf)

    def read(self, n: int = -1) -> bytes:
        if self.header_budget is not None:
            if n is None or n < 0 or n > self.header_budget:
                raise TarHeaderTooLarge()
            self.header_budget -= n
        end = self._off + n if n is not None and n >= 0 else -1
        if 0 <= end <= len(self._buf):
            data = self._buf[self._off:end]
            self._off = end
        else:
            parts = [self._buf[self._off:]]
            need = n - len(parts[0]) if end >= 0 else -1
            while need and self._more():
                take = self._buf if need < 0 or need >= len(self._buf) else self._buf[:need]
                self._off = len(take)
                parts.append(take)
                need = need - len(take) if need > 0 else need
            data = b"".join(parts)
        self.pos += len(data)
        self.last = data
        return data

    def unread(self, data: bytes) -> None:
        """Pushes back `data`, the last bytes read: the next read returns them again."""
        if self._off >= len(data):  # read from the current chunk: step back in it
            self._off -= len(data)
        else:
            self._buf, self._off = data + self._buf[self._off:], 0
        self.pos -= len(data)

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.pos
        elif whence != 0:
            raise OSError("cannot seek from the end of a stream")
        if pos < self.pos:
            raise OSError("cannot seek backwards in a stream")
        if self._skip is not None and pos > self.pos + len(self._buf) - self._off:
            # past the current chunk, on a stream read by position: the bytes between are never read
            self._skip(pos)
            self._buf, self._off, self.pos = b"", 0, pos
            return pos
        while self.pos < pos:
            left = len(self._buf) - self._off
            if not left and not self._more():
                raise EOFError("unexpected end of data")
            step = min(len(self._buf) - self._off, pos - self.pos)
            self._off += step
            self.pos += step
        return self.pos


class TarHeaderTooLarge(Exception):
    """An entry's extended headers (PAX, GNU long name, sparse map) read past their cap."""


_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.GNUTYPE_SPARSE, tarfile.XHDTYPE,
             tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


# entry types whose header is the whole story (no extended data, no sparse map)
_PLAIN_TYPES = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE,
                          tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE))
_DATA_TYPES = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE))


def _octal(field: bytes) -> int:
    """An octal number field as tarfile reads it; ValueError for anything else (base-256 numbers, garbage)."""
    if field[:1] in (b"\x80", b"\xff"):
        raise ValueError("base-256 number")
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


_CACHE_MAX = 4096  # distinct owner fields remembered per archive


def _text(field: bytes, encoding: str, errors: str) -> str:
    if not field[0]:
        return ""
    return field.split(b"\0", 1)[0].decode(encoding, errors)


_INFO_FIELDS = ("path", "type", "size", "mode", "uid", "gid", "linkname", "mtime")
if tuple(f.name for f in dataclasses.fields(FileInfo)) == _INFO_FIELDS and hasattr(FileInfo, "__slots__"):
    _NEW_INFO = FileInfo.__new__
    (_SET_PATH, _SET_TYPE, _SET_SIZE, _SET_MODE, _SET_UID, _SET_GID, _SET_LINK,
     _SET_MTIME) = (FileInfo.__dict__[f].__set__ for f in _INFO_FIELDS)

    def _file_info(path: str, kind: str, size: int, mode: int, uid: int, gid: int, link: str, mtime: int) -> FileInfo:
        """FileInfo(...) through its slots: the frozen dataclass's __init__ (object.__setattr__ per
        field) was a tenth of the walk of a layer of small files."""
        info = _NEW_INFO(FileInfo)
        _SET_PATH(info, path)
        _SET_TYPE(info, kind)
        _SET_SIZE(info, size)
        _SET_MODE(info, mode)
        _SET_UID(info, uid)
        _SET_GID(info, gid)
        _SET_LINK(info, link)
        _SET_MTIME(info, mtime)
        return info
else:  # FileInfo changed shape: its own constructor
    def _file_info(path: str, kind: str, size: int, mode: int, uid: int, gid: int, link: str, mtime: int) -> FileInfo:
        return FileInfo(path, kind, size, mode, uid, gid, link, mtime)


def _data_blocks(kind: bytes, size: int) -> int:
    """Bytes of content after a plain header: whole blocks for a file (as TarInfo._block), none for others."""
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE if kind in _DATA_TYPES else 0


def _plain_header(buf: bytes, encoding: str, errors: str, owners: dict | None = None) -> tuple | None:
    """A plain header (a file, directory, link or device; no extended header) read as tarfile's frombuf
    and _proc_builtin read it: (name, type, size, mode, uid, gid, mtime, linkname, chksum,
    (uname, gname, devmajor, devminor)). None for anything else, which tarfile's own parser then
    reads: extended headers, sparse files, base-256 numbers, a bad or signed checksum, the
    end-of-archive block.

    The checksum is summed in C by zlib.adler32, and the fields that repeat from entry to entry (mode,
    owner, user and group names, device numbers) are read once per distinct value (`owners`: a cache
    for one archive): tarfile's parser costs about 15 µs a header in Python, most of a scan of an
    image of many small files. The numbers are read inline (digits, then NULs or spaces; when int()
    takes what is left, it holds no NUL, so it is what tarfile reads up to the first NUL; anything
    else is read by `_octal`): a function call per field was a tenth of the walk of many small files."""
    if len(buf) != tarfile.BLOCKSIZE:
        return None
    kind = buf[156:157]
    if kind not in _PLAIN_TYPES:
        return None
    try:
        chksum = buf[148:156]
        try:
            stored = int(chksum.rstrip(b"\0 "), 8)
        except ValueError:
            stored = _octal(chksum)
        # the unsigned byte sum with the checksum field read as spaces; each half of the block
        # sums to at most 256 * 255 < 65521, so adler32's low half (started at 0) is that sum exactly,
        # and so is the checksum field's
        total = (zlib.adler32(buf[:256], 0) & 0xFFFF) + (zlib.adler32(buf[256:], 0) & 0xFFFF)
        if stored != total - (zlib.adler32(chksum, 0) & 0xFFFF) + 256:
            return None
        key = buf[100:124] + buf[265:345]  # mode, uid, gid; uname, gname, devmajor, devminor
        owner = owners.get(key) if owners is not None else None
        if owner is None:
            owner = (_octal(buf[100:108]), _octal(buf[108:116]), _octal(buf[116:124]),
                     (_text(buf[265:297], encoding, errors), _text(buf[297:329], encoding, errors),
                      _octal(buf[329:337]), _octal(buf[337:345])))
            if owners is not None and len(owners) < _CACHE_MAX:
                owners[key] = owner
        end = buf.find(b"\0", 0, 100)
        path = buf[:end if end >= 0 else 100].decode(encoding, errors)
        field = buf[124:136]
        try:
            size = int(field.rstrip(b"\0 "), 8)
        except ValueError:
            size = _octal(field)
        field = buf[136:148]
        try:
            mtime = int(field.rstrip(b"\0 "), 8)
        except ValueError:
            mtime = _octal(field)
        link = _text(buf[157:257], encoding, errors) if buf[157] else ""
        prefix_text = _text(buf[345:500], encoding, errors) if buf[345] else ""
    except ValueError:  # also UnicodeDecodeError under a strict encoding: tarfile's parser says it its way
        return None
    if kind == tarfile.AREGTYPE and path.endswith("/"):
        kind = tarfile.DIRTYPE
    if kind == tarfile.DIRTYPE:
        path = path.rstrip("/")
    if prefix_text:
        path = prefix_text + "/" + path
        if kind == tarfile.DIRTYPE:
            path = path.rstrip("/")
    return path, kind, size, owner[0], owner[1], owner[2], mtime, link, stored, owner[3]


class CappedTarInfo(tarfile.TarInfo):
    """tarfile reads an extended header whole, at the size its header claims: a PAX header that
    says 1 GiB is 1 GiB of memory, from a few MB of gzip. Every extended header of one entry
    (including chained GNU long names and sparse extension blocks) shares one read budget.

    A plain header is read by `_plain_header`; anything else by tarfile's parser, which then also
    raises its own errors."""

    max_header = 1 << 20

    @classmethod
    def fromtarfile(cls, tarfile_):
        fileobj = tarfile_.fileobj
        buf = fileobj.read(tarfile.BLOCKSIZE)
        obj = cls._fast(buf, tarfile_) if not tarfile_.pax_headers else None
        if obj is None:
            obj = cls.frombuf(buf, tarfile_.encoding, tarfile_.errors)
            obj.offset = fileobj.tell() - tarfile.BLOCKSIZE
            return obj._proc_member(tarfile_)
        return obj

    @classmethod
    def _fast(cls, buf: bytes, tarfile_) -> "CappedTarInfo | None":
        """The TarInfo that tarfile's frombuf + _proc_builtin would make of a plain header, or None."""
        plain = _plain_header(buf, tarfile_.encoding, tarfile_.errors)
        if plain is None:
            return None
        obj = cls.__new__(cls)
        (obj.name, obj.type, obj.size, obj.mode, obj.uid, obj.gid, obj.mtime, obj.linkname, obj.chksum,
         (obj.uname, obj.gname, obj.devmajor, obj.devminor)) = plain
        obj.sparse, obj.pax_headers = None, {}
        offset = tarfile_.fileobj.tell()
        obj.offset, obj.offset_data = offset - tarfile.BLOCKSIZE, offset
        tarfile_.offset = offset + _data_blocks(obj.type, obj.size)
        return obj

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


class Skim:
    """What `_skim` needs to index entries that need nothing but their entry tuple (see `_walk`).

    `prefixes` and `exact`: a regular file is passed over by the analyzers when its path starts with one
    of `prefixes`, is not in `exact` and holds no newline (`quick_skip`); None: every regular file goes to
    the general path (where the analyzers are asked). Directories and symbolic links need no analyzer."""

    __slots__ = ("entries", "sizes", "max_entries", "prefixes", "exact", "owners", "sums", "mtimes", "blocks")

    def __init__(self, entries: list, sizes: dict, max_entries: int, quick: tuple | None):
        self.entries, self.sizes, self.max_entries = entries, sizes, max_entries
        self.prefixes, self.exact = quick if quick is not None else (None, frozenset())
        self.owners: dict[bytes, tuple] = {}  # (mode, uid, gid, (mode, uid, gid, "")): the last an entry's tail
        self.sums: dict[bytes, int] = {}  # checksum field -> the sum of the header's bytes it stands for
        self.mtimes: set[bytes] = set()  # mtime fields read once
        # (first, end, files): each stretch of `entries` one call indexed, and how many of them are regular
        # files (all under `prefixes`: passed over by every analyzer of the walk)
        self.blocks: list[tuple[int, int, int]] = []


_REG_CODES = frozenset(b"07\0")  # REGTYPE, CONTTYPE, AREGTYPE (as int codes of the type byte)
_DIR_CODE, _SYM_CODE = tarfile.DIRTYPE[0], tarfile.SYMTYPE[0]


def _skim(reader: ForwardReader, tf: tarfile.TarFile, skim: Skim) -> None:
    """Indexes consecutive entries of the reader's current chunk, from `tf.offset`, that need nothing but
    their entry tuple: plain headers (as `_plain_header` reads them) of regular files no analyzer wants,
    directories and symbolic links, with a plain ASCII name in its normal form. It stops, leaving
    `tf.offset` at that header, at the first entry that needs more (an extended header, a name to clean
    or warn about, a whiteout, a file an analyzer may want, a hard link, a header past the chunk) or
    that is not a valid plain header: the general path (`_entries` and `_walk`) reads it as before.

    One function call per chunk, not per entry: in a layer of small files nobody reads (a scan that
    looks only for secrets passes over /usr), the per-entry calls, tuples and checks were most of the scan."""
    if tf.pax_headers:
        return
    buf = reader._buf
    offset = tf.offset  # type: ignore[attr-defined]
    at = reader._off + offset - reader.pos
    limit = len(buf) - tarfile.BLOCKSIZE
    if at > limit:
        return
    entries, sizes, owners, sums, mtimes = skim.entries, skim.sizes, skim.owners, skim.sums, skim.mtimes
    append = entries.append
    if skim.max_entries - len(entries) <= (limit - at) // 512 + 1:
        return  # near the entry cap: the general path counts each entry against it
    start_at, first, others = at, len(entries), 0
    prefixes, exact = skim.prefixes, skim.exact
    encoding, errors = tf.encoding, tf.errors
    adler32 = zlib.adler32
    reg_codes, dir_code, sym_code = _REG_CODES, _DIR_CODE, _SYM_CODE
    while at <= limit:
        code = buf[at + 156]
        is_reg = code in reg_codes
        if not (is_reg or code == dir_code or code == sym_code) or buf[at + 345]:  # a ustar prefix: general path
            break
        h = buf[at:at + 512]
        chk = h[148:156]
        # the checksum field read once per distinct value: (what the header's bytes must sum to, with the
        # field's own bytes in), the mtime field checked once per distinct value (it is not needed here)
        expected = sums.get(chk)
        mtime = h[136:148]
        try:
            if expected is None:
                expected = int(chk.rstrip(b"\0 "), 8) + (adler32(chk, 0) & 0xFFFF) - 256
                if len(sums) < 65536:
                    sums[chk] = expected
            size = int(h[124:136].rstrip(b"\0 "), 8)
            if mtime not in mtimes:
                int(mtime.rstrip(b"\0 "), 8)
                if len(mtimes) < _CACHE_MAX:
                    mtimes.add(mtime)
        except ValueError:
            break
        # an ASCII header's bytes sum to less than 65521 (512 * 127): adler32's low half is that sum itself,
        # in one call; any other header (and its name) is for the general path
        if not h.isascii() or expected != adler32(h, 0) & 0xFFFF:
            break
        end = h.find(b"\0", 0, 100)
        name = (h[:end] if end >= 0 else h[:100]).decode()
        if code == dir_code:
            name = name.rstrip("/")
        elif name[-1:] == "/":  # an AREGTYPE directory: the general path
            break
        if name[:2] == "./":
            name = name[2:]
        # the normal form `normalize` passes as it is; anything else (and whiteouts) goes the general way
        if not name or name[0] in "/." or name[-1] == "/" or "//" in name or "/." in name or "\\" in name \
                or ".wh." in name:
            break
        path = "/" + name
        key = h[100:124] + h[265:345]
        owner = owners.get(key)
        if owner is None:
            try:
                owner = (_octal(h[100:108]) & 0o7777, _octal(h[108:116]), _octal(h[116:124]))
                for f in (h[265:297], h[297:329]):
                    _text(f, encoding, errors)
                _octal(h[329:337]), _octal(h[337:345])
            except ValueError:
                break
            owner = owner + (owner + ("",),)
            if len(owners) < _CACHE_MAX:
                owners[key] = owner
        if is_reg:
            if prefixes is None or not path.startswith(prefixes) or path in exact or "\n" in path:
                break
            sizes[path] = size
            append((path, REG, size) + owner[3])
            step = 512 + -(-size // 512) * 512
        elif code == dir_code:
            append((path, DIR, 0) + owner[3])
            others += 1
            step = 512
        else:
            link = h[157:257]
            end = link.find(b"\0")
            link = link[:end] if end >= 0 else link
            if not link.isascii():
                break
            append((path, SYMLINK, 0, owner[0], owner[1], owner[2], link.decode(encoding, errors)))
            others += 1
            step = 512
        at += step
    tf.offset = offset + at - start_at  # type: ignore[attr-defined]
    if len(entries) > first:
        skim.blocks.append((first, len(entries), len(entries) - first - others))


def _entries(tf: tarfile.TarFile, reader: ForwardReader, skim: Skim | None = None):
    """Every entry of a layer tar as (fields, member), without tarfile's per-entry costs.

    `fields` are those of `_plain_header`. A plain header is read here and `member` is None: its
    content follows at the reader's position, to be read before the next entry is asked for. Any
    other header is pushed back and read by tarfile (`member` is its TarInfo; tarfile.extractfile
    reads its content), so extended headers, their caps and tarfile's errors are as they were.

    A header that lies in the reader's current chunk (the usual case: small files, content passed
    over) is sliced from that chunk in place, without a call to the reader: the content between two
    headers is passed over by moving the reader's position. With `skim`, the entries that need nothing
    but their entry tuple are indexed by `_skim` and not yielded."""
    member = tf.next()  # tarfile read the first header when it opened
    if member is None:  # an empty archive (only end-of-archive blocks, or nothing)
        return
    encoding, errors = tf.encoding, tf.errors
    owners: dict[bytes, tuple] = {}
    plain_header, data_types, block_size = _plain_header, _DATA_TYPES, tarfile.BLOCKSIZE
    while True:
        if member is not None:
            yield (member.name, member.type, member.size, member.mode, member.uid, member.gid, member.mtime,
                   member.linkname, member.chksum, (member.uname, member.gname, member.devmajor, member.devminor)), member
            if len(tf.members) > 1024:  # type: ignore[attr-defined]
                tf.members.clear()  # type: ignore[attr-defined]
        if skim is not None:
            _skim(reader, tf, skim)
        offset = tf.offset  # type: ignore[attr-defined]
        if not tf.pax_headers:
            # the fast path: the header block within the current chunk (the reader never is past `offset`)
            buf = reader._buf
            at = reader._off + offset - reader.pos
            if at + block_size <= len(buf):
                plain = plain_header(buf[at:at + block_size], encoding, errors, owners)
                if plain is not None:
                    reader._off, reader.pos = at + block_size, offset + block_size
                    size = plain[2]
                    tf.offset = offset + block_size + (  # type: ignore[attr-defined]
                        -(-size // block_size) * block_size if plain[1] in data_types else 0)
                    member = None
                    yield plain, None
                    continue
        if reader.pos != offset:
            reader.seek(offset)
        buf = reader.read(block_size)
        plain = None if tf.pax_headers else plain_header(buf, encoding, errors, owners)
        if plain is None:
            reader.unread(buf)
            member = tf.next()
            if member is None:
                return
            continue
        member = None
        tf.offset = offset + block_size + _data_blocks(plain[1], plain[2])  # type: ignore[attr-defined]
        yield plain, None


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


_KINDS = {tarfile.REGTYPE: REG, tarfile.AREGTYPE: REG, tarfile.CONTTYPE: REG, tarfile.GNUTYPE_SPARSE: REG,
          tarfile.DIRTYPE: DIR, tarfile.SYMTYPE: SYMLINK, tarfile.LNKTYPE: HARDLINK, tarfile.CHRTYPE: CHAR,
          tarfile.BLKTYPE: BLOCK, tarfile.FIFOTYPE: FIFO}  # as TarInfo.isreg(), isdir(), ... say


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
    packed: bytes | None = None  # `entries` as the writer stores them (cache.pack), when made ahead
    # `records` as the writer stores them (cache.pack) with their number, when packed in a worker (executors.py)
    packed_records: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    # (first, end, files) of each stretch of `entries` the skim indexed: its regular files lie under a
    # prefix every analyzer of `walked_for` passes over (`skipped_prefixes`), and none holds a newline
    skim_blocks: list[tuple[int, int, int]] = field(default_factory=list)
    walked_for: tuple[str, ...] = ()

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("further warnings for this layer were dropped")


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection while a layer's index is built: its entries (tuples of strings
    and numbers) and the squashed tree hold no cycles, and collections triggered by their allocation
    re-walked every object of the process again and again (a tenth of a scan of many small files).

    At the end of the pause what it made is moved to the oldest generation at once (gc.freeze then
    gc.unfreeze, two list splices): the first collection after it no longer walks every object made
    during it (43 ms after a layer of 120,000 files, 60 ms after the squash of that image). Those objects
    are long-lived and freed by their reference counts as before; a full collection (and the one at exit,
    which closes what only a cycle holds) still sees them."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def walk(tar_stream, index: int, analyzers: list, limits: Limits, what: str) -> LayerResult:
    """Reads a layer's uncompressed tar stream once. `analyzers` are instances with required/analyze."""
    with gc_paused():
        return _walk(tar_stream, index, analyzers, limits, what)


def quick_skip(analyzers: list) -> tuple[tuple[str, ...], frozenset[str]] | None:
    """(prefixes, exact paths): a regular file whose path starts with one of the prefixes, is not one of
    the exact paths and holds no newline is wanted by none of `analyzers` (their `skipped_prefixes` and
    `wanted_paths`); None when no such test exists (an analyzer may want any path)."""
    exact: set[str] = set()
    sets = []
    for a in analyzers:  # the walker takes any object with required/analyze: these two are optional
        only = a.wanted_paths() if hasattr(a, "wanted_paths") else None
        if only is not None:
            exact.update(only)
            continue
        prefixes = tuple(a.skipped_prefixes()) if hasattr(a, "skipped_prefixes") else ()
        if not prefixes:
            return None
        sets.append(prefixes)
    if not sets:  # no analyzer, or only analyzers of named paths: every other path is passed over
        return ("",), frozenset(exact)
    # a prefix every analyzer skips: one that starts with a skipped prefix of each of them
    common = tuple(sorted(p for p in {q for s in sets for q in s} if all(p.startswith(s) for s in sets)))
    return (common, frozenset(exact)) if common else None


def _walk(tar_stream, index: int, analyzers: list, limits: Limits, what: str) -> LayerResult:
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
        entries = result.entries
        max_entries = limits.max_entries
        skim = Skim(entries, sizes, max_entries, quick_skip(analyzers))
        for fields, member in _entries(tf, reader, skim):
            if len(entries) >= max_entries:
                raise ScanError(f"{what}: more than {limits.max_entries} entries in one layer")
            name, type_, size, mode, uid, gid, mtime, linkname, _, _ = fields
            if not name.isascii():
                name = _clean(name)
            if len(name) > MAX_NAME:
                result.warn(f"entry name of {len(name)} characters skipped")
                continue
            path = normalize(name)
            if path is None:
                result.warn(f"entry {name[:200]!r} points outside the image; skipped")
                continue
            if name.startswith("/"):
                result.warn(f"entry {name[:200]!r} has an absolute name; read as relative to the image root")
            base = path[path.rfind("/") + 1:]
            if base.startswith(WH_PREFIX):
                parent = posixpath.dirname(path)
                if base == WH_OPAQUE:
                    entries.append((parent, OPAQUE, 0, 0, 0, 0, ""))
                else:
                    entries.append((posixpath.join(parent, base[len(WH_PREFIX):]), WHITEOUT, 0, 0, 0, 0, ""))
                continue
            kind = _KINDS.get(type_)
            if kind is None:
                result.warn(f"{path}: unsupported tar entry type {type_!r}; skipped")
                continue
            link = ""
            if kind == REG:
                sizes[path] = size
            else:
                size = 0
                if kind == SYMLINK:
                    link = _clean(linkname)
                elif kind == HARDLINK:
                    target = normalize(_clean(linkname))
                    if target is None:
                        result.warn(f"{path}: hard link to {linkname[:200]!r} outside the image; skipped")
                        continue
                    link = target
                    if target not in sizes:
                        result.warn(f"{path}: hard link to missing target {target}")
                    size = sizes.get(target, 0)
            mode &= 0o7777
            entries.append((path, kind, size, mode, uid, gid, link))
            if kind not in (REG, HARDLINK) or not analyzers:
                continue
            info = _file_info(path, kind, size, mode, uid, gid, link, int(mtime))
            wanted = [a for a in analyzers if a.required(path, info)]
            if not wanted:
                continue
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
                # a plain entry's content is next in the reader; tarfile's members are read through tarfile
                spool = Spool(reader if member is None else (tf.extractfile(member) or io.BytesIO()), size)
                if spool.written != size:
                    spool.close()
                    raise ScanError(f"{what}: truncated tar (file {path} cut short)")
                data = spool
            else:
                if member is None:
                    data = reader.read(size)
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
                consumers = []
                for a in wanted:
                    t0 = time.perf_counter()
                    try:
                        # an analyzer that looks inside archives gets the file itself here, its members below
                        if getattr(a, "reads_members", False):
                            consumers.append(a)
                            out = a.analyze_outer(lf)
                        else:
                            out = a.analyze(lf)
                        if out:
                            result.records[a.name].extend(out)
                    except ScanError:
                        raise
                    except Exception as exc:  # an analyzer bug must not lose the rest of the scan
                        result.warn(f"{a.name} failed on {path}: {exc.__class__.__name__}: {str(exc)[:200]}")
                    result.seconds[a.name] += time.perf_counter() - t0
                if consumers:
                    # one resolver pass per archive, whatever number of content checks read its members
                    feed(consumers, lf, result.records, result.seconds)
            finally:
                if isinstance(data, Spool):
                    data.close()
        _stopped_cleanly(reader, tf, what)
        result.skim_blocks, result.walked_for = skim.blocks, tuple(a.name for a in analyzers)
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
    roots = set()
    for e in result.entries:
        path = e[0]
        if path == "/":
            continue
        cut = path.find("/", 1)
        root = path[1:cut] if cut > 0 else path[1:]
        if root not in WINDOWS_ROOTS:
            return  # the first entry outside those roots settles it
        roots.add(root)
    if roots and roots & {"Files", "Hives"}:
        raise ScanError(f"Windows images are not supported: {what} holds a Windows filesystem (Files/, Hives/)")
