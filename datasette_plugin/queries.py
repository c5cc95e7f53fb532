"""What the pages and exports read: SQL over ingest's read model (stowaway.ingest.readmodel), never
counts or "current scan" of its own."""
from __future__ import annotations

import json
import sqlite3

from datasette.database import QueryInterrupted

from stowaway.ingest.model import RISK_TYPES
from stowaway.ingest.readmodel import FAILING

IMAGE_SORTS = {
    "worst": "critical DESC, high DESC, vulnerabilities DESC",
    "reference": "reference", "size": "size DESC", "created": "created DESC", "last_scan": "last_scan DESC",
    "vulnerabilities": "vulnerabilities DESC", "secrets": "secrets DESC", "malicious_files": "malicious_files DESC",
    "unsafe_settings": "unsafe_settings DESC", "packages": "packages DESC",
}


async def rows(db, sql, params=None, limit_ms=None):
    result = await db.execute(sql, params or [], custom_time_limit=limit_ms)
    return [dict(r) for r in result.rows]


async def tables(db) -> set[str]:
    """Tables and views the database has."""
    return set(await db.table_names()) | set(await db.view_names())


async def src(db, view: str) -> str:
    return f"[{view}]"


# the registry host of an image's reference, by Docker's rule (a first path component with a dot or a
# colon, or localhost); '' when the reference names none (local archives and layouts, Docker Hub)
_HEAD = "substr(o.reference, 1, instr(o.reference, '/') - 1)"
REGISTRY_SQL = (f"(CASE WHEN instr(o.reference, '/') > 1 AND (instr({_HEAD}, '.') > 0 OR instr({_HEAD}, ':') > 0"
                f" OR {_HEAD} = 'localhost') THEN {_HEAD} ELSE '' END)")
# the image list's filters: name -> the SQL value it compares with
IMAGE_FILTERS = {"registry": REGISTRY_SQL, "repository": "o.repository", "os": "o.os",
                 "base": "coalesce(o.base_image, 'unknown')"}
BASE_VERDICTS = ("approved", "not approved", "unknown")


def image_where(latest_only=False, q="", filters=None, skip: str | None = None) -> tuple[str, dict]:
    """The WHERE clause (without the word) and parameters of the image list's filters; SKIP leaves one
    filter out (a facet counts its own values under every other filter)."""
    where, params = [], {}
    if latest_only:
        where.append("o.latest_version = 1")
    if q:
        where.append("o.reference LIKE :q")
        params["q"] = f"%{q}%"
    for name, value in (filters or {}).items():
        if name in IMAGE_FILTERS and name != skip and value is not None:
            if name == "registry" and value:  # a prefix LIKE first: the expression only for the rows it keeps
                where.append("o.reference LIKE :f_registry_like ESCAPE '\\'")
                params["f_registry_like"] = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
            where.append(f"{IMAGE_FILTERS[name]} = :f_{name}")
            params[f"f_{name}"] = value
    return " AND ".join(where), params


def registry_of(reference: str | None) -> str:
    """REGISTRY_SQL in Python: the registry host a reference (or repository) names, '' for none."""
    head, sep, _ = (reference or "").partition("/")
    return head if sep and head and ("." in head or ":" in head or head == "localhost") else ""


async def image_facets(db, latest_only=False, q="", filters=None, limit=30) -> dict[str, list[dict]]:
    """Per filter, its values with how many images each has under the other filters, most first."""
    out = {}
    for name, expr in IMAGE_FILTERS.items():
        clause, params = image_where(latest_only, q, filters, skip=name)
        where = f" WHERE {clause}" if clause else ""
        if name == "registry":
            # by repository (an index), the host read from each in Python: the SQL expression over every
            # row cost more than all the other facets together at 10,000 images
            got = await db.execute(f"SELECT o.repository, o.reference, COUNT(*) FROM image_overview o{where}"
                                   " GROUP BY o.repository", params)
            hosts: dict[str, int] = {}
            for repository, reference, n in got.rows:
                host = registry_of(repository if repository is not None else reference)
                hosts[host] = hosts.get(host, 0) + n
            ranked = sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[: int(limit) + 1]
            out[name] = [{"value": k, "count": v} for k, v in ranked]
            continue
        got = await db.execute(f"SELECT {expr} AS value, COUNT(*) AS n FROM image_overview o{where}"
                               f" GROUP BY value ORDER BY n DESC, value LIMIT {int(limit) + 1}", params)
        out[name] = [{"value": r[0], "count": r[1]} for r in got.rows]
    return out


