"""Imports advisories into the store: OSV records (files, directories, an ecosystem's all.zip, the
osv.dev API's {"vulns": [...]} answers), the Debian security tracker JSON, Alpine's secdb, NVD's CVE
API 2.0 JSON (severities, nvd.py), CISA's KEV catalogue and FIRST's EPSS scores.

Idempotent: a record replaces the stored one only when its `modified` time is newer. Fast: records
are parsed one at a time (an all.zip is streamed member by member) and written with executemany,
one transaction per batch. Bad input — a malformed file, a record without an id, an ecosystem no
matcher knows, a range without events — is skipped and counted by reason, never fatal.
"""
from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import io
import json
import os
import re
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from stowaway.ingest import db as dbm

from . import feeds, nvd, store
from .ecosystems import DEBIAN_CODENAMES, SCHEME_OF, normalize_name, split_ecosystem

BATCH = 2000
MAX_FILE = 512 << 20  # the full Debian tracker JSON is ~80 MB; anything far beyond is not an advisory file
MAX_EXAMPLES = 20
RANGE_TYPES = ("ECOSYSTEM", "SEMVER")


class BadRecord(ValueError):
    """One record that cannot be used; the message is the counted reason."""


@dataclass
class ImportResult:
    import_id: int = 0
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    warnings: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)
    seconds: float = 0.0
    kev: int = 0
    epss: int = 0
    nvd: int = 0

    def warn(self, reason: str, example: str = "") -> None:
        self.warnings[reason] += 1
        if example and len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{reason}: {example}")

    @property
    def changed(self) -> int:
        return self.inserted + self.updated

    def summary(self) -> str:
        rate = self.records / self.seconds if self.seconds else 0
        text = (f"{self.records} records: {self.inserted} new, {self.updated} updated, {self.unchanged} unchanged,"
                f" {self.skipped} skipped in {self.seconds:.1f}s ({rate:,.0f}/s)")
        if self.kev or self.epss:
            text += f"; {self.kev} KEV entries, {self.epss} EPSS scores"
        if self.nvd:
            text += f"; {self.nvd} NVD CVE records"
        if self.warnings:
            text += "; warnings: " + ", ".join(f"{n} × {r}" for r, n in self.warnings.most_common(8))
        return text


# --- severity ------------------------------------------------------------------------------------------

_LEVELS = ("critical", "high", "medium", "low", "negligible")
_VENDOR_LEVEL = {
    "critical": "critical", "important": "high", "high": "high", "moderate": "medium", "medium": "medium",
    "low": "low", "negligible": "negligible", "unimportant": "negligible", "none": "negligible",
}


def vendor_level(text) -> str | None:
    """'MODERATE' (GHSA), 'Important' (Red Hat), 'low**' (Debian urgency, '**' = guessed) -> a level."""
    if not isinstance(text, str):
        return None
    return _VENDOR_LEVEL.get(text.strip().rstrip("*").strip().lower())


@functools.lru_cache(maxsize=8192)
def cvss_of(vector: str) -> tuple[float, str] | None:
    """(base score, level) of a CVSS v2/v3/v4 vector through the `cvss` library; None when unreadable."""
    from cvss import CVSS2, CVSS3, CVSS4
    from cvss.exceptions import CVSSError

    try:
        if vector.startswith("CVSS:4"):
            c4 = CVSS4(vector)
            score, level = float(c4.base_score), str(c4.severity).lower()
        elif vector.startswith("CVSS:3"):
            c3 = CVSS3(vector)
            score, level = float(c3.scores()[0]), str(c3.severities()[0]).lower()
        else:
            score = float(CVSS2(vector.removeprefix("CVSS:2.0/")).scores()[0])
            level = "high" if score >= 7 else "medium" if score >= 4 else "low"
    except (CVSSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return score, ("negligible" if level == "none" else level)


# v3 first: it is the score users compare with NVD and vendor pages; v4 and v2 when it is all there is
_CVSS_PREFERENCE = {"CVSS_V3": 0, "CVSS_V4": 1, "CVSS_V2": 2}


def record_severity(severities, database_specific) -> tuple[str | None, float | None, str | None, str | None]:
    """(level, score, vector, vendor level) from an OSV `severity` list and `database_specific`."""
    best = None
    vendor = None
    for s in severities or ():
        if not isinstance(s, dict) or not isinstance(s.get("score"), str):
            continue
        kind = s.get("type", "")
        if kind in _CVSS_PREFERENCE:
            got = cvss_of(s["score"])
            if got:
                rank = (_CVSS_PREFERENCE[kind], -got[0])
                if best is None or rank < best[0]:
                    best = (rank, got[0], got[1], s["score"])
        elif vendor is None:
            vendor = vendor_level(s["score"])  # 'Ubuntu': 'medium' and other vendor ratings
    if isinstance(database_specific, dict) and vendor is None:
        vendor = vendor_level(database_specific.get("severity"))
    if best:
        return best[2], best[1], best[3], vendor
    return vendor, None, None, vendor


# --- records -----------------------------------------------------------------------------------------

_CVE_IN_ID = re.compile(r"^(?:(?:UBUNTU|DEBIAN|ALPINE|REDHAT)-)?(CVE-\d{4}-\d+)$")
_ISO_Z = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6})\d*)?Z")
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # built once: json.dumps(**kw) rebuilds it


