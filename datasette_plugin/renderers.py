"""Output renderers (SARIF for findings, CycloneDX for packages) and cell rendering (severity
badges; credentials in ENV and build commands masked).

SARIF holds every failing, unsuppressed finding the page's query selects -- not only the rows of the
page (the query runs again without its page limit), so `/db/vulnerabilities_view.sarif?image_id=3` is
one image's whole SARIF log and any facet selection narrows it. Passed and not-applicable checks are
not results; suppressed findings are left out (they are in the JSON report, marked).
"""
from __future__ import annotations

import json
import re
import uuid

from markupsafe import Markup, escape

from stowaway.ingest.model import SEVERITIES
from stowaway.ingest.pipeline import TOOL_VERSION
from stowaway.ingest.readmodel import FAILING

from .masking import mask_command, mask_json_env, mask_json_history

SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "negligible": "note",
               "unknown": "note"}
# GitHub code scanning reads `security-severity` (a CVSS-like number) to rank alerts
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "2.0", "negligible": "0.5",
                     "unknown": "0.0"}
MASKED_CELLS = {"env": mask_json_env, "history": mask_json_history, "created_by": mask_command,
                "layer_created_by": mask_command}


def render_cell(value, column):
    if column == "severity" and value in SEVERITIES:
        return Markup(f'<span class="sw-sev sw-sev-{value}">{escape(value)}</span>')
    mask = MASKED_CELLS.get(column)
    if mask is not None and isinstance(value, str):
        masked = mask(value)
        return masked if masked != value else None
    return None


# --- SARIF ---------------------------------------------------------------------------------------

def sarif_can_render(columns):
    return "id" in columns and "severity" in columns and bool({"kind", "vulnerability_id", "rule", "check_id"} & set(columns))


FINDINGS_SQL = f"""
SELECT f.id, f.kind, f.severity, f.title, f.rule, f.status, f.path, f.layer_index, f.visible, f.suppressed,
       i.reference AS image, i.manifest_digest,
       v.vulnerability_id, v.cvss_score, v.cvss_vector, v.fixed_version, v.solution,
       coalesce(p.name, v.package_name) AS package, coalesce(p.version, v.installed_version) AS package_version,
       p.purl, s.check_id, s.category, s.suggestion, s.result, x.rule_id AS secret_rule, x.line, x.masked
FROM findings f JOIN images i ON i.id = f.image_id
LEFT JOIN vulnerability_details v ON v.finding_id = f.id
LEFT JOIN setting_details s ON s.finding_id = f.id
LEFT JOIN secret_details x ON x.finding_id = f.id
LEFT JOIN packages p ON p.id = f.package_id
WHERE f.id IN (SELECT value FROM json_each(:ids)) AND f.suppressed = 0 AND {FAILING}
ORDER BY f.severity_rank, f.id
"""


async def _findings(datasette, database, ids):
    db = datasette.get_database(database)
    return await _rows_unlimited(db, FINDINGS_SQL, {"ids": json.dumps(ids)})


async def _rows_unlimited(db, sql: str, params: dict) -> list[dict]:
    """Every row of SQL, without the page time limit: a whole selection (up to MAX_EXPORT_ROWS) takes
    longer than a page's second (the findings of 10,000 images were a 500 within it)."""
    def run(conn):
        cursor = conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    return await db.execute_fn(run)


def _rule_id(f):
    return f["vulnerability_id"] or f["check_id"] or f["secret_rule"] or f["rule"] or f["kind"]


_PAGE_LIMIT = re.compile(r"\s+limit\s+\d+(\s+offset\s+\d+)?\s*$", re.I)


# every matching row, up to a cap paid before the rows are read (and named in the output when it cuts):
# the document is built in memory (200,000 SARIF results of 10,000 images were 180 MB of JSON and 1.6 GB
# of the process's memory; 50,000 are a quarter of it)
MAX_EXPORT_ROWS = 50_000


