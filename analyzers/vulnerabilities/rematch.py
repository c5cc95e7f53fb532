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
from itertools import compress
from operator import attrgetter
from typing import NamedTuple

from stowaway.ingest import db as dbm
from stowaway.ingest.findings import (
    DETAIL_COLUMNS,
    RematchWrites,
    _static_rows,
    finding_fingerprint,
    finish_rematch_batch,
    replace_vulnerabilities,
)

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


# Fan-out: the images evaluated in full that have no stored vulnerability findings (a first rematch) are not
# evaluated one by one. Their packages are read once, in one query per run of images, and each distinct
# package (the same ecosystem, name, version, path, layer, source and distribution release, in any number
# of images: a fleet shares most of its packages) is evaluated once; its findings and details rows go into
# a temporary table once, and the rows of every image of the run are written by two INSERT ... SELECTs
# that join them with a temporary table of (image package, verdict) pairs. Ids are handed out in the
# order the image-by-image path hands them out (image, package, finding), so both write the same rows.
FAN_OUT = True
FAN_CHUNK = 1000  # images per run in bulk mode (the row-by-row path: a batch, BATCH)

_FAN_COLUMNS = ("kind", "severity", "severity_rank", "title", "rule", "status", "path", "layer_index", "visible",
                "ignored", "ignore_reason")
_FAN_DETAILS = tuple(f"d_{c}" for c in DETAIL_COLUMNS[1:])


class _Verdict(NamedTuple):
    verdict: int  # its rows in temp.rematch_verdict_rows (0: no findings)
    findings: int
    counted: int  # findings that count towards the package's vulnerability_count (no ignore reason)
    fixes: dict | None
    warnings: Counter | None  # what its evaluation warned, counted again per image that carries it


class _Ident:
    """A distinct package (_FanOut): its packages row but the ids, and what it is for the images that carry it."""

    __slots__ = ("row", "category", "target", "verdict", "notable")

    def __init__(self, row: tuple, os_key) -> None:
        self.row = row  # ecosystem, name, version, path, layer_index, source_name, source_version, os_owned
        eco, name, version, _path, _layer, source_name, source_version, os_owned = row
        is_os = (eco or "").lower() in OS_PACKAGE_TYPES
        self.target = None
        self.category: tuple | None = None  # None: an application package inside an OS package (not counted)
        if not (os_owned and not is_os):
            self.target = package_target(eco, name, version, source_name, source_version, os_key)
            # what the image's coverage counts it under: its (ecosystem, release), or what coverage_gap says
            self.category = (True, *self.target[:2], is_os) if self.target is not None else \
                (False, eco, bool(os_owned), is_os)
        self.verdict: _Verdict | None = None
        self.notable = False  # has fixes or warnings: looked at per image


_CATEGORY = attrgetter("category")
_NOTABLE = attrgetter("notable")
# a package's key (as _inventory dedupes: ecosystem, name, version, path) and the rest of what it is, each
# as one text that names its values unambiguously (quote() doubles the quotes inside a text)
_KEY_SQL = "quote(ecosystem) || quote(name) || quote(coalesce(version, '')) || quote(coalesce(path, ''))"
_REST_SQL = ("quote(layer_index) || quote(coalesce(source_name, '')) || quote(coalesce(source_version, ''))"
             " || quote(os_owned)")


