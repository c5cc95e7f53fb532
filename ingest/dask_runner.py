"""Scale-out on an existing Dask distributed cluster: workers analyze, this process writes.

Workers run `executors.run_job` and send back picklable `ImageResult`s; SQLite keeps one writer.
A worker that can see the database file (same host, or a shared filesystem at the same path) reads
its layer cache read-only; one that cannot reads every layer (correct, only slower). Baselines,
compliance and the redaction run in the worker; vulnerabilities and the base image need the database
and run in the writer (ingest/evaluate.py), so a worker's result is the same either way. The writer
stores the results in batches (ingest/writer.py, `[scan] write_batch`).
"""
from __future__ import annotations

from .model import ScanError


class DaskExecutor:
    """`address` is a scheduler address ('tcp://host:8786') or an existing distributed.Client."""

    def __init__(self, address, slots: int | None = None, timeout: float = 30, per_task: int = 1):
        try:
            from distributed import Client
        except ImportError:
            raise ScanError("--dask needs the 'distributed' package (pip install 'dask[distributed]')") from None
        if isinstance(address, Client):
            self.client, self.owned = address, False
        else:
            try:
                self.client, self.owned = Client(address, timeout=timeout, set_as_default=False), True
            except (OSError, TimeoutError) as exc:
                raise ScanError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self._slots = slots
        self._per_task = max(1, int(per_task))

    @property
    def slots(self) -> int:
        if self._slots:
            return self._slots
        threads = sum((w.get("nthreads") or 1) for w in self.client.scheduler_info().get("workers", {}).values())
        return max(1, threads)

    @property
    def ahead(self) -> int:
        """Jobs submitted beyond those that can run: each worker thread has its next job waiting at the
        scheduler and starts it the moment it is done, instead of waiting while this process receives
        its result, writes a batch and submits another (the round trip was idle time of every worker).
        None when a concurrency below the cluster's threads was asked for: that bound stays exact."""
        return 0 if self._slots else self.slots

    @property
    def per_task(self) -> int:
        """Sources one Dask task may carry (run_jobs): the scheduler's and the workers' cost of a task (its
        transitions, messages, the result's transfer: 2-4 ms of CPU each, about 5 % of an analysis-heavy
        image) is paid once for several images. 1 when a concurrency below the cluster's threads was
        asked for: a task's sources are all 'running' from its start, and that bound stays exact."""
        return 1 if self._slots else self._per_task

    def submit_group(self, jobs):
        from .executors import run_jobs

        return self.client.submit(run_jobs, tuple(jobs), pure=False)

    def submit(self, job):
        from .executors import run_job

        # pure=False: the same source scanned twice must run twice (the registry may have changed)
        return self.client.submit(run_job, job, pure=False)

    def wait(self, futures, timeout: float | None = None):
        from distributed import wait

        try:
            with self.client.as_current():  # wait() looks for a default client; ours is not one
                done, _ = wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return done

    def gather(self, futures) -> dict:
        """The results of the finished FUTURES in one request, straight from the workers that hold them:
        through the scheduler (the Client's default) each result was a round trip of its own that the
        scheduler relayed, about 67 KB an image of the benchmark's, CPU of the scheduler's per image and
        a wait of this loop's. A future that failed, or that this request could not fetch, is left out:
        job_results asks for it alone and reports why."""
        finished = [f for f in futures if f.status == "finished"]
        if not finished:
            return {}
        try:
            values = self.client.gather(finished, direct=True)
        except Exception:  # a worker gone in between: each is asked for on its own
            return {}
        return dict(zip(finished, values))

    def close(self):
        if self.owned:
            self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