async def _all_ids(datasette, database, columns, rows, sql, data) -> tuple[list, bool]:
    """(ids, cut): the ids the page's query selects without its page limit, at most MAX_EXPORT_ROWS
    (cut is True when there were more); the page's own rows when it cannot be run again (a canned or
    arbitrary query)."""
    ids = [dict(zip(columns, r))["id"] for r in rows]
    params = ((data or {}).get("query") or {}).get("params")
    if not sql or params is None or not (data or {}).get("table") or not _PAGE_LIMIT.search(sql):
        return ids, False
    db = datasette.get_database(database)

    def run(conn):  # the whole result may take longer than a page's time limit
        return [r[0] for r in conn.execute(f"SELECT id FROM ({_PAGE_LIMIT.sub('', sql)}) LIMIT {MAX_EXPORT_ROWS + 1}",
                                           params)]

    try:
        got = await db.execute_fn(run)
    except Exception:
        return ids, False
    return got[:MAX_EXPORT_ROWS], len(got) > MAX_EXPORT_ROWS


def _cut_note(what: str) -> str:
    return (f"only the first {MAX_EXPORT_ROWS:,} {what} of this query are included: narrow it with a filter"
            " (image, severity, ...) to get the rest")


def _refused(what: str) -> dict:
    return {"body": f"this table or query has no {what} to export: open a findings view (e.g. findings_report)"
                    " or the packages table\n", "status_code": 400, "content_type": "text/plain; charset=utf-8"}


async def render_sarif(datasette, columns, rows, database, sql=None, data=None):
    if not sarif_can_render(columns):  # asked for by URL on a table that is not one of findings
        return _refused("findings")
    ids, cut = await _all_ids(datasette, database, columns, rows, sql, data)
    findings = await _findings(datasette, database, ids)
    rules, results = {}, []
    for f in findings:
        rule_id = _rule_id(f)
        if rule_id not in rules:
            rule = {"id": rule_id, "shortDescription": {"text": f["title"] or rule_id},
                    "properties": {"kind": f["kind"], "security-severity":
                                   str(f["cvss_score"]) if f["cvss_score"] is not None
                                   else SECURITY_SEVERITY.get(f["severity"], "0.0")}}
            help_text = f["solution"] or f["suggestion"]
            if help_text:
                rule["help"] = {"text": help_text}
            rules[rule_id] = rule
        message = f["title"] or rule_id
        if f["package"]:
            message += f" in {f['package']} {f['package_version'] or ''}".rstrip()
            if f["fixed_version"]:
                message += f" (fixed in {f['fixed_version']})"
        if f["masked"]:
            message += f": {f['masked']}"  # the masked form is all the database holds
        location = {"logicalLocations": [{"name": f["image"], "fullyQualifiedName": f"{f['image']}@{f['manifest_digest']}",
                                          "kind": "module"}]}
        if f["path"]:
            physical = {"artifactLocation": {"uri": f["path"].lstrip("/")}}
            if f["line"]:
                physical["region"] = {"startLine": f["line"]}
            location["physicalLocation"] = physical
        result = {"ruleId": rule_id, "level": SARIF_LEVEL.get(f["severity"], "note"), "message": {"text": message},
                  "locations": [location],
                  "properties": {"image": f["image"], "severity": f["severity"], "layer_index": f["layer_index"],
                                 "finding_id": f["id"], "visible": bool(f["visible"])}}
        results.append(result)
    log = {"version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
           "runs": [{"tool": {"driver": {"name": "Stowaway", "version": TOOL_VERSION,
                                         "rules": list(rules.values())}},
                     "results": results}]}
    if cut:  # the cap is reported where SARIF tools look for a run's problems
        log["runs"][0]["invocations"] = [{"executionSuccessful": True, "toolExecutionNotifications": [
            {"level": "warning", "message": {"text": _cut_note("rows")}}]}]
    return {"body": json.dumps(log, indent=2), "content_type": "application/sarif+json; charset=utf-8"}


# --- CycloneDX -----------------------------------------------------------------------------------

def cyclonedx_can_render(columns):
    return {"id", "name", "version", "ecosystem"} <= set(columns)


PACKAGES_SQL = """
SELECT p.id, p.ecosystem, p.name, p.version, p.path, p.layer_index, p.purl, p.licenses, p.image_id,
       i.reference AS image, i.manifest_digest
FROM packages p LEFT JOIN images i ON i.id = p.image_id
WHERE p.id IN (SELECT value FROM json_each(:ids)) ORDER BY p.ecosystem, p.name, p.version, p.id
"""
VULNS_SQL = """
SELECT f.package_id, f.severity, v.vulnerability_id, v.aliases, v.cvss_score, v.cvss_vector, v.fixed_version,
       v.description, v.solution, f.suppressed, f.suppressed_reason
FROM findings f JOIN vulnerability_details v ON v.finding_id = f.id
WHERE f.kind = 'vulnerability' AND f.package_id IN (SELECT value FROM json_each(:ids))
  AND f.scan_id IN (SELECT DISTINCT scan_id FROM packages WHERE id IN (SELECT value FROM json_each(:ids)))
ORDER BY v.vulnerability_id
"""


