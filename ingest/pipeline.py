"""scan(): source -> per-layer dispatch to analyzers -> image-level collect -> one transaction.

Layers are read once each, as streams, and only when the database does not already hold what the
selected analyzers would make of them (cache key: diff_id, analyzer name, version, fingerprint).
A failure is confined to the image it concerns: its scan row records the reason, the batch goes on.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterable

import zstandard

from stowaway.analyzers.base import Analyzer, Fact, ImageContext, select

from . import db as dbm
from .layers import LayerResult, walk
from .model import Finding, ImageSpec, OSInfo, Package, ScanError
from .sources import LayerBlob, SourceFailure, open_source
from .squash import Filesystem
from .streams import LayerStream, Limits

TOOL_VERSION = "0.1.0"
_ZC = zstandard.ZstdCompressor(level=3)
_ZD = zstandard.ZstdDecompressor()


def pack(obj) -> bytes:
    return _ZC.compress(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def unpack(blob: bytes):
    return json.loads(_ZD.decompress(blob)) if blob else []


@dataclass
class ScanOutcome:
    reference: str
    scan_id: int
    status: str
    error: str = ""
    image_id: int | None = None
    layers_read: int = 0
    layers_cached: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Cached:
    diff_id: str
    layer_id: int


def limits_from(policy: dict) -> Limits:
    conf = policy.get("limits") or {}
    known = Limits.__dataclass_fields__
    return Limits(**{k: v for k, v in conf.items() if k in known})


class Scanner:
    """Scans sources into one database. One instance per run: analyzer instances are built once."""

    def __init__(self, database, policy: dict | None = None, risks: Iterable[str] | None = None,
                 analyzer_names: Iterable[str] | None = None, progress: bool | None = None,
                 task_id: int | None = None, on_event: Callable[[str, dict], None] | None = None):
        self.db = database
        self.policy = policy or {}
        self.limits = limits_from(self.policy)
        self.risks = sorted(set(risks)) if risks else None
        classes = select(self.risks, list(analyzer_names) if analyzer_names else None)
        self.analyzers: list[Analyzer] = [cls(self.policy) for cls in classes]
        self.readers = [a for a in self.analyzers if a.reads_layers]
        self.progress = progress
        self.task_id = task_id
        self.on_event = on_event or (lambda kind, data: None)
        self.stats = {"layers_read": 0, "layers_cached": 0}

    # --- cache -----------------------------------------------------------------------------------
    def _layer_row(self, diff_id: str):
        return self.db.execute("SELECT id, file_index IS NOT NULL FROM layers WHERE diff_id = ?", [diff_id]).fetchone()

    def _cached_analyzers(self, layer_id: int) -> set[tuple[str, int, str]]:
        rows = self.db.execute("SELECT analyzer, version, fingerprint FROM layer_analyses WHERE layer_id = ?", [layer_id])
        return {tuple(r) for r in rows}

    def _missing(self, diff_id: str) -> tuple[int | None, list[Analyzer]]:
        row = self._layer_row(diff_id) if diff_id else None
        if row is None or not row[1]:
            return None, self.readers
        have = self._cached_analyzers(row[0])
        return row[0], [a for a in self.readers if (a.name, a.version, a.fingerprint()) not in have]

    # --- reading ---------------------------------------------------------------------------------
    def _read_layer(self, blob: LayerBlob, analyzers: list[Analyzer], what: str) -> LayerResult:
        raw = blob.open() if blob.open else blob.stream
        try:
            stream = LayerStream(raw, self.limits, what)
            t0 = time.perf_counter()
            result = walk(stream.tar, -1, analyzers, self.limits, what)
            result.blob_digest, result.diff_id = stream.finish()
            result.size = stream.uncompressed.count
            result.seconds["_walk"] = time.perf_counter() - t0
            result.compression = stream.compression  # type: ignore[attr-defined]
            result.compressed_size = stream.blob.count  # type: ignore[attr-defined]
            return result
        finally:
            if blob.open and hasattr(raw, "close"):
                raw.close()

    def scan_source(self, source: str) -> list[ScanOutcome]:
        outcomes: list[ScanOutcome] = []
        pending: dict[str, LayerResult | _Cached | ScanError] = {}
        try:
            events = open_source(source, self.limits, **(self.policy.get("source_options") or {}))
            for ev in _progress(events, self.progress, source):
                if isinstance(ev, LayerBlob):
                    pending[ev.key] = self._offer(ev, source)
                elif isinstance(ev, SourceFailure):
                    outcomes.append(self._record_failure(source, ev.reference, ev.error))
                elif isinstance(ev, ImageSpec):
                    outcomes.append(self._scan_image(ev, pending))
        except ScanError as exc:
            outcomes.append(self._record_failure(source, source, str(exc)))
        except Exception as exc:  # a bug must fail this source's scan, never the batch
            outcomes.append(self._record_failure(source, source, f"internal error: {exc.__class__.__name__}: {exc}",
                                                 detail=traceback.format_exc()))
        if not outcomes:
            outcomes.append(self._record_failure(source, source, f"{source}: no image found"))
        return outcomes

    def _offer(self, blob: LayerBlob, source: str):
        layer_id, missing = self._missing(blob.diff_id)
        if layer_id is not None and not missing:
            self.stats["layers_cached"] += 1
            self.on_event("layer_cached", {"key": blob.key, "diff_id": blob.diff_id})
            return _Cached(blob.diff_id, layer_id)
        try:
            result = self._read_layer(blob, missing, f"{source}: layer {blob.key}")
            self.stats["layers_read"] += 1
            self.on_event("layer_read", {"key": blob.key, "diff_id": result.diff_id})
            return result
        except ScanError as exc:
            return exc

    # --- one image -------------------------------------------------------------------------------
    def _start_scan(self, source: str, reference: str) -> int:
        with self.db.conn:
            cur = self.db.conn.execute(
                "INSERT INTO scans (source, reference, status, started_at, tool_version, task_id, risk_types,"
                " analyzers, policy) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                [source, reference, dbm.now(), TOOL_VERSION, self.task_id, dbm.dumps(self.risks or "all"),
                 dbm.dumps({a.name: a.version for a in self.analyzers}), dbm.dumps(_policy_record(self.policy))])
            return cur.lastrowid

    def _record_failure(self, source: str, reference: str, error: str, scan_id: int | None = None,
                        detail: str = "") -> ScanOutcome:
        error = error.splitlines()[0][:2000] if error else "unknown error"
        if scan_id is None:
            scan_id = self._start_scan(source, reference)
        with self.db.conn:
            self.db.conn.execute("UPDATE scans SET status='failed', error=?, finished_at=?, warnings=? WHERE id=?",
                                 [error, dbm.now(), dbm.dumps([detail]) if detail else None, scan_id])
        self.on_event("scan_failed", {"reference": reference, "error": error})
        return ScanOutcome(reference, scan_id, "failed", error)

    def _scan_image(self, spec: ImageSpec, pending: dict) -> ScanOutcome:
        scan_id = self._start_scan(spec.source, spec.reference)
        t0 = time.perf_counter()
        try:
            with self.db.conn:  # one transaction for everything this scan writes
                outcome = self._evaluate_and_write(spec, pending, scan_id)
                self.db.conn.execute(
                    "UPDATE scans SET status='done', finished_at=?, seconds=?, image_id=?, layers_read=?,"
                    " layers_cached=?, warnings=? WHERE id=?",
                    [dbm.now(), round(time.perf_counter() - t0, 3), outcome.image_id, outcome.layers_read,
                     outcome.layers_cached, dbm.dumps(outcome.warnings) if outcome.warnings else None, scan_id])
                self.db.conn.execute("UPDATE images SET last_scan_id=? WHERE id=?", [scan_id, outcome.image_id])
            # committed: later images of this source that share a layer now find it in the database
            for d in spec.layers:
                if isinstance(pending.get(d.key), LayerResult):
                    row = self._layer_row(d.diff_id)
                    pending[d.key] = _Cached(d.diff_id, row[0])
            self.on_event("scan_done", {"reference": spec.reference, "scan_id": scan_id})
            return outcome
        except ScanError as exc:
            return self._record_failure(spec.source, spec.reference, str(exc), scan_id)
        except Exception as exc:
            return self._record_failure(spec.source, spec.reference,
                                        f"{spec.reference}: internal error: {exc.__class__.__name__}: {exc}",
                                        scan_id, detail=traceback.format_exc())

    def _evaluate_and_write(self, spec: ImageSpec, pending: dict, scan_id: int) -> ScanOutcome:
        conn = self.db.conn
        outcome = ScanOutcome(spec.reference, scan_id, "done")
        layer_ids: list[int] = []
        entries: list[list[tuple]] = []
        records: dict[str, list[list[dict]]] = {a.name: [] for a in self.analyzers}
        for d in spec.layers:
            got = pending.get(d.key)
            if got is None:
                # offered under another key, or known to the database already
                row = self._layer_row(d.diff_id)
                got = _Cached(d.diff_id, row[0]) if row and row[1] else ScanError(f"layer {d.key} was not read")
            if isinstance(got, ScanError):
                raise ScanError(f"{spec.reference}: {got}")
            if isinstance(got, LayerResult):
                if got.diff_id != d.diff_id:
                    raise ScanError(f"{spec.reference}: layer {d.index} digest mismatch: config says {d.diff_id},"
                                    f" content is {got.diff_id}")
                if d.digest and got.blob_digest != d.digest:
                    raise ScanError(f"{spec.reference}: layer {d.index} blob digest mismatch: manifest says"
                                    f" {d.digest}, blob is {got.blob_digest}")
                layer_id = self._store_layer(got, d)
                outcome.layers_read += 1
                outcome.warnings += [f"layer {d.index}: {w}" for w in got.warnings]
                layer_entries = got.entries
                fresh = got.records
            else:
                layer_id = got.layer_id
                outcome.layers_cached += 1
                layer_entries = unpack(conn.execute("SELECT file_index FROM layers WHERE id=?", [layer_id]).fetchone()[0])
                fresh = {}
            layer_ids.append(layer_id)
            entries.append([tuple(e) for e in layer_entries])
            for a in self.analyzers:
                if not a.reads_layers:
                    continue
                if a.name in fresh:
                    records[a.name].append(fresh[a.name])
                else:
                    row = conn.execute("SELECT records FROM layer_analyses WHERE layer_id=? AND analyzer=? AND"
                                       " version=? AND fingerprint=?",
                                       [layer_id, a.name, a.version, a.fingerprint()]).fetchone()
                    records[a.name].append(unpack(row[0]) if row else [])

        fs = Filesystem.build(entries)
        ctx = ImageContext(spec=spec, fs=fs, policy=self.policy, db=self.db)
        ctx.layer_entries = entries  # type: ignore[attr-defined]
        ctx.layer_ids = layer_ids  # type: ignore[attr-defined]
        ctx.scan_id = scan_id  # type: ignore[attr-defined]
        for a in self.analyzers:
            try:
                for item in a.collect(ctx, records.get(a.name, [])) or ():
                    if isinstance(item, Package):
                        ctx.packages.append(item)
                    elif isinstance(item, Finding):
                        ctx.findings.append(item)
                    elif isinstance(item, OSInfo):
                        ctx.os = item
                    elif isinstance(item, Fact):
                        ctx.facts[item.name] = item.value
            except ScanError:
                raise
            except Exception as exc:
                ctx.warn(f"{a.name}: {exc.__class__.__name__}: {exc}")
                ctx.facts.setdefault("analyzer_errors", {})[a.name] = traceback.format_exc()[-4000:]
        outcome.warnings += ctx.warnings
        image_id = self._store_image(spec, ctx, layer_ids)
        outcome.image_id = image_id
        conn.execute("UPDATE scans SET image_id=? WHERE id=?", [image_id, scan_id])
        write_results(conn, scan_id, image_id, ctx)
        return outcome

    def _store_layer(self, result: LayerResult, d) -> int:
        conn = self.db.conn
        row = conn.execute("SELECT id FROM layers WHERE diff_id=?", [result.diff_id]).fetchone()
        values = [d.digest or result.blob_digest, d.media_type, getattr(result, "compressed_size", 0), result.size,
                  len(result.entries), pack(result.entries), dbm.now()]
        if row:
            layer_id = row[0]
            conn.execute("UPDATE layers SET digest=?, media_type=?, compressed_size=?, size=?, entries=?,"
                         " file_index=?, indexed_at=? WHERE id=?", values + [layer_id])
        else:
            layer_id = conn.execute("INSERT INTO layers (digest, media_type, compressed_size, size, entries,"
                                    " file_index, indexed_at, diff_id) VALUES (?,?,?,?,?,?,?,?)",
                                    values + [result.diff_id]).lastrowid
        by_name = {a.name: a for a in self.readers}
        for name, recs in result.records.items():
            a = by_name.get(name)
            if a is None:
                continue
            conn.execute("INSERT OR REPLACE INTO layer_analyses (layer_id, analyzer, version, fingerprint, records,"
                         " record_count, seconds, warnings, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                         [layer_id, name, a.version, a.fingerprint(), pack(recs), len(recs),
                          round(result.seconds.get(name, 0.0), 4), None, dbm.now()])
        return layer_id

    def _store_image(self, spec: ImageSpec, ctx: ImageContext, layer_ids: list[int]) -> int:
        conn = self.db.conn
        rc = spec.runtime
        repo, tag = split_reference(spec.reference)
        values = {
            "reference": spec.reference, "repository": repo, "tag": tag, "manifest_digest": spec.manifest_digest,
            "config_digest": spec.config_digest, "index_digest": spec.index_digest, "platform": spec.platform,
            "media_type": spec.media_type, "source": spec.source,
            "size": spec.size or sum(r for r in _layer_sizes(conn, layer_ids)), "created": spec.created,
            "os_family": ctx.os.family, "os_version": ctx.os.version, "os_name": ctx.os.name,
            "user": rc.get("User") or "", "healthcheck": dbm.dumps(rc.get("Healthcheck")),
            "entrypoint": dbm.dumps(rc.get("Entrypoint")), "cmd": dbm.dumps(rc.get("Cmd")),
            "env": dbm.dumps(rc.get("Env") or []), "labels": dbm.dumps(rc.get("Labels") or {}),
            "history": dbm.dumps(spec.config.get("history") or []),
        }
        row = conn.execute("SELECT id FROM images WHERE reference=? AND manifest_digest=? AND platform=?",
                           [spec.reference, spec.manifest_digest, spec.platform]).fetchone()
        if row:
            image_id = row[0]
            sets = ", ".join(f"[{k}]=?" for k in values)
            conn.execute(f"UPDATE images SET {sets} WHERE id=?", list(values.values()) + [image_id])
        else:
            values["first_seen"] = dbm.now()
            image_id = dbm.insert_rows(conn, "images", [values])[0]
        conn.execute("DELETE FROM image_layers WHERE image_id=?", [image_id])
        conn.executemany("INSERT INTO image_layers (image_id, position, layer_id, created_by) VALUES (?,?,?,?)",
                         [(image_id, d.index, lid, d.created_by) for d, lid in zip(spec.layers, layer_ids)])
        return image_id

    def run(self, sources: Iterable[str]) -> list[ScanOutcome]:
        out: list[ScanOutcome] = []
        for s in sources:
            out.extend(self.scan_source(s))
        return out


def _layer_sizes(conn, layer_ids):
    for lid in layer_ids:
        row = conn.execute("SELECT compressed_size FROM layers WHERE id=?", [lid]).fetchone()
        yield (row[0] or 0) if row else 0


def split_reference(ref: str) -> tuple[str, str]:
    if "@" in ref:
        return ref.split("@", 1)[0], ref.split("@", 1)[1]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, ""


def _policy_record(policy: dict) -> dict:
    """The policy in force, as recorded with the scan (credentials never among it)."""
    return {k: v for k, v in policy.items() if k not in ("source_options", "credentials")}


def finding_fingerprint(f: Finding, pkg: Package | None) -> str:
    ident = f.detail.get("vulnerability_id") or f.detail.get("check_id") or f.detail.get("fingerprint") or ""
    parts = [f.kind, f.rule, f.path, pkg.ecosystem if pkg else "", pkg.name if pkg else "", str(ident), f.title]
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


def _progress(events, enabled, label):
    if enabled is False:
        yield from events
        return
    from tqdm import tqdm

    bar = tqdm(desc=f"scan {label}", unit=" step", disable=None if enabled is None else not enabled,
               file=sys.stderr, leave=False)
    try:
        for ev in events:
            bar.set_postfix_str(getattr(ev, "key", None) or getattr(ev, "reference", "")[-40:])
            yield ev
            bar.update(1)
    finally:
        bar.close()
