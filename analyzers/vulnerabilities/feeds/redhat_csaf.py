"""Red Hat CSAF 2.0: the per-CVE VEX files (security.access.redhat.com/data/csaf/v2/vex/) and the
per-erratum advisories (…/csaf/v2/advisories/, RHSA-…), both as OSV-shaped records.

Products are resolved through the document's product tree: a status or remediation names
'<platform>:<component>' ids; `relationships` say which platform and which component each is, and the
platform's CPE says which release: `cpe:/o:redhat:enterprise_linux:7::server` -> Red Hat 7 (the key
CentOS 7 images are matched on). Only RHEL's mainline streams are taken (enterprise_linux, and rhel_els
for RHEL 7's extended life); the minor-release streams (EUS, AUS, TUS, E4S) and other products are not
what a container's yum repositories give it.

- `fixed` (and a `vendor_fix` remediation): fixed in that component's version. A fixed binary is keyed
  by the source rpm the tree names for the same platform and epoch:version-release (Red Hat lists the
  source apart, often as known_not_affected), which is what the matcher keys rpm packages on; a
  document that names no source (a trimmed VEX) is keyed by the binary names.
- `known_affected` with `no_fix_planned` / `none_available` / `deferred` ('Will not fix', 'Out of
  support scope'): affected with no fixed version.
- `known_not_affected` and `under_investigation`: not recorded (an unconfirmed CVE is not a finding).

Severity: Red Hat's impact (Low / Moderate / Important / Critical) per product from `threats`, else the
document's `aggregate_severity`; CVSS vectors from `scores`.
"""
from __future__ import annotations

import json
import re
from typing import Iterator

from . import MAX_DOCUMENT, FeedError, cvss_entry, open_feed, split_nevra

_CPE = re.compile(r"^cpe:/[ao]:redhat:(enterprise_linux|rhel_els):(\d+)")
_PLATFORM_ID = re.compile(r"^red_hat_enterprise_linux_(\d+)$")  # VEX's id of a release's unfixed components
_UNFIXED = ("no_fix_planned", "none_available", "deferred")


def records(path: str, warn) -> Iterator[dict]:
    try:
        with open_feed(path, MAX_DOCUMENT) as fh:
            doc = json.load(fh)
    except FeedError:
        raise
    except (OSError, EOFError, ValueError) as exc:  # json and decompression errors; FeedError is a ValueError
        raise FeedError(f"{path}: not readable CSAF JSON ({exc.__class__.__name__})") from None
    yield from csaf_records(doc, path, warn)


def _platforms(tree: dict) -> tuple[dict[str, str], dict[str, tuple[str, str, str]]]:
    """(product id -> CPE, product id -> (name, epoch:version-release, arch) from its rpm purl)."""
    cpes: dict[str, str] = {}
    purls: dict[str, tuple[str, str, str]] = {}
    stack = list(tree.get("branches") or ())
    while stack:
        b = stack.pop()
        if not isinstance(b, dict):
            continue
        prod = b.get("product")
        if isinstance(prod, dict) and isinstance(prod.get("product_id"), str):
            helper = prod.get("product_identification_helper") or {}
            if isinstance(helper.get("cpe"), str):
                cpes[prod["product_id"]] = helper["cpe"]
            got = _rpm_purl(helper.get("purl"))
            if got:
                purls[prod["product_id"]] = got
        stack.extend(b.get("branches") or ())
    return cpes, purls


def _rpm_purl(text) -> tuple[str, str, str] | None:
    """'pkg:rpm/redhat/bind@9.8.2-0.68.rc1.el6_10.17?arch=src&epoch=32' -> ('bind', '32:9.8.2-…', 'src')."""
    if not isinstance(text, str) or not text.startswith("pkg:rpm/"):
        return None
    from packageurl import PackageURL

    try:
        p = PackageURL.from_string(text)
    except ValueError:
        return None
    if not p.version or not p.name:
        return None
    q = p.qualifiers if isinstance(p.qualifiers, dict) else {}
    epoch = q.get("epoch") or "0"
    return p.name, f"{epoch}:{p.version}", q.get("arch") or ""


def _release(cpe: str | None) -> tuple[str, str] | None:
    m = _CPE.match(cpe or "")
    return (m.group(1), m.group(2)) if m else None