async def render_cyclonedx(datasette, columns, rows, database, sql=None, data=None):
    """Every package the query selects (not only the page's rows), with their vulnerabilities."""
    if not cyclonedx_can_render(columns):
        return _refused("packages")
    db = datasette.get_database(database)
    all_ids, cut = await _all_ids(datasette, database, columns, rows, sql, data)
    ids = json.dumps(all_ids)
    packages = await _rows_unlimited(db, PACKAGES_SQL, {"ids": ids})
    vulns = await _rows_unlimited(db, VULNS_SQL, {"ids": ids})
    components = []
    for p in packages:
        component = {"type": "library", "bom-ref": f"pkg-{p['id']}", "name": p["name"], "version": p["version"] or ""}
        if p["purl"]:
            component["purl"] = p["purl"]
        try:
            licenses = json.loads(p["licenses"]) if p["licenses"] else []
        except ValueError:
            licenses = []
        if licenses:
            component["licenses"] = [{"license": {"name": str(x)}} for x in licenses]
        props = [("stowaway:ecosystem", p["ecosystem"]), ("stowaway:path", p["path"]),
                 ("stowaway:layer_index", p["layer_index"]), ("stowaway:image", p["image"])]
        component["properties"] = [{"name": k, "value": str(v)} for k, v in props if v is not None]
        components.append(component)
    by_id: dict[str, dict] = {}
    for v in vulns:
        entry = by_id.setdefault(v["vulnerability_id"], {
            "bom-ref": f"vuln-{v['vulnerability_id']}", "id": v["vulnerability_id"], "ratings": [], "affects": []})
        if not entry["ratings"]:
            rating = {"severity": v["severity"] if v["severity"] in ("critical", "high", "medium", "low") else "unknown"}
            if v["cvss_score"] is not None:
                rating["score"] = v["cvss_score"]
                rating["method"] = "CVSSv31" if (v["cvss_vector"] or "").startswith("CVSS:3.1") else (
                    "CVSSv3" if (v["cvss_vector"] or "").startswith("CVSS:3") else "other")
            if v["cvss_vector"]:
                rating["vector"] = v["cvss_vector"]
            entry["ratings"].append(rating)
            if v["description"]:
                entry["description"] = v["description"]
            if v["solution"] or v["fixed_version"]:
                entry["recommendation"] = v["solution"] or f"Upgrade to {v['fixed_version']}"
        ref = {"ref": f"pkg-{v['package_id']}"}
        if ref not in entry["affects"]:
            entry["affects"].append(ref)
        entry.setdefault("_suppressed", []).append(v["suppressed_reason"] if v["suppressed"] else None)
    for entry in by_id.values():
        # suppressed wherever it occurs here: a VEX "not affected" (what `stowaway ignore export` says too)
        reasons = entry.pop("_suppressed")
        if all(r is not None for r in reasons):
            entry["analysis"] = {"state": "not_affected", "detail": "; ".join(dict.fromkeys(reasons))}
    bom = {"bomFormat": "CycloneDX", "specVersion": "1.5", "serialNumber": f"urn:uuid:{uuid.uuid4()}", "version": 1,
           "metadata": {"tools": [{"vendor": "Stowaway", "name": "stowaway", "version": TOOL_VERSION}]},
           "components": components}
    images = {(p["image"], p["manifest_digest"]) for p in packages}
    if len(images) == 1:
        name, digest = images.pop()
        if name:
            bom["metadata"]["component"] = {"type": "container", "bom-ref": "image", "name": name,
                                            "version": digest or ""}
    if by_id:
        bom["vulnerabilities"] = list(by_id.values())
    if cut:
        bom["metadata"]["properties"] = [{"name": "stowaway:truncated", "value": _cut_note("packages")}]
    return {"body": json.dumps(bom, indent=2), "content_type": "application/vnd.cyclonedx+json; charset=utf-8"}


OUTPUT_RENDERERS = [
    {"extension": "sarif", "render": render_sarif, "can_render": sarif_can_render},
    {"extension": "cyclonedx", "render": render_cyclonedx, "can_render": cyclonedx_can_render},
]
