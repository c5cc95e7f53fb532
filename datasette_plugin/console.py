"""The console's workflow pages: the image list with its filters, operation column and multi-image
Scan; "Synchronize the latest assets"; "Scan again"; the Manage Task pages.

Scans and syncs started here are tasks (ingest/tasks.py): the POST creates the task, starts it in a
process of its own (ingest/background.py) and redirects at once to the task's page, which polls
`/-/stowaway/task/ID.json` while the task runs. Every POST needs the stowaway-write permission and
Datasette's CSRF token. The task pages show what anyone may read in the tasks tables (states,
counts, sources, one-sentence errors): never the policy, its weak passwords or credentials.
"""
from __future__ import annotations

import json
import math
import os
import socket
import urllib.parse
from types import SimpleNamespace

from datasette import Forbidden
from datasette.utils.asgi import NotFound, Response

from stowaway.ingest.model import RISK_TYPES
from stowaway.ingest.tasks import _alive

from . import actions, config, queries, routes

MAX_CONCURRENCY = 8
MAX_IMAGES_PER_SCAN = 1000
RISK_LABELS = {
    "vulnerabilities": "Vulnerabilities", "malicious": "Malicious files", "software": "Software",
    "files": "File information", "unsafe_settings": "Unsafe settings", "secrets": "Sensitive information",
    "compliance": "Software compliance", "base_image": "Base image",
}
FINISHED = ("done", "failed", "interrupted", "cancelled")


def _many(datasette) -> bool:
    return len(config.stowaway_databases(datasette)) > 1


def _page_url(datasette, name: str, path: str, **args) -> str:
    return routes._urls(datasette, name, _many(datasette), set())["page"](path, **args)


def _int_arg(value, default: int) -> int:
    return int(value) if str(value or "").isdigit() else default


# --- the image list ----------------------------------------------------------------------------

def _list_args(request) -> dict:
    args = request.args
    filters = {name: args.get(name) for name in queries.IMAGE_FILTERS if args.get(name) is not None}
    return {"latest": args.get("latest") == "1", "q": args.get("q", "").strip(), "sort": args.get("sort", "worst"),
            "page": max(1, _int_arg(args.get("page"), 1)), "filters": filters}


async def images_page(datasette, request):
    name, db = routes._database(datasette, request)
    page_size = int(config.plugin_config(datasette)["images_page_size"])
    a = _list_args(request)
    total, items = await queries.images(db, a["latest"], a["q"], a["sort"], a["page"], page_size, a["filters"])
    facets = await queries.image_facets(db, a["latest"], a["q"], a["filters"])
    can_write = await actions.can_write(datasette, request.actor)
    state = {"q": a["q"] or None, "latest": 1 if a["latest"] else None,
             "sort": a["sort"] if a["sort"] != "worst" else None, **a["filters"]}

    def link(**changes) -> str:
        """This list's URL with some arguments changed (None removes one, '' is a value: 'no registry');
        back to page 1 unless a page is given."""
        merged = {**state, "page": None, **changes, "db": name if _many(datasette) else None}
        query = urllib.parse.urlencode({k: v for k, v in merged.items() if v is not None and (v != "" or k in
                                                                                             queries.IMAGE_FILTERS)})
        return datasette.urls.path("/-/stowaway/images") + (f"?{query}" if query else "")

    registries = await _sync_registries(datasette, db) if can_write else []
    return await routes._render(datasette, request, "stowaway_images.html", {
        "items": items, "total": total, "latest": a["latest"], "q": a["q"], "sort": a["sort"],
        "sorts": list(queries.IMAGE_SORTS), "page": a["page"], "pages": max(1, math.ceil(total / page_size)),
        "filters": a["filters"], "facets": facets, "facet_labels": FACET_LABELS, "link": link,
        "risk_types": RISK_TYPES, "risk_labels": RISK_LABELS, "max_concurrency": MAX_CONCURRENCY,
        "sync_registries": registries, "writable": _writable(db),
        "here": request.path + (f"?{request.query_string}" if request.query_string else ""),
    }, name, db)


FACET_LABELS = {"registry": "Registry", "repository": "Repository", "os": "OS", "base": "Base image"}


