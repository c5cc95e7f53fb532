"""The writer: the one process and place that writes scans, layers and images (findings through
ingest/findings.py), in batches: one transaction per batch of images, each image whole or not at all.

`Writer.write_batch(results)` takes `ImageResult`s from the analysis side (this process, a local worker
or a Dask worker), already judged by the evaluators that need no database and redacted there
(ingest/evaluate.py). In one transaction (BEGIN IMMEDIATE) it evaluates each with the database (the
evaluators that consult it) and stores the new layers' walks and records (the layer cache), the image
row, its layer list and its results, each image inside a savepoint of its own: an image whose
evaluation or write fails is rolled back to its savepoint and recorded as a failed scan with its
one-line reason, and the batch goes on. The report tables (ingest/readmodel.py) are rebuilt once for
the batch's images, the caller's bookkeeping (the task items) runs in the same transaction, and one
commit makes the batch visible: a reader, or a process killed at any point, sees each scan whole or
not at all. When the batch's transaction itself fails (its commit, a full disk, a lost lock), nothing
of it is kept and every image is written again in a transaction of its own, so one image's failure
never loses the others. `write(result)` is a batch of one.
"""
from __future__ import annotations

import logging
import sqlite3
import time
import traceback
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable, Sequence

from . import db as dbm
from . import reuse
from .analysis import ImageResult
from .cache import pack, pack_entries
from .evaluate import Evaluator
from .failures import describe
from .findings import write_results
from .model import ImageSpec, OSInfo, ScanError
from .readmodel import BATCH_STEPS, refresh_images
from .sources import absolute_source

dbm.register_schema("read_model_batch", BATCH_STEPS)  # at import: a new database gets it with the rest

if TYPE_CHECKING:
    from .layers import LayerResult  # the layer walk is imported by what reads layers, not by a rescan

TOOL_VERSION = "0.1.0"
log = logging.getLogger("stowaway.writer")

WRITE_LOCK_WAIT = dbm.WRITE_LOCK_WAIT  # how long a batch waits for another writer's lock (db.begin_immediate)


@dataclass
class ScanOutcome:
    reference: str
    scan_id: int
    status: str  # done | failed | interrupted
    error: str = ""
    image_id: int | None = None
    layers_read: int = 0
    layers_cached: int = 0
    layers_known: int = 0  # of layers_read: already in the database, read because the source names them late
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reused: str = ""  # the image was unchanged: what was read to know it, and which scan's results were copied

    def layers_text(self) -> str:
        """What was read and what was reused, truthfully: '3 layers read, 5 cached' (cached: taken from the
        database unread), plus, when some read layers were in the database already, why they were read."""
        text = f"{self.layers_read} layers read, {self.layers_cached} cached"
        if self.layers_known:
            text += (f"; {self.layers_known} of the layers read were already in the database (this source names a"
                     " layer only once it has been read, so its cached analysis could not be used instead)")
        if self.reused:
            text += f"; {self.reused}"
        return text


class _BatchLost(Exception):
    """SQLite rolled the batch's transaction back on its own; the message says why (one sentence)."""


class _LockWaitOver(Exception):
    """Another writer kept the write lock past the wait: the batch's images fail with this sentence."""


