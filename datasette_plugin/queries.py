"""What the pages and exports read: SQL over ingest's read model (stowaway.ingest.readmodel), never
counts or "current scan" of its own."""
from __future__ import annotations

import json

from stowaway.ingest.model import SEVERITIES
from stowaway.ingest.readmodel import FAILING

from .masking import mask_command, mask_env

IMAGE_SORTS = {
    "worst": "critical DESC, high DESC, vulnerabilities DESC",
    "reference": "reference", "size": "size DESC", "created": "created DESC", "last_scan": "last_scan DESC",
    "vulnerabilities": "vulnerabilities DESC", "secrets": "secrets DESC", "malicious_files": "malicious_files DESC",
    "unsafe_settings": "unsafe_settings DESC", "packages": "packages DESC",
}


async def rows(db, sql, params=None, limit_ms=None):
    result = await db.execute(sql, params or [], custom_time_limit=limit_ms)
    return [dict(r) for r in result.rows]


async def tables(db) -> set[str]:
    """Tables and views the database has."""
    return set(await db.table_names()) | set(await db.view_names())


async def src(db, view: str) -> str:
    return f"[{view}]"


async def images(db, latest_only=False, q="", sort="worst", page=1, page_size=100):
    """(total, items) of the image list: ingest's image_list (image_overview's columns, counts per kind
    and severity), the same rows `stowaway images --format json` prints."""
    from stowaway.ingest.images import image_list

    where, params = [], {}
    if latest_only:
        where.append("o.latest_version = 1")
    if q:
        where.append("o.reference LIKE :q")
        params["q"] = f"%{q}%"
    clause = " AND ".join(where)
    total = (await db.execute("SELECT COUNT(*) FROM image_overview o" + (f" WHERE {clause}" if clause else ""),
                              params)).rows[0][0]
    order = ", ".join(f"o.{term}" for term in IMAGE_SORTS.get(sort, IMAGE_SORTS["worst"]).split(", "))
    items = await db.execute_fn(lambda conn: image_list(conn, clause, params, f"{order}, o.reference, o.id",
                                                        page_size, (page - 1) * page_size))
    await _scan_states(db, items)
    return total, items


async def _scan_states(db, items: list[dict]) -> None:
    """Adds to each image its vulnerability coverage gaps (`not_checked`: the ecosystems of its current
    scan's `vulnerability_coverage` fact that were not checked) and its last scan attempt
    (`scan_state`: done, running or failed, with `scan_error`), both read from the scans tables."""
    if not items:
        return
    ids = json.dumps([i["id"] for i in items])
    facts = await rows(db, "SELECT s.image_id, f.value FROM scan_facts f JOIN scans s ON s.id = f.scan_id"
                           " JOIN images i ON i.id = s.image_id AND i.last_scan_id = s.id"
                           " WHERE f.name = 'vulnerability_coverage' AND s.image_id IN (SELECT value FROM json_each(:ids))",
                       {"ids": ids})
    coverage = {r["image_id"]: _loads(r["value"], []) for r in facts}
    last = await rows(db, "SELECT s.image_id, s.id, s.status, s.error, s.finished_at FROM scans s"
                          " WHERE s.id IN (SELECT MAX(id) FROM scans WHERE image_id IN (SELECT value FROM json_each(:ids))"
                          " GROUP BY image_id)", {"ids": ids})
    attempts = {r["image_id"]: r for r in last}
    for item in items:
        gaps = [c for c in coverage.get(item["id"], []) if isinstance(c, dict) and not c.get("checked", True)]
        item["not_checked"] = gaps
        item["not_checked_packages"] = sum(int(c.get("packages") or 0) for c in gaps)
        attempt = attempts.get(item["id"]) or {}
        item["scan_state"] = attempt.get("status") or ("done" if item.get("scan_id") else "never scanned")
        item["scan_error"] = attempt.get("error") if attempt.get("status") == "failed" else None
        item["scan_attempt_at"] = attempt.get("finished_at")


async def find_image(db, ref: str):
    """An image by id, reference or digest; the newest scanned one when a reference has several."""
    if ref.isdigit():
        got = await rows(db, "SELECT * FROM images WHERE id = ?", [int(ref)])
    else:
        got = await rows(db, "SELECT * FROM images WHERE reference = ? OR manifest_digest = ? OR config_digest = ?"
                             " OR index_digest = ? ORDER BY last_scan_id IS NULL, last_scan_id DESC LIMIT 1",
                         [ref, ref, ref, ref])
    return got[0] if got else None


