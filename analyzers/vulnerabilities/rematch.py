"""Re-evaluates stored images against the current advisory store, from the `packages` table alone.

For the newest finished scan of every image (or of the images named): its vulnerability findings and
their details are replaced, and its packages' vulnerability counts updated, in one transaction per
batch of images — a reader sees either the old or the new findings of an image, never a mix.

An image already matched against exactly the store there is now (its scan's `feed_version` is the
current feed marker: the same last import, the same NVD, KEV and EPSS data, the same evaluation rules)
is not evaluated again; `all_images=True` (`stowaway rematch --all`) re-evaluates it anyway. What a
(package, version) is affected by is worked out once per run, however many images carry it.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from stowaway.ingest import db as dbm
from stowaway.ingest.findings import DETAIL_COLUMNS, RematchWrites, finish_rematch_batch, replace_vulnerabilities

from . import ignores as ignore_rules
from . import store
from .ecosystems import OS_PACKAGE_TYPES, image_release, package_target
from .evaluator import Evaluation, coverage_gap
from .matchers import Matcher


@dataclass
class RematchResult:
    images: int = 0
    current: int = 0  # already matched against this store, not evaluated again
    changed_images: int = 0
    inserted: int = 0
    deleted: int = 0
    packages: int = 0
    findings: int = 0
    ignored: int = 0
    seconds: float = 0.0
    warnings: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        evaluated = (f"{self.images - self.current} of {self.images} images (the other {self.current} were matched"
                     " against this advisory store already: kept as they are; --all re-evaluates them too)"
                     if self.current else f"{self.images} images")
        text = (f"re-evaluated {evaluated} ({self.packages} packages): {self.findings} vulnerability"
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


def _inventory(conn, scan_id: int, os_key, keys: set, family: str = "", os_version: str = "",
               targets: dict | None = None) -> tuple:
    """The rows of one scan's packages that can match anything, with their match targets; the stored
    non-zero counts; how many OS packages could and could not be keyed (for the warnings); the total;
    and the coverage counts (per matched ecosystem and release, per ecosystem nothing covers).
    TARGETS: the caller's cache of package_target answers, kept across images."""
    rows, counts = [], {}
    seen = set()
    uncovered_os = matched_os = 0
    per_ecosystem: Counter = Counter()
    not_covered: Counter = Counter()
    if targets is None:
        targets = {}
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
        tkey = (eco, name, version, row[6], row[7], os_key)
        target = targets.get(tkey, False)
        if target is False:
            target = targets[tkey] = package_target(eco, name, version, row[6], row[7], os_key)
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


# what decides an evaluation besides the advisory store: bump when the evaluator or the matchers would
# find differently, so that the next rematch evaluates every image again
EVALUATION_VERSION = 1


def feed_marker(conn) -> str:
    """What an image was matched against, stored as its scan's feed_version: the advisory store's last
    import (every import of records, KEV, EPSS and NVD files makes one), the NVD, KEV and EPSS tables (the
    NVD API download writes without an import) and the evaluation's version. An image whose marker is
    the current one would be evaluated to the findings it has."""
    summary = store.feed_summary(conn)
    enrichment = {}
    for table in ("nvd_cves", "kev", "epss"):
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone():
            enrichment[table] = list(conn.execute(f"SELECT COUNT(*), MAX(imported_at) FROM [{table}]").fetchone())
    return dbm.dumps({**summary, "enrichment": enrichment, "evaluation": EVALUATION_VERSION}) or ""


BATCH = 200  # images written in one transaction

# Bulk mode: when at least BULK_IMAGES images are evaluated in full and they are at least half of the
# database's images (a first rematch, `--all` after an evaluation change), most rows of the finding tables
# are new: keeping their indexes and kept counts per row costs several times the writing itself (a first
# rematch at 10,000 images: 1,000,000 findings, each in ~40 indexes and ~60 kept counts). Then the whole
# rematch is one transaction: the secondary indexes of the tables it writes and the base tables' counting
# triggers are dropped (as sqlite_master holds them, so an index or trigger added later is covered), the
# rows written, the report rows of what changed added in one statement per table, the indexes and
# triggers created again from their SQL and the kept counts of those tables taken again from the rows,
# then committed. A reader sees the old state until that commit (WAL); an interruption rolls all of it
# back, indexes and triggers included (SQLite's DDL is transactional).
BULK_IMAGES = 500
BULK_CACHE_KIB = 256 * 1024  # SQLite page cache while a bulk rematch writes (the default is 2 MiB)


