"""The plugin's defaults for every Stowaway database Datasette serves: titles, descriptions, labels,
sort orders, default facets and hidden internals.

They reach Datasette through the get_metadata hook, which Datasette merges *under* the user's own
metadata (`datasette -m metadata.json`), so any of it can be overridden there, like
datasette-cluster-map's settings. Plugin settings live under `plugins.stowaway` in that metadata:

    {"plugins": {"stowaway": {"write": {"id": ["alice", "root"]}, "images_page_size": 100}}}

`write` is a Datasette allow block for the `stowaway-write` permission (default: the root actor).
`policy_file` is the policy (TOML) "Scan again" uses (default: $STOWAWAY_POLICY, which `stowaway
serve --config FILE` sets); without one, the policy the image's last scan recorded (which leaves out
credentials, so a private registry needs the file).
Scans, "Scan again" and registry syncs started in the console run as background tasks (console.py).
"""
from __future__ import annotations

import os
import sqlite3

PLUGIN = "stowaway"
WRITE_PERMISSION = "stowaway-write"
DEFAULTS = {"write": {"id": "root"}, "images_page_size": 100}

SEVERITY_FACET = {"severity": "severity"}
LAYER_FACET = {"layer": "layer_index"}

TABLES = {
    "image_overview": {
        "title": "Repository images",
        "description": "One row per image with its current scan's counts per risk item. "
                       "latest_version = 1 keeps the newest image (by created time) of each repository.",
        "sort_desc": "critical",
        "facets": ["latest_version", "repository", "os", "base_image"],
        "label_column": "reference",
        "columns": {
            "critical": "critical vulnerabilities (not suppressed)", "high": "high vulnerabilities (not suppressed)",
            "suppressed": "failing findings of every kind that a suppression covers",
            "unsafe_settings": "failed baseline, SSH, password checks", "secrets": "sensitive information found",
            "latest_version": "1 for the newest image of its repository, by created time",
            "failing_critical": "failing findings of every kind rated critical",
        },
    },
    "vulnerabilities_view": {
        "title": "Vulnerabilities",
        "description": "Vulnerabilities found in each image's current scan, worst first.",
        "sort": "severity_rank",
        "facets": [SEVERITY_FACET, {"fix": "fixed_version"}, {"cvss": "cvss_score"}, {"values": "image"},
                   {"values": "package"}],
        "label_column": "vulnerability_id",
        "columns": {"fixed_version": "empty when no fixed version is known yet",
                    "layer_created_by": "the build step that added the vulnerable file",
                    "suppressed": "1 when a suppression covers it (see suppressed_reason)"},
    },
    "unsafe_settings_view": {
        "title": "Unsafe settings",
        "description": "Baseline, SSH, weak password and password policy checks, with a suggestion for each.",
        "sort": "severity_rank",
        "facets": ["result", "category", SEVERITY_FACET, "image"],
    },
    "secrets_view": {
        "title": "Sensitive information",
        "description": "Secrets found in files and in the image config. Only masked values are stored.",
        "sort": "severity_rank",
        "facets": ["rule", SEVERITY_FACET, LAYER_FACET, "visible", "image"],
    },
    "malware_view": {
        "title": "Malicious files",
        "sort": "severity_rank",
        "facets": ["rule", SEVERITY_FACET, LAYER_FACET, "image"],
    },
    "compliance_view": {
        "title": "Software compliance",
        "description": "Installed software that the policy forbids.",
        "sort": "severity_rank",
        "facets": ["name", "rule", "image"],
    },
    "packages_view": {
        "title": "Software",
        "description": "Installed packages of each image's current scan, most vulnerable first.",
        "sort_desc": "vulnerability_count",
        "facets": [{"values": "ecosystem"}, {"values": "image"}],
        "label_column": "name",
    },
    "base_image_view": {
        "title": "Base image",
        "facets": ["verdict", "image"],
    },
    "findings_report": {
        "title": "All findings",
        "description": "Every failing finding of every kind in each image's current scan, worst first"
                       " (suppressed ones marked; passed and not-applicable checks are in Unsafe settings).",
        "sort": "severity_rank",
        "facets": [{"kind": "kind"}, SEVERITY_FACET, {"values": "suppressed"}, {"values": "image"}],
    },
    "findings": {"sort": "severity_rank", "facets": [{"kind": "kind"}, SEVERITY_FACET], "label_column": "title"},
    "images": {"label_column": "reference", "facets": ["os_family", "repository"]},
    "scans": {"sort_desc": "id", "facets": ["status"], "label_column": "reference"},
    "layers": {"label_column": "diff_id"},
    "packages": {"label_column": "name", "facets": [{"values": "ecosystem"}]},
    "vulnerability_details": {"label_column": "vulnerability_id"},
    "layer_analyses": {"hidden": True},
    "schema_parts": {"hidden": True},
    "stowaway_settings": {"hidden": True},
    "stowaway_refresh": {"hidden": True},
}


def plugin_config(datasette) -> dict:
    defaults = {**DEFAULTS, "policy_file": os.environ.get("STOWAWAY_POLICY") or None}
    return {**defaults, **(datasette.plugin_config(PLUGIN) or {})}


def is_stowaway(datasette, name: str) -> bool:
    """Whether a database holds Stowaway's schema; checked once per database with a plain read."""
    cache = datasette.__dict__.setdefault("_stowaway_schema", {})
    if name not in cache:
        db = datasette.databases.get(name)
        found = False
        if db is not None and not db.is_memory and db.path:
            try:
                conn = db.connect()
                try:
                    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'findings'"
                                         ).fetchone() is not None
                finally:
                    conn.close()
            except sqlite3.Error:
                found = False
        cache[name] = found
    return cache[name]


def stowaway_databases(datasette) -> list[str]:
    return [name for name in datasette.databases if not name.startswith("_") and is_stowaway(datasette, name)]


def metadata(datasette) -> dict:
    return {"databases": {name: {"tables": TABLES} for name in stowaway_databases(datasette)}}