async def images_json(datasette, request):
    """The image list as JSON: the page's columns (image_overview's), counts per kind and severity, with
    the page's filters (registry, repository, os, base) and, with `_facets=1`, the facets' counts."""
    name, db = routes._database(datasette, request)
    a = _list_args(request)
    size = request.args.get("size", "")
    page_size = min(10000, int(size)) if size.isdigit() and int(size) > 0 else \
        int(config.plugin_config(datasette)["images_page_size"])
    total, items = await queries.images(db, a["latest"], a["q"], a["sort"], a["page"], page_size, a["filters"])
    body = {"database": name, "total": total, "page": a["page"], "pages": max(1, math.ceil(total / page_size)),
            "images": items}
    if request.args.get("_facets") == "1":
        body["facets"] = await queries.image_facets(db, a["latest"], a["q"], a["filters"])
    return Response.json(body)


# --- starting tasks ----------------------------------------------------------------------------------

def _writable(db) -> bool:
    return bool(not db.is_memory and db.path and db.is_mutable)


def resolved_source(source: str, db_path: str | None) -> str:
    """A recorded source with a relative file location made absolute: against the server's current
    directory when it exists there, else against the database's directory (where scans are usually
    run); unchanged when it is found in neither (the scan then fails with its reason)."""
    from stowaway.ingest.sources import absolute_source

    got = absolute_source(source)
    if got == source and db_path:
        got = absolute_source(source, os.path.dirname(os.path.abspath(db_path)))
    return got


async def _policy(datasette, db, image_ids: list[int]) -> dict:
    """The policy a console task runs with: the operator's policy file (credentials included), else
    the policy the newest of the images' last scans recorded (which leaves credentials out)."""
    policy_file = config.plugin_config(datasette).get("policy_file")
    if policy_file:
        from stowaway.ingest.policy import load

        try:
            return load(policy_file)
        except Exception as exc:
            raise actions.ActionError(f"cannot scan: {exc}") from None
    if not image_ids:
        return {}
    row = (await db.execute("SELECT s.policy FROM scans s WHERE s.id = (SELECT MAX(last_scan_id) FROM images"
                            " WHERE id IN (SELECT value FROM json_each(?)))", [json.dumps(image_ids)])).first()
    try:
        policy = json.loads(row[0]) if row and row[0] else {}
    except ValueError:
        policy = {}
    if isinstance(policy.get("passwords"), dict):  # the record counts the words; the settings hold them
        policy["passwords"] = {k: v for k, v in policy["passwords"].items() if k != "extra_count"}
    return policy if isinstance(policy, dict) else {}


def _sources(conn, image_ids: list[int], db_path: str) -> dict[str, list[int]]:
    """{source to scan: the chosen images it holds}, each source resolved and narrowed to its image."""
    from stowaway.ingest.commands.rescan import narrowed_source

    rows = conn.execute("SELECT id, source, reference FROM images WHERE id IN (SELECT value FROM json_each(?))"
                        " ORDER BY id", [json.dumps(image_ids)]).fetchall()
    out: dict[str, list[int]] = {}
    for image_id, source, reference in rows:
        if source:
            out.setdefault(narrowed_source(resolved_source(source, db_path), reference), []).append(image_id)
    return out


async def start_scan(datasette, db, image_ids: list[int], kind: str = "manual", risks=None, concurrency: int = 1,
                     images_per_hour: int | None = None) -> int:
    """Creates the scan task of IMAGE_IDS and starts it in the background; returns its id."""
    from stowaway.ingest import background
    from stowaway.ingest import db as dbm
    from stowaway.ingest.commands.sync import scan_connection_policy
    from stowaway.ingest.tasks import create_task

    if not _writable(db):
        raise actions.ActionError("this database is read-only: scan with `stowaway scan` or `stowaway rescan`")
    policy = await _policy(datasette, db, image_ids)
    sources = await db.execute_fn(lambda conn: _sources(conn, image_ids, db.path))
    if not sources:
        raise actions.ActionError("the images chosen have no recorded source to scan")
    # each registry's connection as its last sync recorded it, under the policy's own settings
    policy = await db.execute_fn(lambda conn: scan_connection_policy(conn, policy, SimpleNamespace(), list(sources)))

    def write(conn):
        return create_task(dbm.Database(conn), list(sources), kind, risks, concurrency,
                           images_per_hour=images_per_hour)

    task_id = await actions._write(db, write)
    background.start(db.path, task_id, json.loads(json.dumps(policy, default=str)), images=sources)
    return task_id


