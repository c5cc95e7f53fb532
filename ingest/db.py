"""The normalized SQLite database: schema, migrations and the writers.

Shape (see DESIGN.md): integer keys; layers shared across images through `image_layers`; one narrow
`findings` table with a `kind` column and 1:1 detail tables, so a single Datasette page can facet across
kinds; views carry readable text columns (image reference, layer command) because views lose
foreign-key labels. Every scan is one transaction: a failed scan keeps its row and its reason and
leaves earlier scans intact.

Detail tables grow a column when an analyzer reports a field they do not have yet (`insert_rows`),
so analyzers add fields without a migration; anything that changes existing columns is a migration.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import readmodel
from .model import SEVERITIES, ScanError

_log = logging.getLogger("stowaway.db")

SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # 0 = critical ... 5 = unknown

DETAIL_TABLES = {
    "vulnerability": "vulnerability_details",
    "malware": "malware_details",
    "secret": "secret_details",
    "unsafe_setting": "setting_details",
    "compliance": "compliance_details",
    "base_image": "base_image_details",
}

SCHEMA_V1 = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    reference TEXT NOT NULL,
    repository TEXT,
    tag TEXT,
    manifest_digest TEXT NOT NULL,
    config_digest TEXT,
    index_digest TEXT,
    platform TEXT,
    media_type TEXT,
    source TEXT,
    size INTEGER,
    created TEXT,
    os_family TEXT,
    os_version TEXT,
    os_name TEXT,
    user TEXT,
    healthcheck TEXT,
    entrypoint TEXT,
    cmd TEXT,
    env TEXT,
    labels TEXT,
    history TEXT,
    first_seen TEXT,
    last_scan_id INTEGER,
    UNIQUE (reference, manifest_digest, platform)
);
CREATE TABLE layers (
    id INTEGER PRIMARY KEY,
    diff_id TEXT NOT NULL UNIQUE,
    digest TEXT,
    media_type TEXT,
    compressed_size INTEGER,
    size INTEGER,
    entries INTEGER,
    file_index BLOB,
    indexed_at TEXT
);
CREATE TABLE image_layers (
    image_id INTEGER NOT NULL REFERENCES images(id),
    position INTEGER NOT NULL,
    layer_id INTEGER NOT NULL REFERENCES layers(id),
    created_by TEXT,
    PRIMARY KEY (image_id, position)
);
CREATE TABLE layer_analyses (
    layer_id INTEGER NOT NULL REFERENCES layers(id),
    analyzer TEXT NOT NULL,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    records BLOB,
    record_count INTEGER,
    seconds REAL,
    warnings TEXT,
    created_at TEXT,
    PRIMARY KEY (layer_id, analyzer, version, fingerprint)
);
CREATE TABLE scans (
    id INTEGER PRIMARY KEY,
    image_id INTEGER REFERENCES images(id),
    task_id INTEGER,
    source TEXT,
    reference TEXT,
    status TEXT NOT NULL,
    error TEXT,
    started_at TEXT,
    finished_at TEXT,
    seconds REAL,
    layers_read INTEGER,
    layers_cached INTEGER,
    tool_version TEXT,
    analyzers TEXT,
    risk_types TEXT,
    policy TEXT,
    feed_version TEXT,
    warnings TEXT
);
CREATE TABLE file_stats (
    scan_id INTEGER PRIMARY KEY REFERENCES scans(id),
    image_id INTEGER REFERENCES images(id),
    total_files INTEGER,
    total_size INTEGER,
    directories INTEGER,
    symlinks INTEGER,
    hidden_files INTEGER
);
CREATE TABLE largest_files (
    scan_id INTEGER NOT NULL REFERENCES scans(id),
    rank INTEGER NOT NULL,
    path TEXT,
    size INTEGER,
    layer_index INTEGER,
    PRIMARY KEY (scan_id, rank)
);
CREATE TABLE layer_stats (
    scan_id INTEGER NOT NULL REFERENCES scans(id),
    layer_index INTEGER NOT NULL,
    layer_id INTEGER REFERENCES layers(id),
    files INTEGER,
    size INTEGER,
    visible_files INTEGER,
    visible_size INTEGER,
    whiteouts INTEGER,
    PRIMARY KEY (scan_id, layer_index)
);
CREATE TABLE packages (
    id INTEGER PRIMARY KEY,
    scan_id INTEGER NOT NULL REFERENCES scans(id),
    image_id INTEGER REFERENCES images(id),
    ecosystem TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT,
    arch TEXT,
    source_name TEXT,
    source_version TEXT,
    path TEXT,
    layer_index INTEGER,
    purl TEXT,
    licenses TEXT,
    os_owned INTEGER DEFAULT 0,
    metadata TEXT,
    vulnerability_count INTEGER DEFAULT 0
);
CREATE TABLE findings (
    id INTEGER PRIMARY KEY,
    scan_id INTEGER NOT NULL REFERENCES scans(id),
    image_id INTEGER REFERENCES images(id),
    kind TEXT NOT NULL,
    severity TEXT,
    severity_rank INTEGER,
    title TEXT,
    rule TEXT,
    status TEXT,
    path TEXT,
    layer_index INTEGER,
    visible INTEGER,
    package_id INTEGER REFERENCES packages(id),
    fingerprint TEXT,
    ignored INTEGER DEFAULT 0,
    ignore_reason TEXT
);
CREATE TABLE vulnerability_details (
    finding_id INTEGER PRIMARY KEY REFERENCES findings(id),
    vulnerability_id TEXT, aliases TEXT, package_name TEXT, ecosystem TEXT,
    installed_version TEXT, fixed_version TEXT, cvss_score REAL, cvss_vector TEXT,
    published TEXT, solution TEXT, description TEXT, matched_by TEXT
);
CREATE TABLE malware_details (
    finding_id INTEGER PRIMARY KEY REFERENCES findings(id),
    rule TEXT, namespace TEXT, strings TEXT, sha256 TEXT, size INTEGER, description TEXT
);
CREATE TABLE secret_details (
    finding_id INTEGER PRIMARY KEY REFERENCES findings(id),
    rule_id TEXT, line INTEGER, masked TEXT, fingerprint TEXT, source TEXT
);
CREATE TABLE setting_details (
    finding_id INTEGER PRIMARY KEY REFERENCES findings(id),
    category TEXT, check_id TEXT, result TEXT, target TEXT, evidence TEXT,
    description TEXT, suggestion TEXT, benchmark TEXT
);
CREATE TABLE compliance_details (
    finding_id INTEGER PRIMARY KEY REFERENCES findings(id),
    name TEXT, version TEXT, rule TEXT, reason TEXT
);
CREATE TABLE base_image_details (
    finding_id INTEGER PRIMARY KEY REFERENCES findings(id),
    approved INTEGER, matched TEXT, own_layers INTEGER, closest TEXT, guessed_boundary INTEGER
);
CREATE TABLE scan_facts (
    scan_id INTEGER NOT NULL REFERENCES scans(id),
    name TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (scan_id, name)
);
CREATE INDEX idx_images_reference ON images(reference);
CREATE INDEX idx_image_layers_layer ON image_layers(layer_id);
CREATE INDEX idx_scans_image ON scans(image_id, status);
CREATE INDEX idx_packages_scan ON packages(scan_id);
CREATE INDEX idx_packages_name ON packages(ecosystem, name);
CREATE INDEX idx_findings_scan ON findings(scan_id);
CREATE INDEX idx_findings_kind ON findings(kind);
CREATE INDEX idx_findings_severity ON findings(severity_rank);
CREATE INDEX idx_findings_image ON findings(image_id);
CREATE INDEX idx_findings_layer ON findings(layer_index);
CREATE INDEX idx_findings_status ON findings(status);
CREATE INDEX idx_vuln_id ON vulnerability_details(vulnerability_id);

-- the newest finished scan of every image: what "current" means everywhere else
CREATE VIEW latest_scans AS
SELECT s.* FROM scans s
WHERE s.status = 'done' AND s.id = (
    SELECT MAX(s2.id) FROM scans s2 WHERE s2.image_id = s.image_id AND s2.status = 'done');

CREATE VIEW findings_view AS
SELECT f.id, f.kind, f.severity, f.severity_rank, f.title, f.rule, f.status, f.path,
       f.layer_index, il.created_by AS layer_created_by, f.visible, f.ignored,
       i.reference AS image, f.image_id, f.scan_id,
       p.name AS package, p.version AS package_version, p.ecosystem
FROM findings f
JOIN latest_scans s ON s.id = f.scan_id
JOIN images i ON i.id = f.image_id
LEFT JOIN image_layers il ON il.image_id = f.image_id AND il.position = f.layer_index
LEFT JOIN packages p ON p.id = f.package_id;
"""