def _c_encoder():
    """JSONEncoder.encode builds a new C encoder on every call; an import encodes ~4 values a record, so
    one is built here and reused (same output: compact separators, non-ASCII kept, no key sorting)."""
    from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]

    if c_make_encoder is None or c_encode_basestring is None:
        return _JSON.encode
    make = c_make_encoder(None, str, c_encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(make(value, 0))


_encode = _c_encoder()


def normalize_time(value) -> str:
    """Every timestamp form in one sortable UTC text, '2022-03-25T20:56:18.000000Z', so that times compare
    correctly as text: strings with 'Z' or an offset, dates alone, and the datetime and date objects a
    YAML loader makes of unquoted times. '' when there is no time or it cannot be read."""
    if isinstance(value, str):
        if not value:
            return ""
        m = _ISO_Z.fullmatch(value)
        if m:  # the common UTC form, without a datetime round trip
            return f"{m.group(1)}.{(m.group(2) or '').ljust(6, '0')}Z"
        text = value.strip()
        if len(text) > 64:
            return ""
        try:
            t = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            try:
                t = dt.datetime.fromisoformat(text[:10])
            except ValueError:
                return ""
    elif isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, dt.date):
        t = dt.datetime(value.year, value.month, value.day)
    else:
        return ""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    try:
        return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, ValueError):
        return ""


def _strings(value) -> list[str]:
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


_EVENT_KINDS = frozenset(("introduced", "fixed", "last_affected", "limit"))


def _event_ok(item: tuple) -> bool:
    return item[0] in _EVENT_KINDS and item[1].__class__ is str


def _clean_ranges(ranges, result: ImportResult, rid: str) -> list[dict]:
    out = []
    for r in ranges if isinstance(ranges, list) else ():
        if not isinstance(r, dict):
            result.warn("malformed range", rid)
            continue
        kind = r.get("type")
        if kind not in RANGE_TYPES:
            continue  # GIT ranges name commits, not package versions
        raw = r.get("events") or ()
        events = [e for e in raw if e.__class__ is dict and len(e) == 1 and _event_ok(*e.items())]
        if not events or not any("introduced" in e for e in events):
            result.warn("range without an introduced event", rid)
            continue
        if len(events) != len(raw):
            result.warn("range with malformed events", rid)
            continue
        out.append({"type": kind, "events": events})
    return out


def _references(rec: dict, rid: str, result: ImportResult) -> tuple[str | None, int | None]:
    """(reference_urls, references_dropped) of a record: its own http(s) reference URLs, capped."""
    refs, dropped, refused = store.clean_references(rec.get("references"))
    if dropped:
        result.warn(f"more than {store.MAX_REFERENCES} references (the rest not stored)", rid)
    if refused:
        result.warn("reference that is not an http(s) URL (not stored)", rid)
    return (_encode(refs) if refs else None), (dropped or None)


