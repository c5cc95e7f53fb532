"""`stowaway tasks` lists scan tasks (state, progress, counts, errors) while they run; `tasks show ID`
lists a task's images; `tasks run ID` continues one whose images were deferred."""
from __future__ import annotations

import json
import sys

from stowaway.ingest.cli import _add_db, command


@command
def add(sub):
    p = sub.add_parser("tasks", help="scan tasks: state, progress, counts and errors")
    _add_db(p)
    p.add_argument("action", nargs="?", choices=["list", "show", "run"], default="list")
    p.add_argument("task_id", nargs="?", type=int, metavar="ID")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.add_argument("--config", metavar="FILE", help="policy file (TOML), for `run`")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_tasks)


def cmd_tasks(args) -> int:
    from stowaway.ingest.db import connect
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.tasks import TaskRunner, ensure

    database = connect(args.db)
    ensure(database)
    if args.action in ("show", "run") and args.task_id is None:
        raise ScanError(f"tasks {args.action}: which task? (tasks {args.action} ID)")
    if args.action == "run":
        from stowaway.ingest.cli import load_policy

        policy = load_policy(args)
        summary = TaskRunner(database, policy, dask=(policy.get("scan") or {}).get("dask")).run(args.task_id)
        print(f"task {args.task_id}: {summary.state}, {len(summary.outcomes)} scanned, {summary.waiting} waiting",
              file=sys.stderr)
        return 1 if any(o.status == "failed" for o in summary.outcomes) else 0
    if args.action == "show":
        cols = ["id", "source", "state", "attempts", "images", "error"]
        rows = database.execute("SELECT id, source, state, attempts, images, error FROM task_items WHERE task_id=?"
                                " ORDER BY id", [args.task_id]).fetchall()
        for r in rows:
            print(json.dumps(dict(zip(cols, r))) if args.json else
                  f"{r[0]:>6}  {r[2]:<8} {r[3]}x  {r[1]}" + (f"  {r[5]}" if r[5] else ""))
        return 0
    cols = ["id", "kind", "state", "progress", "total", "done", "failed", "waiting", "running", "concurrency",
            "executor", "created_at", "finished_at", "next_run_at", "error"]
    rows = database.execute(f"SELECT {', '.join(cols)} FROM tasks ORDER BY id DESC LIMIT ?", [args.limit]).fetchall()
    for r in rows:
        d = dict(zip(cols, r))
        if args.json:
            print(json.dumps(d))
            continue
        print(f"{d['id']:>5}  {d['kind']:<9} {d['state']:<8} {100 * (d['progress'] or 0):5.1f}%  {d['done']}/{d['total']}"
              f" done, {d['failed']} failed, {d['waiting']} waiting, {d['running']} running  {d['created_at']}"
              + (f"  next {d['next_run_at']}" if d['next_run_at'] else "") + (f"  {d['error']}" if d['error'] else ""))
    return 0