def changed_keys(conn, since: int) -> set[tuple] | None:
    """The (ecosystem, release, name) keys whose findings may differ from an evaluation against the store
    as import SINCE left it: every key that a record imported after it names now or named before
    (store.STEP6's change log), and every key of a record that shares a name with one of those records
    (a finding whose own records carry no severity takes another record's). None when the change log
    does not reach back to SINCE."""
    row = conn.execute("SELECT MIN(first_import) FROM advisory_changes_since").fetchone()
    if row is None or row[0] is None or since + 1 < row[0]:
        return None
    ids = [r[0] for r in conn.execute("SELECT id FROM advisories WHERE import_id > ?", [since])]
    keys = set(conn.execute("SELECT DISTINCT ecosystem, release, name FROM advisory_changes WHERE import_id > ?"
                            " AND name IS NOT NULL", [since]))
    names = set(ids) | {r[0] for r in conn.execute("SELECT alias FROM advisory_changes WHERE import_id > ?"
                                                   " AND alias IS NOT NULL", [since])}
    marks = json.dumps(ids)
    names |= {r[0] for r in conn.execute("SELECT alias FROM advisory_aliases WHERE advisory_id IN"
                                         " (SELECT value FROM json_each(?))", [marks])}
    keys |= set(conn.execute(
        "SELECT DISTINCT ecosystem, release, name FROM advisory_affected WHERE advisory_id IN (SELECT value FROM"
        " json_each(:names)) OR advisory_id IN (SELECT advisory_id FROM advisory_aliases WHERE alias IN"
        " (SELECT value FROM json_each(:names)))", {"names": json.dumps(sorted(names))}))
    return {tuple(k) for k in keys}


_KEPT_FACTS = ("vulnerability_targets", "vulnerability_fixes", "vulnerability_coverage", "vulnerabilities_rematched")


def _kept(conn, scan_id: int, old_feed: str | None, marker: dict, all_images: bool) -> dict | None:
    """What a scan's last rematch left that lets this one evaluate only what changed: its marker names an
    import of the same evaluation, NVD, KEV and EPSS data, and it kept the shape of its inventory, its
    fixes and its findings count (facts). None: evaluate it in full."""
    if all_images or not old_feed:
        return None
    try:
        old = json.loads(old_feed)
    except ValueError:
        return None
    if not isinstance(old, dict) or not isinstance(old.get("import_id"), int) or \
            old.get("evaluation") != marker.get("evaluation") or old.get("enrichment") != marker.get("enrichment"):
        return None
    facts = dict(conn.execute("SELECT name, value FROM scan_facts WHERE scan_id = ? AND name IN"
                              f" ({', '.join('?' * len(_KEPT_FACTS))})", [scan_id, *_KEPT_FACTS]).fetchall())
    try:
        shape = json.loads(facts["vulnerability_targets"])
        fixes = json.loads(facts.get("vulnerability_fixes") or "[]")
        total = json.loads(facts["vulnerabilities_rematched"])["findings"]
    except (KeyError, ValueError, TypeError):
        return None
    if not isinstance(shape, dict) or not isinstance(fixes, list) or not isinstance(total, int):
        return None
    return {**shape, "since": old["import_id"], "facts": facts, "fixes": [f for f in fixes if isinstance(f, dict)],
            "total": total}


# a package name with ASCII case, '-', '_' and '.' taken out: equal for every spelling that the ecosystems'
# name rules (exact, lower, PEP 503) make one name; a name with other characters is always read
_SQUASHED = "replace(replace(replace(lower({0}), '-', ''), '_', ''), '.', '')"
_NOT_ASCII = "{0} GLOB '*[^ -~]*'"


def _squash(name: str) -> str:
    return re.sub(r"[-_.]", "", name.lower())


def _name_filter(conn, affected: set, tables: dict) -> str:
    """A temporary table of the squashed names of AFFECTED keys (one per key set, kept in TABLES), and the
    SQL condition on a packages row that lets through every row whose match target may be among them."""
    got = tables.get(id(affected))
    if got is None:
        table = f"rematch_names_{len(tables)}"
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS [{table}] (name TEXT PRIMARY KEY) WITHOUT ROWID")
        conn.execute(f"DELETE FROM temp.[{table}]")
        conn.executemany(f"INSERT OR IGNORE INTO temp.[{table}] (name) VALUES (?)",
                         [(_squash(k[2]),) for k in affected])
        got = tables[id(affected)] = (affected, " OR ".join(
            [f"{_SQUASHED.format(c)} IN (SELECT name FROM temp.[{table}])" for c in ("name", "source_name")]
            + [_NOT_ASCII.format(c) for c in ("name", "source_name")]))
    return got[1]


