"""The findings store: the one place that writes a scan's packages, findings and facts, and the
one owner of suppressions.

Everything that writes findings goes through here -- the scan writer and rescan (`write_results`),
rematch (`replace_vulnerabilities`), Datasette's ignore action and `stowaway ignore` (suppressions) --
so a decision about a finding is made once and holds on every surface.

Fingerprints. A finding is identified across scans by image repository + kind + rule or advisory id +
package name (+ the path, for kinds that are about a file, and the target, for a check that is about
an account or a file). Not the package version, the layer, the title or the status: an upgrade scan of
the same repository that still has CVE-X in log4j-core is the same finding (a vulnerable jar's path
names its version, so vulnerabilities leave the path out).

Suppressions live in their own table, keyed by those parts rather than by one finding's row: `rule`
(an advisory id or any alias of it, a check, secret or YARA rule id), optionally `kind`, `package`
(a name) and `path` (a glob, matched against the finding's path or a check's target), and a scope:
`repository` and `tag` (globs; both empty = everywhere; an empty tag = every tag of the repository).
They have a reason, an author, a creation time and an optional expiry (a date; the suppression applies
through that day). The store applies them when it writes a scan's findings, when rematch rewrites
them, and whenever a suppression is added or removed (to the current scans of the images it covers),
so they survive rescans and rematches and counts change at once. An expired suppression stops
applying on the day after its expiry: `lapse_expired` runs whenever the database is opened (for writing,
for a read-only command where the file is writable, and at Datasette's start-up).
Findings keep `suppressed`, `suppressed_reason` and `suppression_id`; the legacy `ignored` and
`ignore_reason` columns are kept equal to them for queries written against older versions.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from stowaway.analyzers.base import ImageContext

from . import db as dbm
from .model import Finding, Package

# kinds whose findings are about one file: the path is part of their identity
PATH_KINDS = {"secret", "malware", "unsafe_setting", "compliance"}


def finding_fingerprint(f: Finding, pkg: Package | None, repository: str = "") -> str:
    """Identifies a finding across scans of an image repository (new / fixed / unchanged), whatever its
    package version, layer, title or status (see the module's docstring)."""
    d = f.detail
    ident = d.get("vulnerability_id") or d.get("check_id") or d.get("rule_id") or f.rule or ""
    target = str(d.get("target") or "")  # one check, many accounts or files
    secret = str(d.get("fingerprint") or "") if f.kind == "secret" else ""  # two secrets of one rule in one file
    parts = [repository or "", f.kind, str(ident), pkg.ecosystem if pkg else str(d.get("ecosystem") or ""),
             pkg.name if pkg else str(d.get("package_name") or d.get("name") or ""),
             (f.path or "") if f.kind in PATH_KINDS else "", target, secret]
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()


def write_results(conn, scan_id: int, image_id: int, ctx: ImageContext) -> None:
    """Packages, findings with their details, facts and file statistics of one scan, in the caller's
    transaction (the writer's: it holds the write lock). A few multi-row INSERTs per table (db.insert_values):
    the rows' ids are handed out here (the next ids after the table's largest, what SQLite would give them
    one by one), so the findings can name their packages and the details their findings without a
    statement per row (a statement per row was most of the writer's time: about 126 rows an image)."""
    vuln_counts: Counter = Counter(f.package for f in ctx.findings if f.kind == "vulnerability" and f.package)
    by_key: dict = {}
    for p in ctx.packages:
        by_key.setdefault(p.key, p)  # the first of a key is stored, as before
    first = (conn.execute("SELECT MAX(id) FROM packages").fetchone()[0] or 0) + 1
    pkg_ids = {key: pid for pid, key in enumerate(by_key, first)}
    dbm.insert_values(
        conn, "INSERT INTO packages (id, scan_id, image_id, ecosystem, name, version, arch, source_name,"
        " source_version, path, layer_index, purl, licenses, os_owned, metadata, vulnerability_count)",
        [(pkg_ids[key], scan_id, image_id, p.ecosystem, p.name, p.version, p.arch, p.source_name, p.source_version,
          p.path, p.layer_index, p.purl, dbm.dumps(list(p.licenses)) if p.licenses else None, int(p.os_owned),
          dbm.dumps(dict(p.metadata)) if p.metadata else None, vuln_counts.get(key, 0))
         for key, p in by_key.items()])
    details: dict[str, list[dict]] = {}
    row = conn.execute("SELECT repository FROM images WHERE id = ?", [image_id]).fetchone()
    repository = (row[0] or "") if row else ""
    first = (conn.execute("SELECT MAX(id) FROM findings").fetchone()[0] or 0) + 1
    rows = []
    for fid, f in enumerate(ctx.findings, first):
        pkg = by_key.get(f.package) if f.package else None
        rows.append((fid, scan_id, image_id, f.kind, f.severity, dbm.SEVERITY_RANK.get(f.severity, len(dbm.SEVERITY_RANK)),
                     f.title, f.rule, f.status, f.path, f.layer_index, int(bool(f.visible)),
                     pkg_ids.get(f.package) if f.package else None, finding_fingerprint(f, pkg, repository)))
        table = dbm.DETAIL_TABLES.get(f.kind)
        if table:
            details.setdefault(table, []).append({"finding_id": fid, **dict(f.detail)})
    dbm.insert_values(conn, "INSERT INTO findings (id, scan_id, image_id, kind, severity, severity_rank, title, rule,"
                      " status, path, layer_index, visible, package_id, fingerprint)", rows)
    for table, detail_rows in details.items():
        dbm.insert_rows(conn, table, detail_rows, ids=False)
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
                         [(scan_id, s["layer_index"], ctx.layer_ids[s["layer_index"]],  # type: ignore[attr-defined]
                           s["files"], s["size"],
                           s["visible_files"], s["visible_size"], s["whiteouts"]) for s in files["layers"]])
    facts = {k: v for k, v in ctx.facts.items() if k != "files"}
    if ctx.os.family or ctx.os.raw:
        facts["os"] = {"family": ctx.os.family, "version": ctx.os.version, "name": ctx.os.name,
                       "id_like": list(ctx.os.id_like), "source_file": ctx.os.source_file, "raw": dict(ctx.os.raw)}
    conn.executemany("INSERT OR REPLACE INTO scan_facts (scan_id, name, value) VALUES (?,?,?)",
                     [(scan_id, k, dbm.dumps(v)) for k, v in facts.items()])
    # with no suppression in force and no ignore file's reason the new findings stay unsuppressed and the
    # packages' counts above stand (the writer's hot path: matching every finding against nothing cost a
    # third of its SQL time)
    if _active_by_rule(conn) or any(f.detail.get("ignore_reason") for f in ctx.findings):
        apply_suppressions(conn, scan_ids=[scan_id], recount=True, refresh=False)
    # the report rows follow the image's current scan: a scan already current (rematch, a test's direct write)
    # gets them here; the writer's new scan becomes current afterwards and its batch refreshes them once
    # (refreshed here as well, they were the previous scan's rows built again)
    if conn.execute("SELECT 1 FROM images WHERE id = ? AND last_scan_id = ?", [image_id, scan_id]).fetchone():
        from .readmodel import refresh_images

        refresh_images(conn, [image_id])


