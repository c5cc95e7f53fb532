"""Re-evaluates stored images against the current advisory store, from the `packages` table alone.

For the newest finished scan of every image (or of the images named): its vulnerability findings and
their details are replaced, and its packages' vulnerability counts updated, in one transaction per
image — a reader sees either the old or the new findings of an image, never a mix.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from stowaway.ingest import db as dbm
from stowaway.ingest.findings import DETAIL_COLUMNS, replace_vulnerabilities
from stowaway.ingest.readmodel import refresh_images

from . import ignores as ignore_rules
from . import store
from .ecosystems import OS_PACKAGE_TYPES, image_release, package_target
from .evaluator import Evaluation, coverage_gap
from .matchers import Matcher


@dataclass
class RematchResult:
    images: int = 0
    changed_images: int = 0
    inserted: int = 0
    deleted: int = 0
    packages: int = 0
    findings: int = 0
    ignored: int = 0
    seconds: float = 0.0
    warnings: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        text = (f"re-evaluated {self.images} images ({self.packages} packages): {self.findings} vulnerability"
                f" findings, {self.ignored} ignored; {self.changed_images} images changed ({self.inserted} findings"
                f" written, {self.deleted} removed) in {self.seconds:.1f}s")
        if self.warnings:
            text += "; warnings: " + ", ".join(f"{n} × {w}" for w, n in self.warnings.most_common(5))
        return text


def _scans(conn, references: list[str] | None):
    sql = ("SELECT s.id, s.image_id, i.reference, i.os_family, i.os_version, s.feed_version,"
           " coalesce(i.repository, '') FROM latest_scans s JOIN images i ON i.id = s.image_id")
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


def _inventory(conn, scan_id: int, os_key, keys: set, family: str = "", os_version: str = "") -> tuple:
    """The rows of one scan's packages that can match anything, with their match targets; the stored
    non-zero counts; how many OS packages could and could not be keyed (for the warnings); the total;
    and the coverage counts (per matched ecosystem and release, per ecosystem nothing covers)."""
    rows, counts = [], {}
    seen = set()
    uncovered_os = matched_os = 0
    per_ecosystem: Counter = Counter()
    not_covered: Counter = Counter()
    stored = conn.execute(
        "SELECT id, ecosystem, name, coalesce(version, ''), coalesce(path, ''), layer_index,"
        " coalesce(source_name, ''), coalesce(source_version, ''), coalesce(purl, ''), os_owned,"
        " vulnerability_count FROM packages WHERE scan_id = ?", [scan_id]).fetchall()
    for row in stored:
        pid, eco, name, version, path = row[:5]
        if row[10]:
            counts[pid] = row[10]
        key = (eco, name, version, path)
        if key in seen:
            continue
        seen.add(key)
        is_os = (eco or "").lower() in OS_PACKAGE_TYPES
        if row[9] and not is_os:
            continue  # left to the vendor's advisories (see evaluator.match_target)
        target = package_target(eco, name, version, row[6], row[7], os_key)
        if target is None:
            uncovered_os += is_os
            gap = coverage_gap(eco, bool(row[9]), family, os_version)
            if gap:
                not_covered[gap] += 1
            continue
        per_ecosystem[target[:2]] += 1
        matched_os += is_os
        keys.add(target[:3])
        rows.append((row, key, target))
    return rows, counts, uncovered_os, matched_os, len(stored), per_ecosystem, not_covered


BATCH = 200  # images written in one transaction


def rematch(database, references: list[str] | None = None, ignore_file: str | None = None,
            progress: bool = False) -> RematchResult:
    conn = database.conn if hasattr(database, "conn") else database
    store.ensure(conn)
    t0 = time.perf_counter()
    result = RematchResult()
    if ignore_file:  # feeds the findings store's suppressions, which every later scan and rematch applies
        from stowaway.ingest.suppression_files import import_into

        _, warnings = import_into(conn, ignore_file)
        for w in warnings:
            result.warnings[w] += 1
    rules = ignore_rules.load(None)
    matcher = Matcher(conn)
    evaluation = Evaluation(matcher, rules)
    scans = _scans(conn, references)
    feed = dbm.dumps(store.feed_summary(conn))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(scans), desc="rematch", unit=" image", leave=False)
    inventories = []
    keys: set[tuple] = set()
    # read every inventory first so the advisory lookups can be batched by name
    for scan_id, image_id, reference, family, version, old_feed, repository in scans:
        os_key = image_release(family or "", version or "")
        rows, counts, uncovered_os, matched_os, total, per_ecosystem, not_covered = _inventory(
            conn, scan_id, os_key, keys, family or "", version or "")
        result.packages += total
        inventories.append((scan_id, image_id, reference, family or "", version or "", old_feed, rows, counts,
                            uncovered_os, matched_os, per_ecosystem, not_covered, repository))
    matcher.prefetch(keys)
    have = {r[1] for r in conn.execute("PRAGMA table_info(vulnerability_details)")}
    for column in DETAIL_COLUMNS:
        if column not in have:  # a database whose details table has not grown these yet
            conn.execute(f"ALTER TABLE vulnerability_details ADD COLUMN [{column}]")
    detail_sql = (f"INSERT INTO vulnerability_details ({', '.join(DETAIL_COLUMNS)})"
                  f" VALUES ({', '.join('?' * len(DETAIL_COLUMNS))})")
    encoded: dict = {}
    # one commit per batch of BATCH images, their report rows refreshed together before it (a batch is
    # all or nothing: rematch again redoes what an interruption lost); checkpointing the WAL every ~20
    # commits would cost more than the matching
    checkpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    conn.execute("PRAGMA wal_autocheckpoint = 20000")
    pending: list[int] = []
    try:
        for n, (scan_id, image_id, reference, family, version, old_feed, rows, old_counts, uncovered_os, matched_os,
                per_ecosystem, not_covered, repository) in enumerate(inventories, 1):
            # only packages that some advisory names become objects: most of an inventory matches nothing
            items, ids = [], {}
            for row, key, target in rows:
                if matcher.has_candidates(target[:3]):
                    items.append((StoredPackage(*row[1:10], key=key), target))  # type: ignore[misc]
                    ids[key] = row[0]
            findings = evaluation.evaluate_targets(items, family, version, reference, uncovered_os, matched_os)
            facts = {"vulnerability_coverage": evaluation.coverage(per_ecosystem, not_covered, family, version),
                     "vulnerability_fixes": evaluation.last_fixes}
            changed = replace_vulnerabilities(conn, scan_id, image_id, repository, [p for p, _ in items], ids,
                                              old_counts, findings, feed, old_feed, detail_sql, encoded, result, facts,
                                              batched=True)
            if changed:
                pending.append(image_id)
            if pending and (len(pending) >= BATCH or n == len(inventories)):
                with conn:
                    refresh_images(conn, pending)
                pending = []
            result.images += 1
            result.changed_images += changed
            result.findings += len(findings)
            if bar:
                bar.update(1)
    except BaseException:
        conn.rollback()  # the batch in progress; those before it are committed
        raise
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint)}")
        if bar:
            bar.close()
    for i in range(0, len(inventories), 500):  # suppressed, as the store decided them
        chunk = [inv[0] for inv in inventories[i:i + 500]]
        result.ignored += conn.execute(
            f"SELECT COUNT(*) FROM findings WHERE scan_id IN ({','.join('?' * len(chunk))}) AND kind = 'vulnerability'"
            " AND suppressed <> 0", chunk).fetchone()[0]
    result.warnings.update(evaluation.warnings)
    result.warnings.update(matcher.warnings)
    result.seconds = time.perf_counter() - t0
    return result
