"""scan(): source -> per-layer dispatch to analyzers -> image-level collect -> one transaction.

Layers are read once each, as streams, and only when the database does not already hold what the
selected analyzers would make of them (cache key: diff_id, analyzer name, version, fingerprint).
A failure is confined to the image it concerns: its scan row records the reason, the batch goes on.

The work is split in two so it can be spread over processes or a Dask cluster while SQLite keeps a
single writer: `Analysis` reads (cache lookups, layers, analyzers' collect) and turns every image of
a source into a picklable `ImageResult`; `Writer` stores one result in one transaction. `Scanner`
runs both in this process (the default), `run_jobs` hands the analysis to any executor whose futures
come back to the one writer.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Iterable, Iterator
from urllib.parse import quote

import zstandard

from stowaway.analyzers.base import Analyzer, Fact, ImageContext, select

from . import db as dbm
from .findings import finding_fingerprint, write_results  # noqa: F401  (re-exported)
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
class ImageResult:
    """Everything one image's scan produced, before any write: crosses process boundaries by pickle."""

    source: str
    reference: str
    status: str = "done"  # done | failed
    error: str = ""
    detail: str = ""  # traceback of an internal error
    started_at: str = ""
    seconds: float = 0.0
    spec: ImageSpec | None = None
    fresh: list[LayerResult] = field(default_factory=list)  # layers first read for this image
    layers_read: int = 0
    layers_cached: int = 0
    os: OSInfo = field(default_factory=OSInfo)
    packages: list[Package] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    cache_keys: dict[str, tuple[int, str]] = field(default_factory=dict)  # reader name -> (version, fingerprint)
    analyzers: dict[str, int] = field(default_factory=dict)  # name -> version, as the scan row records it
    risks: list[str] | None = None
    ran: tuple[float, float] = (0.0, 0.0)  # wall-clock start and end of the job that produced it, in its worker


@dataclass
class _Cached:
    diff_id: str
    layer_id: int


def limits_from(policy: dict) -> Limits:
    conf = policy.get("limits") or {}
    known = Limits.__dataclass_fields__
    return Limits(**{k: v for k, v in conf.items() if k in known})


def _failure(source: str, reference: str, error: str, detail: str = "", **kw) -> ImageResult:
    error = error.splitlines()[0][:2000] if error else "unknown error"
    return ImageResult(source=source, reference=reference, status="failed", error=error, detail=detail,
                       started_at=kw.pop("started_at", "") or dbm.now(), **kw)


