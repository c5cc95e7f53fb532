"""A scan, in three stages and four modules (see docs/DEVELOPING.md):

* index and apply — ingest/analysis.py (`Analysis`, `ImageResult`), with ingest/cache.py (the layer
  cache, read only) and ingest/apply.py (the applier): where the layers are read, no database needed;
  the evaluators that need no database and the redaction run there too (ingest/evaluate.py);
* evaluate and write — ingest/evaluate.py (`Evaluator`) and ingest/writer.py (`Writer`): in the one
  writer process, with the database, one transaction per batch of images (a savepoint per image);
  findings through ingest/findings.py;
* executors — ingest/executors.py (`Job`, `run_job`, `LocalExecutor`) and ingest/dask_runner.py.

One run loop drives them: the task runner (ingest/tasks.py `TaskRunner`), for the CLI, the schedule,
Datasette's "scan again" and the notebooks alike. `Scanner` is the library entry point: a thin
wrapper that creates a task for its sources and runs it. This module re-exports the names other
modules and the tests import from it.
"""
from __future__ import annotations

from typing import Callable, Iterable

from stowaway.analyzers.base import select

from .analysis import Analysis, ImageResult, _failure, limits_from  # noqa: F401  (re-exported)
from .cache import pack, unpack  # noqa: F401  (re-exported)
from .evaluate import Evaluator  # noqa: F401  (re-exported)
from .executors import Job, LocalExecutor, database_path, job_results, open_read_only, run_job  # noqa: F401
from .findings import finding_fingerprint, write_results  # noqa: F401  (re-exported)
from .writer import TOOL_VERSION, ScanOutcome, Writer, split_reference  # noqa: F401  (re-exported)


class Scanner:
    """Scans sources into one database: creates a task for them and runs it with the task runner.

    `jobs` > 1 analyzes sources in that many local worker processes; `dask` (a scheduler address or a
    distributed.Client) analyzes them on a Dask cluster. Either way this process alone evaluates and writes.
    """

    def __init__(self, database, policy: dict | None = None, risks: Iterable[str] | None = None,
                 analyzer_names: Iterable[str] | None = None, progress: bool | None = None,
                 task_id: int | None = None, on_event: Callable[[str, dict], None] | None = None,
                 jobs: int = 1, dask=None):
        self.db = database
        self.policy = policy or {}
        self.risks = sorted(set(risks)) if risks else None
        self.analyzer_names = list(analyzer_names) if analyzer_names else None
        select(self.risks, self.analyzer_names)  # unknown risk types or analyzers fail here, before any task
        self.progress = progress
        self.on_event = on_event
        self.jobs = max(1, int(jobs or 1))
        self.dask = dask
        self.task_id = task_id  # the task of the last run
        self.stats = {"layers_read": 0, "layers_cached": 0}

    def run(self, sources: Iterable[str]) -> list[ScanOutcome]:
        from .tasks import TaskRunner, create_task

        sources = list(sources)
        if not sources:
            return []
        self.task_id = create_task(self.db, sources, "manual", self.risks, 0 if self.dask and self.jobs == 1
                                   else self.jobs, executor="dask" if self.dask else "local")
        runner = TaskRunner(self.db, self.policy, dask=self.dask, analyzer_names=self.analyzer_names,
                            progress=self.progress, on_event=self.on_event)
        summary = runner.run(self.task_id)
        for o in summary.outcomes:
            self.stats["layers_read"] += o.layers_read
            self.stats["layers_cached"] += o.layers_cached
        return summary.outcomes

    def scan_source(self, source: str) -> list[ScanOutcome]:
        return self.run([source])
