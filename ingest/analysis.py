"""The analysis side of a scan: index (per layer, cached) and apply (per image), no database writes.

`Analysis.source_results(source)` opens a source, reads each layer once as a stream — only when the
layer cache does not already hold what the selected analyzers would make of it — and turns every image
of the source into a picklable `ImageResult`: what the index analyzers' `collect` and the evaluators
that need no database produced, with the image config redacted (ingest/evaluate.py), and the per-layer
records the writer's evaluators will need. The rest of the evaluate stage (the evaluators that consult
the database) and the write (ingest/writer.py) happen in the writer process. A failure is confined to
the image it concerns.

The database is only read here, and only as a cache: `database=None` (a Dask worker that cannot see
the file) reads every layer and produces the same result.
"""
from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from stowaway.analyzers.base import Analyzer, select

from . import db as dbm
from . import parallel, reuse
from .cache import LayerCache, pack_entries
from .evaluate import Evaluator
from .failures import describe
from .model import Finding, ImageSpec, OSInfo, Package, ScanError
from .sources import LayerBlob, SourceFailure, open_source
from .streams import LayerStream, Limits

if TYPE_CHECKING:
    from .apply import Applier
    from .layers import LayerResult

# The layer walk and the applier (tarfile, zipfile, bz2, lzma, the squash) are imported where a layer is
# read or an image applied: a rescan of unchanged images does neither (ingest/reuse.py).


@dataclass
class ImageResult:
    """Everything one image's index and apply stages produced, before evaluation and any write:
    crosses process boundaries by pickle."""

    source: str
    reference: str
    status: str = "done"  # done | failed
    error: str = ""
    detail: str = ""  # traceback of an internal error
    started_at: str = ""
    seconds: float = 0.0  # wall time so far: layer reading and applying (the writer adds its own)
    spec: ImageSpec | None = None
    fresh: list[LayerResult] = field(default_factory=list)  # layers first read for this image
    layers_read: int = 0  # layers whose bytes were read for this image
    layers_cached: int = 0  # layers whose walk and records came from the database, unread
    layers_known: int = 0  # of layers_read: already in the database (the source names a layer only once read)
    os: OSInfo = field(default_factory=OSInfo)
    packages: list[Package] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # the applied image and the evaluate-stage analyzers' per-layer records, for the writer's evaluation;
    # once evaluated where read, only the records of the writer's evaluators are left
    fs: Any = None
    layer_entries: list[list[tuple]] = field(default_factory=list)
    owned_files: set[str] = field(default_factory=set)
    records: dict[str, list[list[dict]]] = field(default_factory=dict)
    cache_keys: dict[str, tuple[int, str]] = field(default_factory=dict)  # reader name -> (version, fingerprint)
    analyzers: dict[str, int] = field(default_factory=dict)  # name -> version, as the scan row records it
    risks: list[str] | None = None
    ran: tuple[float, float] = (0.0, 0.0)  # wall-clock start and end of the job that produced it, in its worker
    # ingest/reuse.py: the image is unchanged since its current scan, whose results the writer copies forward:
    # {"scan": previous scan id, "image": image id, "how": what was read to know it, "manifest_digest", "platform"}
    reuse: dict | None = None
    reuse_key: str = ""  # the analysis key the writer records with the scan (ingest/reuse.py)
    reuse_inputs: str = ""  # what that key was computed from (recorded with it: the next rescan need not compute it)
    # a file source's state before and after its full scan and the images it held (the last result only)
    source_state: tuple | None = None
    evaluated: str = ""  # "worker": evaluated where read and redacted; "writer": evaluation complete

    def release(self) -> None:
        """Drops what only the evaluation and the write needed (large for a large image)."""
        self.fs, self.layer_entries, self.records, self.fresh = None, [], {}, []


@dataclass
class _Cached:
    diff_id: str
    layer_id: int


def limits_from(policy: dict) -> Limits:
    conf = policy.get("limits") or {}
    known = Limits.__dataclass_fields__
    return Limits(**{k: v for k, v in conf.items() if k in known})


def failure(source: str, reference: str, error: str, detail: str = "", *, started_at: str = "",
            analyzers: dict[str, int] | None = None, risks: list[str] | None = None) -> ImageResult:
    error = error.splitlines()[0][:2000] if error else "unknown error"
    return ImageResult(source=source, reference=reference, status="failed", error=error, detail=detail,
                       started_at=started_at or dbm.now(), analyzers=dict(analyzers or {}), risks=risks)