def _loads(text, default):
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


async def image_report(db, image: dict) -> dict:
    """The seed's sections for one image, from its current scan."""
    scan_id = image["last_scan_id"]
    image = dict(image)
    image["env"] = mask_env(_loads(image.get("env"), []))
    image["labels"] = _loads(image.get("labels"), {})
    image["healthcheck"] = _loads(image.get("healthcheck"), None)
    image["entrypoint"] = _loads(image.get("entrypoint"), None)
    image["cmd"] = _loads(image.get("cmd"), None)
    layers = await rows(db, "SELECT il.position, il.created_by, l.diff_id, l.size, l.entries FROM image_layers il"
                            " JOIN layers l ON l.id = il.layer_id WHERE il.image_id = ? ORDER BY il.position", [image["id"]])
    for layer in layers:
        layer["created_by"] = mask_command(layer["created_by"])
    report = {"image": image, "layers": layers, "scan": None}
    failed = await rows(db, "SELECT id, error, finished_at FROM scans WHERE image_id = ? AND status = 'failed'"
                            " AND id > coalesce(?, 0) ORDER BY id DESC LIMIT 1", [image["id"], scan_id])
    report["failed_scan"] = failed[0] if failed else None
    if scan_id is None:
        return report
    scan = (await rows(db, "SELECT * FROM scans WHERE id = ?", [scan_id]))[0]
    scan["warnings"] = _loads(scan.get("warnings"), [])
    scan["analyzers"] = _loads(scan.get("analyzers"), {})
    report["scan"] = scan
    p = {"scan": scan_id}
    counts = await rows(db, "SELECT kind, severity, failing AS n, suppressed FROM image_finding_counts"
                            " WHERE image_id = :image", {"image": image["id"]})
    report["severity_counts"] = {s: sum(r["n"] for r in counts if r["kind"] == "vulnerability" and r["severity"] == s)
                                 for s in SEVERITIES}
    report["kind_counts"] = {}
    for r in counts:
        report["kind_counts"][r["kind"]] = report["kind_counts"].get(r["kind"], 0) + r["n"]
    report["vulnerabilities"] = await rows(db, f"SELECT * FROM {await src(db, 'vulnerabilities_view')}"
                                               " WHERE scan_id = :scan ORDER BY suppressed, severity_rank,"
                                               " cvss_score DESC, vulnerability_id LIMIT 500", p)
    report["malware"] = await rows(db, f"SELECT * FROM {await src(db, 'malware_view')} WHERE scan_id = :scan"
                                       " ORDER BY severity_rank, path", p)
    report["packages_total"] = (await db.execute("SELECT COUNT(*) FROM packages WHERE scan_id = :scan", p)).rows[0][0]
    report["packages"] = await rows(db, "SELECT id, ecosystem, name, version, path, layer_index, purl,"
                                        " vulnerability_count FROM packages WHERE scan_id = :scan"
                                        " ORDER BY vulnerability_count DESC, ecosystem, name LIMIT 300", p)
    stats = await rows(db, "SELECT * FROM file_stats WHERE scan_id = :scan", p)
    report["file_stats"] = stats[0] if stats else None
    report["largest_files"] = await rows(db, "SELECT rank, path, size, layer_index FROM largest_files"
                                             " WHERE scan_id = :scan ORDER BY rank LIMIT 50", p)
    report["layer_stats"] = await rows(db, "SELECT * FROM layer_stats WHERE scan_id = :scan ORDER BY layer_index", p)
    report["settings"] = await rows(db, f"SELECT * FROM {await src(db, 'unsafe_settings_view')} WHERE scan_id = :scan"
                                        " ORDER BY result <> 'fail', severity_rank, category, check_id", p)
    report["secrets"] = await rows(db, f"SELECT * FROM {await src(db, 'secrets_view')} WHERE scan_id = :scan"
                                       " ORDER BY severity_rank, path, line", p)
    report["compliance"] = await rows(db, f"SELECT * FROM {await src(db, 'compliance_view')} WHERE scan_id = :scan"
                                          " ORDER BY severity_rank, name", p)
    base = await rows(db, f"SELECT * FROM {await src(db, 'base_image_view')} WHERE scan_id = :scan"
                          " ORDER BY id DESC LIMIT 1", p)
    report["base_image"] = base[0] if base else None
    return report


