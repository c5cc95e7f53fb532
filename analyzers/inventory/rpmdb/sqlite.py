"""rpm's SQLite backend (rpmdb.sqlite: RHEL 9, Fedora 33+, Amazon Linux 2023, openEuler, Mariner).

Headers are the 'blob' column of the 'Packages' table. The file is opened in memory from the bytes the
layer walker read (nothing touches the disk), read-only. rpm keeps the database in WAL mode; the
header's write/read format bytes are set to the legacy value so that SQLite reads the main file on its
own, which is what an immutable open would do (a WAL file not checkpointed is not read).
"""
from __future__ import annotations

import sqlite3

MAGIC = b"SQLite format 3\0"


class SQLiteError(ValueError):
    pass


def is_sqlite(data: bytes) -> bool:
    return data[:16] == MAGIC


def read(data: bytes) -> tuple[list[bytes], list[str]]:
    if not is_sqlite(data) or len(data) < 100:
        raise SQLiteError("not an SQLite database")
    image = bytearray(data)
    if image[18] == 2 or image[19] == 2:
        image[18] = image[19] = 1
    conn = sqlite3.connect(":memory:")
    try:
        try:
            conn.deserialize(bytes(image))
            conn.execute("PRAGMA query_only = ON")
            rows = conn.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
        except sqlite3.DatabaseError as exc:
            raise SQLiteError(f"unreadable rpm SQLite database ({exc})") from None
    finally:
        conn.close()
    blobs, problems = [], []
    for hnum, blob in rows:
        if isinstance(blob, bytes):
            blobs.append(blob)
        else:
            problems.append(f"package {hnum}: blob is not binary")
    return blobs, problems
