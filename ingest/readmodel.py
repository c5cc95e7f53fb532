"""The one read model every surface reads: CLI, JSON report, SBOM, Datasette pages and renderers,
notebooks. A surface never computes its own counts or its own idea of "current".

- *Current scan* of an image: `images.last_scan_id` (set by the writer when a scan finishes), read
  through the `latest_scans` view. Nothing else defines it.
- *Failing*: a finding whose status is not `pass` or `not_applicable` (`FAILING` below). Passed and
  not-applicable checks are check results, not findings.
- `failing_findings` (view): the failing findings of every image's current scan, suppressed ones
  included and marked.
- `check_results` (view): every check of the current scans (the unsafe-setting checks, pass, not
  applicable or fail, and any other finding whose status is pass or not applicable, like the base
  image check when no approved base is configured), with its result.
- `image_finding_counts` (view): per image × kind × severity, how many failing findings are
  unsuppressed (`failing`) and how many are suppressed (`suppressed`).
- The report tables the Datasette pages facet on (`image_overview`, `findings_report`, one per kind,
  `packages_view`) are those SELECTs kept materialized, with an index on every faceted column: as
  plain views over 60,000 findings every facet re-ran the joins (3-5 s a page for 1,000 images).
  They are created and filled by a migration, and kept current inside the transaction that changes
  them: a trigger rebuilds an image's rows when its `last_scan_id` changes (the end of every scan), and
  the findings store calls `refresh_images` when a suppression changes a current scan, and
  `apply_finding_changes` (the rows of the findings written and deleted, and the counts they move)
  when rematch rewrites some of its findings.
  Readers never write; a database opened `immutable` serves as it is.
"""
from __future__ import annotations

import json
import re
from typing import Sequence

FAILING = "coalesce(f.status, 'fail') NOT IN ('pass', 'not_applicable')"
LAYER_JOIN = "LEFT JOIN image_layers il ON il.image_id = f.image_id AND il.position = f.layer_index"
CURRENT = "JOIN images i ON i.id = f.image_id AND f.scan_id = i.last_scan_id"

# newest image (by created time) of its repository
# an image is its repository's latest version when it was created last; images created at the same
# moment (one build tagged twice, reproducible builds) are told apart by their reference, never by the
# order they happened to be scanned in, so every executor and every rescan order gives the same answer
LATEST_ORDER = "created DESC, reference DESC, id DESC"
LATEST_WINDOW = ("CASE WHEN ROW_NUMBER() OVER (PARTITION BY coalesce(i.repository, i.reference)\n"
                 "                                    ORDER BY i.created DESC, i.reference DESC, i.id DESC) = 1"
                 " THEN 1 ELSE 0 END")

VIEWS = f"""
CREATE VIEW failing_findings AS
SELECT f.id, f.image_id, i.reference AS image, f.scan_id, f.kind, f.severity, f.severity_rank, f.title, f.rule,
       f.status, f.path, f.layer_index, il.created_by AS layer_created_by, f.visible, f.suppressed,
       f.suppressed_reason, f.fingerprint, p.name AS package, p.version AS package_version, p.ecosystem
FROM findings f {CURRENT}
LEFT JOIN packages p ON p.id = f.package_id
{LAYER_JOIN}
WHERE {FAILING};

CREATE VIEW check_results AS
SELECT f.id, f.image_id, i.reference AS image, f.scan_id, f.kind, f.severity, f.severity_rank, f.title,
       coalesce(d.check_id, f.rule) AS check_id, coalesce(d.category, f.kind) AS category,
       coalesce(d.result, f.status) AS result, d.target, d.evidence, d.suggestion, d.benchmark, f.path,
       f.layer_index, f.suppressed, f.suppressed_reason
FROM findings f {CURRENT}
LEFT JOIN setting_details d ON d.finding_id = f.id
WHERE f.kind = 'unsafe_setting' OR NOT ({FAILING});

CREATE VIEW image_finding_counts AS
SELECT i.id AS image_id, i.reference AS image, i.last_scan_id AS scan_id, f.kind, f.severity, f.severity_rank,
       SUM(f.suppressed = 0) AS failing, SUM(f.suppressed <> 0) AS suppressed
FROM findings f {CURRENT}
WHERE {FAILING}
GROUP BY i.id, f.kind, f.severity;
"""


# In the report SELECTs every findings column but the scan and image ids is written `+f.column`: that
# keeps SQLite from reading an image's findings through the index on kind, severity or suppressed
# (every finding of that value in the database, per image refreshed: rematch over 10,000 images went
# quadratic) when the statistics are missing or stale.
def _count(where: str) -> str:
    return (f"(SELECT COUNT(*) FROM findings f WHERE f.scan_id = i.last_scan_id AND +f.suppressed = 0"
            f" AND {FAILING} AND {where})")


