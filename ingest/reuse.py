"""Rescans of unchanged images: the previous scan's results copied forward in SQL.

A rescan of an image whose content, analyzers, policy and evaluation inputs are all the same as its
current scan's would produce the same results row for row; recomputing them (apply, evaluate, write
every package and finding) is most of a rescan's time once its layers come from the layer cache.
Instead, the writer records a new scan whose results are copies of the previous scan's, made by one
INSERT ... SELECT per table in the scan's one transaction; suppressions are applied again and the read
model follows `images.last_scan_id` as after any scan.

The keys (every part must be equal, else the scan runs in full):

* the image: reference, manifest digest and platform (content-addressed: the manifest digest names
  the config, which names every layer's diff_id);
* `analysis_key`: the tool's code (size and mtime of every file of the `ingest` and `analyzers`
  packages), each selected analyzer's name, version and fingerprint (rules packs, signatures, key ids,
  limits), the risk types, the recorded policy (minus connection and concurrency settings) and the
  size/mtime/ctime/inode of every file or directory the policy names (ignore files, rule files, lists);
* `evaluate_key`: what the evaluate stage reads from the database: the advisory store's state (its
  newest import, newest end, unfinished imports and newest advisory row: store.store_state),
  the images sharing this image's bottom layer (the base-image comparison's candidates), the images
  each approved base names, and the date when an ignore file may carry expiries.

How an image is known without reading it depends on the source:

* a file (`docker-archive:`, `oci-archive:`, `oci:` tar; plain, gzip or zstd): its record in
  `source_files`, made after a full scan, holds the file's device, inode, size, mtime and ctime (in
  ns) and a digest of its first and last MiB, and the images it held. Equal on all of them, the file
  is not opened. The trade-off: a change that leaves size, mtime *and ctime* equal is not seen, and
  ctime cannot be set back by a user (only by changing the system clock); a timestamp that was still
  within the filesystem's clock granularity of the moment it was recorded is not trusted (the "racy
  git" rule), and the edges' digest catches a rewrite on filesystems with coarse or unreliable times.
  Hashing the whole file instead would cost a full read of it on every rescan.
* an OCI layout directory: the manifest and config are read (small); layers come from the layer cache
  as in any scan;
* a registry: the tag's manifest digest, by a HEAD of the manifest (its Docker-Content-Digest; nothing
  downloaded, `requests` not loaded: sources/registry.py `head_digest`), or by one manifest GET when
  that cannot answer; a reference pinned by digest asks nothing. A digest the database does not hold for
  the reference (the tag moved) is read on in full; an index too;
* the Docker engine: the image id (its config digest) and tag from the API, no `docker save`.

`[scan] reuse = false` (or `--set scan.reuse=false`) turns copying forward off.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Iterable

from . import db as dbm

SCHEMA = [
    """
CREATE TABLE scan_reuse (
    scan_id INTEGER PRIMARY KEY,       -- a finished scan
    image_id INTEGER NOT NULL,
    analysis_key TEXT NOT NULL,        -- code, analyzers, risk types, policy (see ingest/reuse.py)
    evaluate_key TEXT NOT NULL,        -- what the evaluate stage read from the database
    copied_from INTEGER                -- the scan whose results this one copied, or NULL
);
CREATE INDEX idx_scan_reuse_image ON scan_reuse(image_id);
CREATE TABLE source_files (
    source TEXT PRIMARY KEY,           -- transport:realpath[:ref]
    stat TEXT NOT NULL,                -- [dev, inode, size, mtime_ns, ctime_ns]
    edges TEXT NOT NULL,               -- sha256 of the first and last MiB
    images TEXT NOT NULL,              -- [[reference, manifest_digest, platform], ...]
    recorded_at TEXT
);
""",
    # the analysis key by what it is computed from, so that a rescan of an unchanged image needs no analyzer
    """
