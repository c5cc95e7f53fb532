"""`stowaway tasks` lists scan tasks (state, progress, counts, errors) while they run; `tasks show ID`
lists a task's images; `tasks run ID` continues one whose images were deferred; `tasks cancel ID` stops
one (images in progress finish, the rest do not start)."""
from __future__ import annotations

import sys

from stowaway.ingest.cli import _add_db, command
from stowaway.ingest.output import add_listing_format, print_listing


@command
def add(sub):
    p = sub.add_parser("tasks", help="scan tasks: state, progress, counts and errors")
    _add_db(p)
    p.add_argument("action", nargs="?", choices=["list", "show", "run", "cancel"], default="list",
                   help="list tasks (default), show one task's images, run a task's deferred images, or cancel a"
                        " task (its images in progress finish; the others do not start)")
    p.add_argument("task_id", nargs="?", type=int, metavar="ID", help="the task, for show, run and cancel")
    p.add_argument("--limit", type=int, default=30, metavar="N", help="list at most N tasks (default 30)")
    add_listing_format(p)
    p.add_argument("--config", metavar="FILE", help="policy file (TOML), for `run`")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a policy value, for `run` (repeatable)")
    p.set_defaults(func=cmd_tasks)


def cmd_tasks(args) -> int:
    from stowaway.ingest.cli import has_table, open_db
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.tasks import TaskRunner, ensure

    if args.action in ("show", "run", "cancel") and args.task_id is None:
        raise ScanError(f"tasks {args.action}: which task? (tasks {args.action} ID)")
    if args.action == "cancel":
        from stowaway.ingest.tasks import cancel_task

        print(cancel_task(open_db(args.db, write=True), args.task_id), file=sys.stderr)
        return 0
    if args.action == "run":
        from stowaway.ingest.cli import load_policy

        database = open_db(args.db, write=True)
        ensure(database)
        policy = load_policy(args)
        summary = TaskRunner(database, policy, dask=(policy.get("scan") or {}).get("dask")).run(args.task_id)
        print(f"task {args.task_id}: {summary.state}, {len(summary.outcomes)} scanned, {summary.waiting} waiting",
              file=sys.stderr)
        return 1 if any(o.status == "failed" for o in summary.outcomes) else 0
    database = open_db(args.db, write=False)
    present = has_table(database, "tasks")
    if args.action == "show":
        cols = ["id", "source", "state", "attempts", "images", "error"]
        if not present or not database.execute("SELECT 1 FROM tasks WHERE id=?", [args.task_id]).fetchone():
            raise ScanError(f"no task {args.task_id}")
        rows = database.execute("SELECT id, source, state, attempts, images, error FROM task_items WHERE task_id=?"
                                " ORDER BY id", [args.task_id]).fetchall()
        print_listing(cols, rows, args.format)
        return 0
    cols = ["id", "kind", "state", "progress", "total", "done", "failed", "waiting", "running", "concurrency",
            "executor", "created_at", "finished_at", "next_run_at", "error"]
    rows = database.execute(f"SELECT {', '.join(cols)} FROM tasks ORDER BY id DESC LIMIT ?",
                            [args.limit]).fetchall() if present else []
    if args.format == "json":
        print_listing(cols, rows, "json")
        return 0
    table = []
    for r in rows:
        d = dict(zip(cols, r))
        table.append((d["id"], d["kind"], d["state"], f"{100 * (d['progress'] or 0):.1f}%", f"{d['done']}/{d['total']}",
                      d["failed"], d["waiting"], d["running"], d["created_at"], d["next_run_at"], d["error"]))
    print_listing(["id", "kind", "state", "progress", "done", "failed", "waiting", "running", "created", "next run",
                   "error"], table)
    return 0