SELECTS = {
    "image_overview": f"""
SELECT i.id, i.reference, i.repository, i.tag, i.platform, i.size,
       trim(coalesce(nullif(i.os_name, ''), coalesce(i.os_family, '') || ' ' || coalesce(i.os_version, ''))) AS os,
       i.created, i.last_scan_id AS scan_id, s.finished_at AS last_scan,
       {_count("+f.kind = 'vulnerability'")} AS vulnerabilities,
       {_count("+f.kind = 'vulnerability' AND +f.severity_rank = 0")} AS critical,
       {_count("+f.kind = 'vulnerability' AND +f.severity_rank = 1")} AS high,
       {_count("+f.kind = 'malware'")} AS malicious_files,
       (SELECT COUNT(*) FROM packages p WHERE p.scan_id = i.last_scan_id) AS packages,
       {_count("+f.kind = 'unsafe_setting'")} AS unsafe_settings,
       {_count("+f.kind = 'secret'")} AS secrets,
       {_count("+f.kind = 'compliance'")} AS compliance,
       {_count("+f.severity_rank = 0")} AS failing_critical,
       {_count("+f.severity_rank = 1")} AS failing_high,
       {_count("+f.severity_rank = 2")} AS failing_medium,
       {_count("+f.severity_rank = 3")} AS failing_low,
       {_count("+f.severity_rank = 4")} AS failing_negligible,
       {_count("+f.severity_rank >= 5")} AS failing_unknown,
       (SELECT COUNT(*) FROM findings f WHERE f.scan_id = i.last_scan_id AND +f.suppressed <> 0 AND {FAILING})
           AS suppressed,
       (SELECT CASE d.approved WHEN 1 THEN 'approved' WHEN 0 THEN 'not approved' END
          FROM findings f JOIN base_image_details d ON d.finding_id = f.id
         WHERE f.scan_id = i.last_scan_id AND +f.kind = 'base_image' ORDER BY f.id DESC LIMIT 1) AS base_image,
       {LATEST_WINDOW} AS latest_version
FROM images i LEFT JOIN scans s ON s.id = i.last_scan_id
""",
    "vulnerabilities_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, d.vulnerability_id, d.cvss_score,
       coalesce(p.name, d.package_name) AS package, coalesce(p.version, d.installed_version) AS installed_version,
       d.fixed_version, CASE WHEN coalesce(d.fixed_version, '') <> '' THEN 'yes' ELSE 'no' END AS fix_available,
       coalesce(p.ecosystem, d.ecosystem) AS ecosystem, f.path, f.layer_index, il.created_by AS layer_created_by,
       d.cvss_vector, d.aliases, d.published, f.title, d.solution, f.suppressed, f.suppressed_reason, f.scan_id
FROM findings f {CURRENT}
JOIN vulnerability_details d ON d.finding_id = f.id
LEFT JOIN packages p ON p.id = f.package_id
{LAYER_JOIN}
WHERE +f.kind = 'vulnerability'
""",
    # every check with its result: the check-results page (pass and not applicable included)
    "unsafe_settings_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, d.category, d.check_id, f.title,
       coalesce(d.result, f.status) AS result, d.target, d.evidence, d.description, d.suggestion, d.benchmark,
       f.path, f.layer_index, il.created_by AS layer_created_by, f.suppressed, f.suppressed_reason, f.scan_id
FROM findings f {CURRENT}
JOIN setting_details d ON d.finding_id = f.id
{LAYER_JOIN}
WHERE +f.kind = 'unsafe_setting'
""",
    # Only the masked value: the database never holds another, and this view must not invent one.
    "secrets_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, coalesce(d.rule_id, f.rule) AS rule,
       f.title, f.path, d.line, d.masked, f.layer_index, il.created_by AS layer_created_by, f.visible,
       coalesce(d.source, 'file') AS source, f.suppressed, f.suppressed_reason, f.scan_id
FROM findings f {CURRENT}
JOIN secret_details d ON d.finding_id = f.id
{LAYER_JOIN}
WHERE +f.kind = 'secret'
""",
    "malware_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, coalesce(d.rule, f.rule) AS rule,
       d.namespace, f.title, f.path, d.sha256, d.size, f.layer_index, il.created_by AS layer_created_by, f.visible,
       f.suppressed, f.suppressed_reason, f.scan_id
FROM findings f {CURRENT}
JOIN malware_details d ON d.finding_id = f.id
{LAYER_JOIN}
WHERE +f.kind = 'malware'
""",
    "compliance_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, d.name, d.version,
       coalesce(d.rule, f.rule) AS rule, d.reason, f.path, f.layer_index, il.created_by AS layer_created_by,
       f.suppressed, f.suppressed_reason, f.scan_id
FROM findings f {CURRENT}
JOIN compliance_details d ON d.finding_id = f.id
{LAYER_JOIN}
WHERE +f.kind = 'compliance'
""",
    # "All findings": failing findings only (passed and not-applicable checks are check results)
    "findings_report": f"""
SELECT f.id, f.kind, f.severity, f.severity_rank, f.title, f.rule, f.status, f.path, f.layer_index,
       il.created_by AS layer_created_by, f.visible, f.suppressed, f.suppressed_reason, i.reference AS image,
       f.image_id, f.scan_id, p.name AS package, p.version AS package_version, p.ecosystem
FROM findings f {CURRENT}
LEFT JOIN packages p ON p.id = f.package_id
{LAYER_JOIN}
WHERE {FAILING}
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
WHERE +f.kind = 'base_image'
""",
}

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
    "findings_report": ["image_id", "kind", "severity_rank", "severity", "status", "suppressed", "rule", "image",
                        "scan_id"],
}
# the layer facet groups by position and command together
LAYER_INDEXED = ["vulnerabilities_view", "secrets_view", "malware_view", "unsafe_settings_view", "compliance_view",
                 "packages_view", "findings_report"]


def _latest_update(where: str = "") -> str:
    return f"""
UPDATE image_overview SET latest_version = (id = (
    SELECT o.id FROM image_overview o
    WHERE coalesce(o.repository, o.reference) = coalesce(image_overview.repository, image_overview.reference)
    ORDER BY o.created DESC, o.reference DESC, o.id DESC LIMIT 1)){where}"""


# the image columns the report tables show: a change to any of them (a new current scan above all)
# rebuilds the image's rows
IMAGE_COLUMNS = ("last_scan_id", "reference", "repository", "tag", "platform", "size", "created", "os_name",
                 "os_family", "os_version")


def _rows_of(image: str, counted: bool = False) -> str:
    """Statements rebuilding the report rows of the image whose id is the SQL expression IMAGE (and,
    COUNTED, their kept facet counts)."""
    out = []
    for name, sql in MATERIALIZE.items():
        key = IMAGE_KEY[name]
        count = counted and name in COUNTED_FACETS
        if count:
            out.append(_facet_delta(name, f"[{key}] = {image}", "-"))
        out.append(f"DELETE FROM [{name}] WHERE [{key}] = {image};")
        out.append(f"INSERT INTO [{name}] SELECT * FROM ({sql}) WHERE [{key}] = {image};")
        if count:
            out.append(_facet_delta(name, f"[{key}] = {image}", "+"))
    return "\n".join(out)


# the first read-model migration (ingest/db.py SCHEMA_V3 appends it): views, report tables, their
# indexes, triggers, and every row built once. A migration step is never edited: a later change to
# these SELECTs comes with a later step that rebuilds the tables.
OLD_PLUGIN_TABLES = ["stowaway_refresh"]


def migration_v3() -> str:
    parts = [VIEWS, "CREATE INDEX IF NOT EXISTS idx_images_repository ON images(repository, created);"]
    parts.append("DELETE FROM schema_parts WHERE name = 'plugin_views';")
    for name, sql in MATERIALIZE.items():
        parts.append(f"CREATE TABLE [{name}] AS SELECT * FROM ({sql}) WHERE 0;")
        parts.append(f"INSERT INTO [{name}] SELECT * FROM ({sql});")
        parts += [f"CREATE INDEX [idx_{name}_{col}] ON [{name}]([{col}]);" for col in INDEXED[name]]
    parts.append("CREATE UNIQUE INDEX idx_image_overview_id ON image_overview(id);")
    parts += [f"CREATE INDEX [idx_{name}_layer] ON [{name}](layer_index, layer_created_by);" for name in LAYER_INDEXED]
    # the dashboard's top vulnerable packages, read from the index alone
    parts.append("CREATE INDEX idx_vulnerabilities_view_package_totals ON vulnerabilities_view(package, ecosystem,"
                 " suppressed, image_id);")
    parts.append(_latest_update() + ";")
    parts.append(_current_scan_triggers())
    return "\n".join(parts)


def _current_scan_triggers(counted: bool = False) -> str:
    return f"""
CREATE TRIGGER read_model_current_scan AFTER UPDATE ON images
WHEN {" OR ".join(f"NEW.[{c}] IS NOT OLD.[{c}]" for c in IMAGE_COLUMNS)}
BEGIN
{_rows_of("NEW.id", counted)}
{_latest_update(" WHERE coalesce(repository, reference) = coalesce(NEW.repository, NEW.reference)")};
END;
CREATE TRIGGER read_model_image_deleted AFTER DELETE ON images
BEGIN
{chr(10).join((_facet_delta(name, f"[{IMAGE_KEY[name]}] = OLD.id", "-") + chr(10) if counted and name in COUNTED_FACETS
               else "") + f"DELETE FROM [{name}] WHERE [{IMAGE_KEY[name]}] = OLD.id;" for name in MATERIALIZE)}
END;
"""


# Batch writes (ingest/writer.py): while the writer's transaction holds a row in `read_model_deferred`,
# the current-scan trigger leaves the report rows to the writer, which rebuilds them once for the
# batch's images (refresh_images) before it commits. The row never outlives that transaction, so no
# reader ever sees it; without it the trigger works as before.
def _batch_trigger(counted: bool = False) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS read_model_deferred (batch INTEGER PRIMARY KEY);
DROP TRIGGER IF EXISTS read_model_current_scan;
CREATE TRIGGER read_model_current_scan AFTER UPDATE ON images
WHEN ({" OR ".join(f"NEW.[{c}] IS NOT OLD.[{c}]" for c in IMAGE_COLUMNS)})
     AND NOT EXISTS (SELECT 1 FROM read_model_deferred)
BEGIN
{_rows_of("NEW.id", counted)}
{_latest_update(" WHERE coalesce(repository, reference) = coalesce(NEW.repository, NEW.reference)")};
END;
"""




# the latest-version flags of the repositories of some images (:ids, a JSON list), as _latest_update sets
# them: each repository's latest found once through the indexes on repository and reference (a repository
# is coalesce(repository, reference)), and only the flags that change written. _latest_update's
# `coalesce(...) IN` read every image_overview row, and its subquery every row again for each image of
# the repositories: 27 ms a batch at 10,000 images, growing with the square of a repository's versions.
LATEST_OF_IMAGES = f"""
WITH g(k) AS (SELECT DISTINCT coalesce(repository, reference) FROM images WHERE id IN (SELECT value FROM json_each(:ids))),
latest(id) AS (SELECT (SELECT o.id FROM image_overview o WHERE o.repository = g.k OR (o.repository IS NULL AND o.reference = g.k)
                       ORDER BY {LATEST_ORDER} LIMIT 1) FROM g)
UPDATE image_overview SET latest_version = (id IN (SELECT id FROM latest))
WHERE id IN (SELECT o.id FROM image_overview o, g WHERE o.repository = g.k OR (o.repository IS NULL AND o.reference = g.k))
  AND latest_version IS NOT (id IN (SELECT id FROM latest))"""


def refresh_images(conn, image_ids) -> None:
    """Rebuilds the report rows of IMAGE_IDS, in the caller's transaction (rematch, suppressions)."""
    ids = sorted({int(i) for i in image_ids if i is not None})
    if not ids:
        return
    marks = json.dumps(ids)
    counted = _has_facet_counts(conn)
    for name, sql in MATERIALIZE.items():
        key = IMAGE_KEY[name]
        # the kept counts of all the images' rows in one statement each way (read through the table's index
        # on the image; values the images share are counted once, not once an image)
        every = f"[{key}] IN (SELECT value FROM json_each(:ids))"
        delta = counted and name in COUNTED_FACETS
        grouped = _delta_columns(conn, name) if delta else []
        if delta:
            conn.execute(_facet_delta(name, every, "-", grouped), {"ids": marks})
        # the rows one image at a time: `= :id` is planned through the image's current scan, where an IN
        # list made SQLite read every finding of the table's kind in the database
        chosen = f"[{key}] = :id"
        for image_id in ids:
            conn.execute(f"DELETE FROM [{name}] WHERE {chosen}", {"id": image_id})
            conn.execute(f"INSERT INTO [{name}] SELECT * FROM ({sql}) WHERE {chosen}", {"id": image_id})
        if delta:
            conn.execute(_facet_delta(name, every, "+", grouped), {"ids": marks})
    conn.execute(LATEST_OF_IMAGES, {"ids": marks})
    keep_statistics(conn)


# image_overview's counts, as predicates over findings_report's rows (the failing findings of the
# current scans), the same as the _count() subqueries of its SELECT
OVERVIEW_COUNTS = {
    "vulnerabilities": "kind = 'vulnerability'", "critical": "kind = 'vulnerability' AND severity_rank = 0",
    "high": "kind = 'vulnerability' AND severity_rank = 1", "malicious_files": "kind = 'malware'",
    "unsafe_settings": "kind = 'unsafe_setting'", "secrets": "kind = 'secret'", "compliance": "kind = 'compliance'",
    "failing_critical": "severity_rank = 0", "failing_high": "severity_rank = 1", "failing_medium": "severity_rank = 2",
    "failing_low": "severity_rank = 3", "failing_negligible": "severity_rank = 4",
    "failing_unknown": "severity_rank >= 5",
}
# the report tables that hold a finding's own row, each with its counts; packages_view and image_overview
# are updated in place
FINDING_TABLES = ("vulnerabilities_view", "findings_report")
_CHOSEN = "id IN (SELECT value FROM json_each(:ids))"
# the schema part "report_row_ids" (ingest/db.py): the rows of given findings and packages found by their id,
# not by reading every row of their images
ROW_ID_INDEXES = "\n".join(f"CREATE INDEX IF NOT EXISTS [idx_{name}_id] ON [{name}](id);"
                           for name in (*FINDING_TABLES, "packages_view"))


def _overview_delta(sign: str, chosen: str = _CHOSEN) -> str:
    sums = ", ".join(f"SUM(CASE WHEN suppressed = 0 AND {cond} THEN 1 ELSE 0 END) AS [{col}]"
                     for col, cond in OVERVIEW_COUNTS.items())
    sets = ", ".join(f"[{col}] = image_overview.[{col}] {sign} d.[{col}]" for col in [*OVERVIEW_COUNTS, "suppressed"])
    return (f"UPDATE image_overview SET {sets} FROM (SELECT image_id, {sums},"
            f" SUM(CASE WHEN suppressed <> 0 THEN 1 ELSE 0 END) AS suppressed FROM findings_report"
            f" WHERE {chosen} GROUP BY image_id) d WHERE image_overview.id = d.image_id")


def apply_finding_changes(conn, gone, fresh, package_ids, counted: bool | None = None) -> None:
    """The report rows that a change to some findings of current scans changes, in the caller's
    transaction (rematch, one batch of images): the rows of the findings GONE (deleted) and FRESH (inserted,
    their suppression already decided) in the finding tables, with their kept facet counts; the counts of
    their images' image_overview rows; the vulnerability counts of the PACKAGE_IDS in packages_view. The same
    rows refresh_images would write, touching only what changed (a rematch that rewrites a few findings in
    every one of 10,000 images would otherwise rebuild every report row). COUNTED False: the kept facet
    counts of the finding tables are left to the caller, who counts them again (recount_facets) in the
    same transaction (rematch's bulk mode), and the statistics too (keep_statistics, once its indexes are
    back)."""
    bulk = counted is False
    if counted is None or counted:
        counted = _has_facet_counts(conn)
    for ids, sign in ((gone, "-"), (fresh, "+")):
        if not ids:
            continue
        where, chosen = _chosen(ids)
        if sign == "-":
            conn.execute(_overview_delta("-", where), chosen)
            for name in FINDING_TABLES:
                if counted:
                    conn.execute(_facet_delta(name, where, "-"), chosen)
                conn.execute(f"DELETE FROM [{name}] WHERE {where}", chosen)
        else:
            for name in FINDING_TABLES:
                conn.execute(f"INSERT INTO [{name}] SELECT * FROM ({MATERIALIZE[name]}) WHERE {where}", chosen)
                if counted:
                    conn.execute(_facet_delta(name, where, "+"), chosen)
            conn.execute(_overview_delta("+", where), chosen)
    if package_ids:
        conn.execute("UPDATE packages_view SET vulnerability_count = (SELECT p.vulnerability_count FROM packages p"
                     f" WHERE p.id = packages_view.id) WHERE {_CHOSEN}",
                     {"ids": json.dumps(sorted(int(i) for i in package_ids))})
    if not bulk:
        keep_statistics(conn)


RANGE_IDS = 10000  # fewer are looked up one by one (a range is read image by image, from every image)


def _chosen(ids) -> tuple[str, dict]:
    """The condition on `id` that selects the finding ids IDS, and its parameters: a range when they are
    consecutive (a rematch hands out the ids of its new findings in one run: no list of a million ids to
    read and look up one by one), else a JSON list."""
    ordered = sorted(int(i) for i in ids)
    if len(ordered) >= RANGE_IDS and all(b - a == 1 for a, b in zip(ordered, ordered[1:])):
        return "id BETWEEN :lo AND :hi", {"lo": ordered[0], "hi": ordered[-1]}
    return _CHOSEN, {"ids": json.dumps(ordered)}


def rebuild_all(conn) -> None:
    """Every report row again (a repair; migrations and the store keep them current otherwise)."""
    for name, sql in MATERIALIZE.items():
        conn.execute(f"DELETE FROM [{name}]")
        conn.execute(f"INSERT INTO [{name}] SELECT * FROM ({sql})")
    conn.execute(_latest_update())
    if _has_facet_counts(conn):
        count_facets(conn)


def _has_facet_counts(conn) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'report_facet_counts'"
                        ).fetchone() is not None


