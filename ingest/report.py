"""The per-image JSON report of ../shared/docs/REPORT.md, built from the database alone.

Field names here are a contract read by other checks: add fields, never rename or drop them.
"""
from __future__ import annotations

import json

from . import readmodel
from .archives import not_opened
from .model import ScanError


def find_image(db, ref: str, platform: str = "") -> tuple[int, int]:
    """(image_id, scan_id) of REF's current scan (reference or manifest/config digest; the image
    scanned last when several match): images.last_scan_id, as on every other surface."""
    rows = db.execute(
        "SELECT i.id, i.last_scan_id, i.platform FROM images i WHERE i.last_scan_id IS NOT NULL"
        " AND (i.reference = ? OR i.manifest_digest = ? OR i.config_digest = ? OR i.index_digest = ?)"
        " ORDER BY i.last_scan_id DESC", [ref, ref, ref, ref]).fetchall()
    if platform:
        rows = [r for r in rows if r[2] == platform]
    if not rows:
        failed = db.execute("SELECT error FROM scans WHERE reference = ? AND status = 'failed' ORDER BY id DESC LIMIT 1",
                            [ref]).fetchone()
        if failed:
            raise ScanError(f"{ref}: no finished scan; the last scan failed: {failed[0]}")
        raise ScanError(f"{ref}: no such image in the database")
    return rows[0][0], rows[0][1]


def _rows(db, sql, params):
    cur = db.execute(sql, params)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _loads(text, default):
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def build(db, ref: str, platform: str = "") -> dict:
    image_id, scan_id = find_image(db, ref, platform)
    return build_for(db, image_id, scan_id)


def build_scan(db, scan_id: int) -> dict:
    """The report of one finished scan (what `stowaway scan` just wrote)."""
    row = db.execute("SELECT image_id FROM scans WHERE id = ? AND status = 'done'", [scan_id]).fetchone()
    if not row:
        raise ScanError(f"scan {scan_id}: no such finished scan")
    return build_for(db, row[0], scan_id)


def build_for(db, image_id: int, scan_id: int) -> dict:
    img = _rows(db, "SELECT * FROM images WHERE id = ?", [image_id])[0]
    scan = _rows(db, "SELECT * FROM scans WHERE id = ?", [scan_id])[0]
    layers = _rows(db, "SELECT il.position AS [index], l.diff_id, l.digest, il.created_by, l.size, l.entries"
                       " FROM image_layers il JOIN layers l ON l.id = il.layer_id WHERE il.image_id = ?"
                       " ORDER BY il.position", [image_id])
    facts = {r["name"]: _loads(r["value"], None) for r in _rows(db, "SELECT name, value FROM scan_facts WHERE scan_id = ?", [scan_id])}
    os_fact = facts.get("os") or {}
    image = {
        "reference": img["reference"], "manifest_digest": img["manifest_digest"], "config_digest": img["config_digest"],
        "index_digest": img["index_digest"] or None, "platform": img["platform"], "created": img["created"],
        "size": img["size"],
        "os": {"family": img["os_family"] or None, "version": img["os_version"] or None, "name": img["os_name"] or None,
               **({"id_like": os_fact.get("id_like")} if os_fact.get("id_like") else {})},
        "user": img["user"], "healthcheck": _loads(img["healthcheck"], None), "env": _loads(img["env"], []),
        "labels": _loads(img["labels"], {}),
        "layers": layers,
    }
    report_warnings = _loads(scan["warnings"], [])
    report = {
        "image": image,
        "scan": {"id": scan_id, "started_at": scan["started_at"], "finished_at": scan["finished_at"],
                 "seconds": scan["seconds"], "tool_version": scan["tool_version"],
                 "analyzers": _loads(scan["analyzers"], {}), "risk_types": _loads(scan["risk_types"], "all"),
                 "layers_read": scan["layers_read"], "layers_cached": scan["layers_cached"],
                 "warnings": _loads(scan["warnings"], []),
                 **_secret_exclusions(facts)},
        "vulnerabilities": vulnerabilities(db, scan_id),
        "malicious_files": malicious(db, scan_id),
        "software": software(db, scan_id),
        "files": files(db, scan_id),
        "unsafe_settings": unsafe_settings(db, scan_id),
        "sensitive_information": secrets(db, scan_id),
        "software_compliance": compliance(db, scan_id),
        "base_image": base_image(db, scan_id),
        # what could be checked for vulnerabilities, per ecosystem (REPORT.md); [] from scans before it was kept
        "coverage": {"vulnerabilities": facts.get("vulnerability_coverage") or [],
                     # archives and members recognised but not opened (RAR, CAB, implode, ...): not checked
                     "archives": not_opened(report_warnings)},
        # failing findings per kind and severity, unsuppressed and suppressed: the read model's counts,
        # the same on every surface (`stowaway images --format json`, Datasette, the notebooks)
        "counts": readmodel.scan_counts(db, image_id, scan_id),
    }
    _fix_all(report["software"], facts.get("vulnerability_fixes") or [])
    return report