async def images(db, latest_only=False, q="", sort="worst", page=1, page_size=100, filters=None):
    """(total, items) of the image list: ingest's image_list (image_overview's columns, counts per kind
    and severity), the same rows `stowaway images --format json` prints; FILTERS by IMAGE_FILTERS."""
    from stowaway.ingest.images import image_list

    clause, params = image_where(latest_only, q, filters)
    total = (await db.execute("SELECT COUNT(*) FROM image_overview o" + (f" WHERE {clause}" if clause else ""),
                              params)).rows[0][0]
    order = ", ".join(f"o.{term}" for term in IMAGE_SORTS.get(sort, IMAGE_SORTS["worst"]).split(", "))
    items = await db.execute_fn(lambda conn: image_list(conn, clause, params, f"{order}, o.reference, o.id",
                                                        page_size, (page - 1) * page_size))
    await _scan_states(db, items)
    return total, items


async def _scan_states(db, items: list[dict]) -> None:
    """Adds to each image its vulnerability coverage gaps (`not_checked`: the ecosystems of its current
    scan's `vulnerability_coverage` fact that were not checked), the risk types its current scan did not
    run (`not_run`: a scan with --risk, or the console's risk types), and its last scan attempt
    (`scan_state`: done, running or failed, with `scan_error`), both read from the scans tables."""
    if not items:
        return
    ids = json.dumps([i["id"] for i in items])
    facts = await rows(db, "SELECT s.image_id, f.value FROM scan_facts f JOIN scans s ON s.id = f.scan_id"
                           " JOIN images i ON i.id = s.image_id AND i.last_scan_id = s.id"
                           " WHERE f.name = 'vulnerability_coverage' AND s.image_id IN (SELECT value FROM json_each(:ids))",
                       {"ids": ids})
    coverage = {r["image_id"]: _loads(r["value"], []) for r in facts}
    current = await rows(db, "SELECT i.id AS image_id, s.risk_types FROM images i JOIN scans s ON s.id = i.last_scan_id"
                             " WHERE i.id IN (SELECT value FROM json_each(:ids))", {"ids": ids})
    ran = {r["image_id"]: _loads(r["risk_types"], "all") for r in current}
    last = await rows(db, "SELECT s.image_id, s.id, s.status, s.error, s.finished_at FROM scans s"
                          " WHERE s.id IN (SELECT MAX(id) FROM scans WHERE image_id IN (SELECT value FROM json_each(:ids))"
                          " GROUP BY image_id)", {"ids": ids})
    attempts = {r["image_id"]: r for r in last}
    for item in items:
        gaps = [c for c in coverage.get(item["id"], []) if isinstance(c, dict) and not c.get("checked", True)]
        item["not_checked"] = gaps
        item["not_checked_packages"] = sum(int(c.get("packages") or 0) for c in gaps)
        # the risk types the current scan did not run: their columns are "not checked", never a clean 0
        risks = ran.get(item["id"], "all")
        item["not_run"] = [r for r in RISK_TYPES if isinstance(risks, list) and r not in risks]
        attempt = attempts.get(item["id"]) or {}
        item["scan_state"] = attempt.get("status") or ("done" if item.get("scan_id") else "never scanned")
        item["scan_error"] = attempt.get("error") if attempt.get("status") == "failed" else None
        item["scan_attempt_at"] = attempt.get("finished_at")


async def find_image(db, ref: str):
    """An image by id, reference or digest; the newest scanned one when a reference has several."""
    if ref.isdigit():
        got = await rows(db, "SELECT * FROM images WHERE id = ?", [int(ref)])
    else:
        got = await rows(db, "SELECT * FROM images WHERE reference = ? OR manifest_digest = ? OR config_digest = ?"
                             " OR index_digest = ? ORDER BY last_scan_id IS NULL, last_scan_id DESC LIMIT 1",
                         [ref, ref, ref, ref])
    return got[0] if got else None


