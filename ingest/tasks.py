"""Scan tasks: a set of sources to scan, with risk types, a concurrency, retries and per-registry limits.

A task is a row in `tasks` with one `task_items` row per source; both are updated as work goes on, so
`stowaway tasks` shows state, progress, counts and errors while it runs (WAL lets readers in).
Sources are analyzed by an executor (this process, local worker processes or a Dask cluster) and
written by this process alone: what workers return is written in batches, one transaction for up to
`[scan] write_batch` images (default 16), the first waiting at most `write_batch_seconds` (default 1),
never while a worker could be given its next job, and at once when a worker has nothing left to start
(the scan's last jobs: its last writes overlap them); the batch's task items are updated in the same
transaction. A source scanned in this process is written as it is analyzed.

Rate limit: a third-party registry (or any registry with `images_per_hour` in the policy) gets at most
that many images started per sliding hour, counted over every task. An image over the limit stays
queued with `not_before` set to when a slot frees; a later run (`schedule run`, `schedule run-once`,
`tasks run`) picks it up. A failed image is retried per the task's `retries`, after `retry_delay`
seconds, and never holds up the others. Time comes from a clock object, so tests use a fake one.

This is the one run loop: the CLI's `scan`, `rescan` and `tasks run`, the schedule, Datasette's "scan
again", the notebooks' ScanPanel and the library's `Scanner` all create a task and run it here.

Cancelling (`stowaway tasks cancel ID`, the console's Cancel button): a task nobody runs ends at once;
a running one stops starting images, finishes and writes the ones in progress, and ends `cancelled`.
Its images that never started are `cancelled` too; their earlier scans stay as they were.

Interruption: Ctrl-C (SIGINT) or SIGTERM during a run marks the task, its running items and the scan
in progress `interrupted` (then the KeyboardInterrupt goes on: the CLI exits 130); the signal is also
remembered, so that one whose KeyboardInterrupt Python dropped still stops the run before its next write. A process that dies
without that chance (kill -9, power loss) leaves its task `running` with its pid, host and heartbeat;
the next TaskRunner on any host marks it interrupted: at once on the same host when the pid is gone,
elsewhere when the heartbeat is older than `[scan] stale_after` seconds (default 3600).
`stowaway tasks run ID` resumes an interrupted task (its interrupted items are queued again).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import db as dbm
from .analysis import Analysis, ImageResult
from .executors import Job, LocalExecutor, database_path, group_results, job_results
from .model import RISK_TYPES, ScanError
from .writer import ScanOutcome, Writer

SCHEMA = [
    """
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,              -- manual | scheduled | rescan
    policy_id INTEGER,               -- scan_policies.id of a scheduled task
    state TEXT NOT NULL,             -- queued | running | done | failed
    risk_types TEXT,
    concurrency INTEGER NOT NULL DEFAULT 1,
    retries INTEGER NOT NULL DEFAULT 0,
    retry_delay REAL NOT NULL DEFAULT 60,
    executor TEXT,
    total INTEGER DEFAULT 0,
    done INTEGER DEFAULT 0,
    failed INTEGER DEFAULT 0,
    waiting INTEGER DEFAULT 0,
    running INTEGER DEFAULT 0,
    max_running INTEGER DEFAULT 0,
    progress REAL DEFAULT 0,
    layers_read INTEGER DEFAULT 0,
    layers_cached INTEGER DEFAULT 0,
    error TEXT,
    created_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    next_run_at TEXT
);
CREATE TABLE task_items (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    source TEXT NOT NULL,
    registry TEXT,
    state TEXT NOT NULL,             -- queued | running | done | failed
    attempts INTEGER DEFAULT 0,
    not_before REAL DEFAULT 0,       -- epoch seconds: rate limit or retry delay
    started_ts REAL,
    finished_ts REAL,
    worker_started REAL,
    worker_finished REAL,
    images INTEGER,
    scan_ids TEXT,
    error TEXT
);
CREATE INDEX idx_task_items_task ON task_items(task_id, state);
CREATE INDEX idx_task_items_registry ON task_items(registry, started_ts);
""",
    # who runs a task, for finding the ones a dead process left 'running' (state may be 'interrupted')
    """
ALTER TABLE tasks ADD COLUMN pid INTEGER;
ALTER TABLE tasks ADD COLUMN host TEXT;
ALTER TABLE tasks ADD COLUMN heartbeat REAL;
""",
    # a manual scan's own rate (images started per sliding hour, whatever their source); a sync task's
    # result per registry (kind 'sync': one item per registry, see sync.run_sync_task)
    """
