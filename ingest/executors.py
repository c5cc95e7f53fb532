"""Executors: where the analysis side of a scan runs. The task runner (ingest/tasks.py) submits one
`Job` per source and writes the `ImageResult`s that come back, in this process alone.

* `LocalExecutor(1)`: in this process (futures already done when returned);
* `LocalExecutor(n)`: n local worker processes (forkserver: no inherited SQLite handle);
* `DaskExecutor` (ingest/dask_runner.py): a Dask distributed cluster.

A worker needs no database: `Job.db_path` only lets one that can see the file (same host, or a shared
filesystem at the same path) read its layer cache, read only; one that cannot reads every layer, and
the result is the same. Evaluators that need no database and the redaction run in the worker; those
that consult the database (advisories, stored images) run in the writer (ingest/evaluate.py).
"""
from __future__ import annotations

import json
import os
import threading
import time
import traceback
from dataclasses import dataclass
from urllib.parse import quote

from . import db as dbm
from .analysis import Analysis, ImageResult, failure
from .failures import describe


@dataclass(frozen=True)
class Job:
    """One source to analyze in a worker; the database is only read there, as a cache (None: no cache)."""

    db_path: str | None
    policy: dict
    risks: tuple | None
    analyzer_names: tuple | None
    source: str


def database_path(database) -> str | None:
    row = database.execute("PRAGMA database_list").fetchone()
    return row[2] if row and row[2] else None


def open_read_only(path: str | None):
    """A read-only handle on the database, or None when this worker cannot see or open the file."""
    if not path or not os.path.exists(path):
        return None
    try:
        database = dbm.connect(quote(path), readonly=True)
        database.execute("SELECT 1 FROM layers LIMIT 1").fetchall()
        return database
    except Exception:  # not readable from here: a cache miss on every layer, not a failure
        return None


_WORKER_ANALYSES: dict[tuple, Analysis] = {}


def run_job(job: Job) -> list[ImageResult]:
    """Runs in a worker process (local or Dask): index, apply and the database-free evaluation; results
    go back to the writer."""
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
            for layer in r.fresh:
                pack_layer(layer)
        for r in results:
            r.ran = (t0, time.time())
        return results
    except Exception as exc:
        return [failure(job.source, job.source, f"{job.source}: {describe(exc)}",
                        traceback.format_exc())]


def run_jobs(jobs: tuple[Job, ...]) -> list[list[ImageResult]]:
    """Several sources in one task of a Dask cluster, one after the other: each job's results, in order.
    Each source is its own job (run_job): one failing fails alone, with its reason, and its neighbours go on."""
    return [run_job(job) for job in jobs]


def group_results(future) -> list[list[ImageResult]] | None:
    """A group's results (run_jobs), or None when its task failed as a whole (a worker lost, the task
    cancelled): the caller then runs each of its sources again in a task of its own, so that a source
    that kills its worker fails alone."""
    try:
        return future.result()
    except Exception:
        return None


def pack_layer(layer) -> None:
    """A layer first read here, made ready for the layer cache where it was read: its file index and each
    analyzer's records encoded as the writer stores them (cache.pack), so the one writer, which every
    worker waits on, does not encode them (1 ms an image of the benchmark's) and less travels to it."""
    from .cache import pack, pack_entries

    if layer.packed is None:
        layer.packed = pack_entries(layer.entries)
    for name, recs in layer.records.items():
        layer.packed_records[name] = (pack(recs), len(recs))
    layer.records = {}


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

    def abandon(self):
        """On interruption: queued jobs cancelled, running ones not waited for."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def job_results(future, job: Job) -> list[ImageResult]:
    try:
        return future.result()
    except Exception as exc:  # a worker died or the cluster lost the task
        return [failure(job.source, job.source, f"{job.source}: worker failed: {exc.__class__.__name__}: {exc}")]