def csaf_records(doc, name: str, warn) -> Iterator[dict]:
    if not isinstance(doc, dict) or not isinstance(doc.get("document"), dict):
        raise FeedError(f"{name}: not a CSAF document")
    document = doc["document"]
    tracking: dict = document["tracking"] if isinstance(document.get("tracking"), dict) else {}
    tree: dict = doc["product_tree"] if isinstance(doc.get("product_tree"), dict) else {}
    cpes, purls = _platforms(tree)
    relations: dict[str, tuple[str, str]] = {}
    for rel in tree.get("relationships") or ():
        try:
            relations[rel["full_product_name"]["product_id"]] = (rel["relates_to_product_reference"],
                                                                   rel["product_reference"])
        except (KeyError, TypeError):
            warn("redhat csaf: malformed relationship", name)
    aggregate = (document.get("aggregate_severity") or {}).get("text") if isinstance(
        document.get("aggregate_severity"), dict) else None
    vulns = [v for v in doc.get("vulnerabilities") or () if isinstance(v, dict)]
    if not vulns:
        warn("redhat csaf: document without vulnerabilities", name)
        return

    # the source rpms the tree names, per (platform, version): Red Hat lists a fix's binaries as `fixed`
    # and its source rpm apart (often as known_not_affected), with the same epoch:version-release
    sources: dict[tuple[str, str], set[str]] = {}
    for platform, component in relations.values():
        nevra = purls.get(component) or split_nevra(component)
        if nevra and nevra[2] == "src":
            sources.setdefault((platform, nevra[1]), set()).add(nevra[0])

    def resolve(pid: str) -> tuple[str, tuple[str, str], str, str | None, str] | None:
        """(platform, release, component name, fixed version or None, arch) of a product id, or None."""
        platform, component = relations.get(pid, (None, None))
        if platform is None:
            platform, _, component = pid.partition(":")
        release = _release(cpes.get(platform) or "")
        m = _PLATFORM_ID.match(platform)
        if release is None and m:  # a trimmed tree without the platform's product entry
            release = ("enterprise_linux", m.group(1))
        if release is None or not component:
            return None
        nevra = purls.get(component) or split_nevra(component)
        if nevra:
            return platform, release, nevra[0], nevra[1], nevra[2]
        # an unfixed component is named without a version; a module stream as 'nodejs:18/nodejs'
        return platform, release, component.rsplit("/", 1)[-1], None, ""

    def build(vs: list[dict], rid: str, summary: str) -> dict | None:
        affected: dict[tuple, dict] = {}
        impact: dict[str, str] = {}
        cves, severities, details = [], [], []
        for v in vs:
            if isinstance(v.get("cve"), str):
                cves.append(v["cve"])
            for t in v.get("threats") or ():
                if isinstance(t, dict) and t.get("category") == "impact" and isinstance(t.get("details"), str):
                    for pid in t.get("product_ids") or ["*"]:
                        impact[pid] = t["details"]
            for s in v.get("scores") or ():
                for version_key in ("cvss_v3", "cvss_v4", "cvss_v2"):
                    entry = cvss_entry((s.get(version_key) or {}).get("vectorString", "")) if isinstance(s, dict) else None
                    if entry and entry not in severities:
                        severities.append(entry)
            details += [n["text"] for n in v.get("notes") or () if isinstance(n, dict)
                        and n.get("category") == "description" and isinstance(n.get("text"), str)]
            status: dict = v["product_status"] if isinstance(v.get("product_status"), dict) else {}
            fixed = set(status.get("fixed") or ())
            unfixed = set(status.get("known_affected") or ())
            for r in v.get("remediations") or ():
                if isinstance(r, dict) and r.get("category") == "vendor_fix":
                    fixed.update(r.get("product_ids") or ())
                elif isinstance(r, dict) and r.get("category") in _UNFIXED:
                    unfixed.update(r.get("product_ids") or ())
            unfixed -= fixed
            for pid in sorted(fixed | unfixed):
                got = resolve(pid)
                if got is None:
                    continue
                platform, release, comp, version, arch = got
                if pid in fixed and version is None:
                    warn("redhat csaf: fixed product without a version", f"{rid} {pid}")
                    continue
                names = [comp]
                if version and arch != "src":
                    # a binary fixed: keyed by the source rpm of that platform and version the tree names
                    names = sorted(sources.get((platform, version), ())) or [comp]
                level = impact.get(pid) or impact.get("*") or aggregate
                stream, major = release
                for n in names:
                    key = (major, n, version)
                    events = [{"introduced": "0"}] + ([{"fixed": version}] if version else [])
                    have = affected.get(key)
                    if have is None or (level and have["ecosystem_specific"].get("severity") is None):
                        affected[key] = {
                            "package": {"ecosystem": f"Red Hat:{stream}:{major}", "name": n},
                            "ranges": [{"type": "ECOSYSTEM", "events": events}],
                            "ecosystem_specific": {"severity": level,
                                                   "status": "fixed" if version else "affected, no fix"},
                        }
        if not affected:
            return None
        rec = {"id": rid, "modified": tracking.get("current_release_date") or "",
               "published": tracking.get("initial_release_date") or None,
               "aliases": sorted(set(cves) - {rid}), "summary": summary, "details": "\n\n".join(details),
               "affected": list(affected.values()), "database_specific": {"severity": aggregate, "source": "Red Hat CSAF"}}
        if severities:
            rec["severity"] = severities
        # the vulnerabilities' and the document's references ({category, summary, url}; capped on import)
        refs = [r for src in (*vs, document) for r in (src.get("references") or ()) if isinstance(r, dict)]
        if refs:
            rec["references"] = refs
        return rec

    doc_id = tracking.get("id") if isinstance(tracking.get("id"), str) else ""
    if document.get("category") == "csaf_vex":
        # one CVE per file; named apart from NVD's and other vendors' records of that CVE
        for v in vulns:
            cve = v.get("cve") or doc_id
            rec = build([v], f"REDHAT-{cve}", v.get("title") or document.get("title") or "")
            if rec:
                yield rec
            else:
                warn("redhat csaf: no RHEL package affected or fixed", f"{name} {cve}")
    else:
        if not doc_id:
            raise FeedError(f"{name}: CSAF advisory without a tracking id")
        rec = build(vulns, doc_id, document.get("title") or "")
        if rec:
            yield rec
        else:
            warn("redhat csaf: no RHEL package affected or fixed", f"{name} {doc_id}")