# v2: "current" is images.last_scan_id (the newest finished scan, kept by the writer) instead of a
# correlated MAX() per scan row, which made findings_view too slow to facet on a thousand images
SCHEMA_V2 = """
DROP VIEW findings_view;
DROP VIEW latest_scans;
CREATE INDEX idx_images_last_scan ON images(last_scan_id);
CREATE VIEW latest_scans AS
SELECT s.* FROM images i JOIN scans s ON s.id = i.last_scan_id;
CREATE VIEW findings_view AS
SELECT f.id, f.kind, f.severity, f.severity_rank, f.title, f.rule, f.status, f.path,
       f.layer_index, il.created_by AS layer_created_by, f.visible, f.ignored,
       i.reference AS image, f.image_id, f.scan_id,
       p.name AS package, p.version AS package_version, p.ecosystem
FROM images i
JOIN findings f ON f.scan_id = i.last_scan_id
LEFT JOIN image_layers il ON il.image_id = f.image_id AND il.position = f.layer_index
LEFT JOIN packages p ON p.id = f.package_id;
"""

# v3: suppressions (the findings store's, see findings.py) and the read model (readmodel.py). Findings
# ignored by an older version become suppressions of their image's repository and tag.
SCHEMA_V3 = """
ALTER TABLE findings ADD COLUMN suppressed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE findings ADD COLUMN suppressed_reason TEXT;
ALTER TABLE findings ADD COLUMN suppression_id INTEGER;
CREATE TABLE suppressions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT '',
    rule TEXT NOT NULL,
    package TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    repository TEXT NOT NULL DEFAULT '',
    tag TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL,
    author TEXT,
    created TEXT NOT NULL,
    expires TEXT,
    source TEXT,
    UNIQUE (kind, rule, package, path, repository, tag)
);
CREATE INDEX idx_suppressions_rule ON suppressions(rule);
CREATE INDEX idx_findings_suppressed ON findings(suppressed);
CREATE TABLE IF NOT EXISTS stowaway_settings (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TEXT,
    actor TEXT,
    UNIQUE (kind, value)
);
UPDATE findings SET suppressed = 1, suppressed_reason = coalesce(ignore_reason, 'ignored') WHERE ignored = 1;
INSERT OR IGNORE INTO suppressions (kind, rule, package, path, repository, tag, reason, author, created, source)
SELECT f.kind, coalesce(d.vulnerability_id, s.check_id, x.rule_id, f.rule, ''),
       coalesce(p.name, d.package_name, ''),
       CASE WHEN f.kind IN ('secret', 'malware', 'compliance') THEN coalesce(f.path, '')
            WHEN f.kind = 'unsafe_setting' THEN coalesce(s.target, f.path, '') ELSE '' END,
       coalesce(i.repository, i.reference), coalesce(i.tag, ''), coalesce(f.ignore_reason, 'ignored'), NULL,
       strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 'migrated from findings.ignored'
FROM findings f JOIN images i ON i.id = f.image_id AND f.scan_id = i.last_scan_id
LEFT JOIN vulnerability_details d ON d.finding_id = f.id
LEFT JOIN setting_details s ON s.finding_id = f.id
LEFT JOIN secret_details x ON x.finding_id = f.id
LEFT JOIN packages p ON p.id = f.package_id
WHERE f.ignored = 1 AND coalesce(d.vulnerability_id, s.check_id, x.rule_id, f.rule, '') <> '';
"""


