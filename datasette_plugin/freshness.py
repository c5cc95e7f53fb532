"""Keeps the report tables current: before a request reads a Stowaway database, rebuild the rows
that new scans, rematches or deletions made stale (schema.refresh), when Datasette may write.

The check is a read (a few primary-key aggregates), so a request during a long scan does not wait
for the scan's write lock; only a stale database pays for the rebuild, once.
"""
from __future__ import annotations

import inspect

from . import config, schema

SKIP = ("/-/static", "/-/stowaway/plotly.min.js", "/favicon.ico")


LOCK_WAIT_MS = 250  # a scan may hold the write lock for minutes: read the SELECTs meanwhile


def _refresh_or_give_up(conn) -> bool:
    before = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {LOCK_WAIT_MS}")
    try:
        return schema.refresh(conn)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {before}")


def _own_transaction() -> dict:
    """Datasette 1.0 opens BEGIN IMMEDIATE around a write function (waiting out a scan's lock) unless
    told not to; refresh() keeps its own transactions. 0.65 has no such argument."""
    from datasette.database import Database

    return {"transaction": False} if "transaction" in inspect.signature(Database.execute_write_fn).parameters else {}


OWN_TRANSACTION = _own_transaction()


def fresh_map(datasette) -> dict[str, bool]:
    return datasette.__dict__.setdefault("_stowaway_fresh", {})


def is_fresh(datasette, name: str) -> bool:
    return fresh_map(datasette).get(name, False)


async def refresh(datasette, name: str) -> bool:
    db = datasette.get_database(name)
    fresh = await db.execute_fn(schema.is_fresh)
    if not fresh and db.is_mutable:
        try:
            await db.execute_write_fn(_refresh_or_give_up, block=True, **OWN_TRANSACTION)
            fresh = True
        except Exception:  # a read-only file, or a scan holding the lock: read the SELECTs instead
            fresh = False
    fresh_map(datasette)[name] = fresh
    return fresh


def databases_for(datasette, path: str) -> list[str]:
    if path.startswith(SKIP):
        return []
    names = config.stowaway_databases(datasette)
    if path.startswith("/-/stowaway"):
        return names
    first = path.split("/")[1] if path.count("/") >= 1 else ""
    first = first.split(".")[0]
    return [first] if first in names else []


def asgi_wrapper(datasette):
    def wrap(app):
        async def refreshed(scope, receive, send):
            if scope.get("type") == "http":
                for name in databases_for(datasette, scope.get("path", "")):
                    await refresh(datasette, name)
            await app(scope, receive, send)

        return refreshed

    return wrap
