"""Databases the pages can read: those whose read model ingest's migrations have built.

The plugin never writes during a request. At startup it brings a writable Stowaway database's schema
up to date through ingest's migrations (once, under their lock; nothing when already current); a
database that is read-only or immutable and was made by an older Stowaway is served with one clear
line saying how to upgrade it, rather than pages that silently compute something else.
"""
from __future__ import annotations

from . import config, schema

SKIP = ("/-/static", "/-/stowaway/plotly.min.js", "/favicon.ico")
UPGRADE = ("this database was made by an older Stowaway: open it once with the stowaway command"
           " (e.g. `stowaway images --db FILE`) to bring it up to date")


def ready_map(datasette) -> dict[str, bool]:
    return datasette.__dict__.setdefault("_stowaway_ready", {})


async def check(datasette, name: str) -> bool:
    got = ready_map(datasette).get(name)
    if got is None:
        got = ready_map(datasette)[name] = await datasette.get_database(name).execute_fn(schema.has_read_model)
    return got


def _migrate(conn) -> None:
    from stowaway.ingest import db as dbm

    dbm.migrate(conn)
    dbm.lapse_expired_suppressions(conn)  # expiries that passed while nothing wrote
    analyze_if_stale(conn)


# Without statistics SQLite read one image's critical (or fixable) rows through the whole-table index of
# the value. The writes keep them (readmodel.keep_statistics); a writable database made before that, or
# whose tables moved since, is analyzed here at startup (a sample of each index), only where stale.
def stale_tables(conn) -> list[str]:
    from stowaway.ingest import readmodel

    return readmodel.stale_statistics(conn)


def analyze_if_stale(conn) -> list[str]:
    from stowaway.ingest import readmodel

    tables = readmodel.keep_statistics(conn, check_all=True)
    if tables:
        conn.commit()
    return tables


async def migrate(datasette, name: str) -> None:
    """At startup only: a writable database gets ingest's migrations (a no-op when current)."""
    db = datasette.get_database(name)
    if db.is_mutable and not db.is_memory:
        try:
            await db.execute_write_fn(_migrate, block=True)
        except Exception:  # a read-only file, or a scan holding the lock: served as it is
            pass
    ready_map(datasette).pop(name, None)


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
        async def checked(scope, receive, send):
            if scope.get("type") == "http":
                for name in databases_for(datasette, scope.get("path", "")):
                    if not await check(datasette, name):
                        body = f"{name}: {UPGRADE}\n".encode()
                        await send({"type": "http.response.start", "status": 503,
                                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                        await send({"type": "http.response.body", "body": body})
                        return
            await app(scope, receive, send)

        return checked

    return wrap