# --- readers shared by the CLI, the report, the notebooks and the plugin ----------------------------

def counts(conn, image_id: int | None = None, image_ids=None) -> dict[int, dict]:
    """{image_id: {"failing": {kind: {severity: n}}, "suppressed": {kind: {severity: n}}}} from
    image_finding_counts: what every surface shows as an image's counts; of IMAGE_ID or of the images
    IMAGE_IDS only when given (a page of the image list: the view's grouping then reads only theirs)."""
    sql = "SELECT image_id, kind, severity, failing, suppressed FROM image_finding_counts"
    params: list = []
    if image_id is not None:
        sql += " WHERE image_id = ?"
        params.append(image_id)
    elif image_ids is not None:
        ids = sorted({int(i) for i in image_ids})
        sql += f" WHERE image_id IN ({', '.join('?' * len(ids))})"
        params += ids
    out: dict[int, dict] = {}
    for iid, kind, severity, failing, suppressed in conn.execute(sql, params):
        entry = out.setdefault(iid, {"failing": {}, "suppressed": {}})
        sev = severity or "unknown"
        if failing:
            entry["failing"].setdefault(kind, {})[sev] = entry["failing"].get(kind, {}).get(sev, 0) + failing
        if suppressed:
            entry["suppressed"].setdefault(kind, {})[sev] = entry["suppressed"].get(kind, {}).get(sev, 0) + suppressed
    return out


