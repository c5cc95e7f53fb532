"""The advisory store: tables in the scan database, so Datasette can join findings to their records.

Updating it never blocks readers (the database runs in WAL mode) and each import batch is its own
short transaction, so findings stay queryable while a feed is imported. Every advisory row says which
file it came from, when it was imported and by which import (`advisory_imports`).

Matching reads `advisory_affected` by (ecosystem, release, name) — one indexed lookup per package —
and severity is computed once at import time, not at every match.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

from stowaway.ingest import db as dbm

MAX_REFERENCES = 20  # stored per record
MAX_URL = 2000  # characters; a longer "URL" is not a link anyone follows
MAX_SHOWN = 40  # per finding, over all its records
_SAFE_URL = re.compile(r"^https?://[^\s<>\"'\\]+$", re.IGNORECASE)
# characters a published URL sometimes carries raw (a mailing-list link's '@<dev.solr.apache.org>'):
# percent-encoded, as a browser would send them
_ENCODE = str.maketrans({"<": "%3C", ">": "%3E", '"': "%22", "'": "%27", "\\": "%5C"})

STEP1 = """
CREATE TABLE advisory_imports (
    id INTEGER PRIMARY KEY,
    source TEXT,
    kind TEXT,
    started_at TEXT,
    finished_at TEXT,
    records INTEGER DEFAULT 0,
    inserted INTEGER DEFAULT 0,
    updated INTEGER DEFAULT 0,
    unchanged INTEGER DEFAULT 0,
    skipped INTEGER DEFAULT 0,
    warnings TEXT
);
CREATE TABLE advisories (
    id TEXT PRIMARY KEY,
    modified TEXT,
    published TEXT,
    withdrawn TEXT,
    summary TEXT,
    details TEXT,
    aliases TEXT,
    upstream TEXT,
    cves TEXT,
    severity_vectors TEXT,
    database_severity TEXT,
    severity TEXT,
    cvss_score REAL,
    cvss_vector TEXT,
    source_file TEXT,
    source_kind TEXT,
    import_id INTEGER REFERENCES advisory_imports(id),
    imported_at TEXT
);
CREATE TABLE advisory_affected (
    advisory_id TEXT NOT NULL REFERENCES advisories(id),
    ecosystem TEXT NOT NULL,
    release TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    raw_ecosystem TEXT,
    raw_name TEXT,
    ranges TEXT,
    versions TEXT,
    severity TEXT
);
CREATE INDEX idx_affected_key ON advisory_affected(ecosystem, release, name);
CREATE INDEX idx_affected_advisory ON advisory_affected(advisory_id);
CREATE TABLE advisory_aliases (
    alias TEXT NOT NULL,
    advisory_id TEXT NOT NULL REFERENCES advisories(id),
    PRIMARY KEY (alias, advisory_id)
) WITHOUT ROWID;
CREATE INDEX idx_alias_advisory ON advisory_aliases(advisory_id);
CREATE TABLE kev (
    cve TEXT PRIMARY KEY,
    vendor TEXT, product TEXT, name TEXT, date_added TEXT, due_date TEXT,
    known_ransomware TEXT, required_action TEXT, imported_at TEXT
);
CREATE TABLE epss (
    cve TEXT PRIMARY KEY,
    epss REAL, percentile REAL, score_date TEXT, imported_at TEXT
);
"""

# Ignored findings stay stored, marked. The pipeline writes findings before their details, and
# findings.ignored is not a Finding field, so the detail row carries the decision and this trigger
# copies it onto the finding (and out of its package's vulnerability count).
STEP2 = """
ALTER TABLE vulnerability_details ADD COLUMN ignore_reason TEXT;
ALTER TABLE vulnerability_details ADD COLUMN epss REAL;
ALTER TABLE vulnerability_details ADD COLUMN kev INTEGER;
ALTER TABLE vulnerability_details ADD COLUMN urgency TEXT;
CREATE TRIGGER vulnerability_ignored AFTER INSERT ON vulnerability_details
WHEN NEW.ignore_reason IS NOT NULL
BEGIN
    UPDATE packages SET vulnerability_count = MAX(0, vulnerability_count - 1)
     WHERE id = (SELECT package_id FROM findings WHERE id = NEW.finding_id AND ignored = 0);
    UPDATE findings SET ignored = 1, ignore_reason = NEW.ignore_reason WHERE id = NEW.finding_id;
