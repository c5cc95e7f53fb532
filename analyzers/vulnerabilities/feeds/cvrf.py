"""CVRF 1.1/1.2 security advisories of SUSE (ftp.suse.com/pub/projects/security/cvrf/, SUSE-SU-… and
openSUSE-SU-…) and openEuler (repo.openeuler.org/security/data/cvrf/, openEuler-SA-…), one OSV-shaped
record per advisory with its CVEs as aliases.

SUSE: the product tree lists binary rpms ('Product Version' branches, name-version-release) and
relationships place each in a product ('SUSE Linux Enterprise Server 15 SP3:python3-3.6.15-…'); a
vulnerability's `Fixed` status names those placed products. The release is the product's number
('SUSE:Linux Enterprise Server 15 SP3' -> SUSE 15.3, 'openSUSE:Leap 15.2' -> openSUSE 15.2); products
other than SUSE Linux Enterprise and openSUSE Leap are not recorded. SUSE names binaries, and the
matcher keys rpm packages on their source: the source package is the binary of the same name, and the
one the advisory's title names ('Security update for python3'), with the same version-release.

openEuler: 'Package Arch' branches list rpm file names per architecture, the `src` one names the source
rpms, each with the CPE of its release (`cpe:/a:openEuler:openEuler:22.03-LTS-SP1`); a vulnerability's
`Fixed` status names the release product.

Severity: the vendor's impact per vulnerability (SUSE: low / moderate / important / critical; openEuler:
Low / Medium / High / Critical); the worst of them is the advisory's. CVSS vectors from `CVSSScoreSets`.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Iterator

from . import MAX_DOCUMENT, FeedError, cvss_entry, open_feed, split_rpm_filename, worst

_SUSE_PRODUCT = re.compile(r"^(SUSE Linux Enterprise .*?\d.*|openSUSE Leap (?:Micro )?\d+(?:\.\d+)?)$")
_TITLE_SOURCE = re.compile(r"^(?:Security|Recommended) update for ([A-Za-z0-9][\w.+-]*)$")
_OE_CPE = re.compile(r"^cpe:/a:openEuler:openEuler:(.+)$")


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(el, name: str):
    return [c for c in el if _local(c.tag) == name]


def _first(el, *path: str):
    for name in path:
        if el is None:
            return None
        el = next((c for c in el if _local(c.tag) == name), None)
    return el


def _text(el, *path: str) -> str:
    got = _first(el, *path)
    return (got.text or "").strip() if got is not None else ""


def _walk(el, name: str):
    return [c for c in el.iter() if _local(c.tag) == name]


def records(path: str, warn) -> Iterator[dict]:
    try:
        with open_feed(path, MAX_DOCUMENT) as fh:
            root = ET.parse(fh).getroot()
    except (OSError, EOFError, ET.ParseError) as exc:
        raise FeedError(f"{path}: not readable CVRF XML ({exc.__class__.__name__}: {exc})") from None
    if _local(root.tag) != "cvrfdoc":
        raise FeedError(f"{path}: not a CVRF document")
    rec = cvrf_record(root, path, warn)
    if rec:
        yield rec


def _vulnerabilities(root) -> list[dict]:
    out = []
    for v in _children(root, "Vulnerability"):
        fixed = [p.text.strip() for s in _walk(v, "Status") if s.get("Type") in ("Fixed", "First Fixed")
                 for p in _children(s, "ProductID") if p.text]
        impact = [(t, _text(t, "Description")) for t in _walk(v, "Threat") if t.get("Type") == "Impact"]
        vectors = [_text(s, "Vector") for s in _walk(v, "ScoreSet")]
        notes = [(n.text or "").strip() for n in _walk(v, "Note") if n.get("Type") in ("General", "Description")]
        out.append({"cve": _text(v, "CVE"), "fixed": fixed, "impact": impact, "vectors": vectors,
                    "notes": [n for n in notes if n]})
    return out


def cvrf_record(root, name: str, warn) -> dict | None:
    rid = _text(root, "DocumentTracking", "Identification", "ID")
    if not rid:
        raise FeedError(f"{name}: CVRF document without an ID")
    tree = _first(root, "ProductTree")
    if tree is None:
        warn("cvrf: document without a product tree", f"{name} {rid}")
        return None
    vulns = _vulnerabilities(root)
    title = _text(root, "DocumentTitle")
    cpes = {f.get("CPE") or "" for f in _walk(tree, "FullProductName")}
    if any(_OE_CPE.match(c) for c in cpes):
        affected = _openeuler_affected(tree, vulns, rid, warn)
    else:
        affected = _suse_affected(tree, vulns, title, rid, warn)
    if not affected:
        warn("cvrf: no package of a known release fixed", f"{name} {rid}")
        return None
    levels = [lvl for v in vulns for _t, lvl in v["impact"]]
    severities: list[dict] = []
    for v in vulns:
        for vec in v["vectors"]:
            entry = cvss_entry(vec)
            if entry and entry not in severities:
                severities.append(entry)
    cves = sorted({v["cve"] for v in vulns if v["cve"].startswith("CVE-")})
    summary = next((((n.text or "").strip()) for n in _walk(_first(root, "DocumentNotes") or root, "Note")
                    if n.get("Title") in ("Topic", "Synopsis") and (n.text or "").strip()), title)
    details = next((((n.text or "").strip()) for n in _walk(_first(root, "DocumentNotes") or root, "Note")
                    if n.get("Title") in ("Details", "Description") and (n.text or "").strip()), "")
    rec = {"id": rid, "modified": _text(root, "DocumentTracking", "CurrentReleaseDate"),
           "published": _text(root, "DocumentTracking", "InitialReleaseDate") or None,
           "aliases": cves, "summary": summary, "details": details, "affected": affected,
           "database_specific": {"severity": worst(levels), "source": "CVRF"}}
    if severities:
        rec["severity"] = severities[:3]
    # the document's and its vulnerabilities' <Reference><URL> links (store.clean_references caps them)
    refs = [{"url": _text(r, "URL"), "type": r.get("Type")} for r in _walk(root, "Reference")]
    if refs:
        rec["references"] = refs
    return rec


def _level_for(vulns: list[dict], product_ids: set[str]) -> str | None:
    """The worst impact among the vulnerabilities fixed in any of these products."""
    return worst(lvl for v in vulns if product_ids & set(v["fixed"]) for _t, lvl in v["impact"])


def _suse_affected(tree, vulns: list[dict], title: str, rid: str, warn) -> list[dict]:
    packages: dict[str, tuple[str, str]] = {}  # 'python3-3.6.15-150300.10.21.1' -> (name, version-release)
    for b in _walk(tree, "Branch"):
        if b.get("Type") != "Product Version":
            continue
        for f in _children(b, "FullProductName"):
            pid = f.get("ProductID") or ""
            parts = pid.rsplit("-", 2)
            if len(parts) == 3 and parts[0]:
                packages[pid] = (parts[0], f"{parts[1]}-{parts[2]}")
    m = _TITLE_SOURCE.match(title)
    source = m.group(1) if m else None
    rows: dict[tuple, dict] = {}
    for rel in _walk(tree, "Relationship"):
        product = rel.get("RelatesToProductReference") or ""
        pkg = packages.get(rel.get("ProductReference") or "")
        full = _first(rel, "FullProductName")
        pid = full.get("ProductID") if full is not None else None
        if pkg is None or not pid or not _SUSE_PRODUCT.match(product):
            continue
        if not any(pid in v["fixed"] for v in vulns):
            continue
        base, _, rest = product.partition(" ")
        ecosystem = f"openSUSE:{product.split(' ', 1)[1]}" if base == "openSUSE" else f"SUSE:{rest}"
        names = {pkg[0], source} if source else {pkg[0]}
        for n in names:
            key = (ecosystem, n, pkg[1])
            if key in rows:
                rows[key]["_pids"].add(pid)
                continue
            rows[key] = {"package": {"ecosystem": ecosystem, "name": n},
                         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": pkg[1]}]}],
                         "_pids": {pid}}
    out = []
    for row in rows.values():
        pids = row.pop("_pids")
        row["ecosystem_specific"] = {"severity": _level_for(vulns, pids)}
        out.append(row)
    return out


def _openeuler_affected(tree, vulns: list[dict], rid: str, warn) -> list[dict]:
    releases: dict[str, str] = {}  # product id -> release
    for f in _walk(tree, "FullProductName"):
        m = _OE_CPE.match(f.get("CPE") or "")
        if m and f.get("ProductID") and not (f.text or "").endswith(".rpm"):
            releases[f.get("ProductID") or ""] = m.group(1)
    out = []
    seen = set()
    for b in _walk(tree, "Branch"):
        if b.get("Type") != "Package Arch" or b.get("Name") != "src":
            continue
        for f in _children(b, "FullProductName"):
            m = _OE_CPE.match(f.get("CPE") or "")
            parsed = split_rpm_filename(f.text or "")
            if not m or not parsed:
                warn("cvrf: unreadable openEuler source rpm entry", f"{rid} {(f.text or '').strip()}")
                continue
            release = m.group(1)
            products = {pid for pid, rel in releases.items() if rel == release}
            if not any(products & set(v["fixed"]) for v in vulns):
                continue
            key = (release, parsed[0], parsed[1])
            if key in seen:
                continue
            seen.add(key)
            out.append({"package": {"ecosystem": f"openEuler:{release}", "name": parsed[0]},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": parsed[1]}]}],
                        "ecosystem_specific": {"severity": _level_for(vulns, products)}})
    return out