_failure = failure  # the name other modules imported


class Analysis:
    """The reading half of a scan. `database` is only read, as a cache (None: no cache)."""

    def __init__(self, database, policy: dict | None = None, risks: Iterable[str] | None = None,
                 analyzer_names: Iterable[str] | None = None, progress: bool | None = None,
                 on_event: Callable[[str, dict], None] | None = None):
        self.db = database
        self.cache = LayerCache(database)
        self.policy = policy or {}
        self.limits = limits_from(self.policy)
        self.risks = sorted(set(risks)) if risks else None
        self.analyzer_names = list(analyzer_names) if analyzer_names else None
        self.progress = progress
        self.on_event = on_event or (lambda kind, data: None)
        # the analyzers are made on first use: a rescan of unchanged images may need none (ingest/reuse.py)
        self._analyzers: list[Analyzer] | None = None
        self._key: str | None = None  # the analysis key, computed from the analyzers
        self._recorded: tuple[str, dict[str, int]] | None = None  # (analysis key, versions) an earlier scan recorded
        self._inputs: str | None = None
        if self.db is None:
            self._load()  # a worker without the database: fail on a bad selection now, as ever

    def _load(self) -> list[Analyzer]:
        if self._analyzers is None:
            from .apply import Applier

            classes = select(self.risks, self.analyzer_names)
            analyzers = [cls(self.policy) for cls in classes]
            self._readers = [a for a in analyzers if a.reads_layers]
            self._cache_keys = {a.name: (a.version, a.fingerprint()) for a in self._readers}
            self._applier = Applier(analyzers, self.policy)
            self._evaluator = Evaluator(self.policy, analyzers)
            self._analyzers = analyzers
        return self._analyzers

    @property
    def analyzers(self) -> list[Analyzer]:
        return self._load()

    @property
    def readers(self) -> list[Analyzer]:
        self._load()
        return self._readers

    @property
    def cache_keys(self) -> dict[str, tuple[int, str]]:
        self._load()
        return self._cache_keys

    @property
    def applier(self) -> Applier:
        self._load()
        return self._applier

    @property
    def evaluator(self) -> Evaluator:
        self._load()
        return self._evaluator

    @property
    def versions(self) -> dict[str, int]:
        if self._analyzers is None and self._recorded is not None:
            return dict(self._recorded[1])
        return {a.name: a.version for a in self._load()}

    @property
    def reuse_inputs(self) -> str:
        """What the analysis key is computed from (ingest/reuse.py), '' when the analyzers must be asked."""
        if self._inputs is None:
            from .writer import TOOL_VERSION

            self._inputs = reuse.inputs_key(self.policy, self.risks, self.analyzer_names, TOOL_VERSION) or ""
        return self._inputs

    @property
    def analysis_key(self) -> str:
        """The analysis key from the analyzers themselves (what a scan records)."""
        if self._key is None:
            from .writer import TOOL_VERSION

            self._key = reuse.analysis_key(self.analyzers, self.risks, self.policy, TOOL_VERSION)
        return self._key

    @property
    def reuse_key(self) -> str:
        """The analysis key to look an unchanged image up with: as an earlier scan recorded it for the same
        inputs (no analyzer made), else from the analyzers."""
        if self._analyzers is None and self.db is not None:
            if self._recorded is None:
                self._recorded = reuse.cached_analysis_key(self.db.conn if hasattr(self.db, "conn") else self.db,
                                                           self.reuse_inputs)
            if self._recorded is not None:
                return self._recorded[0]
        return self.analysis_key

    def _reusing(self) -> bool:
        return self.db is not None and reuse.enabled(self.policy)

    def _reused(self, source: str, reference: str, manifest_digest: str, platform: str, how: str,
                read: int = 0) -> ImageResult | None:
        """A result that asks the writer to copy the image's current scan forward, when a rescan would
        reproduce it (ingest/reuse.py); None otherwise."""
        try:
            prev = reuse.previous(self.db.conn if hasattr(self.db, "conn") else self.db, reference, manifest_digest,
                                  platform, self.reuse_key, self.policy)
        except Exception:  # the cache cannot answer (an older or read-only database): the scan runs in full
            return None
        if prev is None:
            return None
        image_id, scan_id, layers = prev
        return ImageResult(source=source, reference=reference, layers_read=read, layers_cached=layers - read,
                           analyzers=dict(self.versions), risks=self.risks, reuse_key=self.reuse_key,
                           reuse={"scan": scan_id, "image": image_id, "how": how, "manifest_digest": manifest_digest,
                                  "platform": platform})

    def _known_unchanged(self, source: str) -> list[ImageResult] | None:
        """Results for every image of a source known unchanged without opening it (a file whose record
        matches, an engine image by its id), or None."""
        conn = self.db.conn if hasattr(self.db, "conn") else self.db
        found = reuse.known_images(conn, source)
        if found is None and source.startswith("docker:"):
            found = _engine_images(source, self.policy)
        if found is None and source.startswith("registry:"):
            found = _registry_images(conn, source, self.policy)
        if not found:
            return None
        images, how = found
        out = []
        for reference, manifest_digest, platform in images:
            res = self._reused(source, reference, manifest_digest, platform, how)
            if res is None:
                return None
            out.append(res)
        return out

    # --- index: one layer ------------------------------------------------------------------------
    def _read_layer(self, blob: LayerBlob, analyzers: list[Analyzer], what: str,
                    defer: bool = False) -> "LayerResult | _Walked":
        """The layer walked and its digests checked; `defer`: when its digest is computed in a thread of its
        own (a local uncompressed blob), the walk's result before that digest is known (`_Walked`: settle it
        later, the next layer may be walked meanwhile)."""
        from .layers import walk

        raw = blob.open() if blob.open else blob.stream
        stream = None
        try:
            stream = LayerStream(raw, self.limits, what)
            t0 = time.perf_counter()
            result = walk(stream.tar, -1, analyzers, self.limits, what)
            walked = _Walked(result, stream, raw if blob.open else None, t0)
            stream = raw = None  # the walked layer holds them now, until it is settled or discarded
        finally:
            if stream is not None:
                stream.close()
            if raw is not None and blob.open and hasattr(raw, "close"):
                raw.close()
        return walked if defer and walked.stream.deferrable else walked.settle()

    def _offer(self, blob: LayerBlob, source: str, verify: bool = False):
        plan = self._plan(blob, source, verify)
        return self._read(blob, plan, source) if isinstance(plan, list) else plan

    def _plan(self, blob: LayerBlob, source: str, verify: bool) -> "_Cached | ScanError | list[Analyzer]":
        """The cached layer (checked when `verify`), or the analyzers that must read it."""
        layer_id, missing = self.cache.missing(blob.diff_id, self.readers)
        if layer_id is not None and not missing:
            checked = _verified(blob) if verify else True
            if checked is False:
                return ScanError(f"{source}: layer {blob.key} does not match its digest (the archive changed or is"
                                 " corrupt)")
            if checked:
                self.on_event("layer_cached", {"key": blob.key, "diff_id": blob.diff_id})
                return _Cached(blob.diff_id, layer_id)
            missing = list(self.readers)  # cannot be checked without reading it: read
        return missing

    def _read(self, blob: LayerBlob, missing: list[Analyzer], source: str, announce: bool = True,
              defer: bool = False):
        try:
            result = self._read_layer(blob, missing, f"{source}: layer {blob.key}", defer)
            if announce and not isinstance(result, _Walked):
                self.on_event("layer_read", {"key": blob.key, "diff_id": result.diff_id})
            return result
        except ScanError as exc:
            return exc

    # --- a source --------------------------------------------------------------------------------
    def source_results(self, source: str) -> Iterator[ImageResult]:
        """One result per image found in `source` (or one failure), in the order the source yields them.

        Each result's `seconds` and `started_at` cover its share of the source's wall time: from the
        source's opening (or the previous image's result) to its own, layer reading included."""
        pending: dict[str, LayerResult | _Cached | ScanError | LayerBlob] = {}
        claimed: set[str] = set()  # diff_ids of layers read in this pass and handed to an earlier image
        produced = False
        mark, started = time.perf_counter(), dbm.now()

        def timed(res: ImageResult) -> ImageResult:
            res.seconds = round(time.perf_counter() - mark, 3)
            res.started_at = started
            return res

        reusing = self._reusing()
        if reusing:
            try:
                known = self._known_unchanged(source)
            except Exception:  # the engine cannot be asked, the file cannot be read: the scan says why
                known = None
            if known:
                for res in known:
                    yield timed(res)
                    mark, started = time.perf_counter(), dbm.now()
                return
        file_key = reuse.file_key(source)
        before = reuse.file_state(file_key[1]) if file_key else None
        images: list[list[str]] = []  # the source's images, when every one of them was analyzed
        complete = True
        held: list[ImageResult] = []  # the last result waits for the source's end (its source_state)

        def hold(res: ImageResult):
            out = held[:]
            held[:] = [res]
            return out

        try:
            options = dict(self.policy.get("source_options") or {})
            if self.policy.get("registries"):  # per-host settings: [registries."HOST"] ca, insecure, ...
                options.setdefault("registries", self.policy["registries"])
            # a compressed archive names its layers only at its end: when the cache may hold some of them,
            # a first pass learns their digests so those are passed over instead of analyzed again
            options.setdefault("prescan", not self.cache.empty())
            events = open_source(source, self.limits, **options)
            for ev in _progress(events, self.progress, source):
                if isinstance(ev, LayerBlob):
                    # a file not known unchanged: its layers are checked against their digests before the
                    # cache stands in for them (a layer changed in place keeps its name and size). A layer
                    # that can be opened later waits for its image: an unchanged one needs none of them.
                    pending[ev.key] = ev if ev.open is not None else self._offer(ev, source,
                                                                                 verify=file_key is not None)
                elif isinstance(ev, SourceFailure):
                    produced, complete = True, False
                    yield from hold(timed(failure(source, ev.reference, ev.error, analyzers=self.versions,
                                                  risks=self.risks)))
                    mark, started = time.perf_counter(), dbm.now()
                elif isinstance(ev, ImageSpec):
                    produced = True
                    if file_key is not None:  # a file not known unchanged: its layers checked first
                        self._offer_waiting(ev, pending, source, True)
                    got = self._reused_spec(ev, pending, claimed) if reusing else None
                    if got is None:
                        self._offer_waiting(ev, pending, source, False)
                        got = self.image_result(ev, pending, claimed)
                    if got.status == "done":
                        images.append([ev.reference, ev.manifest_digest, ev.platform or ""])
                    else:
                        complete = False
                    yield from hold(timed(got))
                    mark, started = time.perf_counter(), dbm.now()
                    self._release(ev, pending)
        except ScanError as exc:
            produced = True
            images = []
            yield from hold(timed(failure(source, source, str(exc), analyzers=self.versions, risks=self.risks)))
        except Exception as exc:  # a bug must fail this source's scan, never the batch
            produced = True
            images = []
            yield from hold(timed(failure(source, source, f"{source}: {describe(exc)}",
                                          traceback.format_exc(), analyzers=self.versions, risks=self.risks)))
        if held:
            if file_key and self.db is not None:
                held[0].source_state = (source, before, reuse.file_state(file_key[1]), images if complete else [])
            yield held[0]
        if not produced:
            yield timed(failure(source, source, f"{source}: no image found", analyzers=self.versions, risks=self.risks))

    def _offer_waiting(self, spec: ImageSpec, pending: dict, source: str, verify: bool) -> None:
        tasks: dict[str, tuple[LayerBlob, list[Analyzer]]] = {}
        for d in spec.layers:
            blob = pending.get(d.key)
            if isinstance(blob, LayerBlob) and d.key not in tasks:
                plan = self._plan(blob, source, verify)
                if isinstance(plan, list):
                    tasks[d.key] = (blob, plan)
                else:
                    pending[d.key] = plan
        # the layers to read, in two processes where that is safe (ingest/parallel.py)
        fork = len(tasks) > 1 and parallel.can_fork(source, {a for _, m in tasks.values() for a in m})
        # a layer's digest may still be computed while the next one is walked (settled in turn)
        results = parallel.read_all(list(tasks.values()), lambda blob, missing: self._read(blob, missing, source,
                                                                                            announce=False, defer=True),
                                    fork, idle=_pack_entries, settle=_settle, discard=_discard)
        for key, result in zip(tasks, results):
            pending[key] = result
            if not isinstance(result, ScanError):
                self.on_event("layer_read", {"key": key, "diff_id": result.diff_id})

    def _reused_spec(self, spec: ImageSpec, pending: dict, claimed: set[str]) -> ImageResult | None:
        """The copy-forward result of an image whose manifest and config were read, when it is unchanged."""
        read = [d for d in spec.layers if _was_read(pending.get(d.key)) and d.diff_id not in claimed]
        if any(isinstance(pending.get(d.key), ScanError) for d in spec.layers):
            return None
        res = self._reused(spec.source, spec.reference, spec.manifest_digest, spec.platform or "",
                           "manifest and config read", read=len(read))
        if res is not None:
            claimed.update(d.diff_id for d in read)
            res.layers_known = len(read)  # the image's current scan stored them all
        return res

    def _release(self, spec: ImageSpec, pending: dict) -> None:
        """Layers the writer has stored since (in-process scans) no longer need their results in memory:
        a layout of many images would otherwise hold every layer's file index until its last image."""
        for d in spec.layers:
            if _was_read(pending.get(d.key)):
                layer_id = self.cache.indexed(d.diff_id)
                if layer_id is not None:
                    pending[d.key] = _Cached(d.diff_id, layer_id)

    # --- one image: its layers, then the applier -------------------------------------------------
    def image_result(self, spec: ImageSpec, pending: dict, claimed: set[str]) -> ImageResult:
        res = ImageResult(source=spec.source, reference=spec.reference, spec=spec, cache_keys=dict(self.cache_keys),
                          analyzers=dict(self.versions), risks=self.risks,
                          reuse_key=self.analysis_key if self.db is not None else "",
                          reuse_inputs=self.reuse_inputs if self.db is not None else "")
        try:
            self._index_and_apply(spec, pending, claimed, res)
        except ScanError as exc:
            return failure(spec.source, spec.reference, str(exc), analyzers=res.analyzers, risks=self.risks)
        except Exception as exc:
            return failure(spec.source, spec.reference,
                           f"{spec.reference}: {describe(exc)}",
                           traceback.format_exc(), analyzers=res.analyzers, risks=self.risks)
        return res

    def _index_and_apply(self, spec: ImageSpec, pending: dict, claimed: set[str], res: ImageResult) -> None:
        from .apply import IndexedLayer, records_by_analyzer
        from .layers import LayerResult

        layers: list[IndexedLayer] = []
        for d in spec.layers:
            got = pending.get(d.key)
            if got is None:
                # offered under another key, or known to the database already
                layer_id = self.cache.indexed(d.diff_id)
                got = _Cached(d.diff_id, layer_id) if layer_id is not None else ScanError(f"layer {d.key} was not read")
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
                    known = self.cache.missing(d.diff_id, self.readers)
                    if known[0] is not None and not known[1]:
                        res.layers_known += 1
                layer_id = self.cache.indexed(d.diff_id)
                layer = IndexedLayer(d.index, d.diff_id, list(got.entries),  # the walk's tuples (a copy made in C)
                                     skimmed=(got.walked_for, got.skim_blocks))
                fresh = got.records
            else:
                layer_id = got.layer_id
                res.layers_cached += 1
                layer = IndexedLayer(d.index, d.diff_id, self.cache.entries(layer_id), cached=True)
                fresh = {}
            for a in self.readers:
                layer.records[a.name] = fresh[a.name] if a.name in fresh else self.cache.records(layer_id, a)
            layers.append(layer)
        ctx = self.applier.apply(spec, layers)
        evaluators = [a for a in self.analyzers if a.stage == "evaluate" and a.reads_layers]
        # evaluators that need no database, and the redaction, here: the writer only writes
        self.evaluator.evaluate_where_read(res, ctx, records_by_analyzer(evaluators, layers))