def _loads(text, default):
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


async def vulnerability(db, vuln_id: str) -> dict | None:
    """One vulnerability across every image's current scan, matched on its id or any alias."""
    source = await src(db, "vulnerabilities_view")
    order = f" ORDER BY v.severity_rank, v.image, v.package LIMIT {AFFECTED_SHOWN}"
    where, params = "v.vulnerability_id = :id", {"id": vuln_id}
    affected = await rows(db, f"SELECT v.* FROM {source} v WHERE {where}" + order, params)
    if not affected:  # an alias: slower (no index on aliases), so only when the id itself is unknown
        where = ("v.aliases LIKE :like AND EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(v.aliases)"
                 " THEN v.aliases ELSE '[]' END) j WHERE j.value = :id)")
        params = {"id": vuln_id, "like": f'%"{vuln_id}"%'}
        affected = await rows(db, f"SELECT v.* FROM {source} v WHERE {where}" + order, params)
    if not affected:
        return await _advisory(db, vuln_id)
    findings, images = (await db.execute(f"SELECT COUNT(*), COUNT(DISTINCT v.image_id) FROM {source} v"
                                         f" WHERE {where}", params)).rows[0]
    first = affected[0]
    best = lambda key: next((a[key] for a in affected if a.get(key) not in (None, "")), None)  # noqa: E731
    aliases = []
    for a in affected:
        for alias in _loads(a.get("aliases"), []):
            if alias not in aliases and alias != first["vulnerability_id"]:
                aliases.append(alias)
    details = (await rows(db, "SELECT * FROM vulnerability_details WHERE finding_id = ?", [first["id"]]) or [{}])[0]
    return {
        "id": first["vulnerability_id"], "aliases": aliases, "severity": first["severity"],
        "cvss_score": best("cvss_score"), "cvss_vector": best("cvss_vector"), "published": best("published"),
        "solution": best("solution"), "title": best("title"), "description": details.get("description"),
        # columns the vulnerability analyzers add when their feeds are imported
        "extra": {k: details[k] for k in EXTRA_DETAILS if details.get(k) not in (None, "")},
        "affected": affected,  # the worst AFFECTED_SHOWN
        "images": sorted({a["image"] for a in affected}),
        "finding_count": findings, "image_count": images,
    }


# a vulnerability's page lists this many affected findings, worst first (one CVE can be in every image of a
# registry); it says how many there are and links to the table of all of them
AFFECTED_SHOWN = 200


EXTRA_DETAILS = {"epss": "EPSS probability", "kev": "In CISA's known exploited list", "urgency": "Urgency"}


async def _advisory(db, vuln_id: str) -> dict | None:
    """A known advisory that affects no stored image: still worth a page (links from aliases land here)."""
    if "advisories" not in await db.table_names():
        return None
    try:
        got = await rows(db, "SELECT * FROM advisories WHERE id = :id OR id IN"
                             " (SELECT advisory_id FROM advisory_aliases WHERE alias = :id) LIMIT 1", {"id": vuln_id})
    except Exception:  # another shape of the advisory store than the one this reads
        return None
    if not got:
        return None
    a = got[0]
    aliases = [x for x in _loads(a.get("aliases"), []) if x != vuln_id]
    return {"id": vuln_id if vuln_id != a["id"] and vuln_id.startswith("CVE-") else a["id"], "aliases": aliases,
            "severity": a.get("severity") or "unknown", "cvss_score": a.get("cvss_score"),
            "cvss_vector": a.get("cvss_vector"), "published": a.get("published"), "solution": None,
            "title": a.get("summary"), "description": a.get("details"), "extra": {}, "affected": [], "images": [],
            "finding_count": 0, "image_count": 0, "record": a["id"]}


# --- dashboard (issue 17 item 4) ----------------------------------------------------------------