async def _sync_registries(datasette, db) -> list[str]:
    """Registries a writer may synchronize: those the policy file configures and those synced before."""
    hosts: list[str] = []
    policy_file = config.plugin_config(datasette).get("policy_file")
    if policy_file:
        from stowaway.ingest.policy import load

        try:
            hosts += list((load(policy_file).get("registries") or {}).keys())
        except Exception:  # the sync button says nothing about a broken file; a scan reports it
            pass
    if "registries" in await db.table_names():
        hosts += [r[0] for r in (await db.execute("SELECT host FROM registries ORDER BY host")).rows]
    return list(dict.fromkeys(h for h in hosts if h))


async def _refuse(datasette, request, what: str):
    if request.method != "POST":
        return Response.text("POST only", status=405)
    if not await actions.can_write(datasette, request.actor):
        raise Forbidden(f"{what} needs the stowaway-write permission")
    return None


def _back(datasette, request, form, fallback, message: str):
    datasette.add_message(request, message, datasette.ERROR)
    return routes._back(datasette, request, form, fallback)


async def scan_action(datasette, request):
    """POST /-/stowaway/scan: image=ID (repeated), risk=TYPE (repeated; none: all eight),
    concurrency=N, images_per_hour=N (empty: no limit)."""
    name, db = routes._database(datasette, request)
    refused = await _refuse(datasette, request, "scanning")
    if refused:
        return refused
    form = await request.post_body()
    pairs = urllib.parse.parse_qsl(form.decode("utf-8", "replace"), keep_blank_values=True)
    values: dict[str, list[str]] = {}
    for k, v in pairs:
        values.setdefault(k, []).append(v)
    first = {k: v[0] for k, v in values.items()}
    fallback = _page_url(datasette, name, "images")
    try:
        ids = sorted({int(v) for v in values.get("image", []) if v.isdigit()})
        if not ids:
            raise actions.ActionError("tick at least one image to scan")
        if len(ids) > MAX_IMAGES_PER_SCAN:
            raise actions.ActionError(f"at most {MAX_IMAGES_PER_SCAN} images in one scan task")
        risks = [r for r in values.get("risk", []) if r]
        unknown = [r for r in risks if r not in RISK_TYPES]
        if unknown:
            raise actions.ActionError(f"unknown risk type {unknown[0]!r}")
        concurrency = _int_arg(first.get("concurrency"), 1)
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise actions.ActionError(f"concurrent tasks is a number from 1 to {MAX_CONCURRENCY}")
        rate = (first.get("images_per_hour") or "").strip()
        if rate and (not rate.isdigit() or not 1 <= int(rate) <= 100000):
            raise actions.ActionError("images per hour is a whole number from 1 to 100000, or empty for no limit")
        task_id = await start_scan(datasette, db, ids, "manual", risks if len(set(risks)) < len(RISK_TYPES) else None,
                                   concurrency, int(rate) if rate else None)
    except actions.ActionError as exc:
        return _back(datasette, request, first, fallback, str(exc))
    return Response.redirect(_page_url(datasette, name, f"task/{task_id}"))


async def rescan_action(datasette, request):
    """POST /-/stowaway/image/REF/rescan ("Scan again"): a rescan task in the background."""
    name, db = routes._database(datasette, request)
    refused = await _refuse(datasette, request, "scanning again")
    if refused:
        return refused
    form = await request.post_vars()
    image = await queries.find_image(db, request.url_vars["ref"])
    if image is None:
        raise NotFound("no such image")
    fallback = _page_url(datasette, name, f"image/{image['id']}")
    try:
        if not image.get("source"):
            raise actions.ActionError("this image has no recorded source to scan again")
        task_id = await start_scan(datasette, db, [image["id"]], "rescan")
    except actions.ActionError as exc:
        return _back(datasette, request, form, fallback, str(exc).replace("cannot scan:", "cannot scan again:"))
    return Response.redirect(_page_url(datasette, name, f"task/{task_id}"))


async def sync_action(datasette, request):
    """POST /-/stowaway/sync: registry=HOST, one of the registries _sync_registries offers."""
    from stowaway.ingest import background
    from stowaway.ingest import db as dbm
    from stowaway.ingest.sync import create_sync_task

    name, db = routes._database(datasette, request)
    refused = await _refuse(datasette, request, "synchronizing a registry")
    if refused:
        return refused
    form = await request.post_vars()
    host = (form.get("registry") or "").strip()
    fallback = _page_url(datasette, name, "images")
    try:
        if not _writable(db):
            raise actions.ActionError("this database is read-only: synchronize with `stowaway sync HOST`")
        if host not in await _sync_registries(datasette, db):
            raise actions.ActionError(f"{host or 'no registry'}: not a registry of the policy file or synced before")
        policy = await _policy(datasette, db, [])
        task_id = await actions._write(db, lambda conn: create_sync_task(dbm.Database(conn), host))
        background.start(db.path, task_id, json.loads(json.dumps(policy, default=str)))
    except actions.ActionError as exc:
        return _back(datasette, request, form, fallback, str(exc))
    return Response.redirect(_page_url(datasette, name, f"task/{task_id}"))