# --- suppressions ----------------------------------------------------------------------------------

@dataclass
class Suppression:
    rule: str
    reason: str
    kind: str = ""
    package: str = ""
    path: str = ""
    repository: str = ""
    tag: str = ""
    author: str | None = None
    created: str = ""
    expires: str | None = None
    source: str | None = None
    id: int | None = None

    @property
    def scope(self) -> str:
        if not self.repository:
            return "everywhere"
        return f"{self.repository}:{self.tag}" if self.tag else self.repository

    def active(self, today: str) -> bool:
        return not self.expires or self.expires[:10] >= today

    def as_dict(self) -> dict:
        return {**asdict(self), "scope": self.scope}


COLUMNS = ("id", "kind", "rule", "package", "path", "repository", "tag", "reason", "author", "created", "expires",
           "source")


def _today() -> str:
    return dt.date.today().isoformat()


def scope_of(image: str | None) -> tuple[str, str]:
    """(repository, tag) of an --image REPO[:TAG] argument; None: everywhere."""
    if not image:
        return "", ""
    from .pipeline import split_reference

    repo, tag = split_reference(image.strip())
    return repo, tag


def list_suppressions(conn, include_expired: bool = True, today: str | None = None) -> list[Suppression]:
    rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM suppressions ORDER BY id").fetchall()
    out = [Suppression(**dict(zip(COLUMNS, r))) for r in rows]
    today = today or _today()
    return out if include_expired else [s for s in out if s.active(today)]