def scan_counts(conn, image_id: int, scan_id: int) -> dict:
    """counts() of one image, for the scan SCAN_ID: the image's current scan through the view; an older
    scan (a report of a past scan) by the same predicate over that scan's findings."""
    current = conn.execute("SELECT last_scan_id FROM images WHERE id = ?", [image_id]).fetchone()
    if current and current[0] == scan_id:
        return counts(conn, image_id).get(image_id, {"failing": {}, "suppressed": {}})
    out: dict = {"failing": {}, "suppressed": {}}
    for kind, severity, failing, suppressed in conn.execute(
            f"SELECT f.kind, f.severity, SUM(f.suppressed = 0), SUM(f.suppressed <> 0) FROM findings f"
            f" WHERE f.scan_id = ? AND {FAILING} GROUP BY f.kind, f.severity", [scan_id]):
        for side, n in (("failing", failing), ("suppressed", suppressed)):
            if n:
                out[side].setdefault(kind, {})[severity or "unknown"] = n
    return out


# --- kept facet counts -----------------------------------------------------------------------------
# A facet over a whole report table of 1,000,000 rows is a GROUP BY over all of them (100 ms each on an
# idle core, five on a page). `report_facet_counts` keeps those counts: per table, facet and value how
# many rows there are (`filter` = '' and `filter_value` = ''), and the same counted within one selected
# value of a few-valued column (`filter` = that column), so a page filtered by one facet value is
# answered from it too. Kept in the transaction that changes the rows, like the report tables: the
# report tables' counts by every statement that rebuilds an image's rows (refresh_images, the
# read_model_current_scan and read_model_image_deleted triggers, rebuild_all), the base tables' by
# triggers on their rows. A facet key is "<facet type>:<column>", as the plugin's facets are configured.

CVSS_BUCKET = ("CASE WHEN cvss_score >= 9 THEN 'critical (9.0-10.0)' WHEN cvss_score >= 7 THEN 'high (7.0-8.9)'"
               " WHEN cvss_score >= 4 THEN 'medium (4.0-6.9)' WHEN cvss_score > 0 THEN 'low (0.1-3.9)'"
               " WHEN cvss_score = 0 THEN 'none (0.0)' WHEN cvss_score IS NULL THEN 'not scored' END")