def _schema_v3(conn: sqlite3.Connection) -> None:
    from . import readmodel

    for stmt in _statements(SCHEMA_V3):
        conn.execute(stmt)
    # the plugin's report tables of older versions (tables or views): the read model replaces them
    for name, kind in conn.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')").fetchall():
        if name in readmodel.SELECTS or name in readmodel.OLD_PLUGIN_TABLES:
            conn.execute(f"DROP {kind.upper()} [{name}]")
    conn.execute("CREATE TABLE IF NOT EXISTS schema_parts (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    for stmt in _statements(readmodel.migration_v3()):
        conn.execute(stmt)


MIGRATIONS: list = [SCHEMA_V1, SCHEMA_V2, _schema_v3]

# Schema parts owned by other modules (advisories, tasks, registries): name -> ordered SQL steps.
# Each part keeps its own version in `schema_parts`, so parts can be added in any order.
SCHEMA_PARTS: dict[str, list[str]] = {
    # scans recorded before the policy record left out the custom weak passwords ([passwords] extra)
    "scan_policy_redaction": ["""
UPDATE scans SET policy = json_remove(json_set(policy, '$.passwords.extra_count',
                                               json_array_length(policy, '$.passwords.extra')),
                                      '$.passwords.extra')
WHERE json_valid(policy) AND json_type(policy, '$.passwords.extra') = 'array';
"""],
    # facet counts of the big report tables kept by the writer (readmodel.py, "kept facet counts")
    "report_facet_counts": [readmodel.facet_counts_migration(), readmodel.facet_counts_open_migration(),
                            readmodel.facet_counts_layer_cvss_migration()],
    # report rows found by their finding's or package's id (rematch's apply_finding_changes)
    "report_row_ids": [readmodel.ROW_ID_INDEXES],
    "page_indexes": readmodel.PAGE_INDEXES,
}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Database:
    """A sqlite3 connection, with sqlite-utils' Database behind it on first use.

    `execute` and `conn` are all a scan needs; anything else (`db["table"]`, `db.table_names()`, ...)
    is sqlite-utils'. It is built lazily because importing sqlite-utils imports pandas and numpy
    (half a second), which a command-line scan should not pay for.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._utils = None

    @property
    def utils(self):
        if self._utils is None:
            import sqlite_utils

            self._utils = sqlite_utils.Database(self.conn)
        return self._utils

    def execute(self, sql: str, params=None):
        return self.conn.execute(sql, params or [])

    def executescript(self, script: str):
        return self.conn.executescript(script)

    def __getattr__(self, name):
        return getattr(self.utils, name)

    def __getitem__(self, table: str):
        return self.utils[table]


def connect(path: str, readonly: bool = False) -> Database:
    """Opens (creating and migrating) the database. WAL lets Datasette read while a scan writes.

    `readonly` opens an existing database for reading only (scan workers, which never write)."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60, check_same_thread=False)
        return Database(conn)
    _new_from_template(path)
    conn = sqlite3.connect(path, timeout=60)
    db = Database(conn)
    _set_wal(conn)
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA synchronous=NORMAL")
    migrate(db)
    lapse_expired_suppressions(conn)
    return db


# How long a write waits for the database's write lock while another writer holds it (a first rematch of
# 10,000 images holds it for minutes in one transaction) before it gives up with one sentence;
# `[scan] write_lock_wait_seconds` in the policy. The connection's busy timeout (60 s) is one attempt.
WRITE_LOCK_WAIT = 1800.0


class WriteLockWaitOver(ScanError):
    """Another writer kept the database's write lock past the wait; the message is one sentence."""


def write_lock_wait(policy: dict | None) -> float:
    return float(((policy or {}).get("scan") or {}).get("write_lock_wait_seconds", WRITE_LOCK_WAIT))


def begin_immediate(conn: sqlite3.Connection, wait: float,
                    on_wait: Callable[[float], None] | None = None) -> None:
    """BEGIN IMMEDIATE, waiting while another writer holds the lock (each attempt waits out the
    connection's busy timeout) up to WAIT seconds; says once that it waits (a warning, and ON_WAIT(wait))
    and, past the wait, raises WriteLockWaitOver naming the setting."""
    start = time.monotonic()
    told = False
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            if told:
                _log.warning("stowaway: the write lock was free after %.0f s; writing", time.monotonic() - start)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            waited = time.monotonic() - start
            if waited >= wait:
                raise WriteLockWaitOver(f"another writer (a rematch, a scan, an import) held the database's write"
                                        f" lock for over {waited:.0f} s ([scan] write_lock_wait_seconds ="
                                        f" {wait:.0f})") from None
            if not told:
                told = True
                _log.warning("stowaway: waiting for the database's write lock (another writer holds it: a rematch,"
                             " a scan, an import), at most %.0f s", wait)
                if on_wait is not None:
                    on_wait(wait)
            time.sleep(min(0.5, max(0.0, wait - waited)))


@contextmanager
def write_transaction(conn: sqlite3.Connection, wait: float,
                      on_wait: Callable[[float], None] | None = None) -> Iterator[sqlite3.Connection]:
    """`with conn:` for a write, except that it takes the write lock first and waits for it as
    begin_immediate does, instead of failing after one busy timeout. Inside a transaction already open,
    the statements join it and it is committed at the end, as `with conn:` would."""
    if not conn.in_transaction:
        begin_immediate(conn, wait, on_wait)
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    conn.commit()


TEMPLATES_KEPT = 16  # schema templates kept in the cache directory (one per version of the code; the newest)


def _new_from_template(path: str) -> None:
    """A database file that does not exist yet starts as a copy of the empty schema, made once per schema
    and kept in the user's cache directory (`<cache>/schema/<key>.sqlite`): executing the schema's
    statements costs about 0.1 s of CPU on every new database, a copy a few milliseconds.

    The key is everything `migrate` runs on a new database (each migration step and registered schema
    part, the package's code, SQLite's version), and the template is made by `migrate` itself on an
    empty file: a copy is the database `migrate` would have made, and `migrate` then finds nothing left to
    do (it would do what was missing). The copy is given the database's name by a hard link, which never
    replaces a file: a process creating the same database at the same moment sees either no file (and
    makes it as before) or the whole copy. Without a cache directory or hard links where the database
    goes, it is made as before (STOWAWAY_SCHEMA_TEMPLATE=0 turns the template off)."""
    if not isinstance(path, str) or not path or path.startswith((":", "file:")) \
            or os.environ.get("STOWAWAY_SCHEMA_TEMPLATE", "1") == "0":
        return
    if any(os.path.lexists(path + suffix) for suffix in ("", "-wal", "-journal", "-shm")):
        return
    try:
        template = _schema_template()
        if template is not None:
            _publish_copy(template, path)
    except (OSError, ValueError):  # (ValueError: a name the OS cannot take; connect says so as before)
        pass


def _schema_key() -> str:
    import hashlib
    import sys

    from .reuse import code_fingerprint  # (importing it registers its schema part, as a scan does)

    h = hashlib.sha256()
    for text in (sqlite3.sqlite_version, "%d.%d" % sys.version_info[:2], code_fingerprint()):
        h.update(text.encode() + b"\0")
    for step in MIGRATIONS:
        h.update((step if isinstance(step, str) else f"{step.__module__}.{step.__qualname__}").encode() + b"\0")
    for name, steps in SCHEMA_PARTS.items():
        h.update(f"part {name}\0".encode() + "\0".join(steps).encode() + b"\0")
    for hook in AFTER_MIGRATE:
        h.update(f"hook {hook.__module__}.{hook.__qualname__}\0".encode())
    return h.hexdigest()[:32]


def _schema_template() -> str | None:
    """The template's path, made now when missing; None when it cannot be made (a failing migration step
    then fails the database's own migration, as before)."""
    import tempfile

    from stowaway.analyzers._userdirs import cache_dir

    folder = cache_dir() / "schema"
    target = folder / f"{_schema_key()}.sqlite"
    if _whole_database(target):
        return str(target)
    folder.mkdir(parents=True, exist_ok=True)
    fd, building = tempfile.mkstemp(prefix=".building-", suffix=".sqlite", dir=folder)
    os.close(fd)
    try:
        conn = sqlite3.connect(building)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # as connect() leaves it (a copy then needs no switch)
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn)
        finally:
            conn.close()
        os.replace(building, target)
    except Exception:  # noqa: BLE001 - the database is made and migrated as before, and fails as before
        with contextlib.suppress(OSError):
            os.unlink(building)
        return None
    _prune_templates(folder)
    return str(target)