def registry_sql(column: str) -> str:
    """The registry host of a repository name, as Docker reads one: the first path component when it has a
    '.' or ':' or is localhost (`registry.example.com:5000/team/app`), else '' (no host: a local archive
    or layout, or Docker Hub's short names)."""
    head = f"substr({column}, 1, instr({column}, '/') - 1)"
    return (f"(CASE WHEN instr({column}, '/') > 0 AND (instr({head}, '.') > 0 OR instr({head}, ':') > 0"
            f" OR {head} = 'localhost') THEN {head} ELSE '' END)")


NO_REGISTRY = "(no registry host)"
TREND_BY = ("image", "registry")
TREND_SCANS = 300  # the trend's window: the last N finished scans of the filtered images
TREND_SERIES = 10  # lines drawn at most (the rest are named in the title)


def _sql_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class ImageFilter:
    """The dashboard's filters (registry, repository, latest only) over image_overview `o`, as a WHERE
    clause with parameters for the page's own queries and as a `_where` for the table links, which
    Datasette runs with its own SQL permission (literals quoted here: `_where` takes no parameters)."""

    def __init__(self, registry: str | None = None, repository: str | None = None, latest: bool = False):
        self.registry = registry if registry not in (None, "") else None
        self.repository = repository or None
        self.latest = bool(latest)

    @property
    def active(self) -> bool:
        return bool(self.registry is not None or self.repository or self.latest)

    def _terms(self, literal: bool):
        repo = "coalesce(o.repository, o.reference)"
        terms, params = [], {}
        if self.registry is not None:
            value = "" if self.registry == NO_REGISTRY else self.registry
            terms.append(f"{registry_sql(repo)} = " + (_sql_literal(value) if literal else ":f_registry"))
            params["f_registry"] = value
        if self.repository:
            terms.append(f"{repo} = " + (_sql_literal(self.repository) if literal else ":f_repository"))
            params["f_repository"] = self.repository
        if self.latest:
            terms.append("o.latest_version = 1")
        return terms, params

    def where(self) -> tuple[str, dict]:
        terms, params = self._terms(False)
        return (" AND ".join(terms) or "1"), params

    def table_where(self) -> str | None:
        """`image_id IN (...)` for a report table's `_where`, or None without filters."""
        terms, _ = self._terms(True)
        if not terms:
            return None
        return f"image_id IN (SELECT o.id FROM image_overview o WHERE {' AND '.join(terms)})"

    def args(self) -> dict:
        """The page's own query arguments for these filters (links, the form, exports)."""
        return {"registry": self.registry, "repository": self.repository, "latest": "1" if self.latest else None}


_DASHBOARD_CACHE: dict[tuple, dict] = {}
_DASHBOARD_CACHE_SIZE = 32


def _file_state(db) -> tuple | None:
    """What changes whenever the database does: size and mtime of its file and of its WAL (a write by
    any process, a checkpoint). None for a database without a file (nothing is cached for it)."""
    import os

    path = getattr(db, "path", None)
    if not path or getattr(db, "is_memory", False):
        return None
    state = []
    for name in (path, path + "-wal"):
        try:
            st = os.stat(name)
            state.append((st.st_size, st.st_mtime_ns))
        except OSError:
            state.append(None)
    return (path, *state)


async def dashboard(db, flt: ImageFilter | None = None, trend_by: str = "image") -> dict:
    """The dashboard's numbers, computed once per state of the database file (a page people keep open
    is reloaded far more often than a scan writes) and per filter; see _dashboard."""
    flt = flt or ImageFilter()
    state = _file_state(db)
    key = (state, flt.registry, flt.repository, flt.latest, trend_by) if state else None
    if key is not None and key in _DASHBOARD_CACHE:
        return _DASHBOARD_CACHE[key]
    data = await _dashboard(db, flt, trend_by)
    if key is not None and not data.get("too_slow") and _file_state(db) == state:  # unchanged while read
        while len(_DASHBOARD_CACHE) >= _DASHBOARD_CACHE_SIZE:
            _DASHBOARD_CACHE.pop(next(iter(_DASHBOARD_CACHE)))
        _DASHBOARD_CACHE[key] = data
    return data