def parse_record(rec, source_file: str, source_kind: str, result: ImportResult):
    """(advisory row, affected rows, alias rows) of one OSV record; raises BadRecord."""
    if not isinstance(rec, dict):
        raise BadRecord("record is not an object")
    rid = rec.get("id")
    if not isinstance(rid, str) or not rid.strip():
        raise BadRecord("not an OSV record (no id)")
    rid = rid.strip()
    aliases = _strings(rec.get("aliases"))
    upstream = _strings(rec.get("upstream"))
    # a distribution's per-CVE record id names the CVE too: a USN's upstream is 'UBUNTU-CVE-2021-3782'
    cves = sorted({m.group(1) for a in [rid, *aliases, *upstream] if (m := _CVE_IN_ID.match(a))})
    level, score, vector, vendor = record_severity(rec.get("severity"), rec.get("database_specific"))
    raw_withdrawn = rec.get("withdrawn")
    # any withdrawn value withdraws the record, even one whose time cannot be read
    withdrawn = normalize_time(raw_withdrawn) or (str(raw_withdrawn)[:64] if raw_withdrawn else None)
    affected_rows = []
    for a in rec.get("affected") or () if not withdrawn else ():
        if not isinstance(a, dict) or not isinstance(a.get("package"), dict):
            continue  # affected entries without a package name repositories, not packages
        pkg = a["package"]
        raw_eco, raw_name = pkg.get("ecosystem"), pkg.get("name")
        if not isinstance(raw_eco, str) or not isinstance(raw_name, str) or not raw_eco or not raw_name:
            result.warn("affected package without ecosystem or name", rid)
            continue
        eco, release = split_ecosystem(raw_eco)
        if eco not in SCHEME_OF:
            result.warn(f"unsupported ecosystem {eco}", rid)
            continue
        ranges = _clean_ranges(a.get("ranges"), result, rid)
        versions = _strings(a.get("versions"))
        if not ranges and not versions:
            result.warn("affected package without usable ranges or versions", rid)
            continue
        a_level = None
        if a.get("severity"):
            a_level = record_severity(a.get("severity"), None)[0]
        found = a.get("ecosystem_specific")
        es: dict = found if isinstance(found, dict) else {}
        a_level = a_level or vendor_level(es.get("severity")) or vendor_level(es.get("urgency"))
        affected_rows.append((rid, eco, release, normalize_name(eco, raw_name.strip()), raw_eco, raw_name,
                              _encode(ranges) if ranges else None,
                              _encode(versions) if versions else None, a_level))
    if not affected_rows and not withdrawn and rec.get("affected"):
        raise BadRecord("no affected package that a matcher can use")
    details = rec.get("details") if isinstance(rec.get("details"), str) else None
    summary = rec.get("summary") if isinstance(rec.get("summary"), str) else None
    advisory = (rid, normalize_time(rec.get("modified")), normalize_time(rec.get("published")) or None, withdrawn,
                summary, details, _encode(aliases) if aliases else None, _encode(upstream) if upstream else None,
                _encode(cves) if cves else None,
                _encode(rec["severity"]) if isinstance(rec.get("severity"), list) and rec["severity"] else None,
                vendor, level, score, vector, source_file, source_kind, *_references(rec, rid, result))
    alias_rows = [(x, rid) for x in {*aliases, *upstream, *cves} if x != rid]
    return advisory, affected_rows, alias_rows


# --- Debian security tracker ---------------------------------------------------------------------------

def is_debian_tracker(doc) -> bool:
    if not isinstance(doc, dict) or "id" in doc or "vulns" in doc or not doc:
        return False
    for cves in list(doc.values())[:20]:
        if isinstance(cves, dict):
            for entry in list(cves.values())[:5]:
                if isinstance(entry, dict) and "releases" in entry:
                    return True
    return False


