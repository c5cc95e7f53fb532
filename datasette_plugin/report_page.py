"""The per-image report page (/-/stowaway/image/<ref>): a summary strip and one tab per scan item.

A request renders the summary strip and ONE tab (`?tab=vulnerabilities`), so a page costs a fixed
handful of indexed queries whatever the image holds (the longest tabs are paged); nothing is queried
per row. Every count comes from the read model (`image_finding_counts`, the report tables): the
strip's numbers are the JSON report's `counts`, and a suppression changes them on the next request.
"""
from __future__ import annotations

import json
import re

from stowaway.ingest.model import SEVERITIES
from stowaway.ingest.readmodel import counts as read_counts

from .masking import mask_command, mask_env
from .queries import rows

# (tab key, label, finding kind it lists, the scan's risk type, the analyzers that produce it)
TABS = [
    ("basic", "Basic information", None, None, ()),
    ("vulnerabilities", "Vulnerabilities", "vulnerability", "vulnerabilities", ("vulnerabilities",)),
    ("malicious", "Malicious files", "malware", "malicious", ("malware",)),
    ("software", "Software", None, "software", ()),
    ("files", "File information", None, "files", ("files",)),
    ("settings", "Unsafe settings", "unsafe_setting", "unsafe_settings", ("settings-files", "weak-passwords")),
    ("secrets", "Sensitive information", "secret", "secrets", ("secrets",)),
    ("compliance", "Software compliance", "compliance", "compliance", ("compliance",)),
    ("base-image", "Base image", "base_image", "base_image", ("base-image",)),
]
TAB_KEYS = [t[0] for t in TABS]
KIND_TAB = {t[2]: t[0] for t in TABS if t[2]}
LABEL = {t[0]: t[1] for t in TABS}
PAGE_SIZE = {"vulnerabilities": 100, "software": 200}
CATEGORY_LABELS = {"baseline": "Baseline (CIS and container checks)", "ssh": "SSH server",
                   "password_policy": "Password policy", "weak_password": "Weak passwords"}
FACTS = ("vulnerability_coverage", "vulnerability_fixes", "secrets_policy", "secrets_skipped", "malware_skipped")


def _loads(text, default):
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def duration(seconds) -> str:
    """A scan's wall time as people read it: 0.4 s, 12.3 s, 2 min 5 s, 1 h 3 min."""
    if seconds is None:
        return "unknown"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s" if s >= 0.05 else f"{s:.3f} s"
    if s < 3600:
        return f"{int(s // 60)} min {round(s % 60)} s"
    return f"{int(s // 3600)} h {round(s % 3600 / 60)} min"


async def summary(db, image: dict) -> dict:
    """Everything the strip across the top shows, for the image's current scan: counts per item and
    severity (failing and suppressed), fixable vulnerabilities, coverage gaps and the scan's
    warnings in full."""
    image = dict(image)
    image["env"] = mask_env(_loads(image.get("env"), []))
    for key in ("healthcheck", "entrypoint", "cmd"):
        image[key] = _loads(image.get(key), None)
    out: dict = {"image": image, "scan": None, "tab_counts": {}, "gaps": [], "warnings": []}
    scan_id = image["last_scan_id"]
    failed = await rows(db, "SELECT id, error, finished_at FROM scans WHERE image_id = ? AND status = 'failed'"
                            " AND id > coalesce(?, 0) ORDER BY id DESC LIMIT 1", [image["id"], scan_id])
    out["failed_scan"] = failed[0] if failed else None
    if scan_id is None:
        return out
    scan = (await rows(db, "SELECT id, status, started_at, finished_at, seconds, layers_read, layers_cached,"
                           " tool_version, analyzers, risk_types, warnings FROM scans WHERE id = ?", [scan_id]))[0]
    scan["warnings"] = [str(w) for w in _loads(scan.get("warnings"), []) or []]
    scan["analyzers"] = _loads(scan.get("analyzers"), {}) or {}
    scan["risk_types"] = _loads(scan.get("risk_types"), "all")
    scan["duration"] = duration(scan.get("seconds"))
    out["scan"] = scan
    out["warnings"] = scan["warnings"]
    image_id = image["id"]
    got = await db.execute_fn(lambda conn: read_counts(conn, image_id))
    counts = got.get(image_id, {"failing": {}, "suppressed": {}})
    out["counts"] = counts
    items = {}
    for tab, label, kind, _, _ in TABS:
        if not kind:
            continue
        failing = counts["failing"].get(kind, {})
        suppressed = counts["suppressed"].get(kind, {})
        items[tab] = {"kind": kind, "label": label, "failing": sum(failing.values()),
                      "suppressed": sum(suppressed.values()),
                      "by_severity": [(s, failing.get(s, 0), suppressed.get(s, 0)) for s in SEVERITIES
                                      if failing.get(s) or suppressed.get(s)]}
    out["items"] = items
    out["suppressed_total"] = sum(sum(v.values()) for v in counts["suppressed"].values())
    one = await rows(db, "SELECT (SELECT COUNT(*) FROM vulnerabilities_view WHERE image_id = :image"
                         "   AND suppressed = 0 AND fix_available = 'yes') AS fixable,"
                         " (SELECT COUNT(*) FROM packages WHERE scan_id = :scan) AS packages,"
                         " (SELECT total_files FROM file_stats WHERE scan_id = :scan) AS files,"
                         " (SELECT verdict FROM base_image_view WHERE image_id = :image ORDER BY id DESC LIMIT 1)"
                         "   AS base_verdict", {"image": image_id, "scan": scan_id})
    out.update(one[0])
    facts = {r["name"]: _loads(r["value"], None) for r in await rows(
        db, "SELECT name, value FROM scan_facts WHERE scan_id = ? AND name IN (SELECT value FROM json_each(?))",
        [scan_id, json.dumps(FACTS)])}
    out["facts"] = facts
    out["gaps"] = _gaps(scan, facts, out["base_verdict"])
    # an item this scan did not look for is "not checked", never a clean 0
    out["not_run"] = {g["tab"] for g in out["gaps"] if g.get("not_run")}
    tab_counts = {t: items[t]["failing"] for t in items}
    tab_counts["software"] = out["packages"]
    tab_counts["files"] = out["files"]
    tab_counts["base-image"] = out["base_verdict"] or "not checked"
    for tab in out["not_run"]:
        tab_counts[tab] = "not checked"
    out["tab_counts"] = tab_counts
    return out