END;

-- totals per severity of every image's current scan (ignored findings counted apart)
CREATE VIEW image_vulnerability_totals AS
SELECT i.id AS image_id, i.reference AS image, s.id AS scan_id,
       SUM(f.ignored = 0 AND f.severity = 'critical') AS critical,
       SUM(f.ignored = 0 AND f.severity = 'high') AS high,
       SUM(f.ignored = 0 AND f.severity = 'medium') AS medium,
       SUM(f.ignored = 0 AND f.severity = 'low') AS low,
       SUM(f.ignored = 0 AND f.severity = 'negligible') AS negligible,
       SUM(f.ignored = 0 AND f.severity = 'unknown') AS unknown,
       SUM(f.ignored = 0) AS total,
       SUM(f.ignored = 0 AND d.fixed_version IS NOT NULL) AS fixable,
       SUM(f.ignored = 0 AND d.kev = 1) AS known_exploited,
       SUM(f.ignored = 1) AS ignored
FROM latest_scans s
JOIN images i ON i.id = s.image_id
JOIN findings f ON f.scan_id = s.id AND f.kind = 'vulnerability'
JOIN vulnerability_details d ON d.finding_id = f.id
GROUP BY s.id;

-- the software list with its vulnerabilities, per package of every image's current scan
CREATE VIEW package_vulnerabilities AS
SELECT p.id AS package_id, i.reference AS image, p.image_id, p.scan_id, p.ecosystem, p.name, p.version,
       p.source_name, p.path, p.layer_index, p.vulnerability_count,
       (SELECT MIN(f.severity_rank) FROM findings f WHERE f.package_id = p.id AND f.kind = 'vulnerability'
          AND f.ignored = 0) AS worst_severity_rank,
       (SELECT COUNT(*) FROM findings f JOIN vulnerability_details d ON d.finding_id = f.id
         WHERE f.package_id = p.id AND f.kind = 'vulnerability' AND f.ignored = 0
           AND d.fixed_version IS NOT NULL) AS fixable
FROM packages p
JOIN latest_scans s ON s.id = p.scan_id
JOIN images i ON i.id = p.image_id;

