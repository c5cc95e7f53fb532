"""Does an installed version fall in an advisory's affected ranges? OSV semantics, any version scheme.

`affected_by()` evaluates one OSV `affected` entry: `ECOSYSTEM`/`SEMVER` ranges (events sorted by the
ecosystem's own order, with `introduced`, `fixed`, `last_affected` and `limit`) and the explicit
`versions` list. `Matcher` looks candidates up by (ecosystem, release, name) in the store and caches
both the parsed advisory rows and the per-(package, version) answers, since a thousand images share
most of their packages.

A version or event that its scheme cannot read makes that range unusable: it is skipped and counted,
never compared by some looser rule.

An installed version may itself be a range, when the inventory could not pin it (a library found by
its classes: '>=1.2.5', '>=4.3.0, <5.0.0', see analyzers/inventory/_classprints.py). Such a version is
matched conservatively: an advisory whose affected versions overlap the range is a hit; when the whole
range lies inside one affected interval it is affected for certain, otherwise the hit is marked
`possible` ("possibly affected"), never dropped.
"""
from __future__ import annotations

import functools
import json
import re
from collections import Counter
from dataclasses import dataclass, field

from .ecosystems import SCHEME_OF
from .versions import InvalidVersion, parse

_KIND_ORDER = {"introduced": 0, "fixed": 1, "last_affected": 2, "limit": 3}


@dataclass(frozen=True)
class RangeHit:
    fixed: str | None  # the first fixed version above the installed one, None when unfixed
    why: str  # the range (or 'listed in versions') that matched, as text
    possible: bool = False  # the installed version is a range that only overlaps the affected versions


# an installed version known only as a range: '>=1.2.5' or '>=4.3.0, <5.0.0' (upper bound excluded)
_VERSION_RANGE = re.compile(r"^>=\s*([^\s,<>=]+)(?:\s*,\s*<\s*([^\s,<>=]+))?$")


def version_range(version: str) -> tuple[str, str | None] | None:
    """(lowest, first version above) of an installed version written as a range, else None."""
    m = _VERSION_RANGE.match(version) if version[:2] == ">=" else None
    return (m.group(1), m.group(2)) if m else None


_LISTED = RangeHit(None, "listed in versions")


def _sorted_events(scheme: str, events: list[dict]) -> list[tuple]:
    out = []
    for e in events:
        kind, value = next(iter(e.items()))
        if kind == "introduced" and value == "0":
            out.append(((0, 0), 0, kind, value))  # '0' is below every version of every scheme
        else:
            out.append(((1, parse(scheme, value)), _KIND_ORDER[kind], kind, value))
    out.sort(key=lambda x: (x[0], x[1]))
    return out


def compile_range(scheme: str, events: list[dict]) -> tuple:
    """A range's events parsed and sorted once, as (bound or None, kind order, text) triples, with its
    last_affected values for the text of a hit. Raises InvalidVersion (or TypeError) as the walk would."""
    ordered = tuple((key[1] if key[0] else None, order, value) for key, order, _kind, value in
                    _sorted_events(scheme, events))
    return ordered, tuple(e["last_affected"] for e in events if "last_affected" in e)


@functools.lru_cache(maxsize=65536)
def _hit(introduced: str, fixed: str | None, last: tuple) -> RangeHit:
    # the same few (introduced, fixed) texts recur for every installed version a range covers
    closing = f"fixed {fixed}" if fixed else "no fixed version above it"
    if last and not fixed:
        closing = "last_affected " + ", ".join(last)
    return RangeHit(fixed, f"introduced {introduced}, {closing}")


