"""The plugin's views and its settings table, kept as a schema part of its own ('plugin_views').

Views carry text columns (image reference, layer command) because Datasette loses foreign-key
labels on views, and they only show each image's current scan (images.last_scan_id, which the
pipeline sets when a scan finishes), so a first click on any of them answers "what is worst now".
The same SELECTs are used by the pages, so an immutable database (no views created) still works.
"""
from __future__ import annotations

from stowaway.ingest import db as dbm

LAYER_JOIN = "LEFT JOIN image_layers il ON il.image_id = f.image_id AND il.position = f.layer_index"
CURRENT = "JOIN images i ON i.id = f.image_id AND f.scan_id = i.last_scan_id"


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
       (SELECT CASE d.approved WHEN 1 THEN 'approved' WHEN 0 THEN 'not approved' END
          FROM findings f JOIN base_image_details d ON d.finding_id = f.id
         WHERE f.scan_id = i.last_scan_id AND f.kind = 'base_image' ORDER BY f.id DESC LIMIT 1) AS base_image,
       CASE WHEN ROW_NUMBER() OVER (PARTITION BY coalesce(i.repository, i.reference)
                                    ORDER BY i.created DESC, i.id DESC) = 1 THEN 1 ELSE 0 END AS latest_version
FROM images i LEFT JOIN scans s ON s.id = i.last_scan_id
""",
    "vulnerabilities_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, d.vulnerability_id, d.cvss_score,
       coalesce(p.name, d.package_name) AS package, coalesce(p.version, d.installed_version) AS installed_version,
       d.fixed_version, CASE WHEN coalesce(d.fixed_version, '') <> '' THEN 'yes' ELSE 'no' END AS fix_available,
       coalesce(p.ecosystem, d.ecosystem) AS ecosystem, f.path, f.layer_index, il.created_by AS layer_created_by,
       d.cvss_vector, d.aliases, d.published, f.title, d.solution, f.ignored, f.ignore_reason, f.scan_id
FROM findings f {CURRENT}
JOIN vulnerability_details d ON d.finding_id = f.id
LEFT JOIN packages p ON p.id = f.package_id
{LAYER_JOIN}
WHERE f.kind = 'vulnerability'
""",
    "unsafe_settings_view": f"""
SELECT f.id, i.reference AS image, f.image_id, f.severity, f.severity_rank, d.category, d.check_id, f.title,
       coalesce(d.result, f.status) AS result, d.target, d.evidence, d.description, d.suggestion, d.benchmark,
       f.path, f.layer_index, il.created_by AS layer_created_by, f.ignored, f.ignore_reason, f.scan_id
FROM findings f {CURRENT}
JOIN setting_details d ON d.finding_id = f.id
{LAYER_JOIN}
WHERE f.kind = 'unsafe_setting'
""",
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

PLUGIN_VIEWS = [
    "\n".join(f"CREATE VIEW IF NOT EXISTS [{name}] AS {sql};" for name, sql in SELECTS.items())
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
);"""
]


def ensure(conn) -> None:
    """Creates the views and the settings table (a write: call it only on a writable database)."""
    dbm.ensure_schema(conn, "plugin_views", PLUGIN_VIEWS)


def source(conn_tables: set[str], name: str) -> str:
    """The view's name when the database has it, else its SELECT as a subquery (read-only databases)."""
    return f"[{name}]" if name in conn_tables else f"({SELECTS[name]})"