def _whole_database(path) -> bool:
    """Whether `path` holds an SQLite database of the size its header says (a template cut short or
    overwritten is made again)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return False
    if len(head) < 100 or not head.startswith(b"SQLite format 3\0"):
        return False
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages, valid_for, changes = (int.from_bytes(head[i:i + 4], "big") for i in (28, 92, 24))
    return pages > 0 and valid_for == changes and size == page * pages


def _prune_templates(folder) -> None:
    """The newest TEMPLATES_KEPT templates stay (each version of the code makes its own); a template
    being made by a process that died is removed after an hour."""
    now_ = time.time()
    found = []
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):
            mtime = entry.stat().st_mtime
            if entry.name.startswith(".building-"):
                if now_ - mtime > 3600:
                    os.unlink(entry.path)
            elif entry.name.endswith(".sqlite"):
                found.append((mtime, entry.path))
    for _, old in sorted(found, reverse=True)[TEMPLATES_KEPT:]:
        with contextlib.suppress(OSError):
            os.unlink(old)


def _publish_copy(template: str, path: str) -> None:
    """`template`'s bytes at `path`, all at once or not at all, never over an existing file: written to a
    hidden file beside it, linked to `path` (a hard link never replaces a file), then unlinked."""
    with open(template, "rb") as fh:
        data = fh.read()
    folder = os.path.dirname(os.path.abspath(path))
    named = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.new")
    fd = os.open(named, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # the mode SQLite gives a new file
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile: that one is used
            os.link(named, path)
    finally:
        os.unlink(named)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fdatasync(fd)  # the name never stands for bytes not yet on disk


def lapse_expired_suppressions(conn: sqlite3.Connection) -> None:
    """Suppressions that expired since they were applied stop applying now (findings.lapse_expired), in
    a transaction of their own; nothing to do (one small query) on almost every open."""
    from . import findings

    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'suppressions'").fetchone():
        return
    if findings.lapsed_scans(conn):
        if conn.in_transaction:
            conn.commit()
        with conn:
            findings.lapse_expired(conn)


def _set_wal(conn: sqlite3.Connection) -> None:
    """WAL mode, waiting out another process that is creating the database at the same moment (the
    switch needs a lock the busy handler does not always wait for)."""
    for attempt in range(200):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA journal_mode=WAL")


def _statements(script: str) -> Iterable[str]:
    """The statements of a migration script, one at a time (triggers' BEGIN ... END kept whole):
    executescript() would commit the exclusive transaction the migration runs in."""
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip().strip(";").strip():
                yield buf
            buf = ""
    if buf.strip().strip(";").strip():
        yield buf


def _pending(conn: sqlite3.Connection) -> bool:
    """Whether this database lacks a migration step that the loaded modules know (a read, no lock)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] < len(MIGRATIONS):
        return True
    if not SCHEMA_PARTS:
        return False
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_parts'").fetchone():
        return True
    done = dict(conn.execute("SELECT name, version FROM schema_parts").fetchall())
    return any(done.get(name, 0) < len(steps) for name, steps in SCHEMA_PARTS.items())