def debian_tracker_records(doc: dict, modified: str, result: ImportResult) -> Iterator[dict]:
    """The tracker's {source package: {CVE: {releases: {codename: status}}}} as one OSV-shaped record per
    CVE, named as osv.dev names its Debian records (DEBIAN-CVE-…). 'open' is an unfixed vulnerability;
    'resolved' with fixed version '0' means the release was never affected."""
    by_cve: dict[str, dict] = {}
    for package, cves in doc.items():
        if not isinstance(cves, dict):
            result.warn("debian tracker: malformed package entry", str(package))
            continue
        for cve, entry in cves.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("releases"), dict):
                result.warn("debian tracker: entry without releases", f"{package} {cve}")
                continue
            rec = by_cve.setdefault(cve, {"id": f"DEBIAN-{cve}",
                                          "modified": modified, "aliases": [cve] if cve.startswith("CVE-") else [],
                                          "details": entry.get("description") or "", "affected": []})
            for codename, rel in entry["releases"].items():
                if not isinstance(rel, dict):
                    continue
                number = DEBIAN_CODENAMES.get(codename)
                if number is None:
                    result.warn("debian tracker: unknown release", codename)
                    continue
                status = rel.get("status")
                fixed = rel.get("fixed_version")
                if status == "resolved" and fixed == "0":
                    continue
                if status == "resolved" and isinstance(fixed, str) and fixed:
                    events = [{"introduced": "0"}, {"fixed": fixed}]
                elif status == "open":
                    events = [{"introduced": "0"}]
                else:
                    result.warn(f"debian tracker: status {status!r} not matched", f"{package} {cve} {codename}")
                    continue
                rec["affected"].append({
                    "package": {"ecosystem": f"Debian:{number}", "name": package},
                    "ranges": [{"type": "ECOSYSTEM", "events": events}],
                    "ecosystem_specific": {"urgency": rel.get("urgency"), "status": status},
                })
    for rec in by_cve.values():
        if rec["affected"]:
            yield rec


# --- Alpine secdb ------------------------------------------------------------------------------------

def is_alpine_secdb(doc) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("packages"), (list, dict)) and "distroversion" in doc


def alpine_secdb_records(doc: dict, modified: str, result: ImportResult) -> Iterator[dict]:
    """secdb's {packages: [{pkg: {name, secfixes: {fixed version: [CVE, ...]}}}]} of one release as one
    OSV-shaped record per (release, CVE); '0' lists CVEs that never affected the package."""
    release = str(doc.get("distroversion") or "")
    by_id: dict[str, dict] = {}
    for entry in doc["packages"] if isinstance(doc["packages"], list) else ():  # an empty release writes {}
        pkg = entry.get("pkg") if isinstance(entry, dict) else None
        if not isinstance(pkg, dict) or not isinstance(pkg.get("name"), str) or not isinstance(pkg.get("secfixes"), dict):
            result.warn("alpine secdb: malformed package entry", release)
            continue
        for fixed, ids in pkg["secfixes"].items():
            if str(fixed) == "0" or not isinstance(ids, list):
                continue
            for text in ids:
                for cve in str(text).split():
                    if not cve.startswith("CVE-"):
                        continue
                    rid = f"ALPINE-SECDB-{release}-{cve}"
                    rec = by_id.setdefault(rid, {"id": rid, "modified": modified, "aliases": [cve], "affected": []})
                    rec["affected"].append({"package": {"ecosystem": f"Alpine:{release}", "name": pkg["name"]},
                                            "ranges": [{"type": "ECOSYSTEM",
                                                        "events": [{"introduced": "0"}, {"fixed": str(fixed)}]}]})
    yield from by_id.values()


# --- sources -------------------------------------------------------------------------------------------

def _records_of(doc) -> Iterator:
    if isinstance(doc, list):
        yield from doc
    elif isinstance(doc, dict) and isinstance(doc.get("vulns"), list) and "id" not in doc:
        yield from doc["vulns"]  # the osv.dev API's query answers
    elif isinstance(doc, dict) and isinstance(doc.get("results"), list) and "id" not in doc:
        for r in doc["results"]:  # querybatch answers
            if isinstance(r, dict):
                yield from r.get("vulns") or ()
    else:
        yield doc


class BadFile(ValueError):
    """A file that cannot be imported; the message is one sentence about it."""


