"""The rpm header blob as rpmdb stores it (rpm's headerImport / doc/manual/format.md):

    int32 il (index entries), int32 dl (data bytes), il x {int32 tag, type, offset, count}, dl bytes

all big-endian. Region tags (61-63) and the dribble entries rpm appends after installation need no
special treatment for reading: every entry points into the same data store. Only the tags the
inventory needs are decoded; a header cut short or pointing outside itself raises HeaderError.
"""
from __future__ import annotations

import struct

NAME, VERSION, RELEASE, EPOCH, SUMMARY = 1000, 1001, 1002, 1003, 1004
INSTALLTIME, SIZE, VENDOR, LICENSE, ARCH = 1008, 1009, 1011, 1014, 1022
OLDFILENAMES, SOURCERPM = 1027, 1044
DIRINDEXES, BASENAMES, DIRNAMES = 1116, 1117, 1118
SIGMD5, LONGSIZE, MODULARITYLABEL = 261, 5009, 5096

SCALARS = {NAME, VERSION, RELEASE, EPOCH, SUMMARY, INSTALLTIME, SIZE, VENDOR, LICENSE, ARCH, SOURCERPM, SIGMD5,
           LONGSIZE, MODULARITYLABEL}
FILE_TAGS = {OLDFILENAMES, DIRINDEXES, BASENAMES, DIRNAMES}

CHAR, INT8, INT16, INT32, INT64, STRING, BIN, STRING_ARRAY, I18NSTRING = 1, 2, 3, 4, 5, 6, 7, 8, 9
_INT = {INT8: ("B", 1), CHAR: ("B", 1), INT16: ("H", 2), INT32: ("I", 4), INT64: ("Q", 8)}
MAX_INDEX = 0xFFFF  # rpm's own limits (hdrchk)
MAX_DATA = 256 << 20


class HeaderError(ValueError):
    pass


def parse(blob: bytes, files: bool = True) -> dict[int, object]:
    """{tag: value} for the wanted tags: str, int, bytes, or a list for array types."""
    if len(blob) < 8:
        raise HeaderError(f"truncated header ({len(blob)} bytes)")
    il, dl = struct.unpack_from(">II", blob)
    if not 0 < il <= MAX_INDEX or dl > MAX_DATA:
        raise HeaderError(f"implausible header sizes (il={il}, dl={dl})")
    start = 8 + 16 * il
    end = start + dl
    if len(blob) < end:
        raise HeaderError(f"truncated header ({len(blob)} of {end} bytes)")
    wanted = SCALARS | FILE_TAGS if files else SCALARS
    out: dict[int, object] = {}
    for i in range(il):
        tag, kind, offset, count = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        if tag not in wanted or tag in out:
            continue
        if offset >= dl or count == 0 or count > dl:
            raise HeaderError(f"tag {tag}: entry points outside the header (offset {offset}, count {count})")
        pos = start + offset
        if kind == STRING:
            nul = blob.find(b"\0", pos, end)
            if nul < 0:
                raise HeaderError(f"tag {tag}: unterminated string")
            out[tag] = _text(blob[pos:nul])
        elif kind in (STRING_ARRAY, I18NSTRING):
            parts = blob[pos:end].split(b"\0", count)
            if len(parts) <= count:
                raise HeaderError(f"tag {tag}: {count} strings announced, fewer present")
            values = [_text(p) for p in parts[:count]]
            out[tag] = values[0] if kind == I18NSTRING or tag in SCALARS else values
        elif kind in _INT:
            code, size = _INT[kind]
            if pos + size * count > end:
                raise HeaderError(f"tag {tag}: array runs past the header")
            values = list(struct.unpack_from(f">{count}{code}", blob, pos))
            out[tag] = values[0] if tag in SCALARS else values
        elif kind == BIN:
            if pos + count > end:
                raise HeaderError(f"tag {tag}: binary runs past the header")
            out[tag] = blob[pos:pos + count]
    return out


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # old headers predate rpm's UTF-8 rule


def file_paths(tags: dict[int, object]) -> list[str]:
    """The package's file list: dirnames[dirindexes[i]] + basenames[i], or the pre-4.x OLDFILENAMES."""
    base, dirs, idx = tags.get(BASENAMES), tags.get(DIRNAMES), tags.get(DIRINDEXES)
    if isinstance(base, list) and isinstance(dirs, list) and isinstance(idx, list) and len(idx) == len(base):
        n = len(dirs)
        return [dirs[d] + b for d, b in zip(idx, base) if d < n]
    old = tags.get(OLDFILENAMES)
    return list(old) if isinstance(old, list) else []


def package(tags: dict[int, object]) -> dict | None:
    """The inventory's view of one header; None for a header without a name (not a package)."""
    name = tags.get(NAME)
    if not isinstance(name, str) or not name:
        return None
    epoch = tags.get(EPOCH)
    size = tags.get(LONGSIZE, tags.get(SIZE))
    sigmd5 = tags.get(SIGMD5)
    p = {
        "name": name, "epoch": epoch if isinstance(epoch, int) else None,
        "version": _s(tags.get(VERSION)), "release": _s(tags.get(RELEASE)), "arch": _s(tags.get(ARCH)),
        "sourcerpm": _s(tags.get(SOURCERPM)), "license": _s(tags.get(LICENSE)), "vendor": _s(tags.get(VENDOR)),
        "summary": _s(tags.get(SUMMARY)), "size": size if isinstance(size, int) else None,
        "modularitylabel": _s(tags.get(MODULARITYLABEL)),
        "sigmd5": sigmd5.hex() if isinstance(sigmd5, bytes) else "",
    }
    return p


def _s(value) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    # rpm writes the literal '(none)' where a field does not apply (gpg-pubkey's SOURCERPM)
    return value if isinstance(value, str) and value != "(none)" else ""