class _Walked:
    """A layer walked whose digest is still being computed in its stream's thread: `settle` waits for it,
    checks nothing more than a walk that waited would have, and closes the stream; `close` gives it up."""

    def __init__(self, result: LayerResult, stream: LayerStream, raw: Any, started: float):
        self.result, self.stream, self.raw, self.started = result, stream, raw, started

    @property
    def entries(self) -> list:  # what `_pack_entries` reads while the digest is computed
        return self.result.entries

    def settle(self) -> LayerResult:
        try:
            result = self.result
            result.blob_digest, result.diff_id = self.stream.finish()
            compressed_size, result.size = self.stream.sizes
            result.seconds["_walk"] = time.perf_counter() - self.started
            result.compression = self.stream.compression  # type: ignore[attr-defined]
            result.compressed_size = compressed_size  # type: ignore[attr-defined]
            return result
        finally:
            self.close()

    def close(self) -> None:
        self.stream.close()
        if self.raw is not None and hasattr(self.raw, "close"):
            self.raw.close()
        self.raw = None


def _settle(got):
    """A `_Walked` layer settled (its digests known, its stream closed); anything else as it is."""
    if isinstance(got, _Walked):
        try:
            return got.settle()
        except ScanError as exc:
            return exc
    return got


def _discard(got) -> None:
    if isinstance(got, _Walked):
        got.close()