def _locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class Writer:
    """The writing half: the one place that writes scans, layers, images and results to the database."""

    def __init__(self, database, policy: dict | None = None, task_id: int | None = None,
                 on_event: Callable[[str, dict], None] | None = None):
        self.db = database
        self.policy = policy or {}
        self.task_id = task_id
        self.on_event = on_event or (lambda kind, data: None)
        self.evaluator = Evaluator(self.policy)
        self.stats = {"layers_read": 0, "layers_cached": 0, "batches": 0, "batch_fallbacks": 0}
        self._failed_sources: set[str] = set()  # sources with an image whose write failed in this writer
        dbm.ensure_schema(database, "read_model_batch", BATCH_STEPS)

    def write(self, res: ImageResult) -> ScanOutcome:
        """Evaluates one image's result with the database and stores it in one transaction."""
        return self.write_batch([res])[0]

    def write_batch(self, results: Sequence[ImageResult],
                    finish: Callable[[list[ScanOutcome]], None] | None = None) -> list[ScanOutcome]:
        """Evaluates and stores RESULTS in one transaction, each image whole or not at all (see the
        module's docstring); FINISH(outcomes) runs inside that transaction before the commit (the
        caller's bookkeeping: it must not commit). Returns one outcome per result, in order."""
        for res in results:
            self.stats["layers_read"] += res.layers_read
            self.stats["layers_cached"] += res.layers_cached
        try:
            try:
                outcomes = self._batch(results, finish)
                self.stats["batches"] += 1
            except _LockWaitOver as exc:  # written again alone, each would wait as long again
                outcomes = [ScanOutcome(r.reference, 0, "failed", f"{r.reference}: {exc}", layers_read=r.layers_read,
                                        layers_cached=r.layers_cached, layers_known=r.layers_known,
                                        seconds=round(r.seconds, 3)) for r in results]
                if finish is not None:  # the caller's bookkeeping (a task's items: failed, retried) when it can
                    try:
                        with self.db.conn:
                            finish(outcomes)
                    except sqlite3.Error as lost:
                        log.warning("stowaway: %s; their task items could not be updated either (%s)", exc, describe(lost))
            except (sqlite3.Error, _BatchLost):  # nothing of the batch was kept: each image on its own
                self.stats["batch_fallbacks"] += 1
                outcomes = [self._alone(res) for res in results]
                if finish is not None:
                    with self.db.conn:
                        finish(outcomes)
        finally:
            for res in results:
                res.release()
        for res, o in zip(results, outcomes):  # once committed: file sources' records (ingest/reuse.py), events
            self._source_done(res, o.status == "done")
            if o.status == "done":
                self.on_event("scan_done", {"reference": o.reference, "scan_id": o.scan_id})
            else:
                self.on_event("scan_failed", {"reference": o.reference, "error": o.error})
        return outcomes

    def _batch(self, results: Sequence[ImageResult],
               finish: Callable[[list[ScanOutcome]], None] | None) -> list[ScanOutcome]:
        """One transaction: a savepoint per image, the report tables once, FINISH, one commit."""
        conn = self.db.conn
        if any(r.reuse_key for r in results):
            reuse.ensure(self.db)  # before the transaction: a schema step would commit it
        if conn.in_transaction:
            conn.commit()
        self._begin()
        try:
            # the report tables' trigger leaves this transaction's images to the one refresh below
            conn.execute("INSERT INTO read_model_deferred (batch) VALUES (1)")
            outcomes = [self._image(res) for res in results]
            conn.execute("DELETE FROM read_model_deferred")
            refresh_images(conn, [o.image_id for o in outcomes if o.status == "done"])
            if finish is not None:
                finish(outcomes)
            conn.commit()
            return outcomes
        except BaseException:  # Ctrl-C, SIGTERM, a bug, a lost transaction: nothing of the batch is kept
            if conn.in_transaction:
                conn.rollback()
            raise

    def _begin(self) -> None:
        """BEGIN IMMEDIATE, waiting for another writer up to the policy's write-lock wait (db.begin_immediate);
        past it raises _LockWaitOver with the sentence its images fail with."""
        try:
            dbm.begin_immediate(self.db.conn, dbm.write_lock_wait(self.policy),
                                lambda wait: self.on_event("write_lock_wait", {"seconds": wait}))
        except dbm.WriteLockWaitOver as exc:
            raise _LockWaitOver(f"not written: {exc}; scan it again") from None

    def _alone(self, res: ImageResult) -> ScanOutcome:
        """One image in a transaction of its own; when even that fails, a failed scan with the reason (and
        scan id 0 when the failure cannot be recorded either)."""
        t0 = time.perf_counter()
        try:
            return self._batch([res], None)[0]
        except _BatchLost as exc:
            error = f"{res.reference}: {exc}"
        except sqlite3.Error as exc:
            error = f"{res.reference}: {describe(exc)}"
        seconds = round(res.seconds + time.perf_counter() - t0, 3)
        try:
            with self.db.conn:
                scan_id = self._insert_scan(res, "failed")
                self.db.conn.execute("UPDATE scans SET error=?, finished_at=?, seconds=? WHERE id=?",
                                     [error, dbm.now(), seconds or None, scan_id])
        except sqlite3.Error as exc:
            error, scan_id = f"{error} (and the failure could not be recorded: {describe(exc)})", 0
        return ScanOutcome(res.reference, scan_id, "failed", error, layers_read=res.layers_read,
                           layers_cached=res.layers_cached, layers_known=res.layers_known, seconds=seconds)

    def _image(self, res: ImageResult) -> ScanOutcome:
        """One image inside the batch's transaction, under a savepoint: evaluated and stored whole, or
        rolled back and recorded as a failed scan with its one-line reason."""
        conn = self.db.conn
        t0 = time.perf_counter()
        conn.execute("SAVEPOINT image")
        detail = ""
        try:
            if res.status == "failed":
                error, detail = res.error, res.detail
            else:
                if res.reuse:  # unchanged since its current scan: its results copied forward (ingest/reuse.py)
                    outcome = self._write_reused(res, t0)
                else:
                    ekey = self._evaluate_key(res)  # what the evaluation reads, taken before it reads
                    self.evaluator.evaluate(self.db, res)
                    outcome = self._write_done(res, t0)
                    if ekey:
                        reuse.record(conn, outcome.scan_id, outcome.image_id or 0, res.reuse_key, ekey)
                        if res.reuse_inputs:
                            reuse.record_analysis_key(conn, res.reuse_inputs, res.reuse_key, res.analyzers)
                conn.execute("RELEASE image")
                return outcome
        except ScanError as exc:
            error = str(exc)
            self._rollback_to_savepoint(exc)
        except Exception as exc:
            error, detail = f"{res.reference}: {describe(exc)}", traceback.format_exc()
            self._rollback_to_savepoint(exc)
        error = error.splitlines()[0][:2000] if error else "unknown error"
        seconds = round(res.seconds + time.perf_counter() - t0, 3)
        conn.execute("SAVEPOINT image")
        try:
            scan_id = self._insert_scan(res, "failed")
            conn.execute("UPDATE scans SET error=?, finished_at=?, seconds=?, warnings=? WHERE id=?",
                         [error, dbm.now(), seconds or None, dbm.dumps([detail]) if detail else None, scan_id])
            conn.execute("RELEASE image")
        except sqlite3.Error as exc:  # a full or locked database cannot take the failure's row either
            self._rollback_to_savepoint(exc)
            error = f"{error} (and the failure could not be recorded: {describe(exc)})"
            scan_id = 0
        return ScanOutcome(res.reference, scan_id, "failed", error, layers_read=res.layers_read,
                           layers_cached=res.layers_cached, layers_known=res.layers_known, seconds=seconds)

    def _rollback_to_savepoint(self, cause: Exception) -> None:
        """Undoes the current image's writes; when SQLite has already rolled the whole transaction back
        (a full disk, an I/O error), the batch is lost: raised with CAUSE's sentence."""
        conn = self.db.conn
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO image")
                conn.execute("RELEASE image")
                return
        except sqlite3.Error:
            pass
        raise _BatchLost(str(cause) if isinstance(cause, ScanError) else describe(cause)) from None

    def _evaluate_key(self, res: ImageResult) -> str:
        """What the evaluation is about to read from the database (ingest/reuse.py), when the scan is kept
        for reuse; taken before it reads."""
        if not res.reuse_key or res.spec is None:
            return ""
        reuse.ensure(self.db)
        return reuse.evaluate_key(self.db.conn, [d.diff_id for d in res.spec.layers], res.spec.manifest_digest,
                                  self.policy)

    def _write_reused(self, res: ImageResult, t0: float) -> ScanOutcome:
        conn = self.db.conn
        info = res.reuse or {}
        scan_id = self._insert_scan(res, "running")
        image_id, res.warnings = reuse.copy_forward(conn, res, scan_id, self.policy)
        seconds = round(res.seconds + time.perf_counter() - t0, 3)
        conn.execute("UPDATE scans SET status='done', finished_at=?, seconds=?, image_id=?, layers_read=?,"
                     " layers_cached=?, warnings=? WHERE id=?",
                     [dbm.now(), seconds, image_id, res.layers_read, res.layers_cached,
                      dbm.dumps(res.warnings) if res.warnings else None, scan_id])
        conn.execute("UPDATE images SET last_scan_id=?, source=? WHERE id=?", [scan_id, absolute_source(res.source), image_id])
        return ScanOutcome(res.reference, scan_id, "done", image_id=image_id, layers_read=res.layers_read,
                           layers_cached=res.layers_cached, layers_known=res.layers_known, warnings=list(res.warnings),
                           seconds=seconds, reused=f"unchanged since scan {info.get('scan')} ({info.get('how')}), its results"
                                  " copied forward")

    def _source_done(self, res: ImageResult, ok: bool) -> None:
        """A file source's record (ingest/reuse.py) after its last image: kept only when every image of it
        was written."""
        if not ok:
            self._failed_sources.add(res.source)
        if res.source_state is None:
            return
        source, before, after, images = res.source_state
        try:
            reuse.ensure(self.db)
            with self.db.conn:
                reuse.record_file(self.db.conn, source, before, after,
                                  [] if source in self._failed_sources else images)
        except sqlite3.Error:  # only a later rescan's shortcut is lost
            pass

    def _insert_scan(self, res: ImageResult, status: str) -> int:
        return self.db.conn.execute(
            "INSERT INTO scans (source, reference, status, started_at, tool_version, task_id, risk_types,"
            " analyzers, policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [absolute_source(res.source), res.reference, status, res.started_at or dbm.now(), TOOL_VERSION, self.task_id,
             dbm.dumps(res.risks or "all"), dbm.dumps(res.analyzers), dbm.dumps(_policy_record(self.policy))]).lastrowid

    def _write_done(self, res: ImageResult, t0: float) -> ScanOutcome:
        conn = self.db.conn
        spec = res.spec
        if spec is None:
            raise ScanError(f"{res.reference}: no image description to store")
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
        write_results(conn, scan_id, image_id, ctx)  # type: ignore[arg-type]  # the results and the layer ids
        # the whole scan's wall time: reading, applying and evaluating (in its worker), evaluating and writing (here)
        seconds = round(res.seconds + time.perf_counter() - t0, 3)
        conn.execute("UPDATE scans SET status='done', finished_at=?, seconds=?, image_id=?, layers_read=?,"
                     " layers_cached=?, warnings=? WHERE id=?",
                     [dbm.now(), seconds, image_id, res.layers_read, res.layers_cached,
                      dbm.dumps(res.warnings) if res.warnings else None, scan_id])
        conn.execute("UPDATE images SET last_scan_id=? WHERE id=?", [scan_id, image_id])
        return ScanOutcome(res.reference, scan_id, "done", image_id=image_id, layers_read=res.layers_read,
                           layers_cached=res.layers_cached, layers_known=res.layers_known, warnings=list(res.warnings),
                           seconds=seconds)

    def _store_layer(self, result: LayerResult, d, cache_keys: dict) -> int:
        conn = self.db.conn
        row = conn.execute("SELECT id FROM layers WHERE diff_id=?", [result.diff_id]).fetchone()
        values = [d.digest or result.blob_digest, d.media_type, getattr(result, "compressed_size", 0), result.size,
                  len(result.entries), result.packed if result.packed is not None else pack_entries(result.entries), dbm.now()]
        if row:
            layer_id = row[0]
            conn.execute("UPDATE layers SET digest=?, media_type=?, compressed_size=?, size=?, entries=?,"
                         " file_index=?, indexed_at=? WHERE id=?", values + [layer_id])
        else:
            layer_id = conn.execute("INSERT INTO layers (digest, media_type, compressed_size, size, entries,"
                                    " file_index, indexed_at, diff_id) VALUES (?,?,?,?,?,?,?,?)",
                                    values + [result.diff_id]).lastrowid
        now = dbm.now()
        # each analyzer's records, encoded here or already where the layer was read (executors.pack_layer)
        packed = dict(getattr(result, "packed_records", None) or {})
        packed.update({name: (pack(recs), len(recs)) for name, recs in result.records.items()})
        conn.executemany("INSERT OR REPLACE INTO layer_analyses (layer_id, analyzer, version, fingerprint, records,"
                         " record_count, seconds, warnings, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                         [(layer_id, name, key[0], key[1], blob, count, round(result.seconds.get(name, 0.0), 4), None, now)
                          for name, (blob, count) in packed.items() if (key := cache_keys.get(name)) is not None])
        return layer_id

    def _store_image(self, spec: ImageSpec, os_info: OSInfo, layer_ids: list[int]) -> int:
        conn = self.db.conn
        rc = spec.runtime
        repo, tag = split_reference(spec.reference)
        values = {
            "reference": spec.reference, "repository": repo, "tag": tag, "manifest_digest": spec.manifest_digest,
            "config_digest": spec.config_digest, "index_digest": spec.index_digest, "platform": spec.platform,
            "media_type": spec.media_type, "source": absolute_source(spec.source),
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
    """The policy in force, as recorded with the scan (credentials never among it). The custom weak
    passwords are private settings (shown only to actors with the write permission): the record keeps
    how many there were, never the words."""
    record = _without_secrets({k: v for k, v in policy.items() if k not in ("source_options", "credentials")})
    passwords = record.get("passwords")
    if isinstance(passwords, dict) and "extra" in passwords:
        passwords = dict(passwords)
        extra = passwords.pop("extra")
        passwords["extra_count"] = len(extra) if isinstance(extra, list) else 1
        record["passwords"] = passwords
    return record


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