def _partial_inventory(conn, scan_id: int, os_key, affected: set, targets: dict, names: str) -> tuple[list, dict, list]:
    """Of one scan's packages, the rows whose match target is among AFFECTED (as _inventory reads them),
    their stored non-zero counts and the ids of every row with such a target. NAMES: _name_filter's
    condition, which SQLite checks first."""
    rows, counts, pids = [], {}, []
    seen = set()
    for row in conn.execute(
            "SELECT id, ecosystem, name, coalesce(version, ''), coalesce(path, ''), layer_index,"
            " coalesce(source_name, ''), coalesce(source_version, ''), coalesce(purl, ''), os_owned,"
            f" vulnerability_count FROM packages WHERE scan_id = ? AND ({names})", [scan_id]):
        tkey = (row[1], row[2], row[3], row[6], row[7], os_key)
        target = targets.get(tkey, False)
        if target is False:
            target = targets[tkey] = package_target(row[1], row[2], row[3], row[6], row[7], os_key)
        if target is None or target[:3] not in affected:
            continue
        pids.append(row[0])
        if row[10]:
            counts[row[0]] = row[10]
        key = (row[1], row[2], row[3], row[4])
        if key in seen:
            continue
        seen.add(key)
        if row[9] and (row[1] or "").lower() not in OS_PACKAGE_TYPES:
            continue
        rows.append((row, key, target))
    return rows, counts, pids


def _encoded_list(items: list, cache: dict) -> str:
    """dbm.dumps(ITEMS) of a list whose dicts recur across images (the same package's fixes): each dict
    encoded once (CACHE, by identity; the dicts are kept alive by the evaluator's cache)."""
    parts = []
    for item in items:
        got = cache.get(id(item))
        if got is None or got[0] is not item:
            got = cache[id(item)] = (item, dbm.dumps(item) or "null")
        parts.append(got[1])
    return "[" + ", ".join(parts) + "]"


def _bulk_wanted(conn, full: int) -> bool:
    images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    return full >= BULK_IMAGES and full * 2 >= images


def _bulk_drop(conn) -> tuple[list[str], list[str]]:
    """Drops what bulk mode rebuilds once at its end: the secondary indexes of the tables a rematch writes
    row by row (findings, vulnerability_details and the finding report tables), but for the one that reads
    a scan's findings (leading column scan_id) and unique ones (they enforce something); and every trigger
    on them that keeps kept counts (its SQL writes report_facet_counts). Returns (the SQL that creates them
    again, the tables whose kept counts are to be taken again)."""
    from stowaway.ingest import readmodel

    tables = ["findings", "vulnerability_details", *readmodel.FINDING_TABLES]
    marks = ",".join("?" * len(tables))
    again, recount = [], [t for t in readmodel.FINDING_TABLES if t in readmodel.COUNTED_FACETS]
    for kind, name, table, sql in conn.execute(
            f"SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name IN ({marks}) AND sql IS NOT NULL"
            " AND type IN ('index', 'trigger') ORDER BY type, name", tables).fetchall():
        if kind == "index":
            unique = any(r[1] == name and r[2] for r in conn.execute(f"PRAGMA index_list([{table}])"))
            first = conn.execute(f"PRAGMA index_info([{name}])").fetchone()
            if unique or (table == "findings" and first is not None and first[2] == "scan_id"):
                continue
            conn.execute(f"DROP INDEX [{name}]")
        else:
            if "report_facet_counts" not in sql:
                continue
            conn.execute(f"DROP TRIGGER [{name}]")
            if table not in recount:
                recount.append(table)
        again.append(sql)
    return again, recount


def _bulk_batch(conn, writes: RematchWrites, everything: RematchWrites) -> None:
    """A batch's end in bulk mode: its new findings get their suppressions; the report rows wait."""
    finish_rematch_batch(conn, writes, report=False)
    everything.gone.extend(writes.gone)
    everything.fresh.extend(writes.fresh)
    everything.packages |= writes.packages


def _bulk_finish(conn, writes: RematchWrites, again: list[str], recount: list[str]) -> None:
    """The end of a bulk rematch, in its transaction: the report rows of what changed, the indexes and
    triggers _bulk_drop dropped, the kept counts of the tables it wrote."""
    from stowaway.ingest import readmodel

    readmodel.apply_finding_changes(conn, writes.gone, writes.fresh, writes.packages, counted=False)
    for sql in again:
        conn.execute(sql)
    readmodel.recount_facets(conn, recount)
    readmodel.keep_statistics(conn)  # the planner's statistics of the tables it grew, its indexes back