ALTER TABLE tasks ADD COLUMN images_per_hour INTEGER;
ALTER TABLE task_items ADD COLUMN summary TEXT;
""",
    # a cancel asked for while the task runs (epoch seconds): its runner stops starting images, lets the
    # ones in progress finish and be written, and ends the task 'cancelled' (see cancel_task)
    """
ALTER TABLE tasks ADD COLUMN cancel_requested REAL;
""",
    # the next items to start (DUE_SQL), read in their order from the index: through (task_id, state) every
    # queued item of the task was sorted at each start, a millisecond and a half an image at 10,000 items
    """
CREATE INDEX IF NOT EXISTS idx_task_items_due ON task_items(task_id, state, not_before);
""",
]
dbm.register_schema("tasks", SCHEMA)  # at import: a new database gets it with the rest (db.py's template)

DUE_SQL = ("SELECT id, source, registry FROM task_items WHERE task_id=? AND state='queued' AND not_before <= ?"
           " ORDER BY not_before, id LIMIT ?")

STALE_AFTER = 3600.0  # seconds without a heartbeat before another host's 'running' task counts as dead
HEARTBEAT_EVERY = 10.0
# results from workers are written in batches of up to WRITE_BATCH images, the first of them waiting at
# most WRITE_BATCH_SECONDS ([scan] write_batch, write_batch_seconds): one transaction per batch
WRITE_BATCH = 16
WRITE_BATCH_SECONDS = 1.0
# sources one Dask task carries while plenty are queued ([scan] dask_sources_per_task; see DaskExecutor.per_task)
DASK_SOURCES_PER_TASK = 4


def ensure(database) -> None:
    dbm.ensure_schema(database, "tasks", SCHEMA)


def _hostname() -> str:
    """socket.gethostname() (the kernel's node name, as uname gives it) without importing socket for it."""
    try:
        return os.uname().nodename
    except AttributeError:  # no uname (Windows)
        import socket

        return socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def mark_interrupted(database, task_id: int, reason: str, now: float | None = None) -> None:
    """The task, its running items and the scan each of them had in progress become `interrupted`."""
    now = time.time() if now is None else now
    conn = database.conn
    with conn:
        items = conn.execute("SELECT id, source FROM task_items WHERE task_id=? AND state='running'",
                             [task_id]).fetchall()
        kind = (conn.execute("SELECT kind FROM tasks WHERE id=?", [task_id]).fetchone() or [""])[0]
        for item_id, source in items:
            if kind != "sync":  # a registry sync has no scan in progress
                conn.execute("INSERT INTO scans (source, reference, status, started_at, finished_at, error, task_id)"
                             " VALUES (?,?,?,?,?,?,?)",
                             [source, source, "interrupted", iso(now), iso(now), reason, task_id])
            conn.execute("UPDATE task_items SET state='interrupted', finished_ts=?, error=? WHERE id=?",
                         [now, reason, item_id])
        conn.execute("UPDATE tasks SET state='interrupted', running=0, error=?, finished_at=? WHERE id=?",
                     [reason, iso(now), task_id])


def recover_stale(database, stale_after: float = STALE_AFTER, clock=None) -> list[int]:
    """Marks interrupted every task left 'running' by a process that is gone; returns their ids."""
    now = (clock or SystemClock()).now()
    me, here = os.getpid(), _hostname()
    found = []
    for task_id, pid, host, beat in database.execute(
            "SELECT id, pid, host, heartbeat FROM tasks WHERE state='running'").fetchall():
        if pid is None:
            dead, who = True, "an earlier version that recorded no process"
        elif host == here:
            if pid == me:
                continue  # this process runs it (another thread)
            dead = not _alive(pid) or (beat is not None and now - beat > stale_after)
            who = f"process {pid} on {host}"
        else:
            dead, who = beat is None or now - beat > stale_after, f"process {pid} on {host}"
        if dead:
            mark_interrupted(database, task_id, f"interrupted: {who} stopped while running it", now)
            found.append(task_id)
    return found


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


def iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts is not None else None


def registry_of(source: str) -> str:
    if source.startswith("registry:"):
        return source[len("registry:"):].split("/", 1)[0]
    return ""


def hourly_limit(database, policy: dict, host: str) -> int | None:
    """images_per_hour of a registry: the policy's [registries."HOST"] wins, else the synced registry's,
    which applies to third-party registries only."""
    if not host:
        return None
    conf = ((policy.get("registries") or {}).get(host) or {})
    if conf.get("images_per_hour"):
        return int(conf["images_per_hour"])
    try:
        row = database.execute("SELECT type, images_per_hour FROM registries WHERE host=?", [host]).fetchone()
    except Exception:  # no registry tables yet: nothing synced, no limit recorded
        return None
    if row and row[0] == "third-party" and row[1]:
        return int(row[1])
    return None


def create_task(database, sources: Iterable[str], kind: str = "manual", risks: Iterable[str] | None = None,
                concurrency: int = 1, retries: int = 0, retry_delay: float = 60.0, policy_id: int | None = None,
                executor: str = "", clock=None, images_per_hour: int | None = None,
                lock_wait: float = dbm.WRITE_LOCK_WAIT) -> int:
    """A task over SOURCES (each once); `images_per_hour` caps how many of its images start in any
    sliding hour, whatever their source (a registry's own limit applies as well). While another writer
    holds the database (a bulk rematch) it waits up to LOCK_WAIT seconds for it (db.write_transaction)."""
    ensure(database)
    clock = clock or SystemClock()
    sources = list(dict.fromkeys(sources))  # once each, in the order given
    risks = sorted(set(risks)) if risks else None
    for r in risks or []:
        if r not in RISK_TYPES:
            raise ScanError(f"unknown risk type {r!r}; choose from {', '.join(RISK_TYPES)}")
    now = clock.now()
    with dbm.write_transaction(database.conn, lock_wait):
        task_id = database.conn.execute(
            "INSERT INTO tasks (kind, policy_id, state, risk_types, concurrency, retries, retry_delay, executor, total,"
            " waiting, created_at, images_per_hour) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [kind, policy_id, "queued", json.dumps(risks) if risks else None, max(0, int(concurrency or 0)),
             max(0, int(retries)), float(retry_delay), executor or "local", len(sources), len(sources),
             iso(now), int(images_per_hour) if images_per_hour and int(images_per_hour) > 0 else None]).lastrowid
        database.conn.executemany("INSERT INTO task_items (task_id, source, registry, state, not_before) VALUES"
                                  " (?,?,?,'queued',0)", [(task_id, s, registry_of(s)) for s in sources])
    return task_id