class Analysis:
    """The reading half of a scan. `database` is only read (None: no cache, nothing looked up)."""

    def __init__(self, database, policy: dict | None = None, risks: Iterable[str] | None = None,
                 analyzer_names: Iterable[str] | None = None, progress: bool | None = None,
                 on_event: Callable[[str, dict], None] | None = None):
        self.db = database
        self.policy = policy or {}
        self.limits = limits_from(self.policy)
        self.risks = sorted(set(risks)) if risks else None
        classes = select(self.risks, list(analyzer_names) if analyzer_names else None)
        self.analyzers: list[Analyzer] = [cls(self.policy) for cls in classes]
        self.readers = [a for a in self.analyzers if a.reads_layers]
        self.cache_keys = {a.name: (a.version, a.fingerprint()) for a in self.readers}
        self.versions = {a.name: a.version for a in self.analyzers}
        self.progress = progress
        self.on_event = on_event or (lambda kind, data: None)

    # --- cache -----------------------------------------------------------------------------------
    def _layer_row(self, diff_id: str):
        if self.db is None or not diff_id:
            return None
        return self.db.execute("SELECT id, file_index IS NOT NULL FROM layers WHERE diff_id = ?", [diff_id]).fetchone()

    def _missing(self, diff_id: str) -> tuple[int | None, list[Analyzer]]:
        row = self._layer_row(diff_id)
        if row is None or not row[1]:
            return None, self.readers
        have = {tuple(r) for r in self.db.execute(
            "SELECT analyzer, version, fingerprint FROM layer_analyses WHERE layer_id = ?", [row[0]])}
        return row[0], [a for a in self.readers if (a.name, a.version, a.fingerprint()) not in have]

    def _cached_records(self, layer_id: int | None, a: Analyzer) -> list:
        if layer_id is None:
            return []
        row = self.db.execute("SELECT records FROM layer_analyses WHERE layer_id=? AND analyzer=? AND version=? AND"
                              " fingerprint=?", [layer_id, a.name, a.version, a.fingerprint()]).fetchone()
        return unpack(row[0]) if row else []

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

    def _offer(self, blob: LayerBlob, source: str):
        layer_id, missing = self._missing(blob.diff_id)
        if layer_id is not None and not missing:
            self.on_event("layer_cached", {"key": blob.key, "diff_id": blob.diff_id})
            return _Cached(blob.diff_id, layer_id)
        try:
            result = self._read_layer(blob, missing, f"{source}: layer {blob.key}")
            self.on_event("layer_read", {"key": blob.key, "diff_id": result.diff_id})
            return result
        except ScanError as exc:
            return exc

    def source_results(self, source: str) -> Iterator[ImageResult]:
        """One result per image found in `source` (or one failure), in the order the source yields them."""
        pending: dict[str, LayerResult | _Cached | ScanError] = {}
        claimed: set[str] = set()  # diff_ids of layers read in this pass and handed to an earlier image
        produced = False
        try:
            options = dict(self.policy.get("source_options") or {})
            if self.policy.get("registries"):  # per-host settings: [registries."HOST"] ca, insecure, ...
                options.setdefault("registries", self.policy["registries"])
            events = open_source(source, self.limits, **options)
            for ev in _progress(events, self.progress, source):
                if isinstance(ev, LayerBlob):
                    pending[ev.key] = self._offer(ev, source)
                elif isinstance(ev, SourceFailure):
                    produced = True
                    yield _failure(source, ev.reference, ev.error, analyzers=self.versions, risks=self.risks)
                elif isinstance(ev, ImageSpec):
                    produced = True
                    yield self.image_result(ev, pending, claimed)
                    self._release(ev, pending)
        except ScanError as exc:
            produced = True
            yield _failure(source, source, str(exc), analyzers=self.versions, risks=self.risks)
        except Exception as exc:  # a bug must fail this source's scan, never the batch
            produced = True
            yield _failure(source, source, f"internal error: {exc.__class__.__name__}: {exc}",
                           traceback.format_exc(), analyzers=self.versions, risks=self.risks)
        if not produced:
            yield _failure(source, source, f"{source}: no image found", analyzers=self.versions, risks=self.risks)

    def _release(self, spec: ImageSpec, pending: dict) -> None:
        """Layers the writer has stored since (in-process scans) no longer need their results in memory:
        a layout of many images would otherwise hold every layer's file index until its last image."""
        for d in spec.layers:
            if isinstance(pending.get(d.key), LayerResult):
                row = self._layer_row(d.diff_id)
                if row and row[1]:
                    pending[d.key] = _Cached(d.diff_id, row[0])

    # --- one image -------------------------------------------------------------------------------
    def image_result(self, spec: ImageSpec, pending: dict, claimed: set[str]) -> ImageResult:
        started, t0 = dbm.now(), time.perf_counter()
        res = ImageResult(source=spec.source, reference=spec.reference, started_at=started, spec=spec,
                          cache_keys=dict(self.cache_keys), analyzers=dict(self.versions), risks=self.risks)
        try:
            self._evaluate(spec, pending, claimed, res)
        except ScanError as exc:
            return _failure(spec.source, spec.reference, str(exc), started_at=started, analyzers=res.analyzers,
                            risks=self.risks)
        except Exception as exc:
            return _failure(spec.source, spec.reference,
                            f"{spec.reference}: internal error: {exc.__class__.__name__}: {exc}",
                            traceback.format_exc(), started_at=started, analyzers=res.analyzers, risks=self.risks)
        res.seconds = round(time.perf_counter() - t0, 3)
        return res

    def _evaluate(self, spec: ImageSpec, pending: dict, claimed: set[str], res: ImageResult) -> None:
        layer_ids: list[int | None] = []
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
                if got.diff_id in claimed:
                    res.layers_cached += 1  # read once in this pass, for an earlier image
                else:
                    claimed.add(got.diff_id)
                    res.fresh.append(got)
                    res.layers_read += 1
                    res.warnings += [f"layer {d.index}: {w}" for w in got.warnings]
                row = self._layer_row(d.diff_id)
                layer_id = row[0] if row else None
                layer_entries = got.entries
                fresh = got.records
            else:
                layer_id = got.layer_id
                res.layers_cached += 1
                layer_entries = unpack(self.db.execute("SELECT file_index FROM layers WHERE id=?",
                                                       [layer_id]).fetchone()[0])
                fresh = {}
            layer_ids.append(layer_id)
            entries.append([tuple(e) for e in layer_entries])
            for a in self.readers:
                records[a.name].append(fresh[a.name] if a.name in fresh else self._cached_records(layer_id, a))

        fs = Filesystem.build(entries)
        ctx = ImageContext(spec=spec, fs=fs, policy=self.policy, db=self.db)
        ctx.layer_entries = entries  # type: ignore[attr-defined]
        # ids of layers the database already holds; None for a layer this scan is the first to store
        ctx.layer_ids = layer_ids  # type: ignore[attr-defined]
        ctx.scan_id = None  # type: ignore[attr-defined]  # assigned by the writer, after collect
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
        res.warnings += ctx.warnings
        res.os, res.packages, res.findings, res.facts = ctx.os, ctx.packages, ctx.findings, ctx.facts