def migrate(db) -> None:
    """Brings the schema (the core steps, then every registered part) up to date, once, under an
    exclusive lock: the version check is made again inside the lock, so any number of processes
    may open a new database at the same moment and exactly one of them migrates it."""
    conn = db.conn if hasattr(db, "conn") else db
    if not _pending(conn):
        return
    _exclusive(conn, lambda: _migrate_locked(conn))


def _exclusive(conn: sqlite3.Connection, fn) -> None:
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN EXCLUSIVE")
    try:
        fn()
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _migrate_locked(conn: sqlite3.Connection) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    for version, script in enumerate(MIGRATIONS, start=1):
        if version <= current:
            continue
        if callable(script):
            script(conn)
        else:
            for stmt in _statements(script):
                conn.execute(stmt)
        conn.execute(f"PRAGMA user_version={version}")
    for name in list(SCHEMA_PARTS):
        _ensure_part_locked(conn, name)
    for hook in AFTER_MIGRATE:
        hook(conn)


def _ensure_part_locked(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_parts (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_parts WHERE name = ?", [name]).fetchone()
    done = row[0] if row else 0
    for version, script in enumerate(SCHEMA_PARTS[name], start=1):
        if version <= done:
            continue
        for stmt in _statements(script):
            conn.execute(stmt)
        conn.execute("INSERT OR REPLACE INTO schema_parts (name, version) VALUES (?, ?)", [name, version])


# functions run inside the migration lock after every migration (the read model's first build)
AFTER_MIGRATE: list = []


def register_schema(name: str, steps: list[str]) -> None:
    """A module that owns tables registers its migration steps (append new steps, never edit old ones)."""
    SCHEMA_PARTS[name] = steps


def ensure_schema(db, name: str, steps: list[str] | None = None) -> None:
    """Applies the steps of one schema part that this database has not seen yet (under the same
    exclusive lock as migrate())."""
    if steps is not None:
        register_schema(name, steps)
    conn = db.conn if hasattr(db, "conn") else db
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_parts'").fetchone():
        row = conn.execute("SELECT version FROM schema_parts WHERE name = ?", [name]).fetchone()
        if row and row[0] >= len(SCHEMA_PARTS[name]):
            return
    _exclusive(conn, lambda: _ensure_part_locked(conn, name))


def dumps(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=_default)


def _default(o):
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if hasattr(o, "__dict__"):
        return o.__dict__
    return str(o)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info([{table}])")}


def insert_rows(conn: sqlite3.Connection, table: str, rows: Iterable[dict], replace: bool = False,
                ids: bool = True) -> list[int]:
    """Inserts rows, adding any column the table lacks (detail tables grow with their analyzers); returns
    their ids, or with IDS False none (then in one executemany)."""
    rows = list(rows)
    if not rows:
        return []
    have = _columns(conn, table)
    keys: list[str] = []
    for row in rows:
        for k in row:
            if k not in keys:
                keys.append(k)
    for k in keys:
        if k not in have:
            sample = next((r[k] for r in rows if r.get(k) is not None), None)
            kind = "INTEGER" if isinstance(sample, (bool, int)) else "REAL" if isinstance(sample, float) else "TEXT"
            conn.execute(f"ALTER TABLE [{table}] ADD COLUMN [{k}] {kind}")
    cols = ", ".join(f"[{k}]" for k in keys)
    marks = ", ".join("?" for _ in keys)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    sql = f"INSERT INTO [{table}] ({cols}) VALUES ({marks})".replace("INSERT", verb, 1)
    if not ids:
        insert_values(conn, f"{verb} INTO [{table}] ({cols})", [[_cell(row.get(k)) for k in keys] for row in rows])
        return []
    out = []
    for row in rows:
        cur = conn.execute(sql, [_cell(row.get(k)) for k in keys])
        out.append(int(cur.lastrowid or 0))
    return out


def insert_values(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence]) -> None:
    """`HEAD VALUES (...), (...), ...`: ROWS (of one width) in a few statements of 2^k rows each (at most
    999 parameters a statement; the sizes repeat, so the statements stay in the statement cache).
    A statement per row (execute or executemany) costs a statement's set-up per row, and where the table
    has triggers (the kept facet counts) and the writer is inside a savepoint, a statement journal per
    row: about 35 us a finding, four times the row's own cost."""
    n = len(rows)
    if not n:
        return
    width = len(rows[0])
    most = 1 << max(0, (999 // width).bit_length() - 1)
    marks = "(" + ", ".join("?" * width) + ")"
    i = 0
    while i < n:
        size = min(most, 1 << ((n - i).bit_length() - 1))
        conn.execute(f"{head} VALUES {', '.join([marks] * size)}", [v for row in rows[i:i + size] for v in row])
        i += size


def _cell(v):
    if isinstance(v, (dict, list, tuple, set, frozenset)):
        return dumps(v)
    if isinstance(v, bool):
        return int(v)
    return v