FINISHED = ("done", "failed", "cancelled")


def cancel_task(database, task_id: int, clock=None) -> str:
    """Cancels a task: its images not yet started will not be. A task no live process runs ends
    `cancelled` at once (with its images in progress, if a dead process left some); a running one is
    asked to stop (its runner finishes the images in progress). Returns what happened, in a sentence."""
    ensure(database)
    now = (clock or SystemClock()).now()
    conn = database.conn
    with conn:
        row = conn.execute("SELECT state, pid, host, heartbeat, kind FROM tasks WHERE id=?", [task_id]).fetchone()
        if row is None:
            raise ScanError(f"no task {task_id}")
        state, pid, host, beat, kind = row
        if state in FINISHED:
            raise ScanError(f"task {task_id} is already {state}: nothing to cancel")
        queued = conn.execute("UPDATE task_items SET state='cancelled', finished_ts=?, error='cancelled before it"
                              " started' WHERE task_id=? AND state IN ('queued', 'interrupted')",
                              [now, task_id]).rowcount
        runs = state == "running" and pid is not None and (
            _alive(int(pid)) if host == _hostname() else beat is not None and now - beat <= STALE_AFTER)
        if runs and kind == "sync":
            raise ScanError(f"task {task_id} is a registry synchronization in progress: it cannot be cancelled")
        if runs:
            conn.execute("UPDATE tasks SET cancel_requested=?, waiting=0 WHERE id=?", [now, task_id])
            busy = conn.execute("SELECT COUNT(*) FROM task_items WHERE task_id=? AND state='running'",
                                [task_id]).fetchone()[0]
            return (f"task {task_id}: cancelling: {queued} queued image(s) will not start; the {busy} in progress"
                    " finish first")
        busy = conn.execute("UPDATE task_items SET state='cancelled', finished_ts=?, error='cancelled: the process"
                            " running it had stopped' WHERE task_id=? AND state='running'", [now, task_id]).rowcount
        conn.execute("UPDATE tasks SET state='cancelled', cancel_requested=?, running=0, waiting=0, finished_at=?,"
                     " next_run_at=NULL WHERE id=?", [now, iso(now), task_id])
    return f"task {task_id}: cancelled ({queued + busy} image(s) not scanned)"


def _cancel_requested(database, task_id: int) -> bool:
    return bool(database.execute("SELECT cancel_requested FROM tasks WHERE id=?", [task_id]).fetchone()[0])