def add_suppression(conn, s: Suppression, apply: bool = True) -> int:
    """Adds (or updates the reason, author and expiry of) a suppression, and applies it at once to the
    current scans of the images it covers. Runs in the caller's transaction."""
    if not s.rule.strip():
        raise ValueError("a suppression needs an id (advisory, alias or rule)")
    if not s.reason.strip():
        raise ValueError("a suppression needs a reason")
    if s.expires:
        try:
            s.expires = dt.date.fromisoformat(str(s.expires)[:10]).isoformat()
        except ValueError:
            raise ValueError(f"expiry {s.expires!r} is not a date (YYYY-MM-DD)") from None
    s.created = s.created or dbm.now()
    key = [s.kind or "", s.rule.strip(), s.package or "", s.path or "", s.repository or "", s.tag or ""]
    conn.execute("INSERT INTO suppressions (kind, rule, package, path, repository, tag, reason, author, created,"
                 " expires, source) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (kind, rule, package, path,"
                 " repository, tag) DO UPDATE SET reason = excluded.reason, author = excluded.author,"
                 " expires = excluded.expires, source = excluded.source",
                 key + [s.reason.strip(), s.author, s.created, s.expires, s.source])
    sid = conn.execute("SELECT id FROM suppressions WHERE kind=? AND rule=? AND package=? AND path=? AND"
                       " repository=? AND tag=?", key).fetchone()[0]
    s.id = sid
    if apply:
        apply_suppressions(conn, image_ids=_images_in_scope(conn, s.repository, s.tag))
    return sid


def remove_suppressions(conn, ids: Iterable[int]) -> int:
    """Removes suppressions by id and re-applies what is left to the images they covered."""
    ids = [int(i) for i in ids]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    scopes = conn.execute(f"SELECT repository, tag FROM suppressions WHERE id IN ({marks})", ids).fetchall()
    n = conn.execute(f"DELETE FROM suppressions WHERE id IN ({marks})", ids).rowcount
    images: set[int] = set()
    for repo, tag in scopes:
        images |= (_images_in_scope(conn, repo, tag) or set()) if repo else {-1}
    apply_suppressions(conn, image_ids=None if -1 in images else images)
    return n


def _images_in_scope(conn, repository: str, tag: str) -> set[int] | None:
    """Images a suppression of this scope may cover (None: every image)."""
    if not repository:
        return None
    out = set()
    for iid, repo, t, ref in conn.execute("SELECT id, repository, tag, reference FROM images"):
        if _scope_matches(repository, tag, repo or ref or "", t or ""):
            out.add(iid)
    return out


def _scope_matches(repository: str, tag: str, image_repo: str, image_tag: str) -> bool:
    if not repository:
        return True
    if not fnmatch.fnmatchcase(image_repo, repository):
        return False
    return not tag or fnmatch.fnmatchcase(image_tag, tag)


# what a finding is matched on: its ids (rule, advisory id and aliases, check, secret or YARA rule),
# its package name, its path and a check's target, and its image's repository and tag
_MATCH_SQL = """
SELECT f.id, f.image_id, f.kind, f.rule, f.path, f.suppressed, f.suppressed_reason, f.suppression_id,
       f.package_id, coalesce(i.repository, i.reference), coalesce(i.tag, ''),
       coalesce(p.name, v.package_name, c.name), v.vulnerability_id, v.aliases, v.ignore_reason, s.check_id,
       s.target, x.rule_id, m.rule, c.rule
FROM findings f JOIN images i ON i.id = f.image_id
LEFT JOIN packages p ON p.id = f.package_id
LEFT JOIN vulnerability_details v ON v.finding_id = f.id AND f.kind = 'vulnerability'
LEFT JOIN setting_details s ON s.finding_id = f.id AND f.kind = 'unsafe_setting'
LEFT JOIN secret_details x ON x.finding_id = f.id AND f.kind = 'secret'
LEFT JOIN malware_details m ON m.finding_id = f.id AND f.kind = 'malware'
LEFT JOIN compliance_details c ON c.finding_id = f.id AND f.kind = 'compliance'
"""


def _has_column(conn, table: str, column: str) -> bool:
    return any(r[1] == column for r in conn.execute(f"PRAGMA table_info([{table}])"))