class _FanOut:
    """The state a rematch's fan-outs share: what each distinct package is and what it was found to have."""

    def __init__(self, conn, evaluation: Evaluation, matcher: Matcher, feed: str, encoded: dict, statics: dict,
                 fixes_cache: dict, detail_sql: str):
        self.conn, self.evaluation, self.matcher, self.feed = conn, evaluation, matcher, feed
        self.encoded, self.statics, self.fixes_cache, self.detail_sql = encoded, statics, fixes_cache, detail_sql
        self.idents: dict[tuple, _Ident] = {}
        self.fingerprints: set[tuple] = set()  # (repository, verdict) pairs in temp.rematch_fingerprints
        self.next_verdict = 1
        self.found: dict[int, tuple[tuple, list]] = {}  # verdict -> (its package's row, its (static rows, Finding))
        cols = ", ".join([*_FAN_COLUMNS, *_FAN_DETAILS])
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS rematch_verdict_rows (verdict INTEGER NOT NULL,"
                     f" seq INTEGER NOT NULL, {cols}, PRIMARY KEY (verdict, seq)) WITHOUT ROWID")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS rematch_fingerprints (repository TEXT NOT NULL,"
                     " verdict INTEGER NOT NULL, seq INTEGER NOT NULL, fingerprint TEXT,"
                     " PRIMARY KEY (repository, verdict, seq)) WITHOUT ROWID")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS rematch_hits (first_id INTEGER PRIMARY KEY,"
                     " scan_id INTEGER, image_id INTEGER, package_id INTEGER, verdict INTEGER, repository TEXT)")
        for table in ("rematch_verdict_rows", "rematch_fingerprints", "rematch_hits"):
            conn.execute(f"DELETE FROM temp.[{table}]")

    def close(self) -> None:
        for table in ("rematch_verdict_rows", "rematch_fingerprints", "rematch_hits"):
            self.conn.execute(f"DROP TABLE IF EXISTS temp.[{table}]")

    def _evaluate(self, ident: _Ident, reference: str, family: str, version: str) -> None:
        target = ident.target
        if target is None or not self.matcher.has_candidates(target[:3]):
            return
        eco, name, ver, path, layer, source_name, source_version, os_owned = ident.row
        pkg = StoredPackage(eco, name, ver, path, layer, source_name, source_version, "", os_owned,
                            key=(eco, name, ver, path))
        # what its evaluation warns is counted once per image that carries it, as image by image
        saved, self.evaluation.warnings = self.evaluation.warnings, Counter()
        try:
            found = self.evaluation.evaluate_targets([(pkg, target)], family, version, reference)
        finally:
            warned, self.evaluation.warnings = self.evaluation.warnings, saved
            saved.update(warned)
        fixes = self.evaluation.last_fixes[0] if self.evaluation.last_fixes else None
        verdict = counted = 0
        if found:
            verdict, self.next_verdict = self.next_verdict, self.next_verdict + 1
            rows, statics = [], []
            for seq, f in enumerate(found):
                static = self.statics.get(id(f))
                if static is None or static[0] is not f:
                    static = self.statics[id(f)] = _static_rows(f, self.encoded)
                counted += static[1] is None
                statics.append((static, f))
                rows.append((verdict, seq, *static[4], *static[6], *static[7]))
            self.found[verdict] = (ident.row, statics)
            dbm.insert_values(self.conn, "INSERT INTO temp.rematch_verdict_rows (verdict, seq,"
                              f" {', '.join(_FAN_COLUMNS)}, {', '.join(_FAN_DETAILS)})", rows)
        ident.verdict = _Verdict(verdict, len(found), counted, fixes, warned or None)
        ident.notable = fixes is not None or bool(warned)

    def run(self, chunk: list, writes: RematchWrites, result: RematchResult) -> int:
        """Evaluates and writes the scans of CHUNK (rows of _scans, in scan order); returns how many changed."""
        conn, evaluation = self.conn, self.evaluation
        if not conn.in_transaction:
            # the write lock first, as the image-by-image path's first write takes it: the ids handed out
            # below follow the MAX(id) this transaction reads (a snapshot read before the lock could be
            # overtaken by another writer, and the write would fail)
            conn.execute("BEGIN IMMEDIATE")
        ids = json.dumps([s[0] for s in chunk])
        # one pass over the chunk's packages: each image's first row of every package key (as _inventory
        # reads them) with its distinct package; its stored non-zero counts
        state: dict[int, tuple[list, list, dict]] = {s[0]: ([], [], {}) for s in chunk}
        os_keys = {s[0]: image_release(s[3] or "", s[4] or "") for s in chunk}
        by_id = {s[0]: s for s in chunk}
        new: list[tuple[_Ident, tuple]] = []
        last = os_key = None
        scan: tuple = ()
        seen: set = set()
        pids: list = []
        idents: list = []
        old: dict = {}
        known = self.idents
        for scan_id, pid, count, key, rest in conn.execute(
                f"SELECT scan_id, id, vulnerability_count, {_KEY_SQL}, {_REST_SQL} FROM packages"
                " WHERE scan_id IN (SELECT value FROM json_each(?)) ORDER BY scan_id, id", [ids]):
            if scan_id != last:
                last, seen = scan_id, set()
                pids, idents, old = state[scan_id]
                os_key = os_keys[scan_id]
                scan = by_id[scan_id]
            if count:
                old[pid] = count
            if key in seen:
                continue
            seen.add(key)
            ident = known.get((key, rest, os_key))
            if ident is None:
                row = conn.execute("SELECT ecosystem, name, coalesce(version, ''), coalesce(path, ''), layer_index,"
                                   " coalesce(source_name, ''), coalesce(source_version, ''), os_owned FROM packages"
                                   " WHERE id = ?", [pid]).fetchone()
                ident = known[(key, rest, os_key)] = _Ident(tuple(row), os_key)
                new.append((ident, scan))
            pids.append(pid)
            idents.append(ident)
        totals = dict(conn.execute("SELECT scan_id, COUNT(*) FROM packages WHERE scan_id IN"
                                   " (SELECT value FROM json_each(?)) GROUP BY scan_id", [ids]))
        self.matcher.prefetch({i.target[:3] for i, _ in new if i.target is not None})
        for ident, scan in new:
            self._evaluate(ident, scan[2], scan[3] or "", scan[4] or "")
        base = writes.next_id or (conn.execute("SELECT MAX(id) FROM findings").fetchone()[0] or 0) + 1
        next_id = base
        hits, recounts, feeds, facts, changed = [], [], [], [], 0
        for scan in chunk:
            scan_id, image_id, reference, family, version, old_feed, repository = scan
            family, version = family or "", version or ""
            pids, idents, old = state.pop(scan_id)
            per_ecosystem: Counter = Counter()
            not_covered: Counter = Counter()
            uncovered_os = matched_os = 0
            for category, n in Counter(map(_CATEGORY, idents)).items():
                if category is None:
                    continue
                if category[0]:
                    per_ecosystem[category[1:3]] += n
                    matched_os += n * category[3]
                else:
                    uncovered_os += n * category[3]
                    gap = coverage_gap(category[1], category[2], family, version)
                    if gap:
                        not_covered[gap] += n
            fixes, counts = [], {}
            findings = 0
            for pid, ident in compress(zip(pids, idents), map(_NOTABLE, idents)):
                got = ident.verdict
                if got.warnings:
                    evaluation.warnings.update(got.warnings)
                if got.fixes is not None:
                    fixes.append(got.fixes)
                if got.verdict:
                    hits.append((next_id, scan_id, image_id, pid, got.verdict, repository))
                    next_id += got.findings
                    findings += got.findings
                    if got.counted:
                        counts[pid] = got.counted
                    if (repository, got.verdict) not in self.fingerprints:
                        self._fingerprints(repository, got.verdict)
            evaluation.os_warning(family, version, uncovered_os, matched_os)
            result.packages += totals.get(scan_id, 0)
            result.findings += findings
            recount = [(n, pid) for pid, n in counts.items() if old.get(pid, 0) != n]
            recount += [(0, pid) for pid, n in old.items() if n and pid not in counts]
            if not findings and not recount and old_feed == self.feed:
                continue
            shape = {"per_ecosystem": [[e, r, n] for (e, r), n in sorted(per_ecosystem.items())],
                     "not_covered": sorted(not_covered.items()), "uncovered_os": uncovered_os,
                     "matched_os": matched_os}
            coverage = dbm.dumps(evaluation.coverage(per_ecosystem, not_covered, family, version)) or "[]"
            changed += 1
            feeds.append((self.feed, scan_id))
            recounts += recount
            writes.packages.update(pid for _, pid in recount)
            facts += [(scan_id, "vulnerability_targets", dbm.dumps(shape) or "{}"),
                      (scan_id, "vulnerability_coverage", coverage),
                      (scan_id, "vulnerability_fixes", _encoded_list(fixes, self.fixes_cache)),
                      (scan_id, "vulnerabilities_rematched", json.dumps(
                          {"at": dbm.now(), "written": findings, "removed": 0, "findings": findings}))]
            result.inserted += findings
        if feeds:
            conn.executemany("UPDATE scans SET feed_version = ? WHERE id = ?", feeds)  # takes the write lock
        if hits:
            conn.execute("DELETE FROM temp.rematch_hits")
            dbm.insert_values(conn, "INSERT INTO temp.rematch_hits (first_id, scan_id, image_id, package_id, verdict,"
                              " repository)", hits)
            # in id order: appended to the findings table
            conn.execute(
                "INSERT INTO findings (id, scan_id, image_id, kind, severity, severity_rank, title, rule, status, path,"
                " layer_index, visible, package_id, fingerprint, ignored, ignore_reason)"
                " SELECT h.first_id + v.seq, h.scan_id, h.image_id, v.kind, v.severity, v.severity_rank, v.title,"
                " v.rule, v.status, v.path, v.layer_index, v.visible, h.package_id, p.fingerprint, v.ignored,"
                " v.ignore_reason FROM temp.rematch_hits h JOIN temp.rematch_verdict_rows v ON v.verdict = h.verdict"
                " JOIN temp.rematch_fingerprints p ON p.repository = h.repository AND p.verdict = h.verdict"
                " AND p.seq = v.seq ORDER BY h.first_id, v.seq")
            conn.execute(f"{self.detail_sql} SELECT h.first_id + v.seq, {', '.join(f'v.{c}' for c in _FAN_DETAILS)}"
                         " FROM temp.rematch_hits h JOIN temp.rematch_verdict_rows v ON v.verdict = h.verdict"
                         " ORDER BY h.first_id, v.seq")
            conn.execute("DELETE FROM temp.rematch_hits")
            writes.fresh.extend(range(base, next_id))
            writes.next_id = next_id
        if recounts:
            conn.executemany("UPDATE packages SET vulnerability_count = ? WHERE id = ?", recounts)
        conn.executemany("INSERT OR REPLACE INTO scan_facts (scan_id, name, value) VALUES (?,?,?)", facts)
        result.changed_images += changed
        return changed

    def _fingerprints(self, repository: str, verdict: int) -> None:
        row, statics = self.found[verdict]
        eco, name, ver, path, layer, source_name, source_version, os_owned = row
        pkg = StoredPackage(eco, name, ver, path, layer, source_name, source_version, "", os_owned,
                            key=(eco, name, ver, path))
        rows = []
        for seq, (static, f) in enumerate(statics):
            fkey = ("fp", repository, static[2], f.rule, eco, name)
            fp = self.encoded.get(fkey)
            if fp is None:
                fp = self.encoded[fkey] = finding_fingerprint(f, pkg, repository)  # type: ignore[arg-type]
            rows.append((repository, verdict, seq, fp))
        self.conn.executemany("INSERT INTO temp.rematch_fingerprints (repository, verdict, seq, fingerprint)"
                              " VALUES (?,?,?,?)", rows)
        self.fingerprints.add((repository, verdict))


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
        if FAN_OUT and not evaluation.ignores and conn.execute(
                "SELECT 1 FROM findings WHERE scan_id = ? AND +kind = 'vulnerability' LIMIT 1", [scan_id]
                ).fetchone() is None:
            # nothing stored to compare with: read, evaluated and written with its neighbours (_FanOut)
            inventories.append(((scan_id, image_id, reference, family, version, old_feed, repository),))
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
        bulk = _bulk_wanted(conn, sum(1 for inventory in inventories if len(inventory) == 1 or inventory[-1] is None))
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    writes = RematchWrites()
    everything_written = RematchWrites()  # bulk mode: what the whole run changed
    written = 0
    fan: _FanOut | None = None
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
        n = 0
        while n < len(inventories):
            if len(inventories[n]) == 1:
                # a run of images that fan-out evaluates and writes together
                if fan is None:
                    fan = _FanOut(conn, evaluation, matcher, feed, encoded, statics or {}, fixes_cache, detail_sql)
                limit = FAN_CHUNK if bulk else max(1, BATCH - written)
                run: list[tuple] = []
                while n < len(inventories) and len(inventories[n]) == 1 and len(run) < limit:
                    run.append(inventories[n][0])
                    inventories[n] = ()
                    n += 1
                written += fan.run(run, writes, result)
                if bar:
                    bar.update(len(run))
            else:
                (scan_id, image_id, reference, family, version, old_feed, rows, old_counts, repository, shape,
                 pids) = inventories[n]
                inventories[n] = ()  # an image's rows go once written: the end of a bulk rematch has the memory
                # only packages that some advisory names become objects: most of an inventory matches nothing
                items, ids = [], {}
                for row, key, target in rows:
                    if matcher.has_candidates(target[:3]):
                        items.append((StoredPackage(*row[1:10], key=key), target))  # type: ignore[misc]
                        ids[key] = row[0]
                per_ecosystem = Counter({(e, r): k for e, r, k in shape["per_ecosystem"]})
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
                result.changed_images += changed
                result.findings += len(findings)
                n += 1
                if bar:
                    bar.update(1)
            if written >= BATCH:
                if bulk:
                    _bulk_batch(conn, writes, everything_written)
                else:
                    with conn:
                        finish_rematch_batch(conn, writes)
                writes, written = RematchWrites(), 0
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
        if fan is not None:
            fan.close()
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