@dataclass
class TaskSummary:
    task_id: int
    state: str
    outcomes: list[ScanOutcome] = field(default_factory=list)
    waiting: int = 0
    next_at: float | None = None
    max_running: int = 0


class TaskRunner:
    """Runs tasks. `dask` (address or Client) sends analysis to a Dask cluster; otherwise concurrency 1
    runs in this process and more runs in local worker processes."""

    def __init__(self, database, policy: dict | None = None, clock=None, dask=None, analyzer_names=None,
                 progress: bool | None = False, on_item=None, on_event=None):
        ensure(database)
        self.db = database
        self.policy = policy or {}
        self.clock = clock or SystemClock()
        self.dask = dask
        self.analyzer_names = tuple(analyzer_names) if analyzer_names else None
        self.progress = progress
        self.on_item = on_item or (lambda item_id, state, error: None)
        self.on_event = on_event or (lambda kind, data: None)
        self._task_id: int | None = None
        self._signals = None  # what _on_sigterm replaced while a run takes Ctrl-C and SIGTERM
        self._beat = 0.0
        stale = (self.policy.get("scan") or {}).get("stale_after", STALE_AFTER)
        recover_stale(database, float(stale), self.clock)

    def _tx(self):
        """A write of the task's bookkeeping: waits for another writer's lock (a bulk rematch holds it for
        minutes) as the scan's own writes do, up to `[scan] write_lock_wait_seconds`, saying so once."""
        return dbm.write_transaction(self.db.conn, dbm.write_lock_wait(self.policy),
                                     lambda wait: self.on_event("write_lock_wait", {"seconds": wait}))

    def _heartbeat(self, force: bool = False) -> None:
        now = time.time()
        if self._task_id is None or (not force and now - self._beat < HEARTBEAT_EVERY):
            return
        self._beat = now
        with self._tx():
            self.db.conn.execute("UPDATE tasks SET heartbeat=? WHERE id=?", [now, self._task_id])

    def _event(self, kind: str, data: dict) -> None:
        self._heartbeat()
        self.on_event(kind, data)

    # --- bookkeeping ------------------------------------------------------------------------------
    def _refresh(self, task_id: int, running: int, max_running: int, state: str | None = None, **extra) -> None:
        counts = dict(self.db.execute("SELECT state, COUNT(*) FROM task_items WHERE task_id=? GROUP BY state",
                                      [task_id]).fetchall())
        total = sum(counts.values()) or 1
        finished = counts.get("done", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
        sets = {"done": counts.get("done", 0), "failed": counts.get("failed", 0), "waiting": counts.get("queued", 0),
                "running": running, "progress": round(finished / total, 4), **extra}
        if state:
            sets["state"] = state
        with self._tx():
            self.db.conn.execute(f"UPDATE tasks SET {', '.join(f'{k}=?' for k in sets)},"
                                 " max_running = MAX(max_running, ?) WHERE id=?",
                                 list(sets.values()) + [max_running, task_id])

    def _item_update(self, item_id: int, **values) -> None:
        with self._tx():
            self.db.conn.execute(f"UPDATE task_items SET {', '.join(f'{k}=?' for k in values)} WHERE id=?",
                                 list(values.values()) + [item_id])

    def _slot_free_at(self, host: str, limit: int, now: float) -> float | None:
        """None when `host` may start another image now; else when the oldest start leaves the hour."""
        starts = [r[0] for r in self.db.execute(
            "SELECT started_ts FROM task_items WHERE registry=? AND started_ts IS NOT NULL AND started_ts > ?"
            " ORDER BY started_ts", [host, now - 3600])]
        if len(starts) < limit:
            return None
        return starts[len(starts) - limit] + 3600

    def _task_slot_free_at(self, task_id: int, limit: int, now: float) -> float | None:
        """As _slot_free_at, over the images this task started (its own images_per_hour)."""
        starts = [r[0] for r in self.db.execute(
            "SELECT started_ts FROM task_items WHERE task_id=? AND started_ts IS NOT NULL AND started_ts > ?"
            " ORDER BY started_ts", [task_id, now - 3600])]
        if len(starts) < limit:
            return None
        return starts[len(starts) - limit] + 3600

    # --- running ----------------------------------------------------------------------------------
    def run(self, task_id: int, wait: float = 0.0) -> TaskSummary:
        """Runs what is due now; waits (by the clock) up to `wait` seconds for deferred items to come due."""
        row = self.db.execute("SELECT risk_types, concurrency, retries, retry_delay, state, kind, images_per_hour"
                              " FROM tasks WHERE id=?", [task_id]).fetchone()
        if row is None:
            raise ScanError(f"no task {task_id}")
        if row[5] == "sync":
            raise ScanError(f"task {task_id} is a registry sync, not a scan: it runs where it was started")
        task_limit = row[6]
        risks = json.loads(row[0]) if row[0] else None
        concurrency, retries, retry_delay = row[1] or 0, row[2], row[3]  # 0: as many as the executor has
        summary = TaskSummary(task_id, row[4])
        if row[4] in FINISHED:
            return summary
        writer = Writer(self.db, self.policy, task_id, self._event)
        if self.dask is None:
            concurrency = max(1, concurrency)
        unfinished = self.db.execute("SELECT COUNT(*) FROM task_items WHERE task_id=? AND state IN ('queued',"
                                     " 'running', 'interrupted')", [task_id]).fetchone()[0]
        # one source gains nothing from worker processes
        inline = self.dask is None and (concurrency == 1 or unfinished <= 1)
        analysis = Analysis(self.db, self.policy, risks, self.analyzer_names, self.progress,
                            self._event) if inline else None
        executor: Any = None  # LocalExecutor or DaskExecutor: submit, wait, slots, close
        if not inline:
            if self.dask is not None:
                from .dask_runner import DaskExecutor

                conf = self.policy.get("scan") or {}
                executor = DaskExecutor(self.dask, slots=concurrency or None,
                                        timeout=float(conf.get("dask_timeout", 30)),
                                        per_task=int(conf.get("dask_sources_per_task", DASK_SOURCES_PER_TASK)))
                concurrency = executor.slots
            else:
                executor = LocalExecutor(concurrency)
        started_at = iso(self.clock.now())
        with self._tx():
            self.db.conn.execute("UPDATE tasks SET state='running', started_at=COALESCE(started_at, ?),"
                                 " executor=?, pid=?, host=?, heartbeat=?, error=NULL, finished_at=NULL WHERE id=?",
                                 [started_at, "dask" if self.dask else "local", os.getpid(), _hostname(),
                                  time.time(), task_id])
        # an earlier run that died or was interrupted left items 'running' or 'interrupted': queued again
        with self._tx():
            self.db.conn.execute("UPDATE task_items SET state='queued' WHERE task_id=? AND state IN ('running',"
                                 " 'interrupted')", [task_id])
        self._task_id = task_id
        running: dict = {}  # future -> the (item id, job) of each source its task carries, in order
        max_running = 0
        # a Dask cluster gets its next jobs ahead (DaskExecutor.ahead): no worker waits for this loop
        ahead = getattr(executor, "ahead", 0) if executor is not None else 0
        # and several sources a task (DaskExecutor.per_task): a task's own cost is paid once for them
        per_task = getattr(executor, "per_task", 1) if executor is not None else 1
        conf = self.policy.get("scan") or {}
        batch_images = max(1, int(conf.get("write_batch", WRITE_BATCH)))
        batch_seconds = max(0.0, float(conf.get("write_batch_seconds", WRITE_BATCH_SECONDS)))
        batch: list[tuple[int, list[ImageResult]]] = []  # (item id, its results): analyzed, not yet written
        batch_since = 0.0
        deadline = self.clock.now() + wait
        cancelled = False
        previous = self._signals = _on_sigterm()
        try:
            while True:
                now = self.clock.now()
                if not cancelled and _cancel_requested(self.db, task_id):
                    cancelled = True  # nothing more starts; what runs finishes and is written
                if cancelled:
                    self._cancel_queued(task_id, now)
                # sources that may be submitted: as many in flight as full tasks would carry, even once the tasks
                # get smaller at the end, so that the last ones wait at the scheduler, not for this loop
                free = 0 if cancelled else (concurrency + ahead) * per_task - _in_flight(running)
                size = self._group_size(task_id, now, per_task, concurrency) if free > 0 and per_task > 1 else 1
                starting: list[tuple[int, Job]] = []
                due = self._due(task_id, now, free)
                drained = len(due) < free  # nothing more to start now: what runs are the scan's last jobs
                for item_id, source, host in due:
                    limit = hourly_limit(self.db, self.policy, host)
                    free_at = self._slot_free_at(host, limit, now) if limit else None
                    if free_at is None and task_limit:
                        free_at = self._task_slot_free_at(task_id, task_limit, now)
                    if free_at is not None:
                        self._item_update(item_id, not_before=free_at)
                        continue
                    self._item_update(item_id, state="running", started_ts=now, attempts=_attempts(self.db, item_id) + 1)
                    job = Job(database_path(self.db), self.policy, tuple(risks) if risks else None,
                              self.analyzer_names, source)
                    if analysis is not None:  # inline
                        self._heartbeat(force=True)
                        t0 = time.time()
                        outcomes = []
                        for r in analysis.source_results(source):
                            _interrupt_point(previous)
                            outcomes.append(writer.write(r))
                        self._finish_item(item_id, outcomes, [], (t0, time.time()), retries, retry_delay, summary)
                        max_running = max(max_running, 1)
                        self._refresh(task_id, 0, max_running)
                        continue
                    starting.append((item_id, job))
                if starting:
                    self._heartbeat(force=True)
                    for k in range(0, len(starting), size):
                        group = starting[k:k + size]
                        fut = (executor.submit(group[0][1]) if len(group) == 1
                               else executor.submit_group([job for _, job in group]))
                        running[fut] = group
                    max_running = max(max_running, _in_flight(running))
                    self._refresh(task_id, _in_flight(running), max_running)
                # the workers have their next jobs: write what came back, a batch at a time; and sooner at the
                # scan's end, so that the writes overlap the last jobs instead of following them: at once when a
                # worker has nothing left to do, and once nothing more is left to start, as soon as the batch
                # holds as many images as are still out (the last jobs, some still waiting at a Dask scheduler):
                # halves, then quarters..., the last write a small one
                back = sum(len(r) for _, r in batch)
                if batch and (len(running) < concurrency or back >= batch_images or (drained and back >= _in_flight(running))
                              or time.monotonic() - batch_since >= batch_seconds):
                    while batch:  # at most write_batch images a transaction (an item's images stay together)
                        n = 0
                        for k, (_, rs) in enumerate(batch):
                            if k and n + len(rs) > batch_images:
                                break
                            n += len(rs)
                        else:
                            k = len(batch)
                        self._write_batch(writer, batch[:k], retries, retry_delay, summary)
                        batch = batch[k:]
                    self._refresh(task_id, _in_flight(running), max_running)
                    continue
                if running:
                    timeout = max(0.0, batch_since + batch_seconds - time.monotonic()) if batch else None
                    done = executor.wait(list(running), timeout)
                    fetched = executor.gather(done) if hasattr(executor, "gather") else {}
                    for fut in done:
                        group = running.pop(fut)
                        got: list | None
                        if len(group) == 1:
                            got = [fetched[fut] if fut in fetched else job_results(fut, group[0][1])]
                        else:
                            got = fetched[fut] if fut in fetched else group_results(fut)
                            if got is None:  # the task failed as a whole: each source again, in a task of its own
                                for item_id, job in group:
                                    running[executor.submit(job)] = [(item_id, job)]
                                continue
                        if not batch:
                            batch_since = time.monotonic()
                        batch.extend((item_id, results) for (item_id, _), results in zip(group, got))
                    continue
                if self._due(task_id, self.clock.now(), 1):
                    continue
                nxt = self.db.execute("SELECT MIN(not_before) FROM task_items WHERE task_id=? AND state='queued'",
                                      [task_id]).fetchone()[0]
                if nxt is None:
                    break
                if nxt <= deadline:
                    # in short naps, so that a cancel is seen and the heartbeat goes on while it waits
                    self.clock.sleep(min(HEARTBEAT_EVERY, max(0.0, nxt - self.clock.now())))
                    self._heartbeat()
                    continue
                summary.next_at = nxt
                break
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see _on_sigterm)
            if executor is not None:
                getattr(executor, "abandon", executor.close)()  # no waiting for the workers' jobs
                executor = None
            mark_interrupted(self.db, task_id, "interrupted by a signal (Ctrl-C or SIGTERM)")
            self._task_id = None
            raise
        finally:
            _restore_sigterm(previous)
            self._signals = None
            if executor is not None:
                executor.close()
            self._task_id = None
        waiting = self.db.execute("SELECT COUNT(*) FROM task_items WHERE task_id=? AND state='queued'",
                                  [task_id]).fetchone()[0]
        failed = self.db.execute("SELECT COUNT(*) FROM task_items WHERE task_id=? AND state='failed'",
                                 [task_id]).fetchone()[0]
        total = self.db.execute("SELECT COUNT(*) FROM task_items WHERE task_id=?", [task_id]).fetchone()[0]
        if cancelled or _cancel_requested(self.db, task_id):
            self._cancel_queued(task_id, self.clock.now())
            state, waiting, summary.next_at = "cancelled", 0, None
        elif waiting:
            state = "queued"
        else:
            state = "failed" if failed and failed == total else "done"
        self._refresh(task_id, 0, max_running, state=state,
                      finished_at=iso(self.clock.now()) if not waiting else None, next_run_at=iso(summary.next_at),
                      layers_read=writer.stats["layers_read"] + _task_value(self.db, task_id, "layers_read"),
                      layers_cached=writer.stats["layers_cached"] + _task_value(self.db, task_id, "layers_cached"))
        summary.state, summary.waiting, summary.max_running = state, waiting, max_running
        return summary

    def _cancel_queued(self, task_id: int, now: float) -> None:
        """After a cancel: items queued since (a retry) are cancelled too."""
        with self._tx():
            self.db.conn.execute("UPDATE task_items SET state='cancelled', finished_ts=?, error='cancelled before it"
                                 " started' WHERE task_id=? AND state='queued'", [now, task_id])

    def _group_size(self, task_id: int, now: float, per_task: int, slots: int) -> int:
        """Sources in each task submitted now: PER_TASK while plenty are queued, fewer as the queue drains
        (each worker thread keeps two tasks' worth), so a scan's last images spread over the workers
        instead of one worker doing a last group alone while the others wait."""
        cap = 2 * slots * per_task
        queued = self.db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM task_items WHERE task_id=? AND state='queued'"
                                 " AND not_before <= ? LIMIT ?)", [task_id, now, cap]).fetchone()[0]
        return max(1, min(per_task, queued // (2 * slots)))

    def _due(self, task_id: int, now: float, n: int) -> list[tuple[int, str, str]]:
        if n <= 0:
            return []
        return [tuple(r) for r in self.db.execute(DUE_SQL, [task_id, now, n])]

    def _finish_item(self, item_id: int, outcomes: list[ScanOutcome], results: list[ImageResult], ran,
                     retries: int, retry_delay: float, summary: TaskSummary) -> None:
        with self._tx():
            error = self._settle_item(item_id, outcomes, results, ran, retries, retry_delay)
        summary.outcomes.extend(outcomes)
        self.on_item(item_id, "failed" if error else "done", error)

    def _settle_item(self, item_id: int, outcomes: list[ScanOutcome], results: list[ImageResult], ran,
                     retries: int, retry_delay: float) -> str | None:
        """The item's state after its images' outcomes, in the caller's transaction; returns its error."""
        errors = [o.error for o in outcomes if o.status == "failed"]
        if ran is None and results:
            ran = (min(r.ran[0] for r in results), max(r.ran[1] for r in results))
        now = self.clock.now()
        values: dict[str, Any] = dict(
            finished_ts=now, images=len(outcomes), scan_ids=json.dumps([o.scan_id for o in outcomes]),
            error="; ".join(errors)[:2000] or None, worker_started=ran[0] if ran else None,
            worker_finished=ran[1] if ran else None)
        if not errors:
            values["state"] = "done"
        elif _attempts(self.db, item_id) <= retries:
            values.update(state="queued", not_before=now + retry_delay)
        else:
            values["state"] = "failed"
        self.db.conn.execute(f"UPDATE task_items SET {', '.join(f'{k}=?' for k in values)} WHERE id=?",
                             list(values.values()) + [item_id])
        return values["error"]

    def _write_batch(self, writer: Writer, batch: list[tuple[int, list[ImageResult]]], retries: int,
                     retry_delay: float, summary: TaskSummary) -> None:
        """The images of BATCH's items in one transaction (ingest/writer.py), the items' states in it too."""
        results = [r for _, rs in batch for r in rs]
        ran = [(min(r.ran[0] for r in rs), max(r.ran[1] for r in rs)) if rs else None for _, rs in batch]
        errors: list[str | None] = []

        def finish(outcomes: list[ScanOutcome]) -> None:
            errors.clear()
            k = 0
            for (item_id, rs), when in zip(batch, ran):
                errors.append(self._settle_item(item_id, outcomes[k:k + len(rs)], [], when, retries, retry_delay))
                k += len(rs)

        _interrupt_point(self._signals)
        outcomes = writer.write_batch(results, finish)
        summary.outcomes.extend(outcomes)
        for (item_id, _), error in zip(batch, errors):
            self.on_item(item_id, "failed" if error else "done", error)


def _in_flight(running: dict) -> int:
    """Sources submitted and not yet back (a task may carry several)."""
    return sum(len(group) for group in running.values())


# Set by Ctrl-C or SIGTERM during a run. The KeyboardInterrupt the signal raises can be lost where Python
# drops exceptions (a finalizer or a library's callback that swallows it): the run then still stops before its
# next write (_interrupt_point), and a scan Ctrl-C'd is never recorded as finished.
_INTERRUPTED = threading.Event()


def _sigterm(signum, frame):
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _on_sigterm():
    """SIGTERM interrupts a run like Ctrl-C does, and both are remembered (_INTERRUPTED) as well as raised
    (main thread only: signals are delivered there). SIGINT is taken only from Python's own handler (a
    process started with Ctrl-C ignored keeps ignoring it). Returns what to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    _INTERRUPTED.clear()
    try:
        term = signal.signal(signal.SIGTERM, _sigterm)
        intr = signal.signal(signal.SIGINT, _sigterm) if signal.getsignal(signal.SIGINT) is signal.default_int_handler \
            else None
    except (ValueError, OSError):
        return None
    return term, intr


def _restore_sigterm(previous) -> None:
    if previous is not None:
        _INTERRUPTED.clear()
        signal.signal(signal.SIGTERM, previous[0])
        if previous[1] is not None:
            signal.signal(signal.SIGINT, previous[1])


def _interrupt_point(signals) -> None:
    """Raises KeyboardInterrupt when Ctrl-C or SIGTERM came during this run (SIGNALS: what _on_sigterm
    returned; None when this run does not take signals), even if the one it raised was lost."""
    if signals is not None and _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def _attempts(database, item_id: int) -> int:
    return database.execute("SELECT attempts FROM task_items WHERE id=?", [item_id]).fetchone()[0] or 0


def _task_value(database, task_id: int, column: str) -> int:
    return database.execute(f"SELECT COALESCE({column}, 0) FROM tasks WHERE id=?", [task_id]).fetchone()[0]


def run_pending(database, policy: dict, clock=None, dask=None, wait: float = 0.0) -> list[TaskSummary]:
    """Runs every unfinished task that has something due (deferred by a rate limit, or retries)."""
    ensure(database)
    runner = TaskRunner(database, policy, clock, dask)
    now = runner.clock.now()
    # a scheduled task a dead or stopped process interrupted goes on where it was
    ids = [r[0] for r in database.execute(
        "SELECT DISTINCT t.id FROM tasks t JOIN task_items i ON i.task_id = t.id WHERE t.kind <> 'sync' AND (t.state IN ('queued',"
        " 'running') OR (t.state = 'interrupted' AND t.kind = 'scheduled')) AND i.state IN ('queued', 'running',"
        " 'interrupted') AND i.not_before <= ? ORDER BY t.id", [now])]
    return [runner.run(task_id, wait=wait) for task_id in ids]


# --- the `scan` command's scopes --------------------------------------------------------------------------

def scan_sources(database, args) -> list[str]:
    sources = list(getattr(args, "sources", None) or [])
    if getattr(args, "all_synced", False):
        from .sync import synced_references

        sources += [f"registry:{ref}" for ref, _ in synced_references(
            database, registry=getattr(args, "registry", None), latest_only=getattr(args, "latest_only", False),
            types=getattr(args, "repo_type", None))]
    if not sources:
        raise ScanError("nothing to scan (usage: stowaway scan SOURCE... or stowaway scan --all-synced after `stowaway sync`)")
    return sources


def manual_scan(database, policy: dict, args) -> list[ScanOutcome]:
    """`stowaway scan`: one task for the sources named and the scopes chosen; prints what was deferred."""
    conf = policy.get("scan") or {}
    sources = scan_sources(database, args)
    dask = getattr(args, "dask", None) or conf.get("dask")
    # with Dask and no number given, as many at once as the cluster has threads (0)
    jobs = getattr(args, "jobs", None) or conf.get("jobs") or conf.get("concurrency") or (0 if dask else 1)
    task_id = create_task(database, sources, "manual", getattr(args, "risk", None), jobs,
                          retries=getattr(args, "retries", None) or conf.get("retries") or 0,
                          retry_delay=float(conf.get("retry_delay", 30)), executor="dask" if dask else "local",
                          lock_wait=dbm.write_lock_wait(policy))
    runner = TaskRunner(database, policy, dask=dask, analyzer_names=getattr(args, "analyzer", None),
                        progress=False if getattr(args, "no_progress", False) else None)
    summary = runner.run(task_id, wait=float(conf.get("max_wait", 300)))
    if summary.waiting:
        print(f"stowaway: task {task_id}: {summary.waiting} image(s) deferred by a per-registry hourly limit until"
              f" {iso(summary.next_at)}; `stowaway schedule run-once` (or `stowaway tasks run {task_id}`) continues",
              file=sys.stderr)
    return summary.outcomes
