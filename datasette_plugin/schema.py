"""The plugin's report tables and its settings table, kept as a schema part of its own ('plugin_views').

Each report table (image_overview, vulnerabilities_view, ...) is one of the SELECTs below kept
materialized: text columns (image reference, layer command) because Datasette loses foreign-key
labels on views, only each image's current scan (images.last_scan_id, set when a scan finishes), and
an index on every column a facet or a sort reads. As plain views over 60,000 findings every facet
re-ran the joins (3-5 s a table page for 1,000 images); as tables a page stays within the facet
time limit. `refresh()` rebuilds the rows of the images whose scans or findings changed since it
last ran (new scans, rematched vulnerabilities, deleted findings), cheaply detected from row ids.

A database Datasette cannot write (immutable, read-only file) keeps whatever it had: the pages then
read the SELECTs as subqueries when the tables are missing or stale, so they stay correct, only slower.
"""
from __future__ import annotations

import json

from stowaway.ingest import db as dbm
from stowaway.ingest.exports import SELECTS as EXPORT_SELECTS

LAYER_JOIN = "LEFT JOIN image_layers il ON il.image_id = f.image_id AND il.position = f.layer_index"
CURRENT = "JOIN images i ON i.id = f.image_id AND f.scan_id = i.last_scan_id"


# newest image (by created time) of its repository
LATEST_WINDOW = ("CASE WHEN ROW_NUMBER() OVER (PARTITION BY coalesce(i.repository, i.reference)\n"
                 "                                    ORDER BY i.created DESC, i.id DESC) = 1 THEN 1 ELSE 0 END")


def _count(where: str) -> str:
    return f"(SELECT COUNT(*) FROM findings f WHERE f.scan_id = i.last_scan_id AND f.ignored = 0 AND {where})"


