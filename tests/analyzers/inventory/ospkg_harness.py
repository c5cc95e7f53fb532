"""Helpers for the OS inventory tests: run real analyzers over layers built in code, and build rpm
databases (header blobs, Berkeley DB hash, ndb, SQLite) byte by byte, as rpm and libdb lay them out."""
from __future__ import annotations

import sqlite3
import struct
import zlib

from inventory_harness import Inspected, inspect  # noqa: F401  (the tests import them from here)

# --- rpm headers ---------------------------------------------------------------------------------
STRING, INT32, BIN, STRING_ARRAY, I18NSTRING = 6, 4, 7, 8, 9


def rpm_header(name: str, version: str, release: str, arch: str = "x86_64", epoch: int | None = None,
               sourcerpm: str | None = None, license: str = "MIT", vendor: str = "Test", files=(),
               summary: str = "a package", padding: int = 0) -> bytes:
    """An installed-package header blob (il, dl, index, data) with the tags rpm -qa needs."""
    tags: list[tuple[int, int, object]] = [
        (1000, STRING, name), (1001, STRING, version), (1002, STRING, release), (1004, I18NSTRING, [summary]),
        (1011, STRING, vendor), (1014, STRING, license), (1022, STRING, arch), (1009, INT32, [1234]),
        (261, BIN, bytes(range(16))),
    ]
    if epoch is not None:
        tags.append((1003, INT32, [epoch]))
    if sourcerpm is None:
        sourcerpm = f"{name}-{version}-{release}.src.rpm"
    if sourcerpm:
        tags.append((1044, STRING, sourcerpm))
    if files:
        dirs: list[str] = []
        idx, base = [], []
        for path in files:
            d, _, b = path.rpartition("/")
            d += "/"
            if d not in dirs:
                dirs.append(d)
            idx.append(dirs.index(d))
            base.append(b)
        tags += [(1116, INT32, idx), (1117, STRING_ARRAY, base), (1118, STRING_ARRAY, dirs)]
    if padding:
        tags.append((1005, BIN, b"\xa5" * padding))  # BUILDTIME slot abused as filler: makes big headers
    index, data = [], bytearray()
    for tag, kind, value in sorted(tags):
        if kind == INT32:
            while len(data) % 4:
                data.append(0)
            offset, count = len(data), len(value)
            data += struct.pack(f">{count}I", *value)
        elif kind == STRING:
            offset, count = len(data), 1
            data += value.encode() + b"\0"
        elif kind in (STRING_ARRAY, I18NSTRING):
            offset, count = len(data), len(value)
            data += b"".join(v.encode() + b"\0" for v in value)
        else:
            offset, count = len(data), len(value)
            data += value
        index.append(struct.pack(">IIII", tag, kind, offset, count))
    return struct.pack(">II", len(index), len(data)) + b"".join(index) + bytes(data)


# --- Berkeley DB hash (libdb db_page.h) ----------------------------------------------------------
def bdb_file(blobs: list[bytes], page_size: int = 4096, big_endian: bool = False, per_page: int = 40,
             inline_below: int = 0) -> bytes:
    """A hash-access Packages file: metadata page, hash pages of (key, H_OFFPAGE) pairs, overflow chains.

    Blobs shorter than `inline_below` are stored on the hash page as H_KEYDATA items instead."""
    o = ">" if big_endian else "<"
    n_hash = max(1, -(-len(blobs) // per_page))
    room = page_size - 26
    pages: dict[int, bytes] = {}
    next_free = 1 + n_hash
    items_per_page: list[list[tuple[bytes, bytes]]] = [[] for _ in range(n_hash)]
    for number, blob in enumerate(blobs):
        key = b"\x01" + struct.pack(o + "I", number + 1)
        if len(blob) < inline_below:
            value = b"\x01" + blob
        else:
            first = next_free
            chunks = [blob[i:i + room] for i in range(0, len(blob), room)]
            for j, chunk in enumerate(chunks):
                pgno = first + j
                nxt = pgno + 1 if j + 1 < len(chunks) else 0
                head = bytes(8) + struct.pack(o + "IIIHHBB", pgno, pgno - 1 if j else 0, nxt, 1, len(chunk), 0, 7)
                pages[pgno] = (head + chunk).ljust(page_size, b"\0")
            next_free += len(chunks)
            value = b"\x03" + bytes(3) + struct.pack(o + "II", first, len(blob))
        items_per_page[number // per_page].append((key, value))
    for h, items in enumerate(items_per_page):
        pgno = 1 + h
        body = bytearray(page_size)
        offsets, top = [], page_size
        for key, value in items:
            for item in (key, value):
                top -= len(item)
                body[top:top + len(item)] = item
                offsets.append(top)
        head = bytes(8) + struct.pack(o + "IIIHHBB", pgno, 0, 0, len(offsets), top, 0, 13)
        body[:26] = head
        body[26:26 + 2 * len(offsets)] = struct.pack(f"{o}{len(offsets)}H", *offsets)
        assert 26 + 2 * len(offsets) <= top, "too many items for one page"
        pages[pgno] = bytes(body)
    last = next_free - 1
    meta = bytes(8) + struct.pack(o + "III", 0, 0x061561, 9) + struct.pack(o + "I", page_size)
    meta += bytes([0, 8, 0, 0]) + struct.pack(o + "IIIII", 0, last, 0, len(blobs), len(blobs))
    pages[0] = meta.ljust(page_size, b"\0")
    return b"".join(pages[i] for i in range(last + 1))


# --- rpm ndb (lib/backend/ndb/rpmpkg.c) ----------------------------------------------------------
def ndb_file(blobs: list[bytes]) -> bytes:
    slot_pages = -(-(len(blobs) + 2) // 256)  # the header takes the first two slots
    slots = bytearray(b"RpmP" + struct.pack("<III", 0, 1, slot_pages) + bytes(16))
    area = bytearray()
    block = slot_pages * 4096 // 16  # blobs start after the slot pages
    for number, blob in enumerate(blobs):
        pkg = number + 1
        record = b"BlbS" + struct.pack("<III", pkg, zlib.adler32(blob), len(blob)) + blob
        record += bytes(-len(record) % 16) + bytes(16)  # rpm's blob tail
        slots += b"Slot" + struct.pack("<III", pkg, block + len(area) // 16, len(record) // 16)
        area += record
    while len(slots) < slot_pages * 4096:
        slots += b"Slot" + bytes(12)
    return bytes(slots) + bytes(area)


# --- rpm SQLite backend ----------------------------------------------------------------------------
def sqlite_file(blobs: list[bytes], wal_header: bool = True) -> bytes:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    conn.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs])
    conn.commit()
    data = bytearray(conn.serialize())
    conn.close()
    if wal_header:
        data[18] = data[19] = 2  # what rpm's WAL-mode databases carry
    return bytes(data)
