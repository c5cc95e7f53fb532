"""The writer: the one process and place that writes scans, layers and images (findings through
ingest/findings.py), one transaction per image.

`Writer.write(result)` takes an `ImageResult` from the analysis side (this process, a local worker or
a Dask worker), evaluates it with the database (ingest/evaluate.py), then stores the new layers' walks
and records (the layer cache), the image row, its layer list and its results in one transaction, so a
reader sees a scan whole or not at all. A result that failed, or whose evaluation fails, is stored as a
failed scan with its one-line reason and nothing else.
"""
from __future__ import annotations

import sqlite3
import time
import traceback
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

from . import db as dbm
from . import reuse
from .analysis import ImageResult
from .cache import pack
from .evaluate import Evaluator
from .failures import describe
from .findings import write_results
from .layers import LayerResult
from .model import ImageSpec, OSInfo, ScanError
from .sources import absolute_source

TOOL_VERSION = "0.1.0"


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


class Writer:
    """The writing half: the one place that writes scans, layers, images and results to the database."""

    def __init__(self, database, policy: dict | None = None, task_id: int | None = None,
                 on_event: Callable[[str, dict], None] | None = None):
        self.db = database
        self.policy = policy or {}
        self.task_id = task_id
        self.on_event = on_event or (lambda kind, data: None)
        self.evaluator = Evaluator(self.policy)
        self._t0 = time.perf_counter()
        self.stats = {"layers_read": 0, "layers_cached": 0}
        self._failed_sources: set[str] = set()  # sources with an image whose write failed in this writer

    def write(self, res: ImageResult) -> ScanOutcome:
        """Evaluates one image's result (ingest/evaluate.py) and stores it in one transaction."""
        t0 = time.perf_counter()
        self.stats["layers_read"] += res.layers_read
        self.stats["layers_cached"] += res.layers_cached
        try:
            if res.status == "failed":
                res.seconds = round(res.seconds + time.perf_counter() - t0, 3)
                return self._failed(res, res.error, res.detail)
            try:
                self._t0 = t0
                if res.reuse:  # unchanged since its current scan: its results copied forward (ingest/reuse.py)
                    with self.db.conn:
                        outcome = self._write_reused(res)
                else:
                    ekey = self._evaluate_key(res)
                    self.evaluator.evaluate(self.db, res)
                    self._t0 = t0
                    with self.db.conn:  # one transaction for everything this scan writes
                        outcome = self._write_done(res)
                        if ekey:
                            reuse.record(self.db.conn, outcome.scan_id, outcome.image_id or 0, res.reuse_key, ekey)
                            if res.reuse_inputs:
                                reuse.record_analysis_key(self.db.conn, res.reuse_inputs, res.reuse_key, res.analyzers)
                self._source_done(res, True)
                self.on_event("scan_done", {"reference": res.reference, "scan_id": outcome.scan_id})
                return outcome
            except ScanError as exc:
                res.seconds = round(res.seconds + time.perf_counter() - t0, 3)
                return self._failed(res, str(exc))
            except Exception as exc:
                res.seconds = round(res.seconds + time.perf_counter() - t0, 3)
                return self._failed(res, f"{res.reference}: {describe(exc)}", traceback.format_exc())
        finally:
            res.release()

    def _evaluate_key(self, res: ImageResult) -> str:
        """What the evaluation is about to read from the database (ingest/reuse.py), when the scan is kept
        for reuse; taken before it reads."""
        if not res.reuse_key or res.spec is None:
            return ""
        reuse.ensure(self.db)
        return reuse.evaluate_key(self.db.conn, [d.diff_id for d in res.spec.layers], res.spec.manifest_digest,
                                  self.policy)

    def _write_reused(self, res: ImageResult) -> ScanOutcome:
        conn = self.db.conn
        info = res.reuse or {}
        scan_id = self._insert_scan(res, "running")
        image_id, res.warnings = reuse.copy_forward(conn, res, scan_id, self.policy)
        res.seconds = round(res.seconds + time.perf_counter() - self._t0, 3)
        conn.execute("UPDATE scans SET status='done', finished_at=?, seconds=?, image_id=?, layers_read=?,"
                     " layers_cached=?, warnings=? WHERE id=?",
                     [dbm.now(), res.seconds, image_id, res.layers_read, res.layers_cached,
                      dbm.dumps(res.warnings) if res.warnings else None, scan_id])
        conn.execute("UPDATE images SET last_scan_id=?, source=? WHERE id=?", [scan_id, absolute_source(res.source), image_id])
        return ScanOutcome(res.reference, scan_id, "done", image_id=image_id, layers_read=res.layers_read,
                           layers_cached=res.layers_cached, layers_known=res.layers_known, warnings=list(res.warnings),
                           seconds=res.seconds, reused=f"unchanged since scan {info.get('scan')} ({info.get('how')}), its results"
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

    def _failed(self, res: ImageResult, error: str, detail: str = "") -> ScanOutcome:
        error = error.splitlines()[0][:2000] if error else "unknown error"
        try:
            with self.db.conn:
                scan_id = self._insert_scan(res, "failed")
                self.db.conn.execute("UPDATE scans SET error=?, finished_at=?, seconds=?, warnings=? WHERE id=?",
                                     [error, dbm.now(), res.seconds or None, dbm.dumps([detail]) if detail else None,
                                      scan_id])
        except sqlite3.Error as exc:  # a full or locked database cannot take the failure's row either
            error = f"{error} (and the failure could not be recorded: {describe(exc)})"
            scan_id = 0
        self._source_done(res, False)
        self.on_event("scan_failed", {"reference": res.reference, "error": error})
        return ScanOutcome(res.reference, scan_id, "failed", error, layers_read=res.layers_read,
                           layers_cached=res.layers_cached, layers_known=res.layers_known)

    def _write_done(self, res: ImageResult) -> ScanOutcome:
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
        # the whole scan's wall time: reading and applying (in its worker), evaluating and writing (here)
        res.seconds = round(res.seconds + time.perf_counter() - self._t0, 3)
        conn.execute("UPDATE scans SET status='done', finished_at=?, seconds=?, image_id=?, layers_read=?,"
                     " layers_cached=?, warnings=? WHERE id=?",
                     [dbm.now(), res.seconds, image_id, res.layers_read, res.layers_cached,
                      dbm.dumps(res.warnings) if res.warnings else None, scan_id])
        conn.execute("UPDATE images SET last_scan_id=? WHERE id=?", [scan_id, image_id])
        return ScanOutcome(res.reference, scan_id, "done", image_id=image_id, layers_read=res.layers_read,
                           layers_cached=res.layers_cached, layers_known=res.layers_known, warnings=list(res.warnings),
                           seconds=res.seconds)

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