def _walk(installed, compiled: tuple) -> RangeHit | None:
    """OSV's evaluation: walk the sorted events; introduced opens, fixed/limit close at the version,
    last_affected closes after it. May raise TypeError when a scheme's objects do not compare."""
    ordered, last = compiled
    vulnerable = False
    fixed = introduced = None
    for at, kind, value in ordered:
        if kind == 0:  # introduced
            if at is None or installed >= at:
                vulnerable, fixed, introduced = True, None, value
        elif kind == 2:  # last_affected
            if installed > at:
                vulnerable = False
        elif installed >= at:  # fixed, limit
            vulnerable = False
        elif vulnerable and fixed is None and kind == 1:
            fixed = value
    if not vulnerable:
        return None
    return _hit(introduced, fixed, last)


def _overlap(low, high, compiled: tuple) -> tuple[RangeHit, bool] | None:
    """(hit, whole) when versions in [low, high) (high None: unbounded) fall in a compiled range; whole:
    every version of it does. Affected intervals open at `introduced` events, so they overlap the span
    when `low` is affected or an introduced event inside the span is."""
    ordered, _last = compiled
    hit = _walk(low, compiled)
    inside = [(at, kind) for at, kind, _ in ordered if at is not None and at > low and (high is None or at < high)]
    if hit is not None:
        # certain when no fixed, limit or last_affected event closes the interval inside the span
        closing = [at for at, kind, _ in ordered if at is not None and kind != 0
                   and (at > low or (kind == 2 and at == low)) and (high is None or at < high)]
        return hit, not closing
    for at, kind in inside:
        if kind == 0:
            hit = _walk(at, compiled)
            if hit is not None:
                return hit, False
    return None


def _rule_hits(compiled: tuple, test, warnings: Counter | None, record: str):
    """The truthy results of test(rule) for each compiled range, lazily (callers stop at the first);
    the warning of a range that could not be read, or whose versions do not compare, is counted instead
    (two parsed objects that do not compare: a scheme bug, never a guess)."""
    for rule in compiled:
        if rule.__class__ is str:
            if warnings is not None:
                warnings[rule] += 1
            continue
        try:
            if rule is None:
                raise TypeError
            found = test(rule)
        except TypeError:
            if warnings is not None:
                warnings[f"advisory range skipped: incomparable versions in {record}"] += 1
            continue
        if found:
            yield found


def _range_hit(low, high, version: str, compiled: tuple, versions, scheme: str, warnings: Counter | None,
               record: str) -> RangeHit | None:
    for hit, whole in _rule_hits(compiled, lambda rule: _overlap(low, high, rule), warnings, record):
        if whole:
            return RangeHit(hit.fixed, f"{hit.why}; all of {version}")
        return RangeHit(hit.fixed, f"{hit.why}; overlaps {version} (exact version unknown)", True)
    for listed in sorted(versions or ()):
        try:
            v = parse(scheme, listed)
            if v >= low and (high is None or v < high):
                return RangeHit(None, f"listed in versions ({listed}); overlaps {version} (exact version unknown)",
                                True)
        except (InvalidVersion, TypeError):
            continue
    return None


def compile_ranges(scheme: str, ranges: list[dict] | None) -> tuple:
    """Each range compiled, or what its use is counted as: the warning of a range that cannot be read,
    None for one whose versions do not compare (worded with the record that uses it)."""
    out: list = []
    for r in ranges or ():
        try:
            out.append(compile_range(scheme, r["events"]))
        except InvalidVersion as exc:
            out.append(f"advisory range skipped: {exc}")
        except TypeError:
            out.append(None)
    return tuple(out)


def _affected(installed, version: str, compiled: tuple, versions, warnings: Counter | None,
              record: str) -> RangeHit | None:
    for hit in _rule_hits(compiled, lambda rule: _walk(installed, rule), warnings, record):
        return hit
    if versions and version in versions:
        return _LISTED
    return None


def affected_by(scheme: str, version: str, ranges: list[dict] | None, versions: list[str] | None,
                warnings: Counter | None = None, record: str = "") -> RangeHit | None:
    """The first way this `affected` entry covers `version`, or None. An installed version its scheme
    cannot read is still looked up, by string, in the exact `versions` list (ranges give the fixed
    version, so they are tried first when they can be); InvalidVersion is raised only when it is not
    listed (the caller counts it once per package)."""
    try:
        installed = parse(scheme, version)
    except InvalidVersion:
        if versions and version in versions:
            return _LISTED
        raise
    return _affected(installed, version, compile_ranges(scheme, ranges), versions, warnings, record)