LAYER_VALUE = "CASE WHEN layer_index IS NOT NULL THEN json_array(layer_index, layer_created_by) END"

COUNTED_FACETS: dict[str, dict[str, str]] = {
    "vulnerabilities_view": {"severity:severity": "severity", "fix:fixed_version": "fix_available",
                             "cvss:cvss_score": CVSS_BUCKET, "values:image": "image", "values:package": "package",
                             "layer:layer_index": LAYER_VALUE,
                             "top:package": "CASE WHEN package IS NOT NULL THEN json_array(package, ecosystem) END"},
    "findings_report": {"kind:kind": "kind", "severity:severity": "severity", "values:suppressed": "suppressed",
                        "values:image": "image", "layer:layer_index": LAYER_VALUE},
    "packages_view": {"values:ecosystem": "ecosystem", "values:image": "image", "layer:layer_index": LAYER_VALUE},
}
# counts kept for a surface other than a facet, and under these filters only (not every COUNTED_FILTERS
# entry): the dashboard's top vulnerable packages, per severity among the unsuppressed rows
COUNTED_ONLY: dict[str, dict[str, list[str]]] = {
    "vulnerabilities_view": {"top:package": ["severity&suppressed=0"]},
}
# columns of few values whose one selected value (`column=value`) is counted per facet too; a name
# `column&suppressed=0` counts the rows of one value that no suppression covers (the dashboard's links:
# `fix_available=yes&suppressed=0`), see filter_sql()
OPEN = "&suppressed=0"
# filters counted under a value made of several columns: `layer` is one layer's rows (the layer facet's link,
# `layer_index=N&layer_created_by=COMMAND`), `cvss` one CVSS bucket (the CVSS facet's link, its range
# filters); their selection is told apart by the plugin's facets (datasette_plugin/facets.py _selection)
FILTER_VALUES = {"layer": LAYER_VALUE, "cvss": CVSS_BUCKET}
COUNTED_FILTERS: dict[str, list[str]] = {
    "vulnerabilities_view": ["severity", "fix_available", "severity" + OPEN, "fix_available" + OPEN, "layer", "cvss"],
    "findings_report": ["kind", "severity", "suppressed", "kind" + OPEN, "severity" + OPEN, "layer"],
    "packages_view": ["ecosystem", "layer"],
}
# base tables, counted by triggers on their rows (unfiltered only)
COUNTED_BASE: dict[str, dict[str, str]] = {
    "findings": {"kind:kind": "kind", "severity:severity": "severity"},
    "packages": {"values:ecosystem": "ecosystem"},
}

FACET_COUNTS_TABLE = """
CREATE TABLE IF NOT EXISTS report_facet_counts (
    tbl TEXT NOT NULL,
    filter TEXT NOT NULL,
    filter_value NOT NULL,
    facet TEXT NOT NULL,
    value NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (tbl, filter, filter_value, facet, value)
) WITHOUT ROWID;
"""
_UPSERT = " ON CONFLICT (tbl, filter, filter_value, facet, value) DO UPDATE SET n = n + excluded.n"


def _counted(table: str, filter_name: str, key: str) -> bool:
    only = COUNTED_ONLY.get(table, {}).get(key)
    return only is None or filter_name in only


def filter_sql(name: str) -> str:
    """The value a row is counted under for the filter NAME (a COUNTED_FILTERS entry): the column's value,
    or for `column&other=N` the column's value where `other` = N and NULL (not counted) elsewhere."""
    column, _, condition = name.partition("&")
    value_sql = FILTER_VALUES.get(column, f"[{column}]")
    if not condition:
        return value_sql
    other, _, value = condition.partition("=")
    return f"CASE WHEN [{other}] = {int(value)} THEN {value_sql} END"


def _facet_delta(name: str, where: str, sign: str, grouped: Sequence[str] = ()) -> str:
    """One statement adding (SIGN '+') or taking away ('-') the counts of the rows of report table NAME
    that WHERE selects: each row read once, crossed with the (filter, facet) pairs it is counted under.
    GROUPED (the columns the counts read, _delta_columns): the rows alike in those counted once with
    their number, then crossed (a scan's findings are a hundred rows and a dozen such groups)."""
    source, count, carried = f"[{name}]", f"{sign}COUNT(*)", ""
    if grouped:
        cols = ", ".join(f"[{c}]" for c in grouped)
        source = f"(SELECT {cols}, COUNT(*) AS rows_ FROM [{name}] WHERE {where} GROUP BY {cols})"
        where, count, carried = "1", f"{sign}SUM(rows_)", ", rows_"
    facets = COUNTED_FACETS[name]
    pairs = [(col, key) for col in ["", *COUNTED_FILTERS[name]] for key in facets if _counted(name, col, key)]
    value = " ".join(f"WHEN '{key}' THEN {expr}" for key, expr in facets.items())
    chosen = " ".join(f"WHEN '{col}' THEN {filter_sql(col)}" for col in COUNTED_FILTERS[name])
    return (f"INSERT INTO report_facet_counts (tbl, filter, filter_value, facet, value, n)"
            f" SELECT '{name}', filter, filter_value, facet, value, {count} FROM ("
            f"SELECT k.column1 AS filter, CASE k.column1 WHEN '' THEN '' {chosen} END AS filter_value,"
            f" k.column2 AS facet, CASE k.column2 {value} END AS value{carried}"
            f" FROM {source} CROSS JOIN (VALUES {', '.join(f'({chr(39)}{f}{chr(39)}, {chr(39)}{k}{chr(39)})' for f, k in pairs)}) k"
            f" WHERE {where})"
            f" WHERE filter_value IS NOT NULL AND value IS NOT NULL"
            f" GROUP BY filter, filter_value, facet, value{_UPSERT};")


def _delta_columns(conn, name: str) -> list[str]:
    """The columns of report table NAME that its kept counts read (its facets' and filters' expressions)."""
    text = re.sub(r"'[^']*'", "", " ".join([*COUNTED_FACETS[name].values(),
                                             *(filter_sql(c) for c in COUNTED_FILTERS[name])]))
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    return [r[1] for r in conn.execute(f"PRAGMA table_info([{name}])") if r[1] in words]


def _base_trigger(table: str, event: str, facets: dict[str, str]) -> str:
    body = []
    sides = {"INSERT": [("NEW", "+1")], "DELETE": [("OLD", "-1")], "UPDATE": [("OLD", "-1"), ("NEW", "+1")]}[event]
    for row, n in sides:
        for key, col in facets.items():
            body.append(f"INSERT INTO report_facet_counts (tbl, filter, filter_value, facet, value, n)"
                        f" SELECT '{table}', '', '', '{key}', {row}.[{col}], {n} WHERE {row}.[{col}] IS NOT NULL"
                        f"{_UPSERT};")
    of = f" OF {', '.join(f'[{c}]' for c in facets.values())}" if event == "UPDATE" else ""
    return (f"CREATE TRIGGER facet_counts_{table}_{event.lower()} AFTER {event}{of} ON [{table}]\nBEGIN\n"
            + "\n".join(body) + "\nEND;")