async def _dashboard(db, flt: ImageFilter, trend_by: str) -> dict:
    """Headline numbers, the worst images, the top vulnerable packages and the trend, for the images the
    filters select. Counts come from the read model's materialized report tables (image_overview and
    vulnerabilities_view), never from a scan over every finding."""
    where, params = flt.where()
    overview = await src(db, "image_overview")
    vulns = await src(db, "vulnerabilities_view")
    head = (await rows(db, "SELECT COUNT(*) AS images, coalesce(SUM(o.critical), 0) AS critical,"
                           " coalesce(SUM(o.secrets), 0) AS secrets, coalesce(SUM(o.malicious_files), 0) AS malware,"
                           " coalesce(SUM(o.base_image = 'not approved'), 0) AS not_approved_base,"
                           " coalesce(SUM(o.base_image IS NULL AND o.scan_id IS NOT NULL), 0) AS base_not_checked,"
                           " coalesce(SUM(o.vulnerabilities), 0) AS vulnerabilities"
                           f" FROM {overview} o WHERE {where}", params))[0]
    per_image = await rows(db, "SELECT o.id AS image_id, o.reference AS image, o.failing_critical AS critical,"
                               " o.failing_high AS high, o.failing_medium AS medium, o.failing_low AS low,"
                               " o.failing_negligible AS negligible, o.failing_unknown AS unknown"
                               f" FROM {overview} o WHERE {where}"
                               " ORDER BY o.failing_critical DESC, o.failing_high DESC, o.failing_medium DESC,"
                               " o.failing_low DESC, o.reference LIMIT 40", params)
    # a filter that selects every image narrows nothing: the finding-level queries run unscoped (by their indexes)
    every = (await db.execute(f"SELECT COUNT(*) FROM {overview}")).rows[0][0]
    narrowing = flt.active and head["images"] < every
    scoped = f" AND v.image_id IN (SELECT o.id FROM {overview} o WHERE {where})" if narrowing else ""
    head["fixable"] = None
    top, top_packages = [], []
    kept = None if narrowing else await _kept_vulnerability_counts(db)
    if kept is not None:  # every image: the read model's kept counts, not a pass over every row
        head["fixable"], top, top_packages = kept
    else:
        try:  # over a large filtered set these pass over many rows: past the time limit they say so, not fail
            head["fixable"] = await _fixable(db, narrowing, where, params)
            # the 20 packages with most vulnerabilities (read from the (package, ecosystem, suppressed, image_id)
            # index alone), then their split by severity (20 packages' rows by the package index)
            top = await rows(db, f"SELECT v.package, v.ecosystem, COUNT(*) AS n FROM {vulns} v"
                                 f" WHERE v.suppressed = 0 AND v.package IS NOT NULL{scoped}"
                                 " GROUP BY v.package, v.ecosystem ORDER BY n DESC, v.package LIMIT 20", params)
            if top:
                top_packages = await rows(db, f"SELECT v.package, v.ecosystem, v.severity, COUNT(*) AS n FROM {vulns} v"
                                              " WHERE v.package IN (SELECT value FROM json_each(:top_names))"
                                              f" AND v.suppressed = 0{scoped} GROUP BY v.package, v.ecosystem,"
                                              " v.severity",
                                          {**params, "top_names": json.dumps(sorted({t["package"] for t in top}))})
                wanted = {(t["package"], t["ecosystem"]) for t in top}
                top_packages = [r for r in top_packages if (r["package"], r["ecosystem"]) in wanted]
        except QueryInterrupted:
            top_packages = None
    return {"headline": head, "per_image": per_image, "images_total": head["images"], "top_packages": top_packages or [],
            "too_slow": top_packages is None,
            "trend": await trend(db, flt, trend_by), "trend_by": trend_by}