@dataclass(frozen=True)
class Candidate:
    advisory_id: str
    raw_ecosystem: str
    raw_name: str
    ranges: list | None
    versions: frozenset | None
    severity: str | None
    compiled: tuple = field(default=(), compare=False)  # compile_ranges(ranges): parsed and sorted once, however many versions ask


@dataclass(frozen=True)
class Match:
    candidate: Candidate
    hit: RangeHit


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple
    cves: tuple
    summary: str
    details: str
    published: str | None
    modified: str
    severity: str | None
    cvss_score: float | None
    cvss_vector: str | None
    database_severity: str | None
    source_file: str
    source_kind: str


_ADVISORY_SQL = ("SELECT id, aliases, upstream, cves, summary, details, published, modified, severity, cvss_score,"
                 " cvss_vector, database_severity, source_file, source_kind FROM advisories")


def _advisory(row) -> Advisory:
    aliases = tuple(json.loads(row[1]) if row[1] else ()) + tuple(json.loads(row[2]) if row[2] else ())
    return Advisory(row[0], aliases, tuple(json.loads(row[3]) if row[3] else ()), row[4] or "", row[5] or "",
                    row[6], row[7] or "", row[8], row[9], row[10], row[11], row[12] or "", row[13] or "")


class Matcher:
    """Looks packages up in the advisory store. One instance per scan or per rematch run."""

    def __init__(self, conn):
        self.conn = conn
        self.warnings: Counter = Counter()
        self._candidates: dict[tuple, list[Candidate]] = {}
        self._answers: dict[tuple, list[Match]] = {}
        self._advisories: dict[str, Advisory] = {}
        self._pending: set[str] = set()  # matched records not loaded yet
        self._ranges: dict[tuple, tuple] = {}
        self._versions: dict[str, frozenset] = {}
        self._kev: dict[str, bool] = {}
        self._epss: dict[str, float | None] = {}
        self._has_kev = self._count("kev") > 0
        self._has_epss = self._count("epss") > 0
        self._has_nvd = self._count("nvd_cves") > 0
        self._aliased: dict[frozenset, list[tuple]] = {}
        self._nvd: dict[str, tuple | None] = {}
        self._covers: dict[tuple, bool] = {}
        self._advisory_counts: dict[tuple, int] = {}

    @property
    def has_kev(self) -> bool:
        """False when no KEV catalogue was imported: 'not in KEV' then means 'unknown', not 'no'."""
        return self._has_kev

    @property
    def has_epss(self) -> bool:
        return self._has_epss

    def advisory_count(self, ecosystem: str, release: str) -> int:
        """How many advisories the store holds for an ecosystem and release (coverage)."""
        key = (ecosystem, release)
        got = self._advisory_counts.get(key)
        if got is None:
            got = self._advisory_counts[key] = self.conn.execute(
                "SELECT COUNT(DISTINCT advisory_id) FROM advisory_affected WHERE ecosystem = ? AND release = ?",
                key).fetchone()[0]
        return got

    def aliased_severity(self, names, exclude=()) -> tuple[str, float | None, str | None, str] | None:
        """(level, score, vector, record id) of the best-rated other record in the store that names one of
        `names` (GHSA <-> PYSEC <-> CVE): a scored record first, the highest score among them."""
        key = frozenset(names)
        rows = self._aliased.get(key)
        if rows is None:
            wanted = sorted(key)[:200]
            if not wanted:
                return None
            marks = ",".join("?" * len(wanted))
            rows = self._aliased[key] = self.conn.execute(
                "SELECT id, severity, cvss_score, cvss_vector FROM advisories WHERE withdrawn IS NULL"
                f" AND severity IS NOT NULL AND (id IN ({marks}) OR id IN"
                f" (SELECT advisory_id FROM advisory_aliases WHERE alias IN ({marks})))",
                wanted + wanted).fetchall()
        usable = [r for r in rows if r[0] not in exclude]
        if not usable:
            return None
        best = min(usable, key=lambda r: (r[2] is None, -(r[2] or 0), r[0]))
        return best[1], best[2], best[3], best[0]

    def nvd_severity(self, cves) -> tuple[str, float | None, str | None, str] | None:
        """(level, score, vector, CVE) of the highest NVD score among these CVEs, or None."""
        if not self._has_nvd:
            return None
        found = []
        for cve in cves:
            if cve not in self._nvd:
                row = self.conn.execute("SELECT severity, cvss_score, cvss_vector FROM nvd_cves WHERE cve = ?"
                                        " AND severity IS NOT NULL", [cve]).fetchone()
                self._nvd[cve] = tuple(row) + (cve,) if row else None
            cached = self._nvd[cve]
            if cached:
                found.append(cached)
        return max(found, key=lambda r: (r[1] or 0, r[3])) if found else None

    def _count(self, table: str) -> int:
        try:
            return self.conn.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM [{table}] LIMIT 1)").fetchone()[0]
        except Exception:
            return 0

    def covers(self, ecosystem: str, release: str) -> bool:
        """Whether the store holds any advisory for this ecosystem and release."""
        key = (ecosystem, release)
        got = self._covers.get(key)
        if got is None:
            got = self._covers[key] = self.conn.execute(
                "SELECT 1 FROM advisory_affected WHERE ecosystem = ? AND release = ? LIMIT 1",
                [ecosystem, release]).fetchone() is not None
        return got

    def candidates(self, ecosystem: str, release: str, name: str) -> list[Candidate]:
        key = (ecosystem, release, name)
        got = self._candidates.get(key)
        if got is None:
            got = []
            for aid, raw_eco, raw_name, ranges, versions, sev in self.conn.execute(
                    "SELECT advisory_id, raw_ecosystem, raw_name, ranges, versions, severity FROM advisory_affected"
                    " WHERE ecosystem = ? AND release = ? AND name = ?", key):
                got.append(self._candidate(ecosystem, aid, raw_eco, raw_name, ranges, versions, sev))
            self._candidates[key] = got
        return got

    def _candidate(self, ecosystem, aid, raw_eco, raw_name, ranges, versions, severity) -> Candidate:
        # advisories repeat the same ranges (a distribution's fixed version, a library's release line):
        # each text is read and compiled once
        scheme = SCHEME_OF.get(ecosystem)
        parsed = self._ranges.get((scheme, ranges))
        if parsed is None:
            loaded = json.loads(ranges) if ranges else None
            parsed = self._ranges[(scheme, ranges)] = (loaded, compile_ranges(scheme, loaded) if scheme else ())
        listed = self._versions.get(versions)
        if listed is None and versions:
            listed = self._versions[versions] = frozenset(json.loads(versions))
        return Candidate(aid, raw_eco, raw_name, parsed[0], listed, severity, parsed[1])

    def has_candidates(self, key: tuple) -> bool:
        got = self._candidates.get(key)
        return bool(got) if got is not None else bool(self.candidates(*key))

    def prefetch(self, keys) -> None:
        """Loads the candidates of many (ecosystem, release, name) keys in a few queries (rematch)."""
        wanted = [k for k in set(keys) if k not in self._candidates]
        for k in wanted:
            self._candidates[k] = []
        by_eco: dict[tuple, list[str]] = {}
        for eco, rel, name in wanted:
            by_eco.setdefault((eco, rel), []).append(name)
        for (eco, rel), names in by_eco.items():
            for i in range(0, len(names), 500):
                chunk = names[i:i + 500]
                for aid, raw_eco, raw_name, ranges, versions, sev, name in self.conn.execute(
                        "SELECT advisory_id, raw_ecosystem, raw_name, ranges, versions, severity, name"
                        f" FROM advisory_affected WHERE ecosystem = ? AND release = ? AND name IN ({','.join('?' * len(chunk))})",
                        [eco, rel, *chunk]):
                    self._candidates[(eco, rel, name)].append(
                        self._candidate(eco, aid, raw_eco, raw_name, ranges, versions, sev))

    def match(self, ecosystem: str, release: str, name: str, version: str) -> list[Match]:
        key = (ecosystem, release, name, version)
        got = self._answers.get(key)
        if got is not None:
            return got
        got = []
        cands = self.candidates(ecosystem, release, name)
        span = version_range(version) if cands else None
        if span is not None:
            got = self._match_range(ecosystem, name, version, span, cands)
            cands = []
        if cands:
            scheme = SCHEME_OF[ecosystem]
            try:
                installed = parse(scheme, version)
            except InvalidVersion:
                # the records' exact `versions` lists still apply: they compare by string, not by order
                listed = [c for c in cands if c.versions and version in c.versions]
                for c in listed:
                    got.append(Match(c, _LISTED))
                    if c.advisory_id not in self._advisories:
                        self._pending.add(c.advisory_id)
                shown = version if len(version) <= 60 else f"{version[:40]}… ({len(version):,} characters)"
                self.warnings[f"{ecosystem} package {name}: version {shown!r} is not a valid {scheme} version;"
                              " checked against listed versions only, not ranges"] += 1
                cands = []
            for c in cands:
                hit = _affected(installed, version, c.compiled, c.versions, self.warnings, c.advisory_id)
                if hit:
                    got.append(Match(c, hit))
                    if c.advisory_id not in self._advisories:
                        self._pending.add(c.advisory_id)
        self._answers[key] = got
        return got

    def _match_range(self, ecosystem: str, name: str, version: str, span: tuple[str, str | None],
                     cands: list[Candidate]) -> list[Match]:
        scheme = SCHEME_OF[ecosystem]
        try:
            low, high = parse(scheme, span[0]), parse(scheme, span[1]) if span[1] else None
        except InvalidVersion:
            self.warnings[f"{ecosystem} package {name}: version range {version!r} is not of valid {scheme}"
                          " versions; not checked"] += 1
            return []
        got = []
        for c in cands:
            hit = _range_hit(low, high, version, c.compiled, c.versions, scheme, self.warnings, c.advisory_id)
            if hit:
                got.append(Match(c, hit))
                if c.advisory_id not in self._advisories:
                    self._pending.add(c.advisory_id)
        return got

    def advisory(self, aid: str) -> Advisory:
        adv = self._advisories.get(aid)
        if adv is None:
            # every record matched since the last load comes in the same query: the findings ask for them next
            wanted = sorted(a for a in self._pending if a not in self._advisories)  # (a set minus dict keys walks every key)
            self._pending.clear()
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                for row in self.conn.execute(_ADVISORY_SQL + f" WHERE id IN ({','.join('?' * len(chunk))})", chunk):
                    self._advisories[row[0]] = _advisory(row)
            adv = self._advisories.get(aid)
        if adv is None:
            row = self.conn.execute(_ADVISORY_SQL + " WHERE id = ?", [aid]).fetchone()
            adv = self._advisories[aid] = _advisory(row)
        return adv

    def kev(self, cve: str) -> bool:
        if not self._has_kev:
            return False
        got = self._kev.get(cve)
        if got is None:
            got = self._kev[cve] = self.conn.execute("SELECT 1 FROM kev WHERE cve = ?", [cve]).fetchone() is not None
        return got

    def epss(self, cve: str) -> float | None:
        if not self._has_epss:
            return None
        if cve not in self._epss:
            row = self.conn.execute("SELECT epss FROM epss WHERE cve = ?", [cve]).fetchone()
            self._epss[cve] = row[0] if row else None
        return self._epss[cve]