# --- the Manage Task pages ---------------------------------------------------------------------------

SCAN_COUNTS = [("vulnerabilities", "vulnerabilities", "vulnerabilities"), ("malicious", "malicious_files", "malicious files"),
               ("software", "packages", "packages"), ("unsafe_settings", "unsafe_settings", "unsafe settings"),
               ("secrets", "secrets", "secrets"), ("compliance", "compliance", "forbidden software")]
TASK_COLUMNS = ["id", "kind", "state", "risk_types", "concurrency", "images_per_hour", "total", "done", "failed",
                "waiting", "running", "progress", "error", "created_at", "started_at", "finished_at", "next_run_at",
                "pid", "host", "cancel_requested"]


def _sentence(text) -> str | None:
    """An error as one sentence: its first line, at most 300 characters."""
    if not text:
        return None
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= 300 else line[:299] + "…"


async def _task_columns(db) -> list[str]:
    have = {r[1] for r in (await db.execute("PRAGMA table_info(tasks)")).rows}
    return [c for c in TASK_COLUMNS if c in have]


def _task_dict(row: dict) -> dict:
    task = dict(row)
    task["error"] = _sentence(task.get("error"))
    task["risk_types"] = queries._loads(task.get("risk_types"), None)
    total = task.get("total") or 0
    finished = (task.get("done") or 0) + (task.get("failed") or 0)
    task["finished"] = task.get("state") in FINISHED
    # a task left 'running' by a process of this host that is gone (killed, or the machine restarted):
    # said at once; the next task that starts records it as interrupted (a GET writes nothing)
    pid, host = task.pop("pid", None), task.pop("host", None)
    task["cancelling"] = bool(task.pop("cancel_requested", None)) and task.get("state") == "running"
    task["stopped"] = None
    if task.get("state") == "running" and pid and host == socket.gethostname() and not _alive(int(pid)):
        task["stopped"] = (f"the process that ran this task (pid {pid}) has stopped; the next scan marks it"
                           f" interrupted, and `stowaway tasks run {task['id']}` continues it")
        task["finished"] = True
    task["percent"] = 100 if task["finished"] and task.get("state") == "done" else \
        (round(100 * finished / total) if total else 0)
    return task


async def tasks_list(db, limit: int = 100) -> list[dict]:
    if "tasks" not in await db.table_names():
        return []
    cols = await _task_columns(db)
    got = await queries.rows(db, f"SELECT {', '.join(cols)} FROM tasks ORDER BY id DESC LIMIT {int(limit)}")
    return [_task_dict(r) for r in got]