def _gaps(scan: dict, facts: dict, base_verdict) -> list[dict]:
    """What this scan did not check, and why: never shown as clean."""
    gaps = []
    risks = scan.get("risk_types")
    ran = scan.get("analyzers") or {}
    for tab, label, _, risk, analyzers in TABS:
        if risk and isinstance(risks, list) and risk not in risks:
            gaps.append({"tab": tab, "item": label, "not_run": True,
                         "reason": f"not checked: this scan's risk types ({', '.join(risks)}) left it out"})
        elif analyzers and ran and not any(a in ran for a in analyzers):
            gaps.append({"tab": tab, "item": label, "not_run": True,
                         "reason": f"not checked: the {' / '.join(analyzers)} analyzer did not run in this scan"})
    for c in facts.get("vulnerability_coverage") or []:
        if isinstance(c, dict) and not c.get("checked", True):
            gaps.append({"tab": "vulnerabilities", "item": "Vulnerabilities",
                         "reason": f"{c.get('packages') or 0} {c.get('ecosystem')} packages "
                                   + (c.get("reason") or "not checked")})
    for fact, tab, label, what in (("malware_skipped", "malicious", "Malicious files", "the malware size cap"),
                                   ("secrets_skipped", "secrets", "Sensitive information", "the secrets size cap")):
        skipped = facts.get(fact)
        too_large = skipped.get("too_large") if isinstance(skipped, dict) else None
        if too_large:
            cap = skipped.get("max_file_size")
            gaps.append({"tab": tab, "item": label, "reason": f"{too_large} file{'s' if too_large != 1 else ''} over"
                         f" {what}{f' ({cap:,} bytes)' if isinstance(cap, int) else ''} not searched"})
    if base_verdict in (None, "not checked") and not any(g["tab"] == "base-image" for g in gaps):
        gaps.append({"tab": "base-image", "item": "Base image",
                     "reason": "not checked: no approved base image was named for this scan (--approved-base REF)"})
    return gaps


# --- tabs ----------------------------------------------------------------------------------------

def _page(request_page: str) -> int:
    return max(1, int(request_page)) if request_page.isdigit() else 1


def _mask_layers(items: list[dict]) -> list[dict]:
    for item in items:
        if "layer_created_by" in item:
            item["layer_created_by"] = mask_command(item["layer_created_by"])
    return items


async def tab_data(db, summary_data: dict, tab: str, args) -> dict:
    image, scan = summary_data["image"], summary_data["scan"]
    loader = _LOADERS.get(tab)
    if tab == "basic" or scan is None:
        layers = await rows(db, "SELECT il.position, il.created_by, l.diff_id, l.size, l.entries FROM image_layers il"
                                " JOIN layers l ON l.id = il.layer_id WHERE il.image_id = ? ORDER BY il.position",
                            [image["id"]])
        for layer in layers:
            layer["created_by"] = mask_command(layer["created_by"])
        return {"layers": layers}
    return await loader(db, image, scan, summary_data, args)