def _secret_exclusions(facts: dict) -> dict:
    """Which paths the secret search left out in this scan (and how many files that was)."""
    conf = facts.get("secrets_policy")
    if not isinstance(conf, dict):
        return {}
    found = facts.get("secrets_skipped")
    skipped: dict = found if isinstance(found, dict) else {}
    return {"secrets_exclusions": {"default_excludes": conf.get("default_excludes", True),
                                   "exclude_paths": conf.get("exclude_paths") or [],
                                   "include_paths": conf.get("include_paths") or [],
                                   "files_excluded": skipped.get("excluded")}}
def _suppression(r) -> dict:
    if r.get("suppressed"):
        return {"suppressed": True, "suppressed_reason": r.get("suppressed_reason")}
    return {"suppressed": False}


def _fix_all(software: list[dict], fixes: list[dict]) -> None:
    """software[].fix_all_version: the lowest version that fixes all of a package's findings (null when
    it has none, or one of them has no fix), and how many findings that upgrade fixes."""
    by_key = {(f.get("ecosystem"), f.get("name"), f.get("version"), f.get("path")): f for f in fixes
              if isinstance(f, dict)}
    for s in software:
        f = by_key.get((s["ecosystem"], s["name"], s["version"], s["path"]))
        s["fix_all_version"] = f.get("fix_all_version") if f else None
        if f and f.get("fix_all_version"):
            s["fix_all_fixes"] = f.get("findings")


def vulnerabilities(db, scan_id):
    out = []
    for r in _rows(db, "SELECT f.*, d.*, p.ecosystem AS p_ecosystem, p.name AS p_name, p.version AS p_version,"
                       " p.path AS p_path, p.purl AS p_purl, p.metadata AS p_metadata FROM findings f JOIN vulnerability_details d ON d.finding_id = f.id"
                       " LEFT JOIN packages p ON p.id = f.package_id WHERE f.scan_id = ? AND f.kind = 'vulnerability'"
                       " ORDER BY f.severity_rank, d.cvss_score DESC, d.vulnerability_id", [scan_id]):
        item = {
            "id": r["vulnerability_id"], "aliases": _loads(r["aliases"], []),
            "package": {"ecosystem": r["p_ecosystem"] or r.get("ecosystem"), "name": r["p_name"] or r.get("package_name"),
                        "version": r["p_version"] or r.get("installed_version"), "path": r["p_path"] or r["path"],
                        "purl": r["p_purl"]},
            "severity": r["severity"], "cvss_score": r["cvss_score"], "cvss_vector": r["cvss_vector"],
            "fixed_version": r["fixed_version"], "published": r["published"], "solution": r["solution"],
            "title": r["title"], "layer_index": r["layer_index"], "ignored": bool(r["suppressed"]),
            **_suppression(r),
        }
        _extra(item, r, ("epss", "kev", "urgency", "matched_by", "description", "severity_source"))
        item.update(_certainty(item, _loads(r["p_metadata"], {})))
        out.append(item)
    _references(db, out)
    return out


def _references(db, items: list[dict]) -> None:
    """vulnerabilities[].references: the http(s) URLs the matched records (and NVD) publish, read from
    the advisory store now, so a re-import updates them; references_truncated when some were left out."""
    from stowaway.analyzers.vulnerabilities.store import references_for

    aliases = [[a for a in (i["aliases"] if isinstance(i["aliases"], list) else []) if isinstance(a, str)] for i in items]
    got = references_for(db, ((n, [i["id"], *aliases[n]]) for n, i in enumerate(items)))
    for n, item in enumerate(items):
        item["references"] = [ref["url"] for ref in got[n]["references"]]
        if got[n]["truncated"]:
            item["references_truncated"] = True


_LOWER = {"high": "medium", "medium": "low", "low": "low"}


def _certainty(item: dict, meta) -> dict:
    """possibly_affected, confidence and reason of a vulnerability: a package whose version is known only
    as a range (a library found by its classes) that overlaps the affected versions is possibly affected,
    with its confidence one step lower."""
    meta = meta if isinstance(meta, dict) else {}
    found = item.get("matched_by")
    matched: list = found if isinstance(found, list) else []
    possibly = bool(matched) and all(isinstance(m, dict) and m.get("possibly_affected") for m in matched)
    confidence = meta.get("confidence") or None
    if not possibly:
        return {"possibly_affected": False, "confidence": confidence}
    version = (item.get("package") or {}).get("version")
    return {"possibly_affected": True, "confidence": _LOWER.get(confidence or "", "low"),
            "reason": f"the installed version is known only as a range ({version}), which overlaps the affected"
                      f" versions ({matched[0].get('range')}); the exact version decides"}


def _extra(item, row, names):
    for n in names:
        if n in row and row[n] is not None:
            item[n] = _loads(row[n], row[n]) if n == "matched_by" else row[n]


