"""Scheduled scan policies: which synced images to scan, how often, and when.

A policy runs every N days, only inside its time window (UTC, e.g. 00:00-07:00; a window may cross
midnight), over the synced images of the repository types it names, optionally only those updated
in the last N days and only each repository's latest tag. Each run is a task (tasks.py) with the
policy's risk types, concurrency and retries. `run_once` is what cron calls; `run_forever` is the
foreground loop a service manager keeps alive. Both also continue tasks whose images were deferred
by a per-registry hourly limit.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

from . import db as dbm
from .model import RISK_TYPES, ScanError
from .sync import REPOSITORY_TYPES, synced_references
from .tasks import SystemClock, TaskRunner, create_task, iso, run_pending

SCHEMA = [
    """
CREATE TABLE scan_policies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL DEFAULT 1,
    every_days REAL NOT NULL DEFAULT 1,
    window_start TEXT,               -- 'HH:MM' UTC; NULL = any time
    window_end TEXT,
    updated_within_days REAL,        -- only images built in the last N days
    repository_types TEXT,           -- JSON list; NULL = every type
    registry TEXT,                   -- one registry host; NULL = all
    latest_only INTEGER NOT NULL DEFAULT 0,
    risk_types TEXT,                 -- JSON list; NULL = all
    concurrency INTEGER NOT NULL DEFAULT 1,
    retries INTEGER NOT NULL DEFAULT 1,
    retry_delay REAL NOT NULL DEFAULT 300,
    created_at TEXT,
    last_run_at REAL,
    last_task_id INTEGER
);
""",
]


def ensure(database) -> None:
    dbm.ensure_schema(database, "schedule", SCHEMA)


def _minutes(hhmm: str) -> int:
    try:
        h, m = hhmm.split(":")
        value = int(h) * 60 + int(m)
    except ValueError:
        raise ScanError(f"{hhmm!r}: expected HH:MM") from None
    if not 0 <= value <= 24 * 60:
        raise ScanError(f"{hhmm!r}: not a time of day")
    return value


def parse_window(text: str | None) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    start, sep, end = text.replace("–", "-").partition("-")
    if not sep:
        raise ScanError(f"--window {text!r}: expected HH:MM-HH:MM")
    _minutes(start.strip()), _minutes(end.strip())
    return start.strip(), end.strip()


def in_window(ts: float, start: str | None, end: str | None) -> bool:
    if not start or not end:
        return True
    t = time.gmtime(ts)
    now, a, b = t.tm_hour * 60 + t.tm_min, _minutes(start), _minutes(end)
    return a <= now < b if a <= b else (now >= a or now < b)


def window_day(ts: float, start: str, end: str) -> int:
    """The UTC day a window occurrence began on (a window crossing midnight began the day before)."""
    day = int(ts // 86400)
    t = time.gmtime(ts)
    if _minutes(start) > _minutes(end) and t.tm_hour * 60 + t.tm_min < _minutes(end):
        day -= 1
    return day


@dataclass
class Policy:
    id: int
    name: str
    every_days: float
    window_start: str | None
    window_end: str | None
    updated_within_days: float | None
    repository_types: list[str] | None
    registry: str | None
    latest_only: bool
    risk_types: list[str] | None
    concurrency: int
    retries: int
    retry_delay: float
    last_run_at: float | None

    def due(self, now: float) -> bool:
        if not in_window(now, self.window_start, self.window_end):
            return False
        if self.last_run_at is None:
            return True
        if self.window_start and self.window_end:
            # with a window, "every N days" counts windows: a run at 03:00 and one at 02:00 two days on are due
            days = window_day(now, self.window_start, self.window_end) - \
                window_day(self.last_run_at, self.window_start, self.window_end)
            return days >= max(1, round(self.every_days))
        return now - self.last_run_at >= self.every_days * 86400 - 60


COLUMNS = ["id", "name", "every_days", "window_start", "window_end", "updated_within_days", "repository_types",
           "registry", "latest_only", "risk_types", "concurrency", "retries", "retry_delay", "last_run_at"]


def policies(database, enabled_only: bool = True) -> list[Policy]:
    ensure(database)
    rows = database.execute(f"SELECT {', '.join(COLUMNS)} FROM scan_policies"
                            + (" WHERE enabled = 1" if enabled_only else "") + " ORDER BY id").fetchall()
    out = []
    for r in rows:
        d = dict(zip(COLUMNS, r))
        d["repository_types"] = json.loads(d["repository_types"]) if d["repository_types"] else None
        d["risk_types"] = json.loads(d["risk_types"]) if d["risk_types"] else None
        d["latest_only"] = bool(d["latest_only"])
        out.append(Policy(**d))
    return out


def add_policy(database, name: str, every_days: float = 1, window: str | None = None,
               updated_within_days: float | None = None, repository_types: list[str] | None = None,
               registry: str | None = None, latest_only: bool = False, risk_types: list[str] | None = None,
               concurrency: int = 1, retries: int = 1, retry_delay: float = 300) -> int:
    ensure(database)
    start, end = parse_window(window)
    for t in repository_types or []:
        if t not in REPOSITORY_TYPES:
            raise ScanError(f"repository type {t!r}: choose from {', '.join(REPOSITORY_TYPES)}")
    for r in risk_types or []:
        if r not in RISK_TYPES:
            raise ScanError(f"risk type {r!r}: choose from {', '.join(RISK_TYPES)}")
    if every_days <= 0:
        raise ScanError("--every-days must be positive")
    with database.conn:
        return database.conn.execute(
            "INSERT INTO scan_policies (name, every_days, window_start, window_end, updated_within_days,"
            " repository_types, registry, latest_only, risk_types, concurrency, retries, retry_delay, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET every_days=excluded.every_days,"
            " window_start=excluded.window_start, window_end=excluded.window_end,"
            " updated_within_days=excluded.updated_within_days, repository_types=excluded.repository_types,"
            " registry=excluded.registry, latest_only=excluded.latest_only, risk_types=excluded.risk_types,"
            " concurrency=excluded.concurrency, retries=excluded.retries, retry_delay=excluded.retry_delay",
            [name, every_days, start, end, updated_within_days,
             json.dumps(repository_types) if repository_types else None, registry, int(latest_only),
             json.dumps(sorted(risk_types)) if risk_types else None, max(1, concurrency), max(0, retries),
             retry_delay, dbm.now()]).lastrowid


def run_once(database, policy: dict | None = None, clock=None, dask=None) -> list:
    """Starts every due policy (one task each), then continues deferred tasks. Returns the task summaries."""
    clock = clock or SystemClock()
    policy = policy or {}
    ensure(database)
    summaries = run_pending(database, policy, clock, dask)  # deferred work first: it has waited longest
    for p in policies(database):
        now = clock.now()
        if not p.due(now):
            continue
        since = iso(now - p.updated_within_days * 86400) if p.updated_within_days else None
        refs = synced_references(database, registry=p.registry, latest_only=p.latest_only,
                                 types=p.repository_types, updated_since=since)
        task_id = create_task(database, [f"registry:{r}" for r, _ in refs], "scheduled", p.risk_types,
                              p.concurrency, p.retries, p.retry_delay, policy_id=p.id,
                              executor="dask" if dask else "local", clock=clock)
        with database.conn:
            database.conn.execute("UPDATE scan_policies SET last_run_at=?, last_task_id=? WHERE id=?",
                                  [now, task_id, p.id])
        summaries.append(TaskRunner(database, policy, clock, dask).run(task_id))
    return summaries


def run_forever(database, policy: dict | None = None, interval: float = 60.0, clock=None, dask=None,
                iterations: int | None = None) -> None:
    """The foreground loop: run_once every `interval` seconds. A failing round is reported, not fatal."""
    clock = clock or SystemClock()
    n = 0
    while iterations is None or n < iterations:
        n += 1
        try:
            for s in run_once(database, policy, clock, dask):
                print(f"{iso(clock.now())} task {s.task_id}: {s.state}, {len(s.outcomes)} scanned,"
                      f" {s.waiting} waiting", file=sys.stderr)
        except ScanError as exc:
            print(f"stowaway: schedule: {exc}", file=sys.stderr)
        if iterations is None or n < iterations:
            clock.sleep(interval)