def _refuse_aliases(root) -> None:
    """Aliases make a YAML document a graph: a few hundred bytes can stand for billions of nodes
    ("billion laughs") that later code would walk. OSV records never need them, so any node reached
    twice refuses the file."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise BadFile("YAML aliases (*name) are not accepted in advisory files")
        seen.add(id(node))
        value = node.value
        if isinstance(value, list):
            for item in value:
                if isinstance(item, tuple):
                    stack.extend(item)
                else:
                    stack.append(item)


def load_yaml(data: bytes):
    """One YAML document with the C loader when PyYAML has it (ten times faster), safe types only, no aliases."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(data)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if b"*" in data:
            _refuse_aliases(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _load(name: str, data: bytes):
    if name.endswith((".yaml", ".yml")):
        return load_yaml(data)
    if name.endswith(".gz"):
        data = _gunzip(data)
    return json.loads(data)


def _gunzip(data: bytes) -> bytes:
    import zlib

    d = zlib.decompressobj(wbits=47)
    out = d.decompress(data, MAX_FILE)
    if d.unconsumed_tail:
        raise BadFile(f"decompresses to more than {MAX_FILE >> 20} MB")
    return out


def unreadable_reason(exc: BaseException) -> str:
    """One sentence about why a file could not be read (never an exception's name alone)."""
    if isinstance(exc, BadFile):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, MemoryError):
        return "too large to load"
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"not valid YAML ({getattr(exc, 'problem', None) or 'syntax error'}, line {mark.line + 1})"
    if exc.__class__.__module__.startswith("yaml"):
        return "not valid YAML"
    return f"cannot be read ({str(exc)[:120] or exc.__class__.__name__})"


_MODIFIED = "CASE WHEN references_dropped = -1 THEN '' ELSE modified END"