def malicious(db, scan_id):
    return [{"path": r["path"], "rule": r["d_rule"] or r["rule"], "namespace": r["namespace"], "severity": r["severity"],
             "title": r["title"], "strings": _loads(r["strings"], r["strings"]), "sha256": r["sha256"], "size": r["size"],
             "layer_index": r["layer_index"], "visible": bool(r["visible"]),
             "engine": {"ioc": "ioc", "clamav": "clamav"}.get(r["namespace"], "yara"), **_suppression(r)}
            for r in _rows(db, "SELECT f.*, d.rule AS d_rule, d.namespace, d.strings, d.sha256, d.size FROM findings f"
                               " JOIN malware_details d ON d.finding_id = f.id WHERE f.scan_id = ? AND f.kind = 'malware'"
                               " ORDER BY f.path", [scan_id])]


def software(db, scan_id):
    return [{"ecosystem": r["ecosystem"], "name": r["name"], "version": r["version"], "arch": r["arch"] or None,
             "source_name": r["source_name"] or None, "source_version": r["source_version"] or None,
             "path": r["path"], "purl": r["purl"], "licenses": _loads(r["licenses"], []), "layer_index": r["layer_index"],
             "os_owned": bool(r["os_owned"]), "vulnerability_count": r["vulnerability_count"] or 0,
             **_found_by(_loads(r["metadata"], {}))}
            for r in _rows(db, "SELECT * FROM packages WHERE scan_id = ? ORDER BY ecosystem, name, version, path", [scan_id])]


def _found_by(meta) -> dict:
    """How a package was found: source ('lockfile', 'pom.properties', 'class-fingerprint', ...), detected_by and
    confidence (class fingerprints of shaded libraries)."""
    meta = meta if isinstance(meta, dict) else {}
    return {"source": meta.get("source") or None, "detected_by": meta.get("detected_by") or None,
            "confidence": meta.get("confidence") or None, "version_exact": meta.get("version_exact") is not False,
            **({"version_note": meta["version_note"]} if meta.get("version_note") else {})}


def files(db, scan_id):
    stats = _rows(db, "SELECT * FROM file_stats WHERE scan_id = ?", [scan_id])
    if not stats:
        return {"total_files": None, "total_size": None, "largest": [], "layers": []}
    s = stats[0]
    return {"total_files": s["total_files"], "total_size": s["total_size"], "directories": s["directories"],
            "symlinks": s["symlinks"],
            "largest": _rows(db, "SELECT path, size, layer_index FROM largest_files WHERE scan_id = ? ORDER BY rank", [scan_id]),
            "layers": _rows(db, "SELECT layer_index, files, size, visible_files, visible_size, whiteouts FROM layer_stats"
                                " WHERE scan_id = ? ORDER BY layer_index", [scan_id])}


def unsafe_settings(db, scan_id):
    return [{"category": r["category"], "check_id": r["check_id"], "title": r["title"], "severity": r["severity"],
             "result": r["result"] or r["status"], "target": r["target"], "evidence": r["evidence"],
             "description": r["description"], "suggestion": r["suggestion"], "benchmark": r["benchmark"],
             "path": r["path"] or None, "layer_index": r["layer_index"], **_suppression(r)}
            for r in _rows(db, "SELECT f.*, d.* FROM findings f JOIN setting_details d ON d.finding_id = f.id"
                               " WHERE f.scan_id = ? AND f.kind = 'unsafe_setting' ORDER BY d.category, d.check_id, d.target",
                               [scan_id])]


def secrets(db, scan_id):
    return [{"path": r["path"], "rule": r["rule_id"] or r["rule"], "title": r["title"], "severity": r["severity"],
             "line": r["line"], "masked": r["masked"], "layer_index": r["layer_index"], "visible": bool(r["visible"]),
             "source": r["source"] or "file", **_suppression(r)}
            for r in _rows(db, "SELECT f.*, d.* FROM findings f JOIN secret_details d ON d.finding_id = f.id"
                               " WHERE f.scan_id = ? AND f.kind = 'secret' ORDER BY f.path, d.line", [scan_id])]


def compliance(db, scan_id):
    return [{"name": r["name"], "version": r["version"], "path": r["path"], "layer_index": r["layer_index"],
             "rule": r["d_rule"] or r["rule"], "reason": r["reason"], "severity": r["severity"], **_suppression(r)}
            for r in _rows(db, "SELECT f.*, d.name, d.version, d.rule AS d_rule, d.reason FROM findings f"
                               " JOIN compliance_details d ON d.finding_id = f.id WHERE f.scan_id = ? AND f.kind = 'compliance'"
                               " ORDER BY d.name", [scan_id])]


def base_image(db, scan_id):
    rows = _rows(db, "SELECT f.*, d.* FROM findings f JOIN base_image_details d ON d.finding_id = f.id"
                     " WHERE f.scan_id = ? AND f.kind = 'base_image' ORDER BY f.id DESC LIMIT 1", [scan_id])
    if not rows:
        return {"approved": None, "matched": None}
    r = rows[0]
    detail = _rows(db, "SELECT * FROM base_image_details WHERE finding_id = ?", [r["id"]])[0]
    extra = {k: v for k, v in detail.items() if k not in ("finding_id", "approved") and v is not None}
    return {**extra, "approved": None if r["approved"] is None else bool(r["approved"]), "matched": r["matched"],
            "own_layers": r["own_layers"], "closest": r["closest"], "guessed_boundary": r["guessed_boundary"]}
