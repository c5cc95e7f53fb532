"""Berkeley DB hash files (rpm's 'Packages' up to rpm 4.16: CentOS 7, EulerOS, Kylin, RHEL 7/8).

Layout (libdb dbinc/db_page.h): page 0 is the hash metadata page (magic 0x061561, page size, last
page number); hash pages (type 13, or 2 in old unsorted files) hold an index of 16-bit offsets to
key/data items, in pairs. An rpm header is a data item stored off-page (H_OFFPAGE: first page number
and total length) as a chain of overflow pages (type 7), or, when small, on the page (H_KEYDATA).
Every page is visited once in file order; chains are bounded by the page count, so a corrupt file
cannot loop.
"""
from __future__ import annotations

import struct

HASH_MAGIC = 0x061561
HASH_META, HASH_UNSORTED, HASH, OVERFLOW = 8, 2, 13, 7
H_KEYDATA, H_OFFPAGE = 1, 3
PAGE_HEADER = 26
MIN_HEADER = 8 + 16
PAGE_SIZES = {512, 1024, 2048, 4096, 8192, 16384, 32768, 65536}


class BDBError(ValueError):
    pass


def is_bdb(data: bytes) -> bool:
    return len(data) >= 16 and data[12:16] in (struct.pack("<I", HASH_MAGIC), struct.pack(">I", HASH_MAGIC))


def read(data: bytes) -> tuple[list[bytes], list[str]]:
    """(header blobs, problems). A broken item is a problem; the other items are still read."""
    if len(data) < 512:
        raise BDBError(f"too short for a Berkeley DB file ({len(data)} bytes)")
    if data[12:16] == struct.pack("<I", HASH_MAGIC):
        order = "<"
    elif data[12:16] == struct.pack(">I", HASH_MAGIC):
        order = ">"
    else:
        raise BDBError("not a Berkeley DB hash file (bad magic)")
    page_size, = struct.unpack_from(order + "I", data, 20)
    encrypted, meta_type = data[24], data[25]
    last_page, = struct.unpack_from(order + "I", data, 32)
    if page_size not in PAGE_SIZES:
        raise BDBError(f"unexpected page size {page_size}")
    if encrypted:
        raise BDBError("encrypted Berkeley DB file")
    if meta_type != HASH_META:
        raise BDBError(f"page 0 is not a hash metadata page (type {meta_type})")
    pages = min(last_page + 1, len(data) // page_size)
    problems: list[str] = []
    if last_page + 1 > pages:
        problems.append(f"file is cut short: {pages} of {last_page + 1} pages present")
    header = struct.Struct(order + "8xIIIHHBB")  # pgno, prev, next, entries, hf_offset, level, type
    blobs: list[bytes] = []
    for pgno in range(1, pages):
        base = pgno * page_size
        ptype = data[base + 25]
        if ptype not in (HASH, HASH_UNSORTED):
            continue
        _, _, _, entries, _, _, _ = header.unpack_from(data, base)
        if entries % 2 or PAGE_HEADER + 2 * entries > page_size:
            problems.append(f"page {pgno}: bad item count {entries}")
            continue
        offsets = struct.unpack_from(f"{order}{entries}H", data, base + PAGE_HEADER)
        for i in range(1, entries, 2):  # items come as key, data pairs: only the data matter
            off = offsets[i]
            if not PAGE_HEADER <= off < page_size:
                problems.append(f"page {pgno}: item offset {off} outside the page")
                continue
            kind = data[base + off]
            if kind == H_OFFPAGE:
                try:
                    blobs.append(_overflow(data, order, header, base + off, page_size, pages))
                except BDBError as exc:
                    problems.append(f"page {pgno}: {exc}")
            elif kind == H_KEYDATA:
                # on-page items grow down from the page end: an item ends where the previous one starts
                end = offsets[i - 1] if offsets[i - 1] > off else page_size
                if end - off - 1 >= MIN_HEADER:  # record 0 holds rpm's 4-byte instance counter, not a header
                    blobs.append(data[base + off + 1:base + end])
    return blobs, problems


def _overflow(data: bytes, order: str, header: struct.Struct, at: int, page_size: int, pages: int) -> bytes:
    if (at % page_size) + 12 > page_size:
        raise BDBError("off-page item cut by the page end")
    first, total = struct.unpack_from(order + "II", data, at + 4)
    parts: list[bytes] = []
    got = 0
    pgno = first
    seen = 0
    while pgno:
        if pgno >= pages:
            raise BDBError(f"overflow chain points past the file (page {pgno})")
        seen += 1
        if seen > pages:
            raise BDBError("overflow chain loops")
        base = pgno * page_size
        _, _, nxt, _, used, _, ptype = header.unpack_from(data, base)
        if ptype != OVERFLOW:
            raise BDBError(f"overflow chain reaches a page of type {ptype}")
        room = page_size - PAGE_HEADER
        n = min(used, room) if nxt == 0 else room
        parts.append(data[base + PAGE_HEADER:base + PAGE_HEADER + n])
        got += n
        pgno = nxt
    blob = b"".join(parts)
    if total and got != total:
        # hf_offset on the last page is the byte count; the item's total length is authoritative
        blob = blob[:total]
    return blob
