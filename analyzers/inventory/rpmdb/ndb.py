"""rpm's own 'ndb' format (Packages.db: SUSE since 15 SP3, openSUSE), from rpm lib/backend/ndb/rpmpkg.c.

A 32-byte header (magic 'RpmP', version 0, generation, number of 4 KiB slot pages) begins the slot
area, whose 16-byte slots ('Slot', package index, block offset, block count) point at blobs: a
16-byte blob header ('BlbS', package index, Adler-32, length) and the rpm header itself, all
little-endian, offsets in 16-byte blocks.
"""
from __future__ import annotations

import struct

HEADER_MAGIC, SLOT_MAGIC, BLOB_MAGIC = b"RpmP", b"Slot", b"BlbS"
SLOT_PAGE = 4096
BLOCK = 16


class NDBError(ValueError):
    pass


def is_ndb(data: bytes) -> bool:
    return data[:4] == HEADER_MAGIC


def read(data: bytes) -> tuple[list[bytes], list[str]]:
    if len(data) < 32 or data[:4] != HEADER_MAGIC:
        raise NDBError("not an rpm ndb file (bad magic)")
    version, _, slot_pages = struct.unpack_from("<III", data, 4)
    if version != 0:
        raise NDBError(f"unsupported ndb version {version}")
    if slot_pages == 0 or slot_pages * SLOT_PAGE > len(data):
        raise NDBError(f"slot area of {slot_pages} pages does not fit the file")
    problems: list[str] = []
    blobs: list[bytes] = []
    slots = struct.iter_unpack("<4sIII", memoryview(data)[32:slot_pages * SLOT_PAGE])
    for number, (magic, pkg, offset, count) in enumerate(slots):
        if magic != SLOT_MAGIC:
            problems.append(f"slot {number}: bad magic")
            continue
        if pkg == 0:
            continue  # free slot
        at = offset * BLOCK
        if at + 16 > len(data):
            problems.append(f"package {pkg}: blob offset past the end of the file")
            continue
        bmagic, bpkg, _, length = struct.unpack_from("<4sIII", data, at)
        if bmagic != BLOB_MAGIC or bpkg != pkg:
            problems.append(f"package {pkg}: blob header does not match its slot")
            continue
        if length > count * BLOCK or at + 16 + length > len(data):
            problems.append(f"package {pkg}: blob of {length} bytes runs past its blocks")
            continue
        blobs.append(data[at + 16:at + 16 + length])
    return blobs, problems