def _count_all() -> list[str]:
    """Every kept count from the rows: one GROUP BY per (filter, facet) pair, which an index on the
    column answers without sorting (the one-statement delta sorts every row once per pair: minutes
    at 1,000,000 rows)."""
    out = ["DELETE FROM report_facet_counts;"]
    for name, facets in COUNTED_FACETS.items():
        for key, expr in facets.items():
            if _counted(name, "", key):
                out.append(f"INSERT INTO report_facet_counts (tbl, filter, filter_value, facet, value, n)"
                           f" SELECT '{name}', '', '', '{key}', {expr}, COUNT(*) FROM [{name}]"
                           f" WHERE {expr} IS NOT NULL GROUP BY {expr};")
            for col in [c for c in COUNTED_FILTERS[name] if _counted(name, c, key)]:
                column, _, condition = col.partition("&")
                only = f"[{condition.partition('=')[0]}] = {int(condition.partition('=')[2])} AND " if condition else ""
                chosen = FILTER_VALUES.get(column, f"[{column}]")
                out.append(f"INSERT INTO report_facet_counts (tbl, filter, filter_value, facet, value, n)"
                           f" SELECT '{name}', '{col}', {chosen}, '{key}', {expr}, COUNT(*) FROM [{name}]"
                           f" WHERE {only}{chosen} IS NOT NULL AND {expr} IS NOT NULL GROUP BY {chosen}, {expr};")
    for table, facets in COUNTED_BASE.items():
        out += [f"INSERT INTO report_facet_counts (tbl, filter, filter_value, facet, value, n)"
                f" SELECT '{table}', '', '', '{key}', [{col}], COUNT(*) FROM [{table}]"
                f" WHERE [{col}] IS NOT NULL GROUP BY [{col}];" for key, col in facets.items()]
    return out


def count_facets(conn) -> None:
    """Every kept facet count again, from the rows (rebuild_all's repair)."""
    for stmt in _count_all():
        conn.execute(stmt)


def _filter_value(name: str, row: dict):
    """The value a row (its columns by name) is counted under for the filter NAME, as filter_sql() says."""
    column, _, condition = name.partition("&")
    if condition:
        other, _, value = condition.partition("=")
        if row[other] is None or row[other] != int(value):
            return None
    return row[column]


def _filter_spec(name: str, columns: list[str]) -> tuple[int | None, int | None, int | None]:
    """Filter NAME as recount_facets reads it from a row of COLUMNS: (the index of its value's column, the
    index of its condition's column, the value that column must have); (None, None, None): unfiltered."""
    if not name:
        return None, None, None
    column, _, condition = name.partition("&")
    if not condition:
        return columns.index(column), None, None
    other, _, value = condition.partition("=")
    return columns.index(column), columns.index(other), int(value)


# a facet with at most this many values in the first RECOUNT_SAMPLE rows of its table is counted in one
# GROUP BY with the table's other few-valued facets (recount_facets)
FEW_VALUES = 64
RECOUNT_SAMPLE = 20000


def recount_facets(conn, tables) -> None:
    """The kept counts of TABLES (report tables of COUNTED_FACETS, base tables of COUNTED_BASE) taken again
    from their rows, in the caller's transaction: the same rows _count_all writes for them, after a bulk
    write that left the counts aside (rematch's bulk mode drops the base tables' counting triggers and
    writes the report rows without the per-row deltas). A GROUP BY by the facets' values and the columns
    the filters read, summed here into every filter value: the few-valued facets (severity, kind, ...)
    together, each other facet (image, package) on its own: a sort of the rows per group, where _count_all
    sorts them once per (filter, facet) pair (one sort of 1,000,000 rows costs about a second)."""
    if not _has_facet_counts(conn):
        return
    insert = ("INSERT INTO report_facet_counts (tbl, filter, filter_value, facet, value, n) VALUES (?,?,?,?,?,?)"
              + _UPSERT)
    for table in tables:
        conn.execute("DELETE FROM report_facet_counts WHERE tbl = ?", [table])
        if table in COUNTED_BASE:
            for key, col in COUNTED_BASE[table].items():
                conn.execute(f"INSERT INTO report_facet_counts (tbl, filter, filter_value, facet, value, n)"
                             f" SELECT '{table}', '', '', '{key}', [{col}], COUNT(*) FROM [{table}]"
                             f" WHERE [{col}] IS NOT NULL GROUP BY [{col}]{_UPSERT};")
        if table not in COUNTED_FACETS:
            continue
        filters = COUNTED_FILTERS[table]
        columns = sorted({f.partition("&")[0] for f in filters}
                         | {f.partition("&")[2].partition("=")[0] for f in filters if "&" in f})
        facets = {key: expr for key, expr in COUNTED_FACETS[table].items()
                  if any(_counted(table, f, key) for f in ["", *filters])}
        few: list[str] = []
        many: list[str] = []
        for key, expr in facets.items():
            values = conn.execute(f"SELECT COUNT(DISTINCT v) FROM (SELECT {expr} AS v FROM [{table}]"
                                  f" LIMIT {RECOUNT_SAMPLE})").fetchone()[0]
            (few if values <= FEW_VALUES else many).append(key)
        for group in ([few] if few else []) + [[key] for key in many]:
            names = [f"v{i}" for i in range(len(group))]
            chosen = ", ".join([*(f"{facets[key]} AS {n}" for key, n in zip(group, names)),
                                *(f"{FILTER_VALUES.get(c, f'[{c}]')} AS [{c}]" for c in columns)])
            where = " OR ".join(f"{facets[key]} IS NOT NULL" for key in group)
            out: dict = {}
            # per facet, the filters it is counted under, each as (name, the row's column of its value, the
            # column and value of its condition): what _counted and _filter_value say, worked out once
            specs = [[(name, *_filter_spec(name, columns)) for name in ["", *filters] if _counted(table, name, key)]
                     for key in group]
            width = len(group)
            for got in conn.execute(f"SELECT {chosen}, COUNT(*) FROM [{table}] WHERE {where}"
                                    f" GROUP BY {', '.join([*names, *(f'[{c}]' for c in columns)])}"):
                n = got[-1]
                for key, value, spec in zip(group, got, specs):
                    if value is None:
                        continue
                    for name, column, other, wanted in spec:
                        if column is None:
                            fv = ""
                        else:
                            if other is not None and got[width + other] != wanted:
                                continue
                            fv = got[width + column]
                            if fv is None:
                                continue
                        k = (key, name, fv, value)
                        out[k] = out.get(k, 0) + n
            conn.executemany(insert, [(table, f, fv, key, v, n) for (key, f, fv, v), n in out.items()])