SELECTS = {
    "image_overview": f"""
SELECT i.id, i.reference, i.repository, i.tag, i.platform, i.size,
       trim(coalesce(nullif(i.os_name, ''), coalesce(i.os_family, '') || ' ' || coalesce(i.os_version, ''))) AS os,
       i.created, i.last_scan_id AS scan_id, s.finished_at AS last_scan,
       {_count("f.kind = 'vulnerability'")} AS vulnerabilities,
       {_count("f.kind = 'vulnerability' AND f.severity_rank = 0")} AS critical,
       {_count("f.kind = 'vulnerability' AND f.severity_rank = 1")} AS high,
       {_count("f.kind = 'malware'")} AS malicious_files,
       (SELECT COUNT(*) FROM packages p WHERE p.scan_id = i.last_scan_id) AS packages,
       {_count("f.kind = 'unsafe_setting' AND f.status = 'fail'")} AS unsafe_settings,
       {_count("f.kind = 'secret'")} AS secrets,
       {_count("f.kind = 'compliance'")} AS compliance,
       {_count("f.status = 'fail' AND f.severity_rank = 0")} AS failing_critical,
       {_count("f.status = 'fail' AND f.severity_rank = 1")} AS failing_high,
       {_count("f.status = 'fail' AND f.severity_rank = 2")} AS failing_medium,
       {_count("f.status = 'fail' AND f.severity_rank = 3")} AS failing_low,
       {_count("f.status = 'fail' AND f.severity_rank = 4")} AS failing_negligible,
       {_count("f.status = 'fail' AND f.severity_rank >= 5")} AS failing_unknown,
       (SELECT CASE d.approved WHEN 1 THEN 'approved' WHEN 0 THEN 'not approved' END
          FROM findings f JOIN base_image_details d ON d.finding_id = f.id
         WHERE f.scan_id = i.last_scan_id AND f.kind = 'base_image' ORDER BY f.id DESC LIMIT 1) AS base_image,
       {LATEST_WINDOW} AS latest_version
FROM images i LEFT JOIN scans s ON s.id = i.last_scan_id
""",
    # the two exportable reports: one SELECT, shared with `stowaway export` (ingest/exports.py)
    "vulnerabilities_view": EXPORT_SELECTS["vulnerabilities"],
    "unsafe_settings_view": EXPORT_SELECTS["baseline"],
    # Only the masked value: the database never holds another, and this view must not invent one.
    "secrets_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, coalesce(d.rule_id, f.rule) AS rule,
       f.title, f.path, d.line, d.masked, f.layer_index, il.created_by AS layer_created_by, f.visible,
       coalesce(d.source, 'file') AS source, f.ignored, f.ignore_reason, f.scan_id
FROM findings f {CURRENT}
JOIN secret_details d ON d.finding_id = f.id
{LAYER_JOIN}
WHERE f.kind = 'secret'
""",
    "malware_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, coalesce(d.rule, f.rule) AS rule,
       d.namespace, f.title, f.path, d.sha256, d.size, f.layer_index, il.created_by AS layer_created_by, f.visible,
       f.ignored, f.ignore_reason, f.scan_id
FROM findings f {CURRENT}
JOIN malware_details d ON d.finding_id = f.id
{LAYER_JOIN}
WHERE f.kind = 'malware'
""",
    "compliance_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, d.name, d.version,
       coalesce(d.rule, f.rule) AS rule, d.reason, f.path, f.layer_index, il.created_by AS layer_created_by,
       f.ignored, f.ignore_reason, f.scan_id
FROM findings f {CURRENT}
JOIN compliance_details d ON d.finding_id = f.id
{LAYER_JOIN}
WHERE f.kind = 'compliance'
""",
    "findings_report": f"""
SELECT f.id, f.kind, f.severity, f.severity_rank, f.title, f.rule, f.status, f.path, f.layer_index,
       il.created_by AS layer_created_by, f.visible, f.ignored, f.ignore_reason, i.reference AS image, f.image_id,
       f.scan_id, p.name AS package, p.version AS package_version, p.ecosystem
FROM findings f {CURRENT}
LEFT JOIN packages p ON p.id = f.package_id
{LAYER_JOIN}
""",
    "packages_view": """
SELECT p.id, i.reference AS image, p.image_id, p.ecosystem, p.name, p.version, p.vulnerability_count, p.path,
       p.layer_index, il.created_by AS layer_created_by, p.purl, p.licenses, p.os_owned, p.scan_id
FROM packages p JOIN images i ON i.id = p.image_id AND p.scan_id = i.last_scan_id
LEFT JOIN image_layers il ON il.image_id = p.image_id AND il.position = p.layer_index
""",
    "base_image_view": f"""
SELECT f.id, i.reference AS image, f.image_id,
       CASE d.approved WHEN 1 THEN 'approved' WHEN 0 THEN 'not approved' ELSE 'not checked' END AS verdict,
       d.matched, d.closest, d.own_layers, d.guessed_boundary, f.severity, f.scan_id
FROM findings f {CURRENT}
JOIN base_image_details d ON d.finding_id = f.id
WHERE f.kind = 'base_image'
""",
}

# Which view holds which finding kind: the report's sections link into these.
VIEW_OF_KIND = {
    "vulnerability": "vulnerabilities_view",
    "unsafe_setting": "unsafe_settings_view",
    "secret": "secrets_view",
    "malware": "malware_view",
    "compliance": "compliance_view",
    "base_image": "base_image_view",
}

SETTINGS_TABLE = "stowaway_settings"
STATE_TABLE = "stowaway_refresh"
# refreshed per image, so the window (which needs every image of a repository) is set afterwards
MATERIALIZE = {**SELECTS, "image_overview": SELECTS["image_overview"].replace(LATEST_WINDOW, "0")}
IMAGE_KEY = {name: ("id" if name == "image_overview" else "image_id") for name in SELECTS}
INDEXED = {
    "image_overview": ["reference", "repository", "os", "latest_version", "critical", "vulnerabilities", "size",
                       "created", "last_scan", "base_image", "scan_id"],
    "vulnerabilities_view": ["image_id", "severity_rank", "severity", "vulnerability_id", "package", "fixed_version",
                             "cvss_score", "layer_index", "image", "scan_id"],
    "unsafe_settings_view": ["image_id", "severity_rank", "severity", "result", "category", "image", "scan_id"],
    "secrets_view": ["image_id", "severity_rank", "severity", "rule", "layer_index", "image", "scan_id"],
    "malware_view": ["image_id", "severity_rank", "severity", "rule", "layer_index", "image", "scan_id"],
    "compliance_view": ["image_id", "severity_rank", "name", "rule", "image", "scan_id"],
    "packages_view": ["image_id", "vulnerability_count", "ecosystem", "name", "image", "scan_id"],
    "base_image_view": ["image_id", "verdict", "image", "scan_id"],
    "findings_report": ["image_id", "kind", "severity_rank", "severity", "status", "rule", "image", "scan_id"],
}
# the layer facet groups by position and command together
LAYER_INDEXED = ["vulnerabilities_view", "secrets_view", "malware_view", "unsafe_settings_view", "compliance_view",
                 "packages_view", "findings_report"]
LATEST_UPDATE = """
UPDATE image_overview SET latest_version = (id = (
    SELECT o.id FROM image_overview o
    WHERE coalesce(o.repository, o.reference) = coalesce(image_overview.repository, image_overview.reference)
    ORDER BY o.created DESC, o.id DESC LIMIT 1))
"""

# the tables step 2 made (steps are never edited: later tables come in later steps)
STEP2 = ["image_overview", "vulnerabilities_view", "unsafe_settings_view", "secrets_view", "malware_view",
         "compliance_view", "packages_view", "base_image_view"]

PLUGIN_VIEWS = [
    "\n".join(f"CREATE VIEW IF NOT EXISTS [{name}] AS {SELECTS[name]};" for name in STEP2)
    # the 'latest versions only' filter and the repository facet group by these
    + "\nCREATE INDEX IF NOT EXISTS idx_images_repository ON images(repository, created);"
    + f"""
CREATE TABLE IF NOT EXISTS {SETTINGS_TABLE} (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TEXT,
    actor TEXT,
    UNIQUE (kind, value)
);""",
    # step 2: the views become tables (empty until refresh() fills them)
    "\n".join(f"DROP VIEW IF EXISTS [{name}]; CREATE TABLE [{name}] AS SELECT * FROM ({MATERIALIZE[name]}) WHERE 0;"
              for name in STEP2)
    + "\n".join(f"CREATE INDEX [idx_{name}_{col}] ON [{name}]([{col}]);"
                 for name in STEP2 for col in INDEXED[name])
    + "\nCREATE UNIQUE INDEX idx_image_overview_id ON image_overview(id);"
    + f"\nCREATE TABLE {STATE_TABLE} (name TEXT PRIMARY KEY, value TEXT);",
    # step 3: every image's findings of every kind in one table; layer facet indexes
    f"CREATE TABLE findings_report AS SELECT * FROM ({SELECTS['findings_report']}) WHERE 0;\n"
    # image_overview gained the per-severity counts of failing findings after step 2 was first applied
    + f"DROP TABLE image_overview; CREATE TABLE image_overview AS SELECT * FROM ({MATERIALIZE['image_overview']})"
      " WHERE 0;\nCREATE UNIQUE INDEX idx_image_overview_id ON image_overview(id);\n"
    + "\n".join(f"CREATE INDEX [idx_image_overview_{col}] ON image_overview([{col}]);"
                 for col in INDEXED["image_overview"]) + "\n"
    + "\n".join(f"CREATE INDEX [idx_findings_report_{col}] ON findings_report([{col}]);"
                 for col in INDEXED["findings_report"])
    + "\n".join(f"CREATE INDEX [idx_{name}_layer] ON [{name}](layer_index, layer_created_by);" for name in LAYER_INDEXED)
    + f"\nDELETE FROM {STATE_TABLE};",  # rebuild everything once
    # step 4: the dashboard's top vulnerable packages, read from the index alone (85 -> 18 ms on 40,000 rows)
    "CREATE INDEX idx_vulnerabilities_view_package_totals ON vulnerabilities_view(package, ecosystem, ignored, image_id);",
]


def ensure(conn) -> None:
    """Creates the report tables and the settings table (a write: only on a writable database)."""
    dbm.ensure_schema(conn, "plugin_views", PLUGIN_VIEWS)


def source(conn_tables: set[str], name: str, fresh: bool = True) -> str:
    """The report table when the database has it up to date, else its SELECT as a subquery."""
    return f"[{name}]" if fresh and name in conn_tables else f"({SELECTS[name]})"


# --- keeping the tables current --------------------------------------------------------------------

def current_state(conn) -> dict:
    """What changes when scans, rematches or deletions change the report: cheap, from primary keys."""
    row = conn.execute("SELECT (SELECT MAX(id) FROM scans), (SELECT MAX(id) FROM findings),"
                       " (SELECT COUNT(*) FROM findings), (SELECT MAX(id) FROM packages), (SELECT COUNT(*) FROM packages),"
                       " (SELECT COUNT(*) FROM images), (SELECT MAX(id) FROM images)").fetchone()
    return dict(zip(("scans", "max_finding", "findings", "max_package", "packages", "images", "max_image"),
                    [r or 0 for r in row]))


def stored_state(conn) -> dict | None:
    try:
        row = conn.execute(f"SELECT value FROM {STATE_TABLE} WHERE name = 'state'").fetchone()
    except Exception:  # no table: never refreshed
        return None
    return json.loads(row[0]) if row else None


def has_tables(conn) -> bool:
    return conn.execute(f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{STATE_TABLE}'").fetchone() is not None


def is_fresh(conn) -> bool:
    if not has_tables(conn):
        return False
    version = conn.execute("SELECT version FROM schema_parts WHERE name = 'plugin_views'").fetchone()
    return bool(version) and version[0] == len(PLUGIN_VIEWS) and stored_state(conn) == current_state(conn)


def _stale_images(conn, old: dict, new: dict) -> set[int] | None:
    """Images whose report rows are out of date, or None when only a full rebuild will do."""
    ids = {r[0] for r in conn.execute(
        "SELECT i.id FROM images i LEFT JOIN image_overview o ON o.id = i.id"
        " WHERE o.id IS NULL OR o.scan_id IS NOT i.last_scan_id")}
    ids |= {r[0] for r in conn.execute("SELECT DISTINCT image_id FROM findings WHERE id > ?", [old["max_finding"]])}
    ids |= {r[0] for r in conn.execute("SELECT DISTINCT image_id FROM packages WHERE id > ?", [old["max_package"]])}
    added_findings = conn.execute("SELECT COUNT(*) FROM findings WHERE id > ?", [old["max_finding"]]).fetchone()[0]
    added_packages = conn.execute("SELECT COUNT(*) FROM packages WHERE id > ?", [old["max_package"]]).fetchone()[0]
    if new["findings"] != old["findings"] + added_findings:  # some were deleted: whose?
        for name in MATERIALIZE:
            if name not in ("image_overview", "packages_view", "findings_report"):
                ids |= {r[0] for r in conn.execute(
                    f"SELECT DISTINCT image_id FROM [{name}] t WHERE NOT EXISTS"
                    " (SELECT 1 FROM findings f WHERE f.id = t.id)")}
    if new["packages"] != old["packages"] + added_packages:
        ids |= {r[0] for r in conn.execute("SELECT DISTINCT image_id FROM packages_view t WHERE NOT EXISTS"
                                           " (SELECT 1 FROM packages p WHERE p.id = t.id)")}
    if new["images"] != old["images"] + conn.execute("SELECT COUNT(*) FROM images WHERE id > ?",
                                                     [old["max_image"]]).fetchone()[0]:
        return None
    return {i for i in ids if i is not None}


def rebuild(conn, image_ids=None) -> None:
    """Rebuilds the report rows of IMAGE_IDS (every image when None), in one transaction."""
    with conn:
        for name, sql in MATERIALIZE.items():
            key = IMAGE_KEY[name]
            if image_ids is None:
                conn.execute(f"DELETE FROM [{name}]")
                conn.execute(f"INSERT INTO [{name}] SELECT * FROM ({sql})")
            elif image_ids:
                ids = json.dumps(sorted(image_ids))
                conn.execute(f"DELETE FROM [{name}] WHERE [{key}] IN (SELECT value FROM json_each(?))", [ids])
                conn.execute(f"INSERT INTO [{name}] SELECT * FROM ({sql}) WHERE [{key}] IN"
                             " (SELECT value FROM json_each(?))", [ids])
        conn.execute(LATEST_UPDATE)
        conn.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} (name, value) VALUES ('state', ?)",
                     [json.dumps(current_state(conn))])


def refresh(conn) -> bool:
    """Brings the report tables up to date; True when something was rebuilt."""
    ensure(conn)
    new, old = current_state(conn), stored_state(conn)
    if old == new:
        return False
    rebuild(conn, None if old is None else _stale_images(conn, old, new))
    return True