def _pack_entries(result) -> None:
    """The file index as the writer stores it, made while a forked reader still works (ingest/parallel.py)."""
    from .layers import LayerResult

    if isinstance(result, _Walked):
        result = result.result
    if isinstance(result, LayerResult) and result.packed is None:
        result.packed = pack_entries(result.entries)


def _was_read(got) -> bool:
    """Whether GOT is a layer read in this pass (a LayerResult). Without the layer walk loaded none was read:
    asking does not load it (an unchanged OCI layout's rescan reads its manifest and config only)."""
    layers = sys.modules.get("stowaway.ingest.layers")
    return layers is not None and isinstance(got, layers.LayerResult)


def _verified(blob: LayerBlob) -> bool | None:
    """Whether a layer's bytes are what its name or the config says (a hash of the blob as it is, with no
    decompression: an uncompressed layer against its diff_id, a compressed one against the blob digest),
    or None when neither can be told without reading it."""
    import hashlib

    from .streams import compression_of

    raw: Any = blob.open() if blob.open else blob.stream
    if raw is None:
        return None
    try:
        head = raw.peek(4) if hasattr(raw, "peek") else raw.read(4)  # a stream is not consumed before the verdict
        if compression_of(head[:4]) == "none":
            expected = blob.diff_id
        else:
            expected = blob.digest or ("sha256:" + blob.key.rsplit("/", 1)[1] if blob.key.startswith("blobs/sha256/")
                                       else "")
        if not expected.startswith("sha256:"):
            return None  # read in full instead (the walk checks its diff_id)
        h = hashlib.sha256(b"" if hasattr(raw, "peek") else head)
        while True:
            chunk = raw.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
        return "sha256:" + h.hexdigest() == expected
    finally:
        if blob.open and hasattr(raw, "close"):
            raw.close()


