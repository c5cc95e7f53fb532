"""`stowaway schedule add|list|remove|run|run-once`: scheduled scan policies over synced images."""
from __future__ import annotations

import sys

from stowaway.ingest.cli import _add_db, command


@command
def add(sub):
    p = sub.add_parser("schedule", help="scheduled scan policies: add, list, remove, run (loop), run-once (cron)")
    ps = p.add_subparsers(dest="schedule_action", metavar="ACTION")
    a = ps.add_parser("add", help="add or replace a policy")
    a.add_argument("name", help="the policy's name (an existing one is replaced)")
    _add_db(a)
    a.add_argument("--every-days", type=float, default=1.0, metavar="N", help="scan every N days (default 1)")
    a.add_argument("--window", metavar="HH:MM-HH:MM", help="only start inside this UTC window, e.g. 00:00-07:00")
    a.add_argument("--updated-within-days", type=float, metavar="N", help="only images built in the last N days")
    a.add_argument("--type", dest="types", action="append", choices=["private", "shared", "enterprise", "third-party"],
                   help="repository types to scan (repeatable; default all)")
    a.add_argument("--registry", metavar="HOST", help="only images of this synced registry")
    a.add_argument("--latest-only", action="store_true", help="only each repository's newest tag")
    a.add_argument("--risk", action="append", metavar="TYPE", help="risk types (repeatable; default all)")
    a.add_argument("--concurrency", type=int, default=1, metavar="N", help="images scanned at once (default 1)")
    a.add_argument("--retries", type=int, default=1, metavar="N", help="retries of a failed image (default 1)")
    a.add_argument("--retry-delay", type=float, default=300, metavar="SECONDS",
                   help="wait before a retry (default 300)")
    for name, helptext in (("list", "list policies"), ("remove", "remove a policy"),
                           ("run-once", "start due policies and continue deferred tasks, then exit (for cron)"),
                           ("run", "run-once every --interval seconds, in the foreground")):
        q = ps.add_parser(name, help=helptext)
        if name == "remove":
            q.add_argument("name", help="the policy to remove")
        _add_db(q)
        if name == "list":
            from stowaway.ingest.output import add_listing_format

            add_listing_format(q)
        if name in ("run", "run-once"):
            q.add_argument("--config", metavar="FILE", help="policy file (TOML)")
            q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a policy value (repeatable)")
            q.add_argument("--dask", metavar="ADDRESS", help="analyze on this Dask scheduler")
        if name == "run":
            q.add_argument("--interval", type=float, default=60.0, metavar="SECONDS",
                           help="seconds between checks (default 60)")
    p.set_defaults(func=cmd_schedule)


def _joined(text) -> str:
    import json

    try:
        values = json.loads(text) if text else None
    except ValueError:
        return str(text)
    return ",".join(values) if isinstance(values, list) and values else "all"


def cmd_schedule(args) -> int:
    from stowaway.ingest import scheduler
    from stowaway.ingest.cli import has_table, open_db
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.output import print_listing

    action = getattr(args, "schedule_action", None)
    if not action:
        raise ScanError("schedule: choose add, list, remove, run or run-once")
    if action == "list":
        database = open_db(args.db, write=False)
        rows = []
        if has_table(database, "scan_policies"):
            for r in database.execute(f"SELECT {', '.join(scheduler.COLUMNS)} FROM scan_policies ORDER BY id"):
                p = dict(zip(scheduler.COLUMNS, r))
                window = f"{p['window_start']}-{p['window_end']}" if p["window_start"] else "any time"
                rows.append((p["name"], f"{p['every_days']:g}", window, _joined(p["repository_types"]),
                             p["registry"] or "all", p["updated_within_days"], _joined(p["risk_types"]),
                             p["concurrency"], p["retries"], p["last_run_at"]) if args.format == "table" else r)
        if args.format == "json":
            print_listing(scheduler.COLUMNS, rows, "json")
        else:
            print_listing(["name", "every days", "window", "types", "registry", "updated within days", "risks",
                           "concurrency", "retries", "last run"], rows)
        return 0
    database = open_db(args.db)
    scheduler.ensure(database)
    if action == "add":
        pid = scheduler.add_policy(database, args.name, args.every_days, args.window, args.updated_within_days,
                                   args.types, args.registry, args.latest_only, args.risk, args.concurrency,
                                   args.retries, args.retry_delay)
        print(f"policy {args.name} saved", file=sys.stderr)
        return 0 if pid is not None else 1
    if action == "remove":
        with database.conn:
            n = database.conn.execute("DELETE FROM scan_policies WHERE name=?", [args.name]).rowcount
        if not n:
            raise ScanError(f"no policy {args.name!r}")
        return 0
    from stowaway.ingest.cli import load_policy

    policy = load_policy(args, database)
    dask = args.dask or (policy.get("scan") or {}).get("dask")
    if action == "run-once":
        summaries = scheduler.run_once(database, policy, dask=dask)
        for s in summaries:
            print(f"task {s.task_id}: {s.state}, {len(s.outcomes)} scanned, {s.waiting} waiting", file=sys.stderr)
        return 1 if any(o.status == "failed" for s in summaries for o in s.outcomes) else 0
    scheduler.run_forever(database, policy, args.interval, dask=dask)
    return 0