def _matches(row, by_rule: dict[str, list[Suppression]]) -> Iterable[Suppression]:
    """The suppressions (of BY_RULE, the active ones by id) that cover the finding of a _MATCH_SQL row."""
    (_fid, _iid, kind, rule, path, _sup, _reason, _sid, _pid, repo, tag, package, vid, aliases, _file_reason,
     check_id, target, secret_rule, malware_rule, compliance_rule) = row
    ids = {rule, vid, check_id, secret_rule, malware_rule, compliance_rule}
    if aliases:
        try:
            ids.update(a for a in json.loads(aliases) if isinstance(a, str))
        except ValueError:
            pass
    ids.discard(None)
    ids.discard("")
    for ident in sorted(ids):
        for s in by_rule.get(ident, ()):
            if s.kind and s.kind != kind:
                continue
            if s.package and s.package != (package or ""):
                continue
            if s.path and not any(v and (fnmatch.fnmatchcase(v, s.path) or fnmatch.fnmatchcase(v, "/" + s.path.lstrip("/")))
                                  for v in (path, target)):
                continue
            if not _scope_matches(s.repository, s.tag, repo or "", tag or ""):
                continue
            yield s


def _decide(row, by_rule: dict[str, list[Suppression]]) -> tuple[int, str | None, int | None]:
    for s in _matches(row, by_rule):
        return 1, s.reason, s.id
    if row[14]:  # an ignore file in the scan's policy ([vulnerabilities] ignore_file), as the evaluator read it
        return 1, row[14], None
    return 0, None, None


def _active_by_rule(conn, today: str | None = None) -> dict[str, list[Suppression]]:
    by_rule: dict[str, list[Suppression]] = {}
    for s in list_suppressions(conn, include_expired=False, today=today):
        by_rule.setdefault(s.rule, []).append(s)
    return by_rule


def _match_sql(conn) -> str:
    if _has_column(conn, "vulnerability_details", "ignore_reason"):
        return _MATCH_SQL
    return _MATCH_SQL.replace("v.ignore_reason", "NULL")


def covering(conn, finding_id: int) -> list[int]:
    """Ids of the active suppressions that cover one stored finding."""
    row = conn.execute(_match_sql(conn) + " WHERE f.id = ?", [finding_id]).fetchone()
    return [s.id for s in _matches(row, _active_by_rule(conn)) if s.id is not None] if row else []


def apply_suppressions(conn, scan_ids: Iterable[int] | None = None, image_ids: Iterable[int] | None = None,
                       recount: bool = False, today: str | None = None, refresh: bool = True,
                       finding_ids: Iterable[int] | None = None, touched: set | None = None) -> int:
    """Marks the findings of SCAN_IDS (or of the current scans of IMAGE_IDS; both None: every image's
    current scan; or the findings FINDING_IDS alone) suppressed or not by the active suppressions, keeps
    their packages' vulnerability counts and the read model in step, in the caller's transaction (REFRESH
    False: the caller refreshes the read model's rows of these images itself, later in that transaction;
    TOUCHED, when given, receives the ids of the packages recounted). Returns how many findings changed."""
    by_rule = _active_by_rule(conn, today)
    sql, params = _match_sql(conn), []
    if finding_ids is not None:
        sql += " WHERE f.id IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(sorted(int(i) for i in finding_ids)))
    elif scan_ids is not None:
        ids = json.dumps(sorted(int(i) for i in scan_ids))
        sql += " WHERE f.scan_id IN (SELECT value FROM json_each(?))"
        params.append(ids)
    else:
        sql += " WHERE f.scan_id = i.last_scan_id"
        if image_ids is not None:
            sql += " AND i.id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(int(i) for i in image_ids)))
    changes, packages, images = [], set(), set()
    for row in conn.execute(sql, params).fetchall():
        decision = _decide(row, by_rule)
        if (int(bool(row[5])), row[6], row[7]) != decision:
            changes.append((*decision, decision[0], decision[1], row[0]))
            images.add(row[1])
            if row[8] is not None and row[2] == "vulnerability":
                packages.add(row[8])
    if changes:
        conn.executemany("UPDATE findings SET suppressed = ?, suppressed_reason = ?, suppression_id = ?,"
                         " ignored = ?, ignore_reason = ? WHERE id = ?", changes)
    if recount and scan_ids is not None:
        conn.execute("UPDATE packages SET vulnerability_count = (SELECT COUNT(*) FROM findings f WHERE"
                     " f.package_id = packages.id AND f.kind = 'vulnerability' AND f.suppressed = 0)"
                     " WHERE scan_id IN (SELECT value FROM json_each(?))", [params[0]])
    elif packages:
        conn.execute("UPDATE packages SET vulnerability_count = (SELECT COUNT(*) FROM findings f WHERE"
                     " f.package_id = packages.id AND f.kind = 'vulnerability' AND f.suppressed = 0)"
                     " WHERE id IN (SELECT value FROM json_each(?))", [json.dumps(sorted(packages))])
        if touched is not None:
            touched |= packages
    if scan_ids is not None and finding_ids is None:  # a scan already current (rematch, a test's direct write): its report rows too
        images |= {r[0] for r in conn.execute("SELECT id FROM images WHERE last_scan_id IN"
                                              " (SELECT value FROM json_each(?))", [params[0]])}
    if images and refresh:
        from .readmodel import refresh_images

        refresh_images(conn, images)
    return len(changes)