async def vulnerability(db, vuln_id: str) -> dict | None:
    """One vulnerability across every image's current scan, matched on its id or any alias."""
    source = await src(db, "vulnerabilities_view")
    order = " ORDER BY v.severity_rank, v.image, v.package"
    affected = await rows(db, f"SELECT v.* FROM {source} v WHERE v.vulnerability_id = :id" + order, {"id": vuln_id})
    if not affected:  # an alias: slower (no index on aliases), so only when the id itself is unknown
        affected = await rows(db, f"SELECT v.* FROM {source} v WHERE v.aliases LIKE :like AND EXISTS (SELECT 1"
                                  " FROM json_each(CASE WHEN json_valid(v.aliases) THEN v.aliases ELSE '[]' END) j"
                                  " WHERE j.value = :id)" + order, {"id": vuln_id, "like": f'%"{vuln_id}"%'})
    if not affected:
        return await _advisory(db, vuln_id)
    first = affected[0]
    best = lambda key: next((a[key] for a in affected if a.get(key) not in (None, "")), None)  # noqa: E731
    aliases = []
    for a in affected:
        for alias in _loads(a.get("aliases"), []):
            if alias not in aliases and alias != first["vulnerability_id"]:
                aliases.append(alias)
    details = (await rows(db, "SELECT * FROM vulnerability_details WHERE finding_id = ?", [first["id"]]) or [{}])[0]
    return {
        "id": first["vulnerability_id"], "aliases": aliases, "severity": first["severity"],
        "cvss_score": best("cvss_score"), "cvss_vector": best("cvss_vector"), "published": best("published"),
        "solution": best("solution"), "title": best("title"), "description": details.get("description"),
        # columns the vulnerability analyzers add when their feeds are imported
        "extra": {k: details[k] for k in EXTRA_DETAILS if details.get(k) not in (None, "")},
        "affected": affected,
        "images": sorted({a["image"] for a in affected}),
    }


EXTRA_DETAILS = {"epss": "EPSS probability", "kev": "In CISA's known exploited list", "urgency": "Urgency"}


async def _advisory(db, vuln_id: str) -> dict | None:
    """A known advisory that affects no stored image: still worth a page (links from aliases land here)."""
    if "advisories" not in await db.table_names():
        return None
    try:
        got = await rows(db, "SELECT * FROM advisories WHERE id = :id OR id IN"
                             " (SELECT advisory_id FROM advisory_aliases WHERE alias = :id) LIMIT 1", {"id": vuln_id})
    except Exception:  # another shape of the advisory store than the one this reads
        return None
    if not got:
        return None
    a = got[0]
    aliases = [x for x in _loads(a.get("aliases"), []) if x != vuln_id]
    return {"id": vuln_id if vuln_id != a["id"] and vuln_id.startswith("CVE-") else a["id"], "aliases": aliases,
            "severity": a.get("severity") or "unknown", "cvss_score": a.get("cvss_score"),
            "cvss_vector": a.get("cvss_vector"), "published": a.get("published"), "solution": None,
            "title": a.get("summary"), "description": a.get("details"), "extra": {}, "affected": [], "images": []}


async def dashboard(db) -> dict:
    vulns = await src(db, "vulnerabilities_view")
    overview = await src(db, "image_overview")
    per_image = await rows(db, "SELECT reference AS image, failing_critical AS critical, failing_high AS high,"
                               " failing_medium AS medium, failing_low AS low, failing_negligible AS negligible,"
                               f" failing_unknown AS unknown FROM {overview}"
                               " ORDER BY failing_critical DESC, failing_high DESC, failing_medium DESC,"
                               " failing_low DESC, reference LIMIT 40")
    images_total = (await db.execute("SELECT COUNT(*) FROM images")).rows[0][0]
    top_packages = await rows(db, f"SELECT package, ecosystem, COUNT(*) AS n, COUNT(DISTINCT image_id) AS images"
                                  f" FROM {vulns} WHERE suppressed = 0 AND package IS NOT NULL"
                                  " GROUP BY package, ecosystem ORDER BY n DESC LIMIT 20")
    # the last 200 finished scans, each a point: how many failing findings it recorded, per severity
    trend = await rows(db, "SELECT s.id AS scan_id, s.finished_at, s.reference, f.severity, COUNT(f.id) AS n"
                           " FROM (SELECT id, finished_at, reference FROM scans WHERE status = 'done'"
                           " ORDER BY id DESC LIMIT 200) s JOIN findings f ON f.scan_id = s.id"
                           f" WHERE {FAILING} AND f.suppressed = 0 GROUP BY s.id, f.severity ORDER BY s.id")
    return {"per_image": per_image, "images_total": images_total, "top_packages": top_packages, "trend": trend}