class Importer:
    """One import run. `add(path)` for each path, then `finish()`; or use `import_paths()`."""

    def __init__(self, database, source: str = "", kind: str = "osv"):
        self.db = database
        self.conn = database.conn if hasattr(database, "conn") else database
        store.ensure(self.conn)
        self.result = ImportResult()
        self.now = dbm.now()
        self._t0 = time.perf_counter()
        self._batch: dict[str, tuple] = {}
        # what the store holds already, so an unchanged record is recognized before it is parsed
        # (a record stored before references were kept, marked -1 by the store's step 5, is read again)
        self._stored: dict[str, str] = dict(self.conn.execute(f"SELECT id, {_MODIFIED} FROM advisories"))
        with self.conn:
            self.result.import_id = self.conn.execute(
                "INSERT INTO advisory_imports (source, kind, started_at) VALUES (?,?,?)",
                [source, kind, self.now]).lastrowid

    # records ---------------------------------------------------------------------------------------
    def add_record(self, rec, source_file: str, source_kind: str = "osv") -> None:
        self.result.records += 1
        if isinstance(rec, dict) and isinstance(rec.get("id"), str):
            old = self._stored.get(rec["id"].strip())
            if old is not None and old >= normalize_time(rec.get("modified")):
                self.result.unchanged += 1
                return
        try:
            parsed = parse_record(rec, source_file, source_kind, self.result)
        except BadRecord as exc:
            self.result.skipped += 1
            self.result.warn(str(exc), source_file)
            return
        except (TypeError, ValueError, RecursionError):
            # a value of a type no OSV field has (a YAML date in a list, a nested monster): this record only
            self.result.skipped += 1
            self.result.warn("malformed record (a field of the wrong type)", source_file)
            return
        rid, modified = parsed[0][0], parsed[0][1]
        have = self._batch.get(rid)
        if have is not None:
            self.result.unchanged += 1  # the same record twice in one run (a .json beside its .yaml)
            if have[0][1] >= modified:
                return
        self._batch[rid] = parsed
        if len(self._batch) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, {}
        conn = self.conn
        ids = list(batch)
        existing: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            existing.update(conn.execute(f"SELECT id, {_MODIFIED} FROM advisories WHERE id IN ({','.join('?' * len(chunk))})",
                                         chunk).fetchall())
        changed = []
        for rid, parsed in batch.items():
            old = existing.get(rid)
            if old is not None and (old or "") >= parsed[0][1]:
                self.result.unchanged += 1
                continue
            if old is None:
                self.result.inserted += 1
            else:
                self.result.updated += 1
            changed.append(parsed)
        if not changed:
            return
        replaced = [p[0][0] for p in changed if p[0][0] in existing]
        self._stored.update((p[0][0], p[0][1]) for p in changed)
        with conn:
            for i in range(0, len(replaced), 500):
                chunk = replaced[i:i + 500]
                marks = ",".join("?" * len(chunk))
                # what the records named before (store.STEP6), for rematch
                conn.execute("INSERT INTO advisory_changes (import_id, ecosystem, release, name) SELECT DISTINCT ?,"
                             f" ecosystem, release, name FROM advisory_affected WHERE advisory_id IN ({marks})",
                             [self.result.import_id, *chunk])
                conn.execute("INSERT INTO advisory_changes (import_id, alias) SELECT DISTINCT ?, alias FROM"
                             f" advisory_aliases WHERE advisory_id IN ({marks})", [self.result.import_id, *chunk])
                conn.execute(f"DELETE FROM advisory_affected WHERE advisory_id IN ({marks})", chunk)
                conn.execute(f"DELETE FROM advisory_aliases WHERE advisory_id IN ({marks})", chunk)
            conn.executemany(
                "INSERT OR REPLACE INTO advisories (id, modified, published, withdrawn, summary, details, aliases,"
                " upstream, cves, severity_vectors, database_severity, severity, cvss_score, cvss_vector,"
                " source_file, source_kind, reference_urls, references_dropped, import_id, imported_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [p[0] + (self.result.import_id, self.now) for p in changed])
            conn.executemany("INSERT INTO advisory_affected (advisory_id, ecosystem, release, name, raw_ecosystem,"
                             " raw_name, ranges, versions, severity) VALUES (?,?,?,?,?,?,?,?,?)",
                             [row for p in changed for row in p[1]])
            conn.executemany("INSERT OR IGNORE INTO advisory_aliases (alias, advisory_id) VALUES (?,?)",
                             [row for p in changed for row in p[2]])

    # files -----------------------------------------------------------------------------------------
    def add_path(self, path: str) -> None:
        if os.path.isdir(path):
            wanted = (".json", ".json.gz", ".yaml", ".yml", ".zip", ".csv", ".csv.gz") + feeds.EXTENSIONS
            for root, dirs, files in os.walk(path):
                dirs.sort()
                present = set(files)  # a PyPA checkout holds thousands of files a directory
                for name in sorted(files):
                    if name.endswith(wanted):
                        # a PYSEC-….yaml beside its .json is the same record: read the JSON only
                        if name.endswith((".yaml", ".yml")) and os.path.splitext(name)[0] + ".json" in present:
                            continue
                        self.add_path(os.path.join(root, name))
            return
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            self.result.warn("unreadable file", f"{path}: {exc.strerror}")
            return
        if path.endswith(".zip"):
            self._add_zip(path)
            return
        if path.endswith((".csv", ".csv.gz")):
            self._add_epss(path)
            return
        # vendor formats (CSAF, CVRF, the Debian tracker): a large file is sniffed before it is read, as
        # it may be streamed
        kind = feeds.sniff(path) if size > feeds.SNIFF_FIRST or not path.endswith(".json") else None
        if kind:
            feeds.add_file(self, path, kind)
            return
        if size > MAX_FILE:
            self.result.warn("file too large", path)
            return
        with open(path, "rb") as fh:
            data = fh.read()
        kind = feeds.sniff(path, data[:feeds.SNIFF]) if size <= feeds.SNIFF_FIRST and path.endswith(".json") else None
        if kind:
            feeds.add_file(self, path, kind)
            return
        self._add_document(path, data, lambda: os.path.getmtime(path))

    def _add_document(self, name: str, data: bytes, mtime) -> None:
        """`mtime()` gives the file's time, asked only for snapshot formats that carry no record times."""
        try:
            doc = _load(name, data)
        except Exception as exc:  # json, yaml and decoding errors alike: this file only
            self.result.records += 1
            self.result.skipped += 1
            self.result.warn("unreadable file", f"{name}: {unreadable_reason(exc)}")
            return
        if isinstance(doc, dict) and isinstance(doc.get("vulnerabilities"), list) and "catalogVersion" in doc:
            self._add_kev(doc)
            return
        if nvd.is_nvd(doc):
            self._add_nvd(doc)
            return
        # snapshots without per-record times: a newer file is a newer snapshot
        if is_debian_tracker(doc):
            modified = dt.datetime.fromtimestamp(mtime(), dt.timezone.utc).isoformat()
            for rec in debian_tracker_records(doc, modified, self.result):
                self.add_record(rec, name, "debian-tracker")
            return
        if is_alpine_secdb(doc):
            modified = dt.datetime.fromtimestamp(mtime(), dt.timezone.utc).isoformat()
            for rec in alpine_secdb_records(doc, modified, self.result):
                self.add_record(rec, name, "alpine-secdb")
            return
        for rec in _records_of(doc):
            self.add_record(rec, name)

    def _add_zip(self, path: str) -> None:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            self.result.warn("unreadable zip", f"{path}: {exc}")
            return
        with zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.endswith(".json"):
                    continue
                if info.file_size > MAX_FILE:
                    self.result.warn("file too large", f"{path}!/{info.filename}")
                    continue
                try:
                    data = zf.read(info)
                except (zipfile.BadZipFile, OSError, EOFError, zlib_error()) as exc:
                    self.result.warn("unreadable zip member", f"{path}!/{info.filename}: {exc}")
                    continue
                self._add_document(f"{path}!/{info.filename}", data,
                                   lambda info=info: time.mktime(info.date_time + (0, 0, -1)))

    # enrichment ------------------------------------------------------------------------------------
    def _add_kev(self, doc: dict) -> None:
        rows = []
        for v in doc["vulnerabilities"]:
            if isinstance(v, dict) and isinstance(v.get("cveID"), str):
                rows.append((v["cveID"], v.get("vendorProject"), v.get("product"), v.get("vulnerabilityName"),
                             v.get("dateAdded"), v.get("dueDate"), v.get("knownRansomwareCampaignUse"),
                             v.get("requiredAction"), self.now))
            else:
                self.result.warn("malformed KEV entry")
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO kev (cve, vendor, product, name, date_added, due_date,"
                                  " known_ransomware, required_action, imported_at) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        self.result.kev += len(rows)

    def _add_nvd(self, doc: dict) -> None:
        rows = []
        for cve in nvd.cves_of(doc):
            row = nvd.row_of(cve, self.now) if isinstance(cve, dict) else None
            if row is None:
                self.result.warn("NVD entry without a CVE id")
                continue
            rows.append(row)
            if len(rows) >= BATCH:
                nvd.store_rows(self.conn, rows)
                self.result.nvd += len(rows)
                rows = []
        nvd.store_rows(self.conn, rows)
        self.result.nvd += len(rows)

    def _add_epss(self, path: str) -> None:
        opener = gzip.open if path.endswith(".gz") else open
        rows = []
        score_date = ""
        try:
            with opener(path, "rt", encoding="utf-8", newline="") as opened:
                fh: Any = opened
                first = fh.readline()
                if first.startswith("#"):
                    score_date = next((p.split(":", 1)[1] for p in first[1:].strip().split(",")
                                       if p.startswith("score_date:")), "")
                else:
                    fh = io.StringIO(first + fh.read())
                for row in csv.DictReader(fh):
                    try:
                        rows.append((row["cve"], float(row["epss"]), float(row["percentile"]), score_date, self.now))
                    except (KeyError, TypeError, ValueError):
                        self.result.warn("malformed EPSS row", path)
        except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
            self.result.warn("unreadable EPSS file", f"{path}: {exc}")
            return
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO epss (cve, epss, percentile, score_date, imported_at)"
                                  " VALUES (?,?,?,?,?)", rows)
        self.result.epss += len(rows)

    def finish(self) -> ImportResult:
        self.flush()
        r = self.result
        r.seconds = time.perf_counter() - self._t0
        with self.conn:
            self.conn.execute("UPDATE advisory_imports SET finished_at=?, records=?, inserted=?, updated=?,"
                              " unchanged=?, skipped=?, warnings=? WHERE id=?",
                              [dbm.now(), r.records, r.inserted, r.updated, r.unchanged, r.skipped,
                               dbm.dumps({"counts": dict(r.warnings), "examples": r.examples}) if r.warnings else None,
                               r.import_id])
        return r


def zlib_error():
    import zlib

    return zlib.error


def import_paths(database, paths: Iterable[str], kind: str = "osv") -> ImportResult:
    paths = list(paths)
    imp = Importer(database, source=" ".join(paths), kind=kind)
    for p in paths:
        imp.add_path(p)
    return imp.finish()


def import_records(database, records: Iterable[dict], source: str = "<records>") -> ImportResult:
    """Records already in memory (tests, benchmarks, converters of other vendor formats)."""
    imp = Importer(database, source=source)
    for rec in records:
        imp.add_record(rec, source)
    return imp.finish()
