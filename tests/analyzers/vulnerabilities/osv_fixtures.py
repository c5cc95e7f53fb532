"""OSV records built in code for the vulnerability tests (shapes as osv.dev publishes them)."""
from __future__ import annotations


def osv(rid, ecosystem, name, events=None, versions=None, modified="2024-01-01T00:00:00Z", aliases=(),
        severity=None, summary="", published="2023-06-01T00:00:00Z", database_severity=None, upstream=(),
        range_type="ECOSYSTEM", **extra):
    affected = {"package": {"ecosystem": ecosystem, "name": name}}
    if events is not None:
        affected["ranges"] = [{"type": range_type, "events": events}]
    if versions is not None:
        affected["versions"] = list(versions)
    rec = {"id": rid, "modified": modified, "published": published, "aliases": list(aliases),
           "summary": summary or f"{rid} summary", "affected": [affected]}
    if upstream:
        rec["upstream"] = list(upstream)
    if severity:
        rec["severity"] = [{"type": "CVSS_V3", "score": severity}]
    if database_severity:
        rec["database_specific"] = {"severity": database_severity}
    rec.update(extra)
    return rec


CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"  # 10.0
HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"  # 7.5
MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N"  # 5.4