CREATE TABLE analysis_keys (
    inputs TEXT PRIMARY KEY,           -- see inputs_key()
    analysis_key TEXT NOT NULL,
    versions TEXT NOT NULL,            -- {analyzer: version} as the scan row records them
    recorded_at TEXT
);
""",
]
dbm.register_schema("reuse", SCHEMA)

EDGE = 1 << 20
# a timestamp this close to the moment it was recorded may be followed by a change within the same
# clock tick: not trusted (fine-grained filesystems tick in milliseconds; coarse ones in seconds)
FINE_GRANULARITY, COARSE_GRANULARITY = 0.05, 2.0
# per-scan tables this module copies (the read model's tables follow images.last_scan_id by trigger)
COPIED = ("packages", "findings", "file_stats", "largest_files", "layer_stats", "scan_facts")
NOT_RESULTS = ("scans", "scan_reuse")


def enabled(policy: dict) -> bool:
    conf = policy.get("scan") if isinstance(policy.get("scan"), dict) else {}
    return (conf or {}).get("reuse", True) is not False


def ensure(database) -> None:
    dbm.ensure_schema(database, "reuse", SCHEMA)


def _has_tables(conn) -> bool:
    return conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN"
                        " ('scan_reuse', 'source_files')").fetchone()[0] == 2


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


# --- analysis key ------------------------------------------------------------------------------------------

_CODE: str | None = None


def code_fingerprint() -> str:
    """Size and mtime of every file of the packages that make results (computed once per process)."""
    global _CODE
    if _CODE is None:
        import stowaway.analyzers
        import stowaway.ingest

        entries: list[tuple[str, int, int]] = []
        roots = [os.path.abspath(p) for pkg in (stowaway.ingest, stowaway.analyzers) for p in pkg.__path__]
        for root in roots:
            _code_files(root, "", entries)
        _CODE = _digest(entries)
    return _CODE


def _code_files(here: str, rel: str, out: list[tuple[str, int, int]]) -> None:
    """(path relative to the package, size, mtime) of every file under HERE: a directory's files in name
    order, then its subdirectories in name order (os.walk's order, without its per-file path arithmetic)."""
    try:
        found = sorted(os.scandir(here), key=lambda e: e.name)
    except OSError:
        return
    dirs = []
    for entry in found:
        try:
            if entry.is_dir():
                if entry.name != "__pycache__":
                    dirs.append(entry)
                continue
            st = entry.stat()
        except OSError:
            continue
        out.append((rel + entry.name, st.st_size, st.st_mtime_ns))
    for entry in dirs:
        _code_files(entry.path, rel + entry.name + "/", out)


def _named_files(value: Any, out: dict, budget: list[int]) -> None:
    """Every existing file or directory a policy value names, by its stat (directories: their files)."""
    if isinstance(value, dict):
        for v in value.values():
            _named_files(v, out, budget)
    elif isinstance(value, list):
        for v in value:
            _named_files(v, out, budget)
    elif isinstance(value, str) and value and len(value) < 4096 and "\n" not in value and value not in out:
        try:
            st = os.stat(value)
        except (OSError, ValueError):
            return
        if os.path.isdir(value):
            files = []
            for here, dirs, names in os.walk(value):
                dirs.sort()
                for name in sorted(names):
                    budget[0] -= 1
                    if budget[0] < 0:
                        out[value] = "too many files"
                        return
                    try:
                        s = os.stat(os.path.join(here, name))
                    except OSError:
                        continue
                    files.append((os.path.join(here, name), s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino))
            out[value] = files
        else:
            out[value] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def analysis_key(analyzers: Iterable, risks, policy: dict, tool_version: str) -> str:
    """What the analysis and evaluation of an image depend on, apart from the image and the database."""
    from .writer import _policy_record

    record = {k: v for k, v in _policy_record(policy).items() if k not in ("scan", "source_options")}
    named: dict = {}
    _named_files({k: v for k, v in policy.items() if k not in ("source_options", "credentials")}, named, [20000])
    return _digest({"tool": tool_version, "code": code_fingerprint(),
                    "analyzers": sorted((a.name, a.version, a.fingerprint()) for a in analyzers),
                    "risks": sorted(risks) if risks else "all", "policy": record, "files": named})


# Everything an analyzer's fingerprint may read besides the policy and the package's own files: these
# environment variables (the data directory and its secret-fingerprint key file), and the key file. An
# analyzer whose fingerprint reads anything else must add it here (or the policy must name it as a file).
ENVIRONMENT = ("STOWAWAY_", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HOME")


def inputs_key(policy: dict, risks, analyzer_names, tool_version: str) -> str | None:
    """What the analysis key is computed from, without importing an analyzer: the code, the whole policy
    (digested, never stored), the files it names, the selection, the environment above and the secret
    fingerprint key file. None when a fingerprint depends on a service (ClamAV's signatures, asked of
    clamd or clamscan on every run): then the analyzers themselves are asked."""
    from stowaway.analyzers._userdirs import data_dir

    malware = policy.get("malware") if isinstance(policy.get("malware"), dict) else {}
    if any(str(k).startswith("clam") for k in (malware or {})):
        return None
    secrets = policy.get("secrets") if isinstance(policy.get("secrets"), dict) else {}
    key_file = ((secrets or {}).get("fingerprint_key_file") or os.environ.get("STOWAWAY_SECRET_KEY_FILE")
                or str(data_dir() / "secret-fingerprint.key"))
    named: dict = {}
    _named_files({k: v for k, v in policy.items() if k not in ("source_options", "credentials")}, named, [20000])
    _named_files([str(key_file)], named, [1])
    return _digest({"tool": tool_version, "code": code_fingerprint(),
                    "policy": {k: v for k, v in policy.items() if k not in ("source_options", "credentials", "scan")},
                    "files": named, "key_file": str(key_file), "risks": sorted(risks) if risks else "all",
                    "analyzers": sorted(analyzer_names) if analyzer_names else "all",
                    "env": sorted((k, v) for k, v in os.environ.items() if k.startswith(ENVIRONMENT))})


def cached_analysis_key(conn, inputs: str | None) -> tuple[str, dict[str, int]] | None:
    """(analysis key, analyzer versions) recorded for these inputs by an earlier scan, or None."""
    if not inputs:
        return None
    try:
        row = conn.execute("SELECT analysis_key, versions FROM analysis_keys WHERE inputs = ?", [inputs]).fetchone()
    except Exception:  # an older database: no such table yet
        return None
    return (row[0], json.loads(row[1])) if row else None


def record_analysis_key(conn, inputs: str, akey: str, versions: dict[str, int]) -> None:
    conn.execute("INSERT OR REPLACE INTO analysis_keys (inputs, analysis_key, versions, recorded_at)"
                 " VALUES (?,?,?,?)", [inputs, akey, json.dumps(versions, sort_keys=True), dbm.now()])


# --- evaluate key ------------------------------------------------------------------------------------------

def evaluate_key(conn, chain: list[str], manifest_digest: str, policy: dict) -> str:
    """What the evaluate-stage analyzers read from the database for an image with this layer chain."""
    from stowaway.analyzers.base_image import _approved_refs, _images_named

    parts: dict[str, Any] = {}
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'advisories'").fetchone():
        from stowaway.analyzers.vulnerabilities.store import store_state

        parts["advisories"] = store_state(conn)
    if chain:
        parts["neighbours"] = [r[0] for r in conn.execute(
            "SELECT il.image_id FROM layers l JOIN image_layers il ON il.layer_id = l.id AND il.position = 0"
            " JOIN images i ON i.id = il.image_id WHERE l.diff_id = ? AND i.manifest_digest <> ?"
            " ORDER BY il.image_id", [chain[0], manifest_digest])]
    refs, _ = _approved_refs(policy)
    if refs:
        parts["approved"] = [[ref, _images_named(conn, ref)] for ref in refs]
    vulns = policy.get("vulnerabilities") if isinstance(policy.get("vulnerabilities"), dict) else None
    if vulns and vulns.get("ignore_file"):
        parts["today"] = time.strftime("%Y-%m-%d")  # an ignore rule may expire
    return _digest(parts)


# --- the previous scan -------------------------------------------------------------------------------------

def _unknown_tables(conn) -> list[str]:
    """Per-scan tables (a scan_id column) this module does not copy and the read model does not derive:
    a newer schema's. Their presence turns copying forward off rather than leave them out."""
    from .readmodel import SELECTS

    out = []
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        if name in COPIED or name in NOT_RESULTS or name in SELECTS or name.startswith("sqlite_"):
            continue
        if any(r[1] == "scan_id" for r in conn.execute(f"PRAGMA table_info([{name}])")):
            out.append(name)
    return out


def previous(conn, reference: str, manifest_digest: str, platform: str, akey: str,
             policy: dict) -> tuple[int, int, int] | None:
    """(image id, scan id, layer count) of the image's current scan when a rescan would reproduce it."""
    if not _has_tables(conn):
        return None
    row = conn.execute("SELECT i.id, i.last_scan_id, r.analysis_key, r.evaluate_key FROM images i"
                       " JOIN scans s ON s.id = i.last_scan_id AND s.status = 'done'"
                       " JOIN scan_reuse r ON r.scan_id = s.id"
                       " WHERE i.reference = ? AND i.manifest_digest = ? AND coalesce(i.platform, '') = ?",
                       [reference, manifest_digest, platform or ""]).fetchone()
    if row is None or row[2] != akey:
        return None
    chain = [r[0] for r in conn.execute("SELECT l.diff_id FROM image_layers il JOIN layers l ON l.id = il.layer_id"
                                        " WHERE il.image_id = ? ORDER BY il.position", [row[0]])]
    if not chain or evaluate_key(conn, chain, manifest_digest, policy) != row[3] or _unknown_tables(conn):
        return None
    return row[0], row[1], len(chain)


def record(conn, scan_id: int, image_id: int, akey: str, ekey: str, copied_from: int | None = None) -> None:
    conn.execute("INSERT OR REPLACE INTO scan_reuse (scan_id, image_id, analysis_key, evaluate_key, copied_from)"
                 " VALUES (?,?,?,?,?)", [scan_id, image_id, akey, ekey, copied_from])


# --- copying forward ---------------------------------------------------------------------------------------

def _columns(conn, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info([{table}])")]


def _shift(conn, table: str, old: int) -> int:
    """How far the ids of OLD's rows in TABLE move so that their copies come after every existing row."""
    top = conn.execute(f"SELECT MAX(id) FROM [{table}]").fetchone()[0] or 0
    low = conn.execute(f"SELECT MIN(id) FROM [{table}] WHERE scan_id = ?", [old]).fetchone()[0]
    return 0 if low is None else top - low + 1


def copy_results(conn, old: int, new: int) -> dict[str, int]:
    """The results of scan OLD as scan NEW: one INSERT ... SELECT per table, ids shifted past the existing
    rows (package and finding ids keep their order and their links). Runs in the caller's transaction."""
    from .db import DETAIL_TABLES

    copied: dict[str, int] = {}
    pkg_shift, find_shift = _shift(conn, "packages", old), _shift(conn, "findings", old)
    for table in COPIED:
        cols = _columns(conn, table)
        exprs = []
        for c in cols:
            if c == "scan_id":
                exprs.append("?")
            elif (table, c) in (("packages", "id"), ("findings", "package_id")):
                exprs.append(f"[{c}] + {pkg_shift}")
            elif (table, c) == ("findings", "id"):
                exprs.append(f"[{c}] + {find_shift}")
            else:
                exprs.append(f"[{c}]")
        names = ", ".join(f"[{c}]" for c in cols)
        copied[table] = conn.execute(f"INSERT INTO [{table}] ({names}) SELECT {', '.join(exprs)} FROM [{table}]"
                                     f" WHERE scan_id = ? ORDER BY rowid", [new, old]).rowcount
    for table in dict.fromkeys(DETAIL_TABLES.values()):
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone():
            continue
        cols = _columns(conn, table)
        exprs = [f"[{c}] + {find_shift}" if c == "finding_id" else f"[{c}]" for c in cols]
        names = ", ".join(f"[{c}]" for c in cols)
        copied[table] = conn.execute(
            f"INSERT INTO [{table}] ({names}) SELECT {', '.join(exprs)} FROM [{table}] WHERE finding_id IN"
            f" (SELECT id FROM findings WHERE scan_id = ?) ORDER BY finding_id", [old]).rowcount
    return copied


# --- files: known without being read -------------------------------------------------------------------

def file_key(source: str) -> tuple[str, str] | None:
    """(record key, path) of a source that is one file (an archive), or None."""
    from .sources import parse_source

    try:
        transport, location, ref = parse_source(source)
    except Exception:
        return None
    if transport not in ("docker-archive", "oci-archive", "oci") or not os.path.isfile(location):
        return None
    return f"{transport}:{os.path.realpath(location)}" + (f":{ref}" if ref else ""), location


def file_state(path: str) -> tuple[list[int], str, float] | None:
    """([dev, inode, size, mtime_ns, ctime_ns], digest of the first and last MiB, when taken) of a file."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            h = hashlib.sha256(fh.read(EDGE))
            if st.st_size > EDGE:
                fh.seek(max(EDGE, st.st_size - EDGE))
                h.update(fh.read(EDGE))
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns], h.hexdigest(), time.time()


def trustworthy(state: tuple[list[int], str, float]) -> bool:
    """Whether the file's times were far enough in the past when its state was taken that a later change
    must show in them (a change within the same clock tick could not)."""
    stat, _, taken = state
    newest = max(stat[3], stat[4])
    fine = stat[3] % 1_000_000_000 or stat[4] % 1_000_000_000
    return taken - newest / 1e9 > (FINE_GRANULARITY if fine else COARSE_GRANULARITY)


def known_images(conn, source: str) -> tuple[list[list[str]], str] | None:
    """The images a file source held when it was last scanned in full, if the file is unchanged since:
    ([[reference, manifest digest, platform], ...], what was read to know it)."""
    key = file_key(source)
    if key is None or not _has_tables(conn):
        return None
    row = conn.execute("SELECT stat, edges, images FROM source_files WHERE source = ?", [key[0]]).fetchone()
    if row is None:
        return None
    state = file_state(key[1])
    if state is None or json.loads(row[0]) != state[0] or row[1] != state[1]:
        return None
    return json.loads(row[2]), "archive unchanged: inode, size, mtime, ctime and first/last MiB as recorded, nothing read"


def record_file(conn, source: str, before, after, images: list[list[str]]) -> None:
    """After a full scan of a file source: its state, when it did not change during the scan and its times
    can be trusted; otherwise any earlier record goes."""
    key = file_key(source)
    if key is None or not _has_tables(conn):
        return
    if before is None or after is None or before[:2] != after[:2] or not trustworthy(after) or not images:
        conn.execute("DELETE FROM source_files WHERE source = ?", [key[0]])
        return
    conn.execute("INSERT OR REPLACE INTO source_files (source, stat, edges, images, recorded_at) VALUES (?,?,?,?,?)",
                 [key[0], json.dumps(after[0]), after[1], json.dumps(images), dbm.now()])


def copy_forward(conn, res, scan_id: int, policy: dict) -> tuple[int, list[str]]:
    """Scan SCAN_ID (inserted 'running') takes the results of the image's current scan, checked again in this
    transaction; suppressions are applied again. Returns (image id, the warnings of the copied scan)."""
    from .findings import _active_by_rule, apply_suppressions
    from .model import ScanError

    info = res.reuse
    prev = previous(conn, res.reference, info["manifest_digest"], info["platform"], res.reuse_key, policy)
    if prev is None or prev[1] != info["scan"]:
        raise ScanError(f"{res.reference}: the database changed after this image was found unchanged (a newer scan,"
                        " advisories or images); scan it again")
    image_id, old, _ = prev
    copy_results(conn, old, scan_id)
    ekey, warnings, feed = conn.execute("SELECT r.evaluate_key, s.warnings, s.feed_version FROM scan_reuse r"
                                        " JOIN scans s ON s.id = r.scan_id WHERE r.scan_id = ?", [old]).fetchone()
    record(conn, scan_id, image_id, res.reuse_key, ekey, copied_from=old)
    conn.execute("UPDATE scans SET feed_version = ? WHERE id = ?", [feed, scan_id])
    if _active_by_rule(conn) or conn.execute("SELECT 1 FROM findings WHERE scan_id = ? AND suppressed <> 0 LIMIT 1",
                                             [scan_id]).fetchone():
        apply_suppressions(conn, scan_ids=[scan_id], recount=True)
    return image_id, json.loads(warnings) if warnings else []
