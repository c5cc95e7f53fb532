"""The findings store: the one place that writes a scan's packages, findings and facts.

Everything that writes findings (the scan writer, rescan, rematch, Datasette actions) goes through here.
"""
from __future__ import annotations

import hashlib

from stowaway.analyzers.base import ImageContext

from . import db as dbm
from .model import Finding, Package


def finding_fingerprint(f: Finding, pkg: Package | None) -> str:
    """Identifies a finding across scans of an image (new / fixed / unchanged): not its status or layer."""
    ident = f.detail.get("vulnerability_id") or f.detail.get("check_id") or f.detail.get("fingerprint") or ""
    target = str(f.detail.get("target") or "")  # one check, many accounts or files
    parts = [f.kind, f.rule, f.path, pkg.ecosystem if pkg else "", pkg.name if pkg else "", str(ident), target, f.title]
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()


def write_results(conn, scan_id: int, image_id: int, ctx: ImageContext) -> None:
    """Packages, findings with their details, facts and file statistics of one scan."""
    pkg_ids: dict[tuple, int] = {}
    by_key = {}
    vuln_counts: dict[tuple, int] = {}
    for f in ctx.findings:
        if f.kind == "vulnerability" and f.package:
            vuln_counts[f.package] = vuln_counts.get(f.package, 0) + 1
    for p in ctx.packages:
        if p.key in pkg_ids:
            continue
        by_key[p.key] = p
        pkg_ids[p.key] = conn.execute(
            "INSERT INTO packages (scan_id, image_id, ecosystem, name, version, arch, source_name, source_version,"
            " path, layer_index, purl, licenses, os_owned, metadata, vulnerability_count)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [scan_id, image_id, p.ecosystem, p.name, p.version, p.arch, p.source_name, p.source_version, p.path,
             p.layer_index, p.purl, dbm.dumps(list(p.licenses)) if p.licenses else None, int(p.os_owned),
             dbm.dumps(dict(p.metadata)) if p.metadata else None, vuln_counts.get(p.key, 0)]).lastrowid
    details: dict[str, list[dict]] = {}
    for f in ctx.findings:
        pkg = by_key.get(f.package) if f.package else None
        fid = conn.execute(
            "INSERT INTO findings (scan_id, image_id, kind, severity, severity_rank, title, rule, status, path,"
            " layer_index, visible, package_id, fingerprint) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [scan_id, image_id, f.kind, f.severity, dbm.SEVERITY_RANK.get(f.severity, len(dbm.SEVERITY_RANK)),
             f.title, f.rule, f.status, f.path, f.layer_index, int(bool(f.visible)),
             pkg_ids.get(f.package) if f.package else None, finding_fingerprint(f, pkg)]).lastrowid
        table = dbm.DETAIL_TABLES.get(f.kind)
        if table:
            details.setdefault(table, []).append({"finding_id": fid, **dict(f.detail)})
    for table, rows in details.items():
        dbm.insert_rows(conn, table, rows)
    files = ctx.facts.get("files")
    if files:
        conn.execute("INSERT INTO file_stats (scan_id, image_id, total_files, total_size, directories, symlinks,"
                     " hidden_files) VALUES (?,?,?,?,?,?,?)",
                     [scan_id, image_id, files["total_files"], files["total_size"], files.get("directories"),
                      files.get("symlinks"), files.get("hidden_files")])
        conn.executemany("INSERT INTO largest_files (scan_id, rank, path, size, layer_index) VALUES (?,?,?,?,?)",
                         [(scan_id, i, x["path"], x["size"], x["layer_index"]) for i, x in enumerate(files["largest"])])
        conn.executemany("INSERT INTO layer_stats (scan_id, layer_index, layer_id, files, size, visible_files,"
                         " visible_size, whiteouts) VALUES (?,?,?,?,?,?,?,?)",
                         [(scan_id, s["layer_index"], ctx.layer_ids[s["layer_index"]], s["files"], s["size"],
                           s["visible_files"], s["visible_size"], s["whiteouts"]) for s in files["layers"]])
    facts = {k: v for k, v in ctx.facts.items() if k != "files"}
    if ctx.os.family or ctx.os.raw:
        facts["os"] = {"family": ctx.os.family, "version": ctx.os.version, "name": ctx.os.name,
                       "id_like": list(ctx.os.id_like), "source_file": ctx.os.source_file, "raw": dict(ctx.os.raw)}
    conn.executemany("INSERT OR REPLACE INTO scan_facts (scan_id, name, value) VALUES (?,?,?)",
                     [(scan_id, k, dbm.dumps(v)) for k, v in facts.items()])
