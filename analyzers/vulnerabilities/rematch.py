"""Re-evaluates stored images against the current advisory store, from the `packages` table alone.

For the newest finished scan of every image (or of the images named): its vulnerability findings and
their details are replaced, and its packages' vulnerability counts updated, in one transaction per
image — a reader sees either the old or the new findings of an image, never a mix.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from stowaway.ingest import db as dbm
from stowaway.ingest.model import Package

from . import ignores as ignore_rules
from . import store
from .ecosystems import image_release, package_target
from .evaluator import Evaluation
from .matchers import Matcher


@dataclass
class RematchResult:
    images: int = 0
    packages: int = 0
    findings: int = 0
    ignored: int = 0
    seconds: float = 0.0
    warnings: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        text = (f"re-evaluated {self.images} images ({self.packages} packages): {self.findings} vulnerability"
                f" findings, {self.ignored} ignored, in {self.seconds:.1f}s")
        if self.warnings:
            text += "; warnings: " + ", ".join(f"{n} × {w}" for w, n in self.warnings.most_common(5))
        return text


def _scans(conn, references: list[str] | None):
    sql = ("SELECT s.id, s.image_id, i.reference, i.os_family, i.os_version FROM latest_scans s"
           " JOIN images i ON i.id = s.image_id")
    if references:
        marks = ",".join("?" * len(references))
        sql += f" WHERE i.reference IN ({marks}) OR i.manifest_digest IN ({marks})"
        return conn.execute(sql + " ORDER BY s.id", references + references).fetchall()
    return conn.execute(sql + " ORDER BY s.id").fetchall()


def _packages(conn, scan_id: int) -> tuple[list[Package], dict]:
    pkgs, ids = [], {}
    for pid, eco, name, version, src, srcver, path, layer, purl, owned in conn.execute(
            "SELECT id, ecosystem, name, version, source_name, source_version, path, layer_index, purl, os_owned"
            " FROM packages WHERE scan_id = ?", [scan_id]):
        p = Package(eco, name, version or "", path or "", layer, source_name=src or "", source_version=srcver or "",
                    purl=purl or "", os_owned=bool(owned))
        pkgs.append(p)
        ids.setdefault(p.key, pid)
    return pkgs, ids


def rematch(database, references: list[str] | None = None, ignore_file: str | None = None,
            progress: bool = False) -> RematchResult:
    from stowaway.ingest.pipeline import finding_fingerprint

    conn = database.conn if hasattr(database, "conn") else database
    store.ensure(conn)
    t0 = time.perf_counter()
    result = RematchResult()
    rules = ignore_rules.load(ignore_file)
    for w in rules.warnings():
        result.warnings[w] += 1
    matcher = Matcher(conn)
    evaluation = Evaluation(matcher, rules)
    scans = _scans(conn, references)
    feed = dbm.dumps(store.feed_summary(conn))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(scans), desc="rematch", unit=" image", leave=False)
    inventories = []
    keys = set()
    # read every inventory first so the advisory lookups can be batched by name
    for scan_id, image_id, reference, family, version in scans:
        pkgs, ids = _packages(conn, scan_id)
        os_key = image_release(family or "", version or "")
        for p in pkgs:
            t = package_target(p.ecosystem, p.name, p.version, p.source_name, p.source_version, os_key)
            if t:
                keys.add(t[:3])
        inventories.append((scan_id, image_id, reference, family or "", version or "", pkgs, ids))
    matcher.prefetch(keys)
    for scan_id, image_id, reference, family, version, pkgs, ids in inventories:
        findings = evaluation.evaluate(pkgs, family, version, reference)
        counts: Counter = Counter()
        with conn:
            conn.execute("DELETE FROM vulnerability_details WHERE finding_id IN"
                         " (SELECT id FROM findings WHERE scan_id = ? AND kind = 'vulnerability')", [scan_id])
            conn.execute("DELETE FROM findings WHERE scan_id = ? AND kind = 'vulnerability'", [scan_id])
            details = []
            by_key = {p.key: p for p in pkgs}
            for f in findings:
                ignored = "ignore_reason" in f.detail
                pid = ids.get(f.package)
                if not ignored:
                    counts[pid] += 1
                else:
                    result.ignored += 1
                fid = conn.execute(
                    "INSERT INTO findings (scan_id, image_id, kind, severity, severity_rank, title, rule, status, path,"
                    " layer_index, visible, package_id, fingerprint, ignored, ignore_reason)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [scan_id, image_id, f.kind, f.severity, dbm.SEVERITY_RANK.get(f.severity, len(dbm.SEVERITY_RANK)),
                     f.title, f.rule, f.status, f.path, f.layer_index, int(bool(f.visible)), pid,
                     finding_fingerprint(f, by_key.get(f.package)), int(ignored),
                     f.detail.get("ignore_reason")]).lastrowid
                details.append({"finding_id": fid, **dict(f.detail)})
            dbm.insert_rows(conn, "vulnerability_details", details)
            conn.execute("UPDATE packages SET vulnerability_count = 0 WHERE scan_id = ? AND vulnerability_count != 0",
                         [scan_id])
            conn.executemany("UPDATE packages SET vulnerability_count = ? WHERE id = ?",
                             [(n, pid) for pid, n in counts.items() if pid is not None])
            conn.execute("UPDATE scans SET feed_version = ? WHERE id = ?", [feed, scan_id])
            conn.execute("INSERT OR REPLACE INTO scan_facts (scan_id, name, value) VALUES (?, 'vulnerabilities_rematched',"
                         " ?)", [scan_id, json.dumps({"at": dbm.now(), "findings": len(findings)})])
        result.images += 1
        result.packages += len(pkgs)
        result.findings += len(findings)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    result.warnings.update(evaluation.warnings)
    result.warnings.update(matcher.warnings)
    result.seconds = time.perf_counter() - t0
    return result