def facet_counts_migration() -> str:
    """The schema part that adds the kept counts: the table, the read model's triggers again with the
    counts in them, the base tables' triggers, the first count."""
    # a page filtered by one severity, in the default order (severity_rank): an index walk, not a walk of
    # the rank index past every row of the other severities (over a second at 1,000,000 rows)
    parts = [f"CREATE INDEX IF NOT EXISTS [idx_{name}_severity_order] ON [{name}](severity, severity_rank);"
             for name in ("vulnerabilities_view", "findings_report")]
    parts += [FACET_COUNTS_TABLE, "DROP TRIGGER IF EXISTS read_model_current_scan;",
             "DROP TRIGGER IF EXISTS read_model_image_deleted;", _current_scan_triggers(counted=True)]
    for table, facets in COUNTED_BASE.items():
        parts += [_base_trigger(table, event, facets) for event in ("INSERT", "DELETE", "UPDATE")]
    return "\n".join(parts + _count_all())


def facet_counts_open_migration() -> str:
    """Step 2 of the part "report_facet_counts": the counts of one value among the unsuppressed rows
    (`severity=critical&suppressed=0`, the dashboard's links; before, their facets were GROUP BYs over
    hundreds of thousands of rows, over a second at 10,000 images), so the triggers that keep the counts
    again with the new filters in them and every count taken again; and the indexes those pages' row
    counts and first rows read (`fix_available=yes` counted over the whole table before)."""
    parts = ["DROP TRIGGER IF EXISTS read_model_current_scan;", "DROP TRIGGER IF EXISTS read_model_image_deleted;",
             _current_scan_triggers(counted=True)]
    # a page of one value in the default order (severity_rank) walks its index (severity's exists: above)
    parts += [f"CREATE INDEX IF NOT EXISTS [idx_{name}_{column}_order] ON [{name}]([{column}], severity_rank);"
              for name, column in (("vulnerabilities_view", "fix_available"), ("findings_report", "kind"))]
    parts += [f"CREATE INDEX IF NOT EXISTS [idx_{name}_{column}_open] ON [{name}]([{column}], suppressed, severity_rank);"
              for name, columns in (("vulnerabilities_view", ("fix_available", "severity")),
                                    ("findings_report", ("kind", "severity"))) for column in columns]
    return "\n".join(parts + _count_all())


def facet_counts_layer_cvss_migration() -> str:
    """Step 3 of the part "report_facet_counts": one layer's rows and one CVSS bucket counted per facet too
    (FILTER_VALUES: the layer and CVSS facets' links; their facets were GROUP BYs over a third of a table,
    past Datasette's facet time limit at 10,000 images), so the triggers again and every count taken again;
    and the indexes those pages' first rows read in the default order: a layer's rows by layer, command and
    order (replacing the layer index, its prefix), a bucket's by rank then score (a skip-scan over the few
    ranks, replacing the rank index, its prefix; a range of scores in rank order sorted every row of it)."""
    parts = ["DROP TRIGGER IF EXISTS read_model_current_scan;", "DROP TRIGGER IF EXISTS read_model_image_deleted;",
             _current_scan_triggers(counted=True)]
    for name, order in (("vulnerabilities_view", "severity_rank"), ("findings_report", "severity_rank"),
                        ("packages_view", "vulnerability_count")):
        parts += [f"DROP INDEX IF EXISTS [idx_{name}_layer];",
                  f"CREATE INDEX IF NOT EXISTS [idx_{name}_layer_order] ON [{name}](layer_index, layer_created_by,"
                  f" [{order}]);"]
    parts += ["DROP INDEX IF EXISTS idx_vulnerabilities_view_severity_rank;",
              "CREATE INDEX IF NOT EXISTS idx_vulnerabilities_view_rank_cvss ON vulnerabilities_view(severity_rank,"
              " cvss_score);"]
    return "\n".join(parts + _count_all())


# the schema part "page_indexes" (append steps, never edit one): indexes the Datasette pages of a base
# table read at 10,000 images -- an image's row page counts its packages (by image), the findings table
# in its default order filtered by one severity (a walk of the rank index past every other severity: past
# Datasette's time limit)
PAGE_INDEXES = ["""
CREATE INDEX IF NOT EXISTS idx_packages_image ON packages(image_id);
CREATE INDEX IF NOT EXISTS idx_findings_severity_order ON findings(severity, severity_rank);
""",
# the second: the findings table's facets over one kind or one severity (Datasette's own filter links) read
# an index, not every row of the value: the other of kind and severity, and the layer facet's rows per layer
# and image (datasette_plugin/facets.py LayerFacet); the layer and kind indexes are these ones' prefixes;
# the packages table's layer facet likewise, over every row and over one ecosystem
"""
CREATE INDEX IF NOT EXISTS idx_packages_layer_image ON packages(layer_index, image_id);
CREATE INDEX IF NOT EXISTS idx_packages_ecosystem_layer ON packages(ecosystem, layer_index, image_id);
DROP INDEX IF EXISTS idx_findings_layer;
CREATE INDEX IF NOT EXISTS idx_findings_layer_image ON findings(layer_index, image_id);
DROP INDEX IF EXISTS idx_findings_kind;
CREATE INDEX IF NOT EXISTS idx_findings_kind_severity ON findings(kind, severity);
CREATE INDEX IF NOT EXISTS idx_findings_severity_kind ON findings(severity, kind);
CREATE INDEX IF NOT EXISTS idx_findings_kind_layer ON findings(kind, layer_index, image_id);
CREATE INDEX IF NOT EXISTS idx_findings_severity_layer ON findings(severity, layer_index, image_id);
"""]


# the schema part "read_model_batch" (append steps, never edit one); the second keeps the facet counts
# (the core part "report_facet_counts", always applied before this one) in the deferring trigger
# the third: the latest version told apart by reference when created at the same moment (LATEST_ORDER),
# in the trigger and in every stored flag; the fourth again after report_facet_counts' second step
# changed what is counted, the fifth after its third did
BATCH_STEPS = [_batch_trigger(), _batch_trigger(counted=True), _batch_trigger(counted=True) + _latest_update() + ";",
               _batch_trigger(counted=True), _batch_trigger(counted=True)]