async def _kept_vulnerability_counts(db) -> tuple[int, list[dict], list[dict]] | None:
    """(fixable, top 20 packages, their split by severity) over every image from the read model's kept
    counts (readmodel.COUNTED_ONLY: per severity among the unsuppressed rows), the same numbers and order
    as the queries below; None when the database keeps no such counts."""
    try:
        step = (await db.execute("SELECT version FROM schema_parts WHERE name = 'report_facet_counts'")).rows
        if not step or step[0][0] < 2:  # counted before these counts were kept (served as it is, read-only)
            return None
        got = (await db.execute(
            "SELECT filter, filter_value, facet, value, n FROM report_facet_counts WHERE tbl = 'vulnerabilities_view'"
            " AND ((filter = 'severity&suppressed=0' AND facet = 'top:package') OR (filter = 'fix_available&suppressed=0'"
            " AND filter_value = 'yes' AND facet = 'severity:severity')) AND n > 0")).rows
    except sqlite3.OperationalError:  # no kept counts at all
        return None
    fixable = sum(r[4] for r in got if r[2] == "severity:severity")
    totals: dict[tuple, int] = {}
    split = []
    for _filter, severity, facet, value, n in got:
        if facet != "top:package":
            continue
        package, ecosystem = json.loads(value)
        totals[(package, ecosystem)] = totals.get((package, ecosystem), 0) + n
        split.append({"package": package, "ecosystem": ecosystem, "severity": severity, "n": n})
    top = [{"package": p, "ecosystem": e, "n": n}
           for (p, e), n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0][0]))[:20]]
    wanted = {(t["package"], t["ecosystem"]) for t in top}
    split.sort(key=lambda r: (r["package"], r["ecosystem"] or "", r["severity"]))  # the GROUP BY's order
    return fixable, top, [r for r in split if (r["package"], r["ecosystem"]) in wanted]


async def _fixable(db, narrowing: bool, where: str, params: dict) -> int:
    """Unsuppressed vulnerabilities with a fixed version. Over every image: the fixed_version index's
    count less the suppressed ones (few, found by the findings' suppressed index: `+f.kind` keeps the
    planner off the kind index, which ANALYZE prefers while nothing is suppressed), never a pass over
    every row; for filtered images, their rows by the image_id index."""
    vulns = await src(db, "vulnerabilities_view")
    if narrowing:
        overview = await src(db, "image_overview")
        return (await db.execute(f"SELECT COUNT(*) FROM {vulns} v WHERE v.image_id IN (SELECT o.id FROM {overview} o"
                                 f" WHERE {where}) AND v.suppressed = 0 AND v.fixed_version > ''", params)).rows[0][0]
    with_fix = (await db.execute(f"SELECT COUNT(*) FROM {vulns} WHERE fixed_version > ''")).rows[0][0]
    suppressed = (await db.execute(
        "SELECT COUNT(*) FROM findings f JOIN images i ON i.id = f.image_id AND i.last_scan_id = f.scan_id"
        " JOIN vulnerability_details d ON d.finding_id = f.id WHERE f.suppressed > 0 AND +f.kind = 'vulnerability'"
        " AND d.fixed_version > ''")).rows[0][0]
    return with_fix - suppressed