async def _vulnerabilities(db, image, scan, summary_data, args) -> dict:
    where, params = ["image_id = :image"], {"image": image["id"]}
    severity = args.get("severity") or ""
    if severity in SEVERITIES:
        where.append("severity = :severity")
        params["severity"] = severity
    else:
        severity = ""
    fixable = args.get("fix") == "yes"
    if fixable:
        where.append("fix_available = 'yes'")
    clause = " AND ".join(where)
    size = PAGE_SIZE["vulnerabilities"]
    page = _page(args.get("page") or "")
    total = (await db.execute(f"SELECT COUNT(*) FROM vulnerabilities_view WHERE {clause}", params)).rows[0][0]
    items = _mask_layers(await rows(
        db, f"SELECT * FROM vulnerabilities_view WHERE {clause} ORDER BY severity_rank, cvss_score DESC,"
            f" vulnerability_id, id LIMIT {size} OFFSET {(page - 1) * size}", params))
    # what the view leaves out (description, severity source, EPSS, KEV): one query for the whole page
    # (SELECT *: severity_source, epss and kev are columns the vulnerability analyzers add when they run)
    extra = {r["finding_id"]: r for r in await rows(
        db, "SELECT * FROM vulnerability_details WHERE finding_id IN (SELECT value FROM json_each(?))",
        [json.dumps([v["id"] for v in items])])}
    for v in items:
        more = extra.get(v["id"]) or {}
        for key in ("description", "severity_source", "epss", "kev"):
            v[key] = more.get(key)
        v["aliases"] = [a for a in _loads(v.get("aliases"), []) if isinstance(a, str)]
    await add_references(db, items, "vulnerability_id")
    return {"vulnerabilities": items, "total": total, "page": page, "pages": max(1, -(-total // size)),
            "severity": severity, "fixable_only": fixable, "rollup": await _rollup(db, image, summary_data)}


async def _rollup(db, image, summary_data) -> list[dict]:
    """Per vulnerable package: how many findings, how many have a fix, and the one upgrade that fixes
    them all (the scan's `vulnerability_fixes` fact: the report's software[].fix_all_version)."""
    groups = _mask_layers(await rows(
        db, "SELECT package, ecosystem, installed_version, path, layer_index, layer_created_by, COUNT(*) AS n,"
            " SUM(suppressed = 0) AS open, SUM(fix_available = 'yes') AS fixable, MIN(severity_rank) AS worst"
            " FROM vulnerabilities_view WHERE image_id = ? GROUP BY package, ecosystem, installed_version, path"
            " ORDER BY worst, n DESC, package LIMIT 200", [image["id"]]))
    fixes = {(str(f.get("name")), str(f.get("version")), str(f.get("path"))): f
             for f in summary_data["facts"].get("vulnerability_fixes") or [] if isinstance(f, dict)}
    for g in groups:
        fix = fixes.get((str(g["package"]), str(g["installed_version"]), str(g["path"])))
        g["fix_all_version"] = fix.get("fix_all_version") if fix else None
        g["worst"] = SEVERITIES[g["worst"]] if isinstance(g["worst"], int) and g["worst"] < len(SEVERITIES) else "unknown"
    return groups


REFERENCE_SITES = [
    (re.compile(r"^CVE-\d{4}-\d+$"), [("NVD", "https://nvd.nist.gov/vuln/detail/{}"), ("OSV", "https://osv.dev/vulnerability/{}")]),
    (re.compile(r"^GHSA(-[23456789cfghjmpqrvwx]{4}){3}$"),
     [("GitHub advisory", "https://github.com/advisories/{}"), ("OSV", "https://osv.dev/vulnerability/{}")]),
    (re.compile(r"^(PYSEC|GO|RUSTSEC|OSV|DLA|DSA|DTSA|USN|UBUNTU|ALSA|RLSA|MAL|BIT|GSD|CURL|PSF|RSEC)-[\w.-]+$"),
     [("OSV", "https://osv.dev/vulnerability/{}")]),
]


def references(vuln_id: str, aliases: list[str]) -> list[tuple[str, str, str]]:
    """(site, id, url) for the vulnerability and its aliases, at the public databases that publish them."""
    out = []
    for ident in [vuln_id, *aliases]:
        for pattern, sites in REFERENCE_SITES:
            if ident and pattern.match(ident):
                out += [(site, ident, url.format(ident)) for site, url in sites]
                break
    return out


async def add_references(db, items: list[dict], id_key: str, extra_key: str = "") -> None:
    """item["references"]: the id-derived links, then the records' own reference URLs from the advisory
    store (analyzers/vulnerabilities/store.references_for: http(s) only), de-duplicated;
    item["references_truncated"] when the store left some out."""
    from stowaway.analyzers.vulnerabilities.store import references_for

    keyed = [(n, [it[id_key], *it.get("aliases", []), *([it[extra_key]] if extra_key and it.get(extra_key) else [])])
             for n, it in enumerate(items)]
    try:
        stored = await db.execute_fn(lambda conn: references_for(conn, keyed))
    except Exception:  # another shape of the advisory store than the one this reads: the id-derived links only
        stored = {}
    for n, it in enumerate(items):
        links = references(it[id_key], it.get("aliases", []))
        seen = {url for *_, url in links}
        got = stored.get(n) or {"references": [], "truncated": False}
        for ref in got["references"]:
            if ref["url"] not in seen:
                seen.add(ref["url"])
                links.append(((ref.get("type") or "link").lower(), ref["url"], ref["url"]))
        it["references"] = links
        it["references_truncated"] = got["truncated"]


async def _malicious(db, image, scan, summary_data, args) -> dict:
    return {"malware": _mask_layers(await rows(
        db, "SELECT * FROM malware_view WHERE image_id = ? ORDER BY severity_rank, path, id", [image["id"]]))}


async def _software(db, image, scan, summary_data, args) -> dict:
    size = PAGE_SIZE["software"]
    page = _page(args.get("page") or "")
    total = summary_data.get("packages") or 0
    packages = await rows(db, "SELECT id, ecosystem, name, version, path, layer_index, purl, vulnerability_count"
                              " FROM packages WHERE scan_id = ? ORDER BY vulnerability_count DESC, ecosystem, name,"
                              f" id LIMIT {size} OFFSET {(page - 1) * size}", [scan["id"]])
    ecosystems = await rows(db, "SELECT ecosystem, COUNT(*) AS n FROM packages WHERE scan_id = ? GROUP BY ecosystem"
                                " ORDER BY n DESC", [scan["id"]])
    return {"packages": packages, "total": total, "page": page, "pages": max(1, -(-total // size)),
            "ecosystems": ecosystems}


async def _files(db, image, scan, summary_data, args) -> dict:
    p = {"scan": scan["id"]}
    stats = await rows(db, "SELECT * FROM file_stats WHERE scan_id = :scan", p)
    return {"file_stats": stats[0] if stats else None,
            "largest_files": await rows(db, "SELECT rank, path, size, layer_index FROM largest_files"
                                            " WHERE scan_id = :scan ORDER BY rank LIMIT 50", p),
            "layer_stats": await rows(db, "SELECT * FROM layer_stats WHERE scan_id = :scan ORDER BY layer_index", p)}


async def _settings(db, image, scan, summary_data, args) -> dict:
    checks = _mask_layers(await rows(
        db, "SELECT * FROM unsafe_settings_view WHERE image_id = ?"
            " ORDER BY result <> 'fail', severity_rank, check_id, target, id", [image["id"]]))
    groups: dict[str, dict] = {}
    for c in checks:
        g = groups.setdefault(c["category"] or "other", {"category": c["category"] or "other",
                                                          "label": CATEGORY_LABELS.get(c["category"], c["category"]),
                                                          "fail": [], "other": [], "failing": 0})
        if c["result"] == "fail":
            g["fail"].append(c)
            g["failing"] += 0 if c["suppressed"] else 1
        else:
            g["other"].append(c)
    order = sorted(groups.values(), key=lambda g: (-g["failing"], -len(g["fail"]),
                                                   list(CATEGORY_LABELS).index(g["category"])
                                                   if g["category"] in CATEGORY_LABELS else 99))
    return {"groups": order, "checks": len(checks)}


async def _secrets(db, image, scan, summary_data, args) -> dict:
    found = _mask_layers(await rows(db, "SELECT * FROM secrets_view WHERE image_id = ? ORDER BY severity_rank, path,"
                                        " line, id", [image["id"]]))
    policy = summary_data["facts"].get("secrets_policy")
    skipped = summary_data["facts"].get("secrets_skipped")
    return {"secrets": found,
            "exclusions": (policy.get("exclude_paths") or []) if isinstance(policy, dict) else None,
            "default_excludes": policy.get("default_excludes", True) if isinstance(policy, dict) else None,
            "files_excluded": skipped.get("excluded") if isinstance(skipped, dict) else None}


async def _compliance(db, image, scan, summary_data, args) -> dict:
    return {"compliance": _mask_layers(await rows(
        db, "SELECT * FROM compliance_view WHERE image_id = ? ORDER BY severity_rank, name, id", [image["id"]]))}


async def _base_image(db, image, scan, summary_data, args) -> dict:
    base = await rows(db, "SELECT * FROM base_image_view WHERE image_id = ? ORDER BY id DESC LIMIT 1", [image["id"]])
    return {"base_image": base[0] if base else None}


_LOADERS = {"vulnerabilities": _vulnerabilities, "malicious": _malicious, "software": _software, "files": _files,
            "settings": _settings, "secrets": _secrets, "compliance": _compliance, "base-image": _base_image}