async def task_detail(db, task_id: int) -> dict | None:
    """The task, its items and, per item, the scans it recorded with their image's counts."""
    if "tasks" not in await db.table_names():
        return None
    cols = await _task_columns(db)
    got = await queries.rows(db, f"SELECT {', '.join(cols)} FROM tasks WHERE id = ?", [task_id])
    if not got:
        return None
    task = _task_dict(got[0])
    item_cols = {r[1] for r in (await db.execute("PRAGMA table_info(task_items)")).rows}
    summary = ", summary" if "summary" in item_cols else ""
    items = await queries.rows(db, "SELECT id, source, registry, state, attempts, not_before, started_ts, finished_ts,"
                                   f" images, scan_ids, error{summary} FROM task_items WHERE task_id = ? ORDER BY id",
                               [task_id])
    scan_ids = []
    for item in items:
        item["scan_ids"] = [i for i in queries._loads(item.get("scan_ids"), []) if isinstance(i, int) and i]
        scan_ids += item["scan_ids"]
        item["error"] = _sentence(item.get("error"))
        item["summary"] = queries._loads(item.get("summary"), None)
    # the task's scans, also those a still-running item has written (task_id on the scan row)
    scans = await queries.rows(
        db, "SELECT s.id, s.image_id, s.reference, s.source, s.status, s.error, s.finished_at, s.seconds, s.risk_types,"
            " o.critical, o.high, o.vulnerabilities, o.malicious_files, o.packages, o.unsafe_settings, o.secrets,"
            " o.compliance,"
            " i.last_scan_id = s.id AS current"
            " FROM scans s LEFT JOIN images i ON i.id = s.image_id LEFT JOIN image_overview o ON o.id = s.image_id"
            " WHERE s.task_id = :task OR s.id IN (SELECT value FROM json_each(:ids)) ORDER BY s.id",
        {"task": task_id, "ids": json.dumps(scan_ids)})
    by_id = {s["id"]: s for s in scans}
    claimed = set()
    for item in items:
        item["scans"] = [by_id[i] for i in item["scan_ids"] if i in by_id]
        claimed.update(item["scan_ids"])
    for s in scans:
        s["error"] = _sentence(s.get("error"))
        ran = queries._loads(s.pop("risk_types", None), "all")
        s["ran"] = ran if isinstance(ran, list) else None  # None: every risk type
        # an image's counts are its current scan's (not this one's once superseded), and only of the risk
        # types the scan ran: a type it did not run is not a clean 0
        s["counts"] = [{"risk": risk, "label": label, "n": s.get(key)} for risk, key, label in SCAN_COUNTS
                       if s.get("current") and s.get("status") == "done" and (s["ran"] is None or risk in s["ran"])]
    # scans written by an item that is still running (their item lists them when it finishes)
    pending = [s for s in scans if s["id"] not in claimed]
    for item in items:
        if item["state"] == "running":
            item["scans"] += [s for s in pending if s.get("source") == item["source"]]
    task["items"] = items
    return task


async def cancel_action(datasette, request):
    """POST /-/stowaway/task/ID/cancel: the task's images not started will not be; those in progress finish."""
    from stowaway.ingest import db as dbm
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.tasks import cancel_task

    name, db = routes._database(datasette, request)
    refused = await _refuse(datasette, request, "cancelling a task")
    if refused:
        return refused
    form = await request.post_vars()
    task_id = int(request.url_vars["task_id"])
    back = _page_url(datasette, name, f"task/{task_id}")
    try:
        if not _writable(db):
            raise actions.ActionError(f"this database is read-only: cancel with `stowaway tasks cancel {task_id}`")
        said = await actions._write(db, lambda conn: cancel_task(dbm.Database(conn), task_id))
    except (actions.ActionError, ScanError) as exc:
        return _back(datasette, request, form, back, str(exc))
    datasette.add_message(request, said, datasette.INFO)
    return Response.redirect(back)


async def tasks_page(datasette, request):
    name, db = routes._database(datasette, request)
    tasks = await tasks_list(db)
    return await routes._render(datasette, request, "stowaway_tasks.html", {
        "tasks": tasks, "running": any(not t["finished"] for t in tasks)}, name, db)


async def tasks_json(datasette, request):
    name, db = routes._database(datasette, request)
    return Response.json({"database": name, "tasks": await tasks_list(db)})


async def task_page(datasette, request):
    name, db = routes._database(datasette, request)
    task = await task_detail(db, int(request.url_vars["task_id"]))
    if task is None:
        raise NotFound(f"no task {request.url_vars['task_id']} in {name}")
    return await routes._render(datasette, request, "stowaway_task.html", {
        "task": task, "risk_labels": RISK_LABELS, "risk_types": RISK_TYPES}, name, db)


async def task_json(datasette, request):
    name, db = routes._database(datasette, request)
    task = await task_detail(db, int(request.url_vars["task_id"]))
    if task is None:
        return Response.json({"error": f"no task {request.url_vars['task_id']}"}, status=404)
    return Response.json({"database": name, **task})


ROUTES = [
    (r"^/-/stowaway/images$", images_page),
    (r"^/-/stowaway/images\.json$", images_json),
    (r"^/-/stowaway/scan$", scan_action),
    (r"^/-/stowaway/sync$", sync_action),
    (r"^/-/stowaway/image/(?P<ref>.+)/rescan$", rescan_action),
    (r"^/-/stowaway/tasks$", tasks_page),
    (r"^/-/stowaway/tasks\.json$", tasks_json),
    (r"^/-/stowaway/task/(?P<task_id>\d+)\.json$", task_json),
    (r"^/-/stowaway/task/(?P<task_id>\d+)$", task_page),
    (r"^/-/stowaway/task/(?P<task_id>\d+)/cancel$", cancel_action),
]