def rematch(database, references: list[str] | None = None, ignore_file: str | None = None,
            progress: bool = False, all_images: bool = False, bulk: bool | None = None) -> RematchResult:
    """Re-evaluates the current scans of every image (or of REFERENCES) against the advisory store.
    BULK: write in bulk mode (see BULK_IMAGES), or not; None decides by how many images are evaluated in
    full."""
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
    feed = feed_marker(conn)
    everything = _scans(conn, references)
    # an image matched against this very store already has the findings an evaluation would give it
    scans = everything if all_images else [s for s in everything if s[5] != feed]
    current = [s[0] for s in everything if s[5] == feed] if not all_images else []
    result.images = len(everything)
    result.current = len(current)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(scans), desc="rematch", unit=" image", leave=False)
    inventories: list[tuple] = []
    keys: set[tuple] = set()
    targets: dict = {}
    marker = json.loads(feed)
    affected_since: dict[int, set | None] = {}
    name_tables: dict = {}
    # read every inventory first so the advisory lookups can be batched by name
    for scan_id, image_id, reference, family, version, old_feed, repository in scans:
        os_key = image_release(family or "", version or "")
        kept = _kept(conn, scan_id, old_feed, marker, all_images)
        if kept is not None:
            # matched against an earlier store with the same evaluation: only the packages that changed
            # records name are evaluated again, the rest of the image stays as it is
            since = kept["since"]
            if since not in affected_since:
                affected_since[since] = changed_keys(conn, since)
            affected = affected_since[since]
            if affected is not None:
                rows, counts, pids = _partial_inventory(conn, scan_id, os_key, affected, targets,
                                                        _name_filter(conn, affected, name_tables))
                keys.update(t[:3] for _, _, t in rows)
                result.packages += len(pids)
                inventories.append((scan_id, image_id, reference, family or "", version or "", old_feed, rows, counts,
                                    repository, kept, pids))
                continue
        rows, counts, uncovered_os, matched_os, total, per_ecosystem, not_covered = _inventory(
            conn, scan_id, os_key, keys, family or "", version or "", targets)
        result.packages += total
        shape = {"per_ecosystem": [[e, r, n] for (e, r), n in sorted(per_ecosystem.items())],
                 "not_covered": sorted(not_covered.items()), "uncovered_os": uncovered_os, "matched_os": matched_os}
        inventories.append((scan_id, image_id, reference, family or "", version or "", old_feed, rows, counts,
                            repository, shape, None))
    matcher.prefetch(keys)
    have = {r[1] for r in conn.execute("PRAGMA table_info(vulnerability_details)")}
    for column in DETAIL_COLUMNS:
        if column not in have:  # a database whose details table has not grown these yet
            conn.execute(f"ALTER TABLE vulnerability_details ADD COLUMN [{column}]")
    detail_sql = f"INSERT INTO vulnerability_details ({', '.join(DETAIL_COLUMNS)})"  # its VALUES: db.insert_values
    encoded: dict = {}
    # without ignore rules the evaluator hands every image the same Finding objects of a package (kept in
    # its cache): what they write is worked out once; with them they are new per image, and not kept here
    statics: dict | None = None if evaluation.ignores else {}
    fixes_cache: dict = {}
    # one commit per batch of BATCH images written, their suppressions and report rows brought in step
    # before it (a batch is all or nothing: rematch again redoes what an interruption lost);
    # checkpointing the WAL every ~20 commits would cost more than the matching
    checkpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    conn.execute("PRAGMA wal_autocheckpoint = 20000")
    if bulk is None:
        bulk = _bulk_wanted(conn, sum(1 for inventory in inventories if inventory[-1] is None))
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    writes = RematchWrites()
    everything_written = RematchWrites()  # bulk mode: what the whole run changed
    written = 0
    again: list[str] = []
    recount: list[str] = []
    if bulk:
        if conn.in_transaction:
            conn.commit()
        conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        # the rows a bulk rematch writes name the scans, images and packages it read in this transaction
        # and the findings it wrote just before their details: they hold by construction, and checking
        # four references per finding cost ~5 s of a 10,000-image first rematch
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN IMMEDIATE")
    try:
        if bulk:
            again, recount = _bulk_drop(conn)
        for n in range(len(inventories)):
            (scan_id, image_id, reference, family, version, old_feed, rows, old_counts, repository, shape,
             pids) = inventories[n]
            inventories[n] = ()  # an image's rows go once written: the end of a bulk rematch has the memory
            # only packages that some advisory names become objects: most of an inventory matches nothing
            items, ids = [], {}
            for row, key, target in rows:
                if matcher.has_candidates(target[:3]):
                    items.append((StoredPackage(*row[1:10], key=key), target))  # type: ignore[misc]
                    ids[key] = row[0]
            per_ecosystem = Counter({(e, r): n for e, r, n in shape["per_ecosystem"]})
            not_covered = Counter(dict(shape["not_covered"]))
            findings = evaluation.evaluate_targets(items, family, version, reference, shape["uncovered_os"],
                                                   shape["matched_os"])
            coverage = dbm.dumps(evaluation.coverage(per_ecosystem, not_covered, family, version)) or "[]"
            fixes = evaluation.last_fixes
            if pids is None:
                facts = {"vulnerability_targets": dbm.dumps(shape) or "{}", "vulnerability_coverage": coverage,
                         "vulnerability_fixes": _encoded_list(fixes, fixes_cache)}
                changed = replace_vulnerabilities(conn, scan_id, image_id, repository, [p for p, _ in items], ids,
                                                  old_counts, findings, feed, old_feed, detail_sql, encoded, result,
                                                  facts, writes=writes, statics=statics)
            else:
                facts = {} if coverage == shape["facts"].get("vulnerability_coverage") else \
                    {"vulnerability_coverage": coverage}
                evaluated = {key for _, key, _ in rows}
                old_fixes = shape["fixes"]
                if fixes or any((f.get("ecosystem"), f.get("name"), f.get("version"), f.get("path")) in evaluated
                                for f in old_fixes):
                    merged = [f for f in old_fixes if (f.get("ecosystem"), f.get("name"), f.get("version"),
                                                       f.get("path")) not in evaluated] + fixes
                    facts["vulnerability_fixes"] = dbm.dumps(merged) or "[]"
                before = result.inserted - result.deleted
                changed = replace_vulnerabilities(conn, scan_id, image_id, repository, [p for p, _ in items], ids,
                                                  old_counts, findings, feed, old_feed, detail_sql, encoded, result,
                                                  facts, writes=writes, package_ids=pids, total=shape["total"],
                                                  statics=statics)
                result.findings += shape["total"] + result.inserted - result.deleted - before - len(findings)
            written += changed
            if written >= BATCH:
                if bulk:
                    _bulk_batch(conn, writes, everything_written)
                else:
                    with conn:
                        finish_rematch_batch(conn, writes)
                writes, written = RematchWrites(), 0
            result.changed_images += changed
            result.findings += len(findings)
            if bar:
                bar.update(1)
        if bulk:
            _bulk_batch(conn, writes, everything_written)
            _bulk_finish(conn, everything_written, again, recount)
            conn.commit()
        elif written:
            with conn:
                finish_rematch_batch(conn, writes)
    except BaseException:
        conn.rollback()  # the batch in progress (bulk mode: everything); those before it are committed
        raise
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint)}")
        conn.execute(f"PRAGMA cache_size = {int(cache)}")
        conn.execute(f"PRAGMA foreign_keys = {int(foreign_keys)}")
        if bar:
            bar.close()
    # the findings of the images kept as they are: as their last rematch counted them (written with the
    # marker they still carry), else counted (reading a million findings costs seconds)
    for i in range(0, len(current), 500):
        chunk = current[i:i + 500]
        facts = dict(conn.execute("SELECT scan_id, value FROM scan_facts WHERE name = 'vulnerabilities_rematched'"
                                  f" AND scan_id IN ({','.join('?' * len(chunk))})", chunk).fetchall())
        missing = []
        for scan_id in chunk:
            try:
                result.findings += int(json.loads(facts[scan_id])["findings"])
            except (KeyError, ValueError, TypeError):
                missing.append(scan_id)
        for j in range(0, len(missing), 500):
            part = missing[j:j + 500]
            result.findings += conn.execute(
                f"SELECT COUNT(*) FROM findings WHERE scan_id IN ({','.join('?' * len(part))})"
                " AND kind = 'vulnerability'", part).fetchone()[0]
    # suppressed, as the store decided them: few, read through the index on `suppressed`
    rematched = {s[0] for s in everything}
    result.ignored = sum(n for scan_id, n in conn.execute(
        "SELECT scan_id, COUNT(*) FROM findings WHERE suppressed = 1 AND +kind = 'vulnerability' GROUP BY scan_id")
        if scan_id in rematched)
    result.warnings.update(evaluation.warnings)
    result.warnings.update(matcher.warnings)
    result.seconds = time.perf_counter() - t0
    return result
