"""Generated benchmark databases kept between runs: made once per name (size, generator version) and
schema, in a cache directory, written under a temporary name and renamed when complete, so an
interrupted run leaves no half database behind."""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable


def schema_key() -> str:
    """A digest of the schema a new database gets (tables, indexes, triggers, views, the advisory store's
    too): a database cached before a schema change is not reused."""
    from stowaway.analyzers.vulnerabilities import store
    from stowaway.ingest.db import connect

    with tempfile.TemporaryDirectory() as tmp:
        database = connect(os.path.join(tmp, "schema.db"))
        store.ensure(database.conn)
        sql = [r[0] for r in database.conn.execute("SELECT coalesce(sql, '') FROM sqlite_master ORDER BY type, name")]
        database.conn.close()
    return hashlib.sha1("\n".join(sql).encode()).hexdigest()[:12]


def cached_database(cache_dir: Path, name: str, build: Callable[[str], None]) -> Path:
    """CACHE_DIR/NAME-SCHEMA.db, made by BUILD(path) when it is not there yet."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{name}-{schema_key()}.db"
    if path.exists():
        print(f"cached database {path}", file=sys.stderr)
        return path
    tmp = path.with_suffix(".tmp")
    for stale in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
        stale.unlink(missing_ok=True)
    build(str(tmp))
    tmp.rename(path)
    return path