def _registry_images(conn, source: str, policy: dict) -> tuple[list[list[str]], str] | None:
    """`registry:REF` of one image manifest: its digest (pinned in the reference: no request; else the
    registry's Docker-Content-Digest by a HEAD, or when that cannot answer, by one manifest GET); its platform
    as stored with that digest (the digest names the config, hence the platform). A digest the database does
    not hold for this reference (the tag moved) or an index is left to the full path, which reads on."""
    from .sources import parse_source
    from .sources.registry import INDEX_TYPES, head_digest, manifest_identity, parse_reference

    _, location, _ = parse_source(source)
    ref = parse_reference(location)
    if not conn.execute("SELECT 1 FROM images WHERE reference = ? LIMIT 1", [str(ref)]).fetchone():
        return None  # never scanned: no request spent on the question
    options = dict(policy.get("source_options") or {})
    if policy.get("registries"):
        options.setdefault("registries", policy["registries"])
    found: tuple[str, str] | None
    if ref.digest:  # content-addressed: the manifest is the one scanned under this reference, or none was
        found, how = (str(ref), ref.digest), "pinned by digest, nothing asked of the registry"
    else:
        probed = head_digest(location, **options)
        if probed is not None:
            if probed[2] in INDEX_TYPES:
                return None
            found, how = (probed[0], probed[1]), "manifest digest by HEAD, nothing downloaded"
        else:
            found, how = manifest_identity(location, **options), "manifest read"
    if found is None:
        return None
    row = conn.execute("SELECT coalesce(platform, '') FROM images WHERE reference = ? AND manifest_digest = ?",
                       list(found)).fetchone()
    return ([[found[0], found[1], row[0]]], how) if row else None


def _engine_images(source: str, policy: dict) -> tuple[list[list[str]], str] | None:
    """`docker:REF`: the image's reference, id (its config digest, the manifest digest a `docker save` gives
    it) and platform from the engine's API, without saving it."""
    from .sources import parse_source
    from .sources.engine import engine_identities

    _, location, _ = parse_source(source)
    options = dict(policy.get("source_options") or {})
    found = engine_identities(location, options)
    return (found, "image id from the engine") if found else None


def _progress(events, enabled, label):
    """Layers and bytes read, with their rate, on a terminal (ingest/output.py draws every bar)."""
    from .output import scan_progress

    return scan_progress(events, enabled, label)