# --- the query planner's statistics (sqlite_stat1), kept by the writers ----------------------------
# Without them SQLite prefers the index with more equality columns: one image's critical rows were read
# through the whole-table severity index (every critical row of the database). A database served
# read-only or `immutable` cannot be analyzed by its reader, so the writes keep them: after a write that
# moved a table's row count more than STATS_FACTOR times since its statistics were taken, or left an
# index of a table with rows without statistics (a migration added it), that table is analyzed, reading
# a sample of each index (ANALYSIS_LIMIT rows: tens of milliseconds a table at 1,000,000 rows, where a
# full ANALYZE takes seconds). Row counts double about log2(images) times, so this is rare.
STATS_TABLES = ("vulnerabilities_view", "findings_report", "unsafe_settings_view", "secrets_view", "malware_view",
                "compliance_view", "packages_view", "base_image_view", "image_overview", "findings", "packages",
                "images")
STATS_FACTOR = 2.0
ANALYSIS_LIMIT = 4000


def _stat_heads(conn) -> tuple[dict[str, int], set[str]]:
    """({table: rows its statistics were taken at}, {indexes with statistics})."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'").fetchone():
        return {}, set()
    known: dict[str, int] = {}
    indexed: set[str] = set()
    for tbl, idx, stat in conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1"):
        head = str(stat or "").split(" ", 1)[0]
        if head.isdigit():
            known[tbl] = max(known.get(tbl, 0), int(head))
        if idx:
            indexed.add(idx)
    return known, indexed


def _moved(rows: int, before: int | None) -> bool:
    return before is None or max(rows, before) > STATS_FACTOR * max(1, min(rows, before))


def stale_statistics(conn, tables=STATS_TABLES) -> list[str]:
    """The TABLES with rows whose statistics are missing, lack one of their indexes, or were taken at a row
    count more than STATS_FACTOR times off."""
    return list(_stale(conn, tables))


def _stale(conn, tables=STATS_TABLES) -> dict[str, int]:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    known, indexed = _stat_heads(conn)
    indexes: dict[str, set[str]] = {}
    for name, tbl in conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"):
        indexes.setdefault(tbl, set()).add(name)
    out = {}
    for table in tables:
        if table not in names:
            continue
        rows = conn.execute(f"SELECT COUNT(*) FROM [{table}]").fetchone()[0]
        if rows and (_moved(rows, known.get(table)) or not indexes.get(table, set()) <= indexed):
            out[table] = rows
    return out


def keep_statistics(conn, check_all: bool = False) -> list[str]:
    """Analyzes (a sample of each index) the tables whose statistics are stale (stale_statistics), in the
    caller's transaction; returns them. Unless CHECK_ALL, first a check that costs a row count of `images`
    and of the findings' kept counts: nothing more is read when neither moved and no index lacks statistics."""
    if not check_all and not _statistics_due(conn):
        return []
    tables = _stale(conn)
    if tables:
        limit = conn.execute("PRAGMA analysis_limit").fetchone()[0]
        conn.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
        try:
            for table, rows in tables.items():
                conn.execute(f"ANALYZE [{table}]")
                _correct_sample(conn, table, rows)
        finally:
            conn.execute(f"PRAGMA analysis_limit = {int(limit)}")
    return list(tables)


def _statistics_due(conn) -> bool:
    known, indexed = _stat_heads(conn)
    images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    if images and _moved(images, known.get("images")):
        return True
    if _has_facet_counts(conn):  # every finding is counted once by kind: the table's size without reading it
        findings = conn.execute("SELECT coalesce(SUM(n), 0) FROM report_facet_counts WHERE tbl = 'findings'"
                                " AND filter = '' AND filter_value = '' AND facet = 'kind:kind'").fetchone()[0]
        if findings and _moved(findings, known.get("findings")):
            return True
    lacking = {r[0] for r in conn.execute(  # an index without statistics on a table with rows
        "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND tbl_name IN (SELECT value FROM json_each(?))"
        " AND name NOT IN (SELECT value FROM json_each(?))", [json.dumps(STATS_TABLES), json.dumps(sorted(indexed))])}
    return any(conn.execute(f"SELECT 1 FROM [{table}] LIMIT 1").fetchone() for table in sorted(lacking))


def _correct_sample(conn, table: str, rows: int) -> None:
    """A sample's statistics of TABLE made truer where they matter to the planner: the row count is an
    estimate (0.7-2.8x off at 1,000,000 rows), so the counted ROWS instead (what the planner reads as the
    table's size and the next staleness check compares with); and a column of few values reads as
    ANALYSIS_LIMIT rows per value (the sample saw one value), which made `kind = ?` look as narrow as one
    image's rows (a million findings sorted for a page of 101), so an index's first column gets rows per
    distinct value, its distinct values counted by a walk from one to the next (a few per column, each an
    index seek), and a later column read as that limit keeps the rows of the column before it."""
    for idx, stat in conn.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = ?", [table]).fetchall():
        words = str(stat or "").split(" ")
        if not idx or len(words) < 2 or not all(w.isdigit() for w in words[1:2]):
            conn.execute("UPDATE sqlite_stat1 SET stat = ? WHERE tbl = ? AND idx IS ?",
                         [" ".join([str(rows), *words[1:]]), table, idx])
            continue
        averages = []
        for k, word in enumerate(words[1:]):
            if not word.isdigit():  # "unordered", "sz=": kept as they are
                averages.append(word)
                continue
            n = int(word)
            if n >= ANALYSIS_LIMIT:
                if k == 0:
                    n = max(1, rows // max(1, _distinct_first(conn, table, idx)))
                else:
                    previous = [int(a) for a in averages if a.isdigit()]
                    n = previous[-1] if previous else n
            averages.append(str(n))
        conn.execute("UPDATE sqlite_stat1 SET stat = ? WHERE tbl = ? AND idx = ?",
                     [" ".join([str(rows), *averages]), table, idx])


DISTINCT_WALK = 2000  # values counted at most (then rows per value is taken as rows / this: a narrow column)


def _distinct_first(conn, table: str, idx: str) -> int:
    columns = [r[2] for r in conn.execute(f"PRAGMA index_info([{idx}])")]
    if not columns or columns[0] is None:  # an expression: no walk
        return DISTINCT_WALK
    col = f"[{columns[0]}]"
    return conn.execute(
        f"WITH RECURSIVE v(x) AS (SELECT (SELECT min({col}) FROM [{table}] INDEXED BY [{idx}])"
        f" UNION ALL SELECT (SELECT min({col}) FROM [{table}] INDEXED BY [{idx}] WHERE {col} > v.x) FROM v"
        f" WHERE v.x IS NOT NULL LIMIT {DISTINCT_WALK}) SELECT count(x) + (SELECT count(*) > 0 FROM (SELECT 1"
        f" FROM [{table}] INDEXED BY [{idx}] WHERE {col} IS NULL LIMIT 1)) FROM v").fetchone()[0]