CREATE INDEX idx_findings_package ON findings(package_id);
"""

# a digest of what a finding says, so that a rematch rewrites only the findings whose content changed
STEP3 = """
ALTER TABLE vulnerability_details ADD COLUMN content_hash TEXT;
"""

# NVD's CVE records, for the severity of findings whose own records carry none (nvd.py)
STEP4 = """
CREATE TABLE nvd_cves (
    cve TEXT PRIMARY KEY,
    last_modified TEXT,
    published TEXT,
    status TEXT,
    severity TEXT,
    cvss_score REAL,
    cvss_vector TEXT,
    cvss_version TEXT,
    source TEXT,
    description TEXT,
    imported_at TEXT
);
"""

# each record's own reference URLs (OSV `references`, NVD `references`, a vendor feed's links): a JSON list of
# {"url", "type"}, http(s) only and at most MAX_REFERENCES; references_dropped counts what was left out
# (-1: stored before this step, so the next import of the record reads it again for its references)
STEP5 = """
ALTER TABLE advisories ADD COLUMN reference_urls TEXT;
ALTER TABLE advisories ADD COLUMN references_dropped INTEGER;
ALTER TABLE nvd_cves ADD COLUMN reference_urls TEXT;
ALTER TABLE nvd_cves ADD COLUMN references_dropped INTEGER;
UPDATE advisories SET references_dropped = -1;
"""

# what each import replaced, so that a rematch re-evaluates only the packages a changed record named before
# or names now (analyzers/vulnerabilities/rematch.py): a replaced record's package keys and the names it went
# by, as they were before the import (the new ones are in advisory_affected and advisory_aliases, under the
# record's import_id). Kept from the import `first_import` on; a scan matched before it is evaluated in full.
STEP6 = """
CREATE TABLE advisory_changes (
    import_id INTEGER NOT NULL,
    ecosystem TEXT,
    release TEXT,
    name TEXT,
    alias TEXT
);
CREATE INDEX idx_advisory_changes_import ON advisory_changes(import_id);
CREATE TABLE advisory_changes_since (first_import INTEGER NOT NULL);
INSERT INTO advisory_changes_since SELECT coalesce(MAX(id), 0) + 1 FROM advisory_imports;
"""

STEPS = [STEP1, STEP2, STEP3, STEP4, STEP5, STEP6]
dbm.register_schema("advisories", STEPS)


def ensure(database) -> None:
    dbm.ensure_schema(database, "advisories", STEPS)


def has_store(conn) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='advisory_affected'").fetchone() is not None


_SUMMARY: dict = {}  # the last feed_summary, by (database file, store_state): one entry


def feed_summary(conn) -> dict:
    """What the store holds, recorded with each evaluation so a finding can be traced to its feed. Its
    COUNT and MAXes read every advisory (about 34 ms at 75,000), and the writer asks for every image: the
    answer is kept while the store's state (store_state, a few index steps) and the database file stay
    the same."""
    if not has_store(conn):
        return {"advisories": 0}
    files = tuple(tuple(r) for r in conn.execute("PRAGMA database_list"))
    key = (files, tuple(store_state(conn).items()))
    kept = _SUMMARY.get(key) if files[0][2] else None  # an in-memory or temporary database: asked each time
    if kept is None:
        row = conn.execute("SELECT COUNT(*), MAX(imported_at), MAX(modified) FROM advisories").fetchone()
        last = conn.execute("SELECT MAX(id) FROM advisory_imports").fetchone()[0]
        kept = {"advisories": row[0], "last_import": row[1], "newest_record": row[2], "import_id": last}
        _SUMMARY.clear()
        _SUMMARY[key] = kept
    return dict(kept)


def store_state(conn) -> dict:
    """What the store holds, as a rescan asks it for every image (ingest/reuse.py, the evaluate key), in a few
    index steps instead of `feed_summary`'s COUNT and MAX over every advisory (34 ms at 75,000 advisories, on
    every rescan and in the writer for every image). Every write to the store's tables happens inside an
    import, whose row in `advisory_imports` is made before its first write and finished after its last
    (importer.Importer): the newest import, the newest end and how many are unfinished change with every
    import; the newest advisory row (by rowid, which an INSERT OR REPLACE moves past every other) changes
    with every batch of advisories an import writes while it runs."""
    if not has_store(conn):
        return {"advisories": 0}
    newest, ended, running = conn.execute(
        "SELECT MAX(id), MAX(finished_at), SUM(finished_at IS NULL) FROM advisory_imports").fetchone()
    top = conn.execute("SELECT MAX(rowid) FROM advisories").fetchone()[0]
    return {"import_id": newest, "last_finished": ended, "running": running or 0, "newest_row": top}


def coverage_by_release(conn) -> list[dict]:
    """What the store covers: per ecosystem and release, advisories (withdrawn ones are not matched and
    not counted), package entries and the newest `modified`."""
    if not has_store(conn):
        return []
    cols = ("ecosystem", "release", "advisories", "entries", "newest_modified")
    return [dict(zip(cols, r)) for r in conn.execute(
        "SELECT af.ecosystem, af.release, COUNT(DISTINCT af.advisory_id), COUNT(*), MAX(a.modified)"
        " FROM advisory_affected af JOIN advisories a ON a.id = af.advisory_id"
        " GROUP BY af.ecosystem, af.release ORDER BY af.ecosystem, af.release")]


def _table_count(conn, table: str) -> int:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", [table]).fetchone() is None:
        return 0
    return conn.execute(f"SELECT COUNT(*) FROM [{table}]").fetchone()[0]


def enrichment_counts(conn) -> dict:
    withdrawn = conn.execute("SELECT COUNT(*) FROM advisories WHERE withdrawn IS NOT NULL").fetchone()[0] \
        if has_store(conn) else 0
    return {"withdrawn": withdrawn, "nvd": _table_count(conn, "nvd_cves"), "kev": _table_count(conn, "kev"),
            "epss": _table_count(conn, "epss")}


# --- references -----------------------------------------------------------------------------------

def safe_url(value: Any) -> str | None:
    """The URL when it is an http(s) link without whitespace (quotes, angle brackets and backslashes
    percent-encoded); None otherwise (javascript:, data:, relative paths and anything else are never stored)."""
    if not isinstance(value, str):
        return None
    url = value.strip().translate(_ENCODE)
    if len(url) > MAX_URL or not _SAFE_URL.match(url):
        return None
    return url


def clean_references(raw: Any) -> tuple[list[dict], int, int]:
    """(kept [{"url", "type"}], dropped beyond MAX_REFERENCES, refused as not http(s)) of a record's
    references: a list of {"url": ..., "type"/"category"/"tags": ...} objects or of URL strings."""
    kept: list[dict] = []
    seen: set[str] = set()
    dropped = refused = 0
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, str):
            url, kind = safe_url(item), None
        elif isinstance(item, dict):
            url = safe_url(item.get("url"))
            kind = item.get("type") or item.get("category")
            if kind is None and isinstance(item.get("tags"), list):
                kind = ",".join(t for t in item["tags"] if isinstance(t, str)) or None
        else:
            url, kind = None, None
        if url is None:
            refused += 1
            continue
        if url in seen:
            continue
        if len(kept) >= MAX_REFERENCES:
            dropped += 1
            continue
        seen.add(url)
        kept.append({"url": url, "type": str(kind)[:40] if isinstance(kind, str) and kind else None})
    return kept, dropped, refused


def _stored_urls(text: Any) -> list[dict]:
    try:
        items = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return [{"url": u, "type": i.get("type")} for i in items if isinstance(i, dict) and (u := safe_url(i.get("url")))] \
        if isinstance(items, list) else []


def references_for(conn, findings: Iterable[tuple[Any, list[str]]]) -> dict[Any, dict]:
    """Per finding key: {"references": [{"url", "type", "source"}], "truncated": bool} from the stored
    records named by the finding's id and aliases (the matched records are among them), then NVD's for
    its CVEs; de-duplicated, at most MAX_SHOWN. Read at report time, so a re-import updates them."""
    wanted = [(key, [i for i in ids if isinstance(i, str) and i]) for key, ids in findings]
    names = sorted({i for _, ids in wanted for i in ids})
    out: dict[Any, dict] = {key: {"references": [], "truncated": False} for key, _ in wanted}
    if not names:
        return out
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                       " AND name IN ('advisories', 'nvd_cves')")}
    by_id: dict[str, tuple[list[dict], int]] = {}
    marks = json.dumps(names)
    if "advisories" in have and _has_column(conn, "advisories", "reference_urls"):
        for rid, text, dropped in conn.execute(
                "SELECT id, reference_urls, references_dropped FROM advisories WHERE id IN (SELECT value FROM json_each(?))"
                " AND (reference_urls IS NOT NULL OR references_dropped > 0)", [marks]):
            by_id[rid] = (_stored_urls(text), dropped or 0)
    nvd: dict[str, tuple[list[dict], int]] = {}
    if "nvd_cves" in have and _has_column(conn, "nvd_cves", "reference_urls"):
        for cve, text, dropped in conn.execute(
                "SELECT cve, reference_urls, references_dropped FROM nvd_cves WHERE cve IN (SELECT value FROM json_each(?))"
                " AND (reference_urls IS NOT NULL OR references_dropped > 0)", [marks]):
            nvd[cve] = (_stored_urls(text), dropped or 0)
    for key, ids in wanted:
        got, seen = out[key], set()
        sources = [(i, by_id[i]) for i in ids if i in by_id] + [(f"NVD {i}", nvd[i]) for i in ids if i in nvd]
        for source, (refs, dropped) in sources:
            got["truncated"] = got["truncated"] or dropped > 0
            for ref in refs:
                if ref["url"] in seen:
                    continue
                if len(got["references"]) >= MAX_SHOWN:
                    got["truncated"] = True
                    break
                seen.add(ref["url"])
                got["references"].append({**ref, "source": source})
    return out


def _has_column(conn, table: str, column: str) -> bool:
    return any(r[1] == column for r in conn.execute(f"PRAGMA table_info([{table}])"))