def lapsed_scans(conn, today: str | None = None) -> list[int]:
    """Scans whose findings are still marked suppressed by a suppression that has expired since it was
    applied. Cheap when nothing has expired: one look at the (small) suppressions table; otherwise the
    findings index on `suppressed`."""
    expired = [r[0] for r in conn.execute(
        "SELECT id FROM suppressions WHERE coalesce(expires, '') != '' AND substr(expires, 1, 10) < ?",
        [today or _today()])]
    if not expired:
        return []
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT scan_id FROM findings WHERE suppressed = 1 AND suppression_id IN"
        " (SELECT value FROM json_each(?))", [json.dumps(expired)])]


def lapse_expired(conn, today: str | None = None) -> int:
    """Un-suppresses (in the caller's transaction) the findings whose suppression has expired, so an
    expiry takes effect on the day it passes, not at the next scan of the image. Every writable open of
    the database (`db.connect`), every read-only command (`cli.open_db`) and Datasette's start-up call
    it. Returns how many findings changed."""
    scans = lapsed_scans(conn, today)
    return apply_suppressions(conn, scan_ids=scans, recount=True, today=today) if scans else 0


def suppression_for_finding(conn, finding_id: int, scope: str = "tag") -> Suppression:
    """The suppression that covers one stored finding (Datasette's ignore action): its kind, id,
    package and (for file findings) path, scoped to its image's tag, repository, or everywhere."""
    row = conn.execute(_match_sql(conn) + " WHERE f.id = ?", [finding_id]).fetchone()
    if row is None:
        raise LookupError(f"no finding {finding_id}")
    (_fid, _iid, kind, rule, path, _s, _r, _sid, _pid, repo, tag, package, vid, _al, _fr, check_id, target,
     secret_rule, malware_rule, compliance_rule) = row
    ident = vid or check_id or secret_rule or malware_rule or compliance_rule or rule or ""
    where = (target or path or "") if kind == "unsafe_setting" else (path or "") if kind in PATH_KINDS else ""
    if scope == "everywhere":
        repo, tag = "", ""
    elif scope == "repository":
        tag = ""
    return Suppression(rule=ident, reason="", kind=kind, package=package or "", path=where,
                       repository=repo or "", tag=tag or "")


# --- rematch's write -------------------------------------------------------------------------------

# the columns every finding of one (package, version, vulnerability) shares, then its own
CORE_COLUMNS = ("severity_source", "aliases", "fixed_version", "cvss_score", "cvss_vector", "published",
                "description", "matched_by", "kev", "epss", "urgency")
OWN_COLUMNS = ("vulnerability_id", "package_name", "ecosystem", "installed_version", "solution", "ignore_reason",
               "content_hash")
DETAIL_COLUMNS = ("finding_id",) + OWN_COLUMNS + CORE_COLUMNS
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _cell(value):
    return _JSON.encode(value) if isinstance(value, (list, dict)) else value


def _core_cells(detail: Mapping[str, Any], encoded: dict) -> tuple:
    # keyed by the shared matched_by list: encoded once, however many images carry the package
    shared = detail["matched_by"]
    got = encoded.get(id(shared))
    if got is None or got[0] is not shared:
        got = encoded[id(shared)] = (shared, tuple(_cell(detail.get(c)) for c in CORE_COLUMNS))
    return got[1]


