"""Weak-password verdicts remembered across layers, images, scans and processes of one machine.

The same account hash turns up in many images (a base image's users, a Dockerfile that sets a
password with `chpasswd -e`, one build pushed under fifty tags with different layers): the per-layer
cache only covers a layer already stored, so the verdict on the hash itself is kept too, keyed by
HMAC-SHA256(key, digest of the account's candidate list, hash). Neither the hash nor any password is
stored; the key is a random file in the user's data directory, so the cache alone does not let
anyone test whether a hash they hold was found weak.

Why a file of its own rather than the scan database: analysis runs in worker processes (`--jobs`,
Dask) that never open the database, and the evaluation stage that does is after the guessing.
A small SQLite file in the user's cache directory is shared by every process of the machine; a
Dask worker on another machine keeps its own. It is a cache: deleting it costs time, nothing else,
and when it cannot be opened the scan goes on with this process's memory alone (and says so).

A verdict is `weak`, `not_found` (every candidate checked), `unsupported`, or `partial` with the
number of candidates, from the first, already checked without a match: the next scan of the same
hash goes on from there, so a slow hash is covered a little further by every scan.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
from collections import OrderedDict

from .._userdirs import cache_dir, data_dir

KEY_FILE = "password-verdicts.key"
CACHE_FILE = "password-verdicts.sqlite"
MAX_ROWS = 100_000
MEMORY_MAX = 4096
FINAL = ("weak", "not_found", "unsupported")

Verdict = tuple[str, int]  # (status, candidates checked from the first: for 'partial' and 'not_found')

_MEMORY: OrderedDict[str, Verdict] = OrderedDict()
_MEMORY_LOCK = threading.Lock()


def _better(new: Verdict, old: Verdict | None) -> bool:
    return old is None or new[0] in FINAL or (old[0] == "partial" and new[1] > old[1])


def _remember(key: str, verdict: Verdict) -> None:
    with _MEMORY_LOCK:
        if _better(verdict, _MEMORY.get(key)):
            _MEMORY[key] = verdict
            _MEMORY.move_to_end(key)
        while len(_MEMORY) > MEMORY_MAX:
            _MEMORY.popitem(last=False)


def forget_memory() -> None:
    """Clears this process's memory of verdicts (benchmarks measure the guessing, tests isolate)."""
    with _MEMORY_LOCK:
        _MEMORY.clear()


_PROCESS_KEY: list[bytes] = []


def _process_key() -> bytes:
    if not _PROCESS_KEY:
        _PROCESS_KEY.append(os.urandom(32))
    return _PROCESS_KEY[0]


def _key_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            key = fh.read()
        if len(key) >= 16:
            return key
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    key = os.urandom(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        with open(path, "rb") as fh:
            return fh.read()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class VerdictCache:
    """Memory in front of an optional on-disk table; every disk failure turns the disk part off."""

    def __init__(self, persistent: bool = True):
        self.persistent = persistent
        self.warning = ""
        self._key: bytes | None = None
        self._conn: sqlite3.Connection | None = None
        self._opened = False
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection | None:
        if self._opened:
            return self._conn
        self._opened = True
        if not self.persistent:
            return None
        path = str(cache_dir() / CACHE_FILE)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            conn = sqlite3.connect(path, timeout=5, check_same_thread=False, isolation_level=None)
            conn.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, status TEXT NOT NULL,"
                         " checked INTEGER NOT NULL, updated REAL NOT NULL)")
            self._conn = conn
        except (OSError, sqlite3.Error) as exc:
            self.warning = f"weak-passwords: verdict cache {path} unavailable ({exc}); verdicts are kept in memory only"
        return self._conn

    def key_of(self, list_digest: str, stored: str) -> str:
        if self._key is None and not self.persistent:
            self._key = _process_key()  # nothing on disk: the fingerprints of this process only
        if self._key is None:
            try:
                self._key = _key_bytes(str(data_dir() / KEY_FILE))
            except OSError as exc:
                # a key of this process only: its verdicts cannot be matched by another process
                self._key = os.urandom(32)
                self.persistent = False
                self.warning = (f"weak-passwords: cannot read or create the verdict key ({exc.strerror});"
                                " verdicts are kept in memory only")
        return hmac.new(self._key, f"{list_digest}\0{stored}".encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    def get(self, keys: list[str]) -> dict[str, Verdict]:
        out: dict[str, Verdict] = {}
        with _MEMORY_LOCK:
            for k in keys:
                if k in _MEMORY:
                    out[k] = _MEMORY[k]
        missing = [k for k in keys if k not in out]
        if not missing:
            return out
        with self._lock:
            conn = self._open()
            if conn is None:
                return out
            try:
                for i in range(0, len(missing), 500):
                    chunk = missing[i:i + 500]
                    rows = conn.execute(f"SELECT key, status, checked FROM verdicts WHERE key IN"
                                        f" ({','.join('?' * len(chunk))})", chunk).fetchall()
                    for k, status, checked in rows:
                        out[k] = (status, checked)
            except sqlite3.Error as exc:
                self._fail(exc)
        for k in missing:
            if k in out:
                _remember(k, out[k])
        return out

    def put(self, verdicts: dict[str, Verdict]) -> None:
        for k, v in verdicts.items():
            _remember(k, v)
        if not verdicts:
            return
        with self._lock:
            conn = self._open()
            if conn is None:
                return
            now = time.time()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO verdicts (key, status, checked, updated) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO"
                    " UPDATE SET status = excluded.status, checked = excluded.checked, updated = excluded.updated"
                    " WHERE excluded.status != 'partial' OR (verdicts.status = 'partial'"
                    " AND excluded.checked > verdicts.checked)",
                    [(k, s, n, now) for k, (s, n) in verdicts.items()])
                count = conn.execute("SELECT count(*) FROM verdicts").fetchone()[0]
                if count > MAX_ROWS:
                    conn.execute("DELETE FROM verdicts WHERE key IN (SELECT key FROM verdicts ORDER BY updated"
                                 " LIMIT ?)", [count - MAX_ROWS])
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if not self.warning:
            self.warning = f"weak-passwords: verdict cache error ({exc}); verdicts are kept in memory only"
        self._conn = None