async def trend(db, flt: ImageFilter, by: str = "image") -> dict:
    """Failing, unsuppressed findings over time, one series per image (each of its scans a point) or per
    registry (at each scan, the sum over the registry's images of what each one's latest scan so far
    recorded), over the last TREND_SCANS finished scans of the filtered images."""
    where, params = flt.where()
    overview = await src(db, "image_overview")
    repo = "coalesce(i.repository, i.reference)"
    window = await rows(db, f"SELECT s.id AS scan_id, s.image_id, s.finished_at, i.reference AS image,"
                            f" {registry_sql(repo)} AS registry FROM scans s JOIN images i ON i.id = s.image_id"
                            f" WHERE s.status = 'done' AND s.image_id IN (SELECT o.id FROM {overview} o WHERE {where})"
                            f" ORDER BY s.id DESC LIMIT {TREND_SCANS}", params)
    window.sort(key=lambda r: r["scan_id"])
    if not window:
        return {"by": by, "series": [], "scans": 0, "dropped": 0}
    first_in_window: dict[int, int] = {}
    for r in window:
        first_in_window.setdefault(r["image_id"], r["scan_id"])
    before: dict[int, int] = {}
    if by == "registry":  # where each rescanned image stood before the window
        got = await rows(db, "SELECT json_extract(j.value, '$[0]') AS image_id, (SELECT MAX(s.id) FROM scans s"
                             " WHERE s.image_id = json_extract(j.value, '$[0]') AND s.status = 'done'"
                             " AND s.id < json_extract(j.value, '$[1]')) AS scan_id FROM json_each(:first) j",
                         {"first": json.dumps(list(first_in_window.items()))})
        before = {r["image_id"]: r["scan_id"] for r in got if r["scan_id"] is not None}
    scan_ids = [r["scan_id"] for r in window] + list(before.values())
    counted = await rows(db, "SELECT f.scan_id, COUNT(*) AS n, SUM(f.severity_rank = 0) AS critical,"
                             " SUM(f.severity_rank = 1) AS high FROM findings f"
                             " WHERE f.scan_id IN (SELECT value FROM json_each(:ids)) AND f.suppressed = 0"
                             f" AND {FAILING} GROUP BY f.scan_id", {"ids": json.dumps(scan_ids)})
    counts = {r["scan_id"]: r for r in counted}
    zero = {"n": 0, "critical": 0, "high": 0}
    series: dict[str, dict] = {}
    if by == "registry":
        # the registries' standing before the window: every filtered image's current count, minus the
        # images rescanned inside it, plus those images' counts before the window
        base = await rows(db, f"SELECT {registry_sql('coalesce(o.repository, o.reference)')} AS registry,"
                              " o.id AS image_id, o.failing_critical + o.failing_high + o.failing_medium + o.failing_low"
                              " + o.failing_negligible + o.failing_unknown AS n, o.failing_critical AS critical,"
                              f" o.failing_high AS high FROM {overview} o WHERE {where} AND o.scan_id IS NOT NULL",
                          params)
        standing: dict[str, dict[int, dict]] = {}
        for b in base:
            if b["image_id"] in first_in_window:
                prior = before.get(b["image_id"])
                b = {**b, **(counts.get(prior, zero) if prior else zero)}
            standing.setdefault(b["registry"], {})[b["image_id"]] = b
        keys = ("n", "critical", "high")
        totals = {reg: {k: sum(int(c[k] or 0) for c in images.values()) for k in keys}
                  for reg, images in standing.items()}
        for r in window:  # each scan replaces its image's previous count in its registry's running total
            name = r["registry"] or NO_REGISTRY
            images = standing.setdefault(r["registry"], {})
            total = totals.setdefault(r["registry"], dict.fromkeys(keys, 0))
            now = counts.get(r["scan_id"], zero)
            was = images.get(r["image_id"], zero)
            for k in keys:
                total[k] += int(now[k] or 0) - int(was[k] or 0)
            images[r["image_id"]] = now
            total = dict(total)
            s = series.setdefault(name, {"name": name, "points": [], "registry": name})
            s["points"].append({"x": _when(r["finished_at"]), "scan_id": r["scan_id"], "image": r["image"],
                                "image_id": r["image_id"], **total})
    else:
        for r in window:
            s = series.setdefault(r["image"], {"name": r["image"], "points": [], "image_id": r["image_id"]})
            c = counts.get(r["scan_id"], zero)
            s["points"].append({"x": _when(r["finished_at"]), "scan_id": r["scan_id"], "image": r["image"],
                                "image_id": r["image_id"], "n": c["n"], "critical": c["critical"] or 0,
                                "high": c["high"] or 0})
    ranked = sorted(series.values(), key=lambda s: (-len(s["points"]), -s["points"][-1]["n"], s["name"]))
    return {"by": by, "series": ranked[:TREND_SERIES], "scans": len(window), "dropped": max(0, len(ranked) - TREND_SERIES)}


def _when(stamp) -> str:
    """An ISO timestamp as plotly's date axis reads it (no 'T', no zone; all stored times are UTC)."""
    return (stamp or "").replace("T", " ").rstrip("Z")[:19]


async def filter_choices(db) -> dict:
    """The registries and repositories the dashboard's filters offer (at most 500 repositories)."""
    overview = await src(db, "image_overview")
    repo = "coalesce(o.repository, o.reference)"
    registries = [r[0] or NO_REGISTRY for r in (await db.execute(
        f"SELECT DISTINCT {registry_sql(repo)} AS r FROM {overview} o ORDER BY r")).rows]
    repositories = [r[0] for r in (await db.execute(
        f"SELECT DISTINCT {repo} AS r FROM {overview} o ORDER BY r LIMIT 500")).rows]
    return {"registries": registries, "repositories": repositories}