def _static_rows(f: Finding, encoded: dict) -> tuple:
    """(the finding, its ignore reason, vulnerability id, content digest, its findings row between the
    image id and the package id, {repository: fingerprint}, its findings row after the fingerprint, its
    details row after the finding id) of one Finding: what replace_vulnerabilities writes for it in
    every image but the ids."""
    d = f.detail
    reason = d.get("ignore_reason")
    middle = (f.kind, f.severity, dbm.SEVERITY_RANK.get(f.severity, len(dbm.SEVERITY_RANK)), f.title, f.rule,
              f.status, f.path, f.layer_index, int(bool(f.visible)))
    detail = (d["vulnerability_id"], d["package_name"], d["ecosystem"], d["installed_version"], d["solution"],
              reason, d["content_hash"]) + _core_cells(d, encoded)
    return (f, reason, d.get("vulnerability_id"), d["content_hash"], middle, {}, (int(reason is not None), reason),
            detail)


@dataclass
class RematchWrites:
    """What rematch's writes of one batch of images changed: the suppressions and the report rows are
    brought in step with it once, at the batch's end (finish_rematch_batch)."""

    gone: list = field(default_factory=list)  # finding ids deleted
    fresh: list = field(default_factory=list)  # finding ids inserted
    packages: set = field(default_factory=set)  # package ids whose vulnerability_count changed
    reasons: bool = False  # a fresh finding carries an ignore file's reason
    # the batch's new findings and details rows, inserted together at its end (an image of an advisory update
    # has two or three: a statement each was the cost); the next id to hand out; the details' INSERT head
    rows: list = field(default_factory=list)
    details: list = field(default_factory=list)
    next_id: int = 0
    detail_sql: str = ""


