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
from typing import NamedTuple

from stowaway.ingest import db as dbm

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


class StoredPackage(NamedTuple):
    """A packages row, shaped like model.Package for the evaluator (a tuple: 200,000 of them are cheap)."""

    ecosystem: str
    name: str
    version: str
    path: str
    layer_index: int | None
    source_name: str
    source_version: str
    purl: str
    os_owned: bool
    key: tuple  # Package.key, computed once: the evaluator and the writer look it up often


def _packages(conn, scan_id: int) -> tuple[list[StoredPackage], dict]:
    pkgs, ids = [], {}
    for pid, eco, name, version, src, srcver, path, layer, purl, owned in conn.execute(
            "SELECT id, ecosystem, name, version, source_name, source_version, path, layer_index, purl, os_owned"
            " FROM packages WHERE scan_id = ?", [scan_id]):
        version, path = version or "", path or ""
        p = StoredPackage(eco, name, version, path, layer, src or "", srcver or "", purl or "", bool(owned),
                          (eco, name, version, path))
        pkgs.append(p)
        ids.setdefault(p.key, pid)
    return pkgs, ids


DETAIL_COLUMNS = ("finding_id", "vulnerability_id", "aliases", "package_name", "ecosystem", "installed_version",
                  "fixed_version", "cvss_score", "cvss_vector", "published", "solution", "description", "matched_by",
                  "kev", "epss", "urgency", "ignore_reason")
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _cell(value, encoded: dict):
    if not isinstance(value, (list, dict)):
        return value
    # aliases and matched_by lists are shared by every finding of the same (package, version, vulnerability)
    got = encoded.get(id(value))
    if got is None or got[0] is not value:
        got = encoded[id(value)] = (value, _JSON.encode(value))
    return got[1]


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
    have = {r[1] for r in conn.execute("PRAGMA table_info(vulnerability_details)")}
    for column in DETAIL_COLUMNS:
        if column not in have:  # a database whose details table has not grown these yet
            conn.execute(f"ALTER TABLE vulnerability_details ADD COLUMN [{column}]")
    detail_sql = (f"INSERT INTO vulnerability_details ({', '.join(DETAIL_COLUMNS)})"
                  f" VALUES ({', '.join('?' * len(DETAIL_COLUMNS))})")
    # one commit per image; checkpointing the WAL every ~20 of them would cost more than the matching
    encoded: dict = {}
    checkpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    conn.execute("PRAGMA wal_autocheckpoint = 20000")
    try:
        for scan_id, image_id, reference, family, version, pkgs, ids in inventories:
            findings = evaluation.evaluate(pkgs, family, version, reference)
            counts: Counter = Counter()
            with conn:
                conn.execute("DELETE FROM vulnerability_details WHERE finding_id IN"
                             " (SELECT id FROM findings WHERE scan_id = ? AND kind = 'vulnerability')", [scan_id])
                conn.execute("DELETE FROM findings WHERE scan_id = ? AND kind = 'vulnerability'", [scan_id])
                # ids handed out here so both tables go in with executemany; safe: the DELETE above took the write lock
                next_id = (conn.execute("SELECT MAX(id) FROM findings").fetchone()[0] or 0) + 1
                rows, details = [], []
                by_key = {p.key: p for p in pkgs}
                for fid, f in enumerate(findings, next_id):
                    reason = f.detail.get("ignore_reason")
                    pid = ids.get(f.package)
                    if reason is None:
                        counts[pid] += 1
                    else:
                        result.ignored += 1
                    rows.append((fid, scan_id, image_id, f.kind, f.severity,
                                 dbm.SEVERITY_RANK.get(f.severity, len(dbm.SEVERITY_RANK)), f.title, f.rule, f.status, f.path,
                                 f.layer_index, int(bool(f.visible)), pid, finding_fingerprint(f, by_key.get(f.package)),
                                 int(reason is not None), reason))
                    d = f.detail
                    details.append((fid,) + tuple(_cell(d.get(c), encoded) for c in DETAIL_COLUMNS[1:]))
                conn.executemany("INSERT INTO findings (id, scan_id, image_id, kind, severity, severity_rank, title, rule,"
                                 " status, path, layer_index, visible, package_id, fingerprint, ignored, ignore_reason)"
                                 " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                conn.executemany(detail_sql, details)
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
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint)}")
        if bar:
            bar.close()
    result.warnings.update(evaluation.warnings)
    result.warnings.update(matcher.warnings)
    result.seconds = time.perf_counter() - t0
    return result
