"""The report tables the pages read belong to ingest's read model (stowaway.ingest.readmodel): made by
its migrations and kept current inside the transactions that change them. The plugin only reads them
and creates nothing, so it can serve a database opened `immutable`."""
from __future__ import annotations

from stowaway.ingest import readmodel
from stowaway.ingest.policy import SETTINGS_TABLE  # noqa: F401  (actions and routes read it from here)

SELECTS = readmodel.SELECTS
FAILING = readmodel.FAILING

# Which report table holds which finding kind: the report's sections link into these.
VIEW_OF_KIND = {
    "vulnerability": "vulnerabilities_view",
    "unsafe_setting": "unsafe_settings_view",
    "secret": "secrets_view",
    "malware": "malware_view",
    "compliance": "compliance_view",
    "base_image": "base_image_view",
}


def has_read_model(conn) -> bool:
    """Whether ingest's migrations have built the read model in this database."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    return {"image_overview", "findings_report", "image_finding_counts", "suppressions"} <= names