class Writer:
    """The writing half: the one place that writes scans, layers, images and results to the database."""

    def __init__(self, database, policy: dict | None = None, task_id: int | None = None,
                 on_event: Callable[[str, dict], None] | None = None):
        self.db = database
        self.policy = policy or {}
        self.task_id = task_id
        self.on_event = on_event or (lambda kind, data: None)
        self.stats = {"layers_read": 0, "layers_cached": 0}

    def write(self, res: ImageResult) -> ScanOutcome:
        self.stats["layers_read"] += res.layers_read
        self.stats["layers_cached"] += res.layers_cached
        if res.status == "failed":
            return self._failed(res, res.error, res.detail)
        try:
            with self.db.conn:  # one transaction for everything this scan writes
                outcome = self._write_done(res)
            self.on_event("scan_done", {"reference": res.reference, "scan_id": outcome.scan_id})
            return outcome
        except ScanError as exc:
            return self._failed(res, str(exc))
        except Exception as exc:
            return self._failed(res, f"{res.reference}: internal error: {exc.__class__.__name__}: {exc}",
                                traceback.format_exc())

    def _insert_scan(self, res: ImageResult, status: str) -> int:
        return self.db.conn.execute(
            "INSERT INTO scans (source, reference, status, started_at, tool_version, task_id, risk_types,"
            " analyzers, policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [res.source, res.reference, status, res.started_at or dbm.now(), TOOL_VERSION, self.task_id,
             dbm.dumps(res.risks or "all"), dbm.dumps(res.analyzers), dbm.dumps(_policy_record(self.policy))]).lastrowid

    def _failed(self, res: ImageResult, error: str, detail: str = "") -> ScanOutcome:
        error = error.splitlines()[0][:2000] if error else "unknown error"
        with self.db.conn:
            scan_id = self._insert_scan(res, "failed")
            self.db.conn.execute("UPDATE scans SET error=?, finished_at=?, warnings=? WHERE id=?",
                                 [error, dbm.now(), dbm.dumps([detail]) if detail else None, scan_id])
        self.on_event("scan_failed", {"reference": res.reference, "error": error})
        return ScanOutcome(res.reference, scan_id, "failed", error, layers_read=res.layers_read,
                           layers_cached=res.layers_cached)

    def _write_done(self, res: ImageResult) -> ScanOutcome:
        conn = self.db.conn
        spec = res.spec
        scan_id = self._insert_scan(res, "running")
        fresh = {l.diff_id: l for l in res.fresh}
        layer_ids: list[int] = []
        for d in spec.layers:
            if d.diff_id in fresh:
                layer_ids.append(self._store_layer(fresh.pop(d.diff_id), d, res.cache_keys))
                continue
            row = conn.execute("SELECT id FROM layers WHERE diff_id=?", [d.diff_id]).fetchone()
            if row is None:  # its reader was an earlier image of the same source whose write failed
                raise ScanError(f"{res.reference}: layer {d.index} ({d.diff_id}) is not in the database")
            layer_ids.append(row[0])
        image_id = self._store_image(spec, res.os, layer_ids)
        ctx = SimpleNamespace(os=res.os, packages=res.packages, findings=res.findings, facts=res.facts,
                              layer_ids=layer_ids)
        write_results(conn, scan_id, image_id, ctx)
        conn.execute("UPDATE scans SET status='done', finished_at=?, seconds=?, image_id=?, layers_read=?,"
                     " layers_cached=?, warnings=? WHERE id=?",
                     [dbm.now(), res.seconds, image_id, res.layers_read, res.layers_cached,
                      dbm.dumps(res.warnings) if res.warnings else None, scan_id])
        conn.execute("UPDATE images SET last_scan_id=? WHERE id=?", [scan_id, image_id])
        return ScanOutcome(res.reference, scan_id, "done", image_id=image_id, layers_read=res.layers_read,
                           layers_cached=res.layers_cached, warnings=list(res.warnings))

    def _store_layer(self, result: LayerResult, d, cache_keys: dict) -> int:
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
        for name, recs in result.records.items():
            key = cache_keys.get(name)
            if key is None:
                continue
            conn.execute("INSERT OR REPLACE INTO layer_analyses (layer_id, analyzer, version, fingerprint, records,"
                         " record_count, seconds, warnings, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                         [layer_id, name, key[0], key[1], pack(recs), len(recs),
                          round(result.seconds.get(name, 0.0), 4), None, dbm.now()])
        return layer_id

    def _store_image(self, spec: ImageSpec, os_info: OSInfo, layer_ids: list[int]) -> int:
        conn = self.db.conn
        rc = spec.runtime
        repo, tag = split_reference(spec.reference)
        values = {
            "reference": spec.reference, "repository": repo, "tag": tag, "manifest_digest": spec.manifest_digest,
            "config_digest": spec.config_digest, "index_digest": spec.index_digest, "platform": spec.platform,
            "media_type": spec.media_type, "source": spec.source,
            "size": spec.size or sum(r for r in _layer_sizes(conn, layer_ids)), "created": spec.created,
            "os_family": os_info.family, "os_version": os_info.version, "os_name": os_info.name,
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


class Scanner:
    """Scans sources into one database. One instance per run: analyzer instances are built once.

    `jobs` > 1 analyzes sources in that many local worker processes; `dask` (a scheduler address or a
    distributed.Client) analyzes them on a Dask cluster. Either way this process alone writes.
    """

    def __init__(self, database, policy: dict | None = None, risks: Iterable[str] | None = None,
                 analyzer_names: Iterable[str] | None = None, progress: bool | None = None,
                 task_id: int | None = None, on_event: Callable[[str, dict], None] | None = None,
                 jobs: int = 1, dask=None):
        self.db = database
        self.policy = policy or {}
        self.on_event = on_event or (lambda kind, data: None)
        self.analysis = Analysis(database, self.policy, risks, analyzer_names, progress, self.on_event)
        self.writer = Writer(database, self.policy, task_id, self.on_event)
        self.limits = self.analysis.limits
        self.risks = self.analysis.risks
        self.analyzers = self.analysis.analyzers
        self.readers = self.analysis.readers
        self.progress = progress
        self.jobs = max(1, int(jobs or 1))
        self.dask = dask
        self.analyzer_names = list(analyzer_names) if analyzer_names else None

    @property
    def task_id(self):
        return self.writer.task_id

    @task_id.setter
    def task_id(self, value):
        self.writer.task_id = value

    @property
    def stats(self) -> dict:
        return self.writer.stats

    def scan_source(self, source: str) -> list[ScanOutcome]:
        # sequential: each image is written before the next is analyzed, so later images see its layers
        return [self.writer.write(r) for r in self.analysis.source_results(source)]

    def job(self, source: str) -> "Job":
        return Job(database_path(self.db), self.policy, tuple(self.risks) if self.risks else None,
                   tuple(self.analyzer_names) if self.analyzer_names else None, source)

    def executor(self):
        if self.dask:
            from .dask_runner import DaskExecutor

            return DaskExecutor(self.dask)
        return LocalExecutor(self.jobs)

    def run(self, sources: Iterable[str]) -> list[ScanOutcome]:
        sources = list(sources)
        if not self.dask and (self.jobs <= 1 or len(sources) <= 1):
            out: list[ScanOutcome] = []
            for s in sources:
                out.extend(self.scan_source(s))
            return out
        with self.executor() as ex:
            return [o for o, _ in run_jobs(ex, [self.job(s) for s in sources], self.writer)]


# --- workers ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One source to analyze in a worker; the database is only read there (None: no cache)."""

    db_path: str | None
    policy: dict
    risks: tuple | None
    analyzer_names: tuple | None
    source: str


def database_path(database) -> str | None:
    row = database.execute("PRAGMA database_list").fetchone()
    return row[2] if row and row[2] else None


def open_read_only(path: str | None):
    """A read-only handle on the database, or None when this worker cannot see the file."""
    if not path or not os.path.exists(path):
        return None
    return dbm.connect(quote(path), readonly=True)


_WORKER_ANALYSES: dict[tuple, Analysis] = {}


def run_job(job: Job) -> list[ImageResult]:
    """Runs in a worker process (local or Dask): analysis only, results go back to the writer."""
    # per thread: a Dask worker runs several jobs at once in threads, and analyzers keep per-scan state
    key = (threading.get_ident(), job.db_path, json.dumps(job.policy, sort_keys=True, default=str), job.risks,
           job.analyzer_names)
    try:
        analysis = _WORKER_ANALYSES.get(key)
        if analysis is None:
            if len(_WORKER_ANALYSES) > 8:
                _WORKER_ANALYSES.clear()
            analysis = _WORKER_ANALYSES[key] = Analysis(open_read_only(job.db_path), job.policy, job.risks,
                                                        job.analyzer_names, progress=False)
        t0 = time.time()
        results = list(analysis.source_results(job.source))
        for r in results:
            r.ran = (t0, time.time())
        return results
    except Exception as exc:
        return [_failure(job.source, job.source, f"internal error: {exc.__class__.__name__}: {exc}",
                         traceback.format_exc())]


class LocalExecutor:
    """Local worker processes; `jobs` = 1 runs in this process (futures already done when returned)."""

    def __init__(self, jobs: int = 1):
        self.jobs = max(1, int(jobs))
        self.pool = None
        if self.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # forkserver: workers never inherit this process's open SQLite handle or threads
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context(method))

    @property
    def slots(self) -> int:
        return self.jobs

    def submit(self, job: Job):
        from concurrent.futures import Future

        if self.pool is not None:
            return self.pool.submit(run_job, job)
        fut: Future = Future()
        fut.set_result(run_job(job))
        return fut

    def wait(self, futures, timeout: float | None = None):
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
        return done

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def job_results(future, job: Job) -> list[ImageResult]:
    try:
        return future.result()
    except Exception as exc:  # a worker died or the cluster lost the task
        return [_failure(job.source, job.source, f"{job.source}: worker failed: {exc.__class__.__name__}: {exc}")]


def run_jobs(executor, jobs: Iterable[Job], writer: Writer) -> Iterator[tuple[ScanOutcome, Job]]:
    """Keeps every worker slot busy (never more in flight than slots) and writes results as they come."""
    queue = deque(jobs)
    running: dict = {}
    while queue or running:
        while queue and len(running) < executor.slots:
            job = queue.popleft()
            running[executor.submit(job)] = job
        for fut in executor.wait(list(running)):
            job = running.pop(fut)
            for res in job_results(fut, job):
                yield writer.write(res), job


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
    return _without_secrets({k: v for k, v in policy.items() if k not in ("source_options", "credentials")})


# credential settings (registry logins) by name: "password", "api_token", ...; the [secrets] section of
# rules is not one of them
_SECRET_WORDS = ("password", "passwd", "token", "auth", "secret", "credential", "credentials")


def _is_secret_key(key) -> bool:
    k = str(key).lower().replace("-", "_")
    return k in _SECRET_WORDS or any(k.endswith("_" + w) for w in _SECRET_WORDS)


def _without_secrets(value):
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items() if not _is_secret_key(k)}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


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