def replace_vulnerabilities(conn, scan_id, image_id, repository, pkgs, ids, old_counts, findings, feed, old_feed,
                            detail_sql, encoded, result, facts: dict | None = None,
                            writes: RematchWrites | None = None, package_ids: list | None = None,
                            total: int | None = None, statics: dict | None = None) -> bool:
    """Rematch's write: brings one scan's stored vulnerability findings to `findings`, in the caller's open
    transaction, touching only what changed (a finding is kept when its fingerprint and content digest are
    the same). `result` counts what was inserted and deleted; WRITES collects what changed, for
    finish_rematch_batch, which the caller runs before it commits (one transaction per batch of images: a
    reader sees either the old or the new findings of an image, never a mix). FACTS: name -> its value,
    or its JSON text already encoded. DETAIL_SQL: `INSERT INTO vulnerability_details (DETAIL_COLUMNS)`, without
    its VALUES. ENCODED: the caller's cache, kept across images. PACKAGE_IDS: only
    the findings of these packages are compared and replaced (a rematch that re-evaluated only some
    packages), the scan's others stay; TOTAL: then how many vulnerability findings the scan had before.
    STATICS: the caller's cache of what each Finding writes but for the ids, by identity, when the same
    Finding objects recur across images (kept across images; None: nothing cached). True if anything
    changed."""
    if writes is None:
        raise TypeError("replace_vulnerabilities writes in a batch: pass a RematchWrites")
    stored: dict[tuple, list] = {}
    sql = ("SELECT f.id, f.fingerprint, d.content_hash, f.suppressed FROM findings f LEFT JOIN vulnerability_details d"
           " ON d.finding_id = f.id WHERE f.scan_id = ? AND f.kind = 'vulnerability'")
    params: list = [scan_id]
    if package_ids is not None:
        sql += " AND f.package_id IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(package_ids))
    for fid, fp, digest, suppressed in (conn.execute(sql, params) if package_ids is None or package_ids else ()):
        stored.setdefault((fp, digest), []).append((fid, suppressed))
    by_key = {p.key: p for p in pkgs}
    counts: Counter = Counter()
    fresh = []
    for f in findings:
        # what a finding's rows say but for the image's own ids, worked out once per Finding (the evaluator
        # hands the same objects to every image that has the package; kept alive by its cache)
        static = statics.get(id(f)) if statics is not None else None
        if static is None or static[0] is not f:
            static = _static_rows(f, encoded)
            if statics is not None:
                statics[id(f)] = static
        reason = static[1]
        pid = ids.get(f.package)
        # a vulnerability's fingerprint names the repository, the id and the package (finding_fingerprint):
        # computed once per repository however many findings share it
        fp = static[5].get(repository)
        if fp is None:
            pkg = by_key.get(f.package)
            fkey = ("fp", repository, static[2], f.rule, pkg.ecosystem if pkg else None, pkg.name if pkg else None)
            fp = encoded.get(fkey)
            if fp is None:
                fp = encoded[fkey] = finding_fingerprint(f, pkg, repository)
            static[5][repository] = fp
        same = stored.get((fp, static[3])) if stored else None
        kept = same.pop() if same else None
        # a kept finding keeps its suppression; a new one gets the store's at the batch's end
        if reason is None and pid is not None and not (kept and kept[1]):
            counts[pid] += 1
        if kept:
            continue
        fresh.append((static, fp, pid))
    gone = [fid for fids in stored.values() for fid, _ in fids]
    recount = [(n, pid) for pid, n in counts.items() if old_counts.get(pid, 0) != n]
    recount += [(0, pid) for pid, n in old_counts.items() if n and pid not in counts]
    if not fresh and not gone and not recount and old_feed == feed:
        return False
    conn.execute("UPDATE scans SET feed_version = ? WHERE id = ?", [feed, scan_id])  # takes the write lock
    for i in range(0, len(gone), 500):
        chunk = gone[i:i + 500]
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM vulnerability_details WHERE finding_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM findings WHERE id IN ({marks})", chunk)
    if fresh:
        # ids handed out here (after those the batch has handed out), the rows inserted at the batch's
        # end by finish_rematch_batch in a few multi-row INSERTs (db.insert_values: a statement per row paid
        # ~35 us of statement journal under the facet-count trigger); safe: this transaction holds the lock
        next_id = writes.next_id or (conn.execute("SELECT MAX(id) FROM findings").fetchone()[0] or 0) + 1
        head = (scan_id, image_id)
        for fid, (static, fp, pid) in enumerate(fresh, next_id):
            writes.rows.append((fid, *head, *static[4], pid, fp, *static[6]))
            writes.details.append((fid, *static[7]))
            writes.reasons = writes.reasons or static[1] is not None
        writes.fresh.extend(range(next_id, next_id + len(fresh)))
        writes.next_id = next_id + len(fresh)
        writes.detail_sql = detail_sql
    if recount:
        conn.executemany("UPDATE packages SET vulnerability_count = ? WHERE id = ?", recount)
        writes.packages.update(pid for _, pid in recount)
    conn.executemany("INSERT OR REPLACE INTO scan_facts (scan_id, name, value) VALUES (?,?,?)",
                     [(scan_id, k, v if isinstance(v, str) else dbm.dumps(v)) for k, v in (facts or {}).items()])
    conn.execute("INSERT OR REPLACE INTO scan_facts (scan_id, name, value) VALUES (?, 'vulnerabilities_rematched',"
                 " ?)", [scan_id, json.dumps({"at": dbm.now(), "written": len(fresh), "removed": len(gone),
                                              "findings": len(findings) if total is None else
                                              total + len(fresh) - len(gone)})])
    writes.gone.extend(gone)
    result.inserted += len(fresh)
    result.deleted += len(gone)
    return True


def finish_rematch_batch(conn, writes: RematchWrites, report: bool = True) -> None:
    """The end of a batch of replace_vulnerabilities writes, in their transaction: their new findings and
    details rows inserted, the active suppressions
    onto the new findings (the kept ones have theirs: suppressions are applied to every current scan when
    they are added, removed or lapse), then the report rows of what changed (readmodel.apply_finding_changes;
    REPORT False: the caller brings them in step later in the same transaction, rematch's bulk mode)."""
    from .readmodel import apply_finding_changes

    dbm.insert_values(conn, "INSERT INTO findings (id, scan_id, image_id, kind, severity, severity_rank, title, rule,"
                      " status, path, layer_index, visible, package_id, fingerprint, ignored, ignore_reason)",
                      writes.rows)
    dbm.insert_values(conn, writes.detail_sql, writes.details)
    writes.rows, writes.details = [], []
    if writes.fresh and (writes.reasons or _active_by_rule(conn)):
        apply_suppressions(conn, finding_ids=writes.fresh, refresh=False, touched=writes.packages)
    if report:
        apply_finding_changes(conn, writes.gone, writes.fresh, writes.packages)
