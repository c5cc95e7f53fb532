"""Registry inventory: what a registry holds (repositories, tags, digests, sizes, update times), without
downloading a layer. Re-sync updates what changed and marks what disappeared (removed_at), so the
tables keep history. `registry_latest` is the "latest versions only" view: per repository, the tag
whose image was built last.

Repository type (private, shared, enterprise, third-party) is a label on the registry; the per-hour
scan limit applies to third-party registries (see tasks.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import db as dbm
from .model import ScanError
from .sources.archive import INDEX_TYPES
from .sources.registry import RegistryClient, RegistryError

REPOSITORY_TYPES = ("private", "shared", "enterprise", "third-party")

SCHEMA = [
    """
CREATE TABLE registries (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL DEFAULT 'private',
    images_per_hour INTEGER,
    namespaces TEXT,
    first_synced TEXT,
    last_synced TEXT,
    last_error TEXT
);
CREATE TABLE registry_repositories (
    id INTEGER PRIMARY KEY,
    registry_id INTEGER NOT NULL REFERENCES registries(id),
    name TEXT NOT NULL,
    first_seen TEXT,
    last_seen TEXT,
    removed_at TEXT,
    UNIQUE (registry_id, name)
);
CREATE TABLE registry_tags (
    id INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES registry_repositories(id),
    tag TEXT NOT NULL,
    digest TEXT,
    media_type TEXT,
    size INTEGER,
    updated TEXT,
    platforms TEXT,
    first_seen TEXT,
    last_seen TEXT,
    changed_at TEXT,
    removed_at TEXT,
    error TEXT,
    UNIQUE (repository_id, tag)
);
CREATE INDEX idx_registry_tags_updated ON registry_tags(updated);
CREATE VIEW registry_images AS
SELECT t.id AS tag_id, r.id AS registry_id, rp.id AS repository_id, r.host, r.type, rp.name AS repository, t.tag,
       r.host || '/' || rp.name || ':' || t.tag AS reference, t.digest, t.media_type, t.size, t.updated,
       t.platforms, t.first_seen, t.last_seen, t.changed_at, COALESCE(t.removed_at, rp.removed_at) AS removed_at
FROM registry_tags t JOIN registry_repositories rp ON rp.id = t.repository_id JOIN registries r ON r.id = rp.registry_id;
CREATE VIEW registry_latest AS
SELECT i.* FROM registry_images i
WHERE i.removed_at IS NULL AND i.tag_id = (
    SELECT t2.id FROM registry_tags t2 WHERE t2.repository_id = i.repository_id AND t2.removed_at IS NULL
    ORDER BY t2.updated DESC, t2.tag DESC LIMIT 1);
""",
    # how the last sync reached the registry (scheme, insecure, ca; never credentials): scans reuse it
    "ALTER TABLE registries ADD COLUMN connection TEXT;",
]


def ensure(database) -> None:
    dbm.ensure_schema(database, "registry", SCHEMA)


@dataclass
class SyncResult:
    host: str
    repositories: int = 0
    tags: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)


def _in_namespaces(repo: str, namespaces: list[str]) -> bool:
    return not namespaces or any(repo == ns.strip("/") or repo.startswith(ns.strip("/") + "/") for ns in namespaces)


def describe(client: RegistryClient, repo: str, tag: str) -> dict:
    """Digest, media type, size (config + layers, every platform), update time and platforms of one tag."""
    media, body, digest = client.manifest(repo, tag)
    doc = json.loads(body)
    children = []
    if media in INDEX_TYPES or "manifests" in doc:
        for child in doc.get("manifests") or []:
            plat = child.get("platform") or {}
            if plat.get("architecture") == "unknown":
                continue  # attestations
            _, cbody, _ = client.manifest(repo, child["digest"])
            children.append(("/".join(x for x in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if x),
                             json.loads(cbody)))
    else:
        children.append(("", doc))
    size, updated, platforms = 0, "", []
    for plat, man in children:
        cfg_desc = man.get("config") or {}
        size += int(cfg_desc.get("size") or 0) + sum(int(l.get("size") or 0) for l in man.get("layers") or [])
        config = json.loads(client.blob(repo, cfg_desc["digest"])) if cfg_desc.get("digest") else {}
        created = config.get("created") or ""
        updated = max(updated, created)
        platforms.append(plat or "/".join(x for x in (config.get("os"), config.get("architecture")) if x))
    return {"digest": digest, "media_type": media, "size": size, "updated": updated, "platforms": platforms}


def sync(database, client: RegistryClient, namespaces: list[str] | None = None, repo_type: str | None = None,
         images_per_hour: int | None = None, now: str | None = None, progress=None) -> SyncResult:
    """Records what `client`'s registry holds under `namespaces` (all when empty). One repository's failure
    is recorded and the sync goes on. `progress(done, total)` is called as repositories are finished."""
    ensure(database)
    conn = database.conn
    now = now or dbm.now()
    namespaces = [n for n in (namespaces or []) if n]
    if repo_type and repo_type not in REPOSITORY_TYPES:
        raise ScanError(f"--type {repo_type}: choose from {', '.join(REPOSITORY_TYPES)}")
    host = client.host
    result = SyncResult(host)
    with conn:
        row = conn.execute("SELECT id FROM registries WHERE host=?", [host]).fetchone()
        if row:
            reg_id = row[0]
            if repo_type:
                conn.execute("UPDATE registries SET type=? WHERE id=?", [repo_type, reg_id])
            if images_per_hour is not None:
                conn.execute("UPDATE registries SET images_per_hour=? WHERE id=?", [images_per_hour or None, reg_id])
        else:
            reg_id = conn.execute("INSERT INTO registries (host, type, images_per_hour, first_synced) VALUES (?,?,?,?)",
                                  [host, repo_type or "private", images_per_hour or None, now]).lastrowid
    try:
        repos = [r for r in client.catalog() if _in_namespaces(r, namespaces)]
    except RegistryError as exc:
        if not namespaces:
            with conn:
                conn.execute("UPDATE registries SET last_error=? WHERE id=?", [str(exc), reg_id])
            raise
        # registries that hide their catalog (Docker Hub): the namespaces name the repositories
        repos = [n.strip("/") for n in namespaces]
        result.errors.append(f"catalog unavailable ({exc}); synced the named repositories only")
    seen_repos = set()
    for n, repo in enumerate(repos):
        if progress is not None:
            progress(n, len(repos))
        seen_repos.add(repo)
        result.repositories += 1
        try:
            tags = list(client.tags(repo))
        except RegistryError as exc:
            result.errors.append(str(exc))
            continue
        with conn:
            row = conn.execute("SELECT id FROM registry_repositories WHERE registry_id=? AND name=?",
                               [reg_id, repo]).fetchone()
            if row:
                repo_id = row[0]
                conn.execute("UPDATE registry_repositories SET last_seen=?, removed_at=NULL WHERE id=?", [now, repo_id])
            else:
                repo_id = conn.execute("INSERT INTO registry_repositories (registry_id, name, first_seen, last_seen)"
                                       " VALUES (?,?,?,?)", [reg_id, repo, now, now]).lastrowid
        known = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT tag, digest, removed_at FROM registry_tags WHERE repository_id=?", [repo_id])}
        for tag in tags:
            result.tags += 1
            try:
                old = known.get(tag)
                if old and old[0] and old[1] is None:
                    digest = client.head_manifest(repo, tag)[0]
                    if digest == old[0]:  # unchanged: a HEAD is all it costs
                        result.unchanged += 1
                        with conn:
                            conn.execute("UPDATE registry_tags SET last_seen=?, error=NULL WHERE repository_id=? AND"
                                         " tag=?", [now, repo_id, tag])
                        continue
                info = describe(client, repo, tag)
            except (RegistryError, ValueError, KeyError, TypeError) as exc:
                result.errors.append(f"{host}/{repo}:{tag}: {exc}")
                with conn:
                    conn.execute("INSERT INTO registry_tags (repository_id, tag, first_seen, last_seen, error) VALUES"
                                 " (?,?,?,?,?) ON CONFLICT (repository_id, tag) DO UPDATE SET error=excluded.error,"
                                 " last_seen=excluded.last_seen", [repo_id, tag, now, now, str(exc)[:500]])
                continue
            values = [info["digest"], info["media_type"], info["size"], info["updated"],
                      json.dumps(info["platforms"]), now]
            with conn:
                if old is None:
                    result.added += 1
                    conn.execute("INSERT INTO registry_tags (digest, media_type, size, updated, platforms, last_seen,"
                                 " repository_id, tag, first_seen, changed_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                 values + [repo_id, tag, now, now])
                else:
                    changed = old[0] != info["digest"] or old[1] is not None
                    result.changed += int(changed)
                    result.unchanged += int(not changed)
                    conn.execute("UPDATE registry_tags SET digest=?, media_type=?, size=?, updated=?, platforms=?,"
                                 " last_seen=?, removed_at=NULL, error=NULL" + (", changed_at=?" if changed else "")
                                 + " WHERE repository_id=? AND tag=?",
                                 values + ([now] if changed else []) + [repo_id, tag])
        gone = [t for t, (_, removed) in known.items() if t not in tags and removed is None]
        with conn:
            for t in gone:
                conn.execute("UPDATE registry_tags SET removed_at=? WHERE repository_id=? AND tag=?", [now, repo_id, t])
        result.removed += len(gone)
    with conn:
        for repo_id, name in conn.execute("SELECT id, name FROM registry_repositories WHERE registry_id=? AND"
                                          " removed_at IS NULL", [reg_id]).fetchall():
            if name not in seen_repos and _in_namespaces(name, namespaces):
                conn.execute("UPDATE registry_repositories SET removed_at=? WHERE id=?", [now, repo_id])
                result.removed += conn.execute("UPDATE registry_tags SET removed_at=? WHERE repository_id=? AND"
                                               " removed_at IS NULL", [now, repo_id]).rowcount
        conn.execute("UPDATE registries SET last_synced=?, namespaces=?, last_error=? WHERE id=?",
                     [now, json.dumps(namespaces) if namespaces else None,
                      "; ".join(result.errors)[:2000] or None, reg_id])
    if progress is not None:
        progress(len(repos), len(repos))
    return result


# --- a sync as a task (the console's "Synchronize the latest assets") --------------------------------

def create_sync_task(database, host: str) -> int:
    """A task of kind 'sync' with one item for HOST; run_sync_task runs it (the task runner never does)."""
    from .tasks import create_task

    task_id = create_task(database, [f"registry:{host}"], "sync")
    with database.conn:
        database.conn.execute("UPDATE task_items SET registry=? WHERE task_id=?", [host, task_id])
    return task_id


def run_sync_task(database, task_id: int, policy: dict) -> SyncResult | None:
    """Syncs the task's registry with the policy's connection settings and credentials (as `stowaway sync
    HOST` would, over the namespaces the last sync used), recording progress (repositories done of
    total) and the result on the task; a failure is one sentence on the task, never a traceback."""
    import os
    import socket
    import time

    from .failures import describe
    from .tasks import iso

    conn = database.conn
    item = conn.execute("SELECT id, registry FROM task_items WHERE task_id=? ORDER BY id LIMIT 1", [task_id]).fetchone()
    if item is None:
        raise ScanError(f"no sync task {task_id}")
    item_id, host = item
    ensure(database)
    with conn:
        conn.execute("UPDATE tasks SET state='running', started_at=?, pid=?, host=?, heartbeat=?, running=1, waiting=0"
                     " WHERE id=?", [iso(time.time()), os.getpid(), socket.gethostname(), time.time(), task_id])
        conn.execute("UPDATE task_items SET state='running', started_ts=?, attempts=attempts+1 WHERE id=?",
                     [time.time(), item_id])

    def progress(done: int, total: int) -> None:
        with conn:
            conn.execute("UPDATE tasks SET total=?, done=?, progress=?, heartbeat=? WHERE id=?",
                         [total, done, round(done / total, 4) if total else 0, time.time(), task_id])

    result, error = None, None
    try:
        client = _client(database, host, policy)
        row = conn.execute("SELECT namespaces FROM registries WHERE host=?", [host]).fetchone()
        namespaces = json.loads(row[0]) if row and row[0] else list(
            ((policy.get("registries") or {}).get(host) or {}).get("namespaces") or [])
        result = sync(database, client, namespaces, progress=progress)
    except Exception as exc:  # one sentence for the page; the registry's own words when it gave some
        error = str(exc) if isinstance(exc, (ScanError, RegistryError)) else describe(exc)
        error = _plain((error.splitlines() or ["the sync failed"])[0])[:500]
    finished = time.time()
    summary = None
    if result is not None:
        summary = json.dumps({"repositories": result.repositories, "tags": result.tags, "added": result.added,
                              "changed": result.changed, "unchanged": result.unchanged, "removed": result.removed,
                              "errors": [e.splitlines()[0][:300] for e in result.errors[:50]],
                              "more_errors": max(0, len(result.errors) - 50)})
    state = "failed" if error else "done"
    with conn:
        conn.execute("UPDATE task_items SET state=?, finished_ts=?, images=?, error=?, summary=? WHERE id=?",
                     [state, finished, result.tags if result else None,
                      error or ("; ".join(result.errors)[:2000] if result and result.errors else None), summary,
                      item_id])
        conn.execute("UPDATE tasks SET state=?, running=0, finished_at=?, error=?, progress=1,"
                     " done=CASE WHEN ? THEN done ELSE total END, failed=? WHERE id=?",
                     [state, iso(finished), error, bool(error), int(bool(error)), task_id])
    return result


_CAUSES = (("Connection refused", "connection refused"), ("timed out", "timed out"),
           ("NameResolutionError", "the name does not resolve"), ("Name or service not known", "the name does not resolve"),
           ("CERTIFICATE_VERIFY_FAILED", "its certificate is not trusted: give the CA with ca = FILE"),
           ("WRONG_VERSION_NUMBER", "it does not speak TLS: scheme = \"http\" for a plain-HTTP registry"))


def _plain(error: str) -> str:
    """A connection error without the HTTP library's internals (pool objects, retry counts), with the
    cause in words."""
    for marker in (" (HTTPConnectionPool(", " (HTTPSConnectionPool(", " (Caused by "):
        if marker in error:
            cause = next((words for needle, words in _CAUSES if needle in error), "")
            return error[:error.index(marker)] + (f": {cause}" if cause else "")
    return error


def _client(database, host: str, policy: dict) -> RegistryClient:
    """A client for HOST as `stowaway sync` builds one: the policy's [registries."HOST"] (credentials
    included) over the connection the last sync recorded."""
    from .commands.sync import stored_connection

    options = dict(policy.get("source_options") or {})
    registries = dict(policy.get("registries") or {})
    registries[host] = {**stored_connection(database, host), **(registries.get(host) or {})}
    options["registries"] = registries
    return RegistryClient.from_options(host, options)


def synced_references(database, registry: str | None = None, latest_only: bool = False,
                      types: list[str] | None = None, updated_since: str | None = None) -> list[tuple[str, str]]:
    """(reference, registry host) of the synced images of a scope, present in the registry today."""
    ensure(database)
    view = "registry_latest" if latest_only else "registry_images"
    sql = f"SELECT reference, host FROM {view} WHERE removed_at IS NULL AND digest IS NOT NULL"
    params: list = []
    if registry:
        sql += " AND host = ?"
        params.append(registry)
    if types:
        sql += f" AND type IN ({', '.join('?' for _ in types)})"
        params += list(types)
    if updated_since:
        sql += " AND updated >= ?"
        params.append(updated_since)
    return [(r[0], r[1]) for r in database.execute(sql + " ORDER BY reference", params)]
