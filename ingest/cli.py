"""The `stowaway` console script.

Exit status: 0 when the command ran (findings are not errors); 1 when a scan of some image failed
(recorded in the database with its reason); 2 for usage errors and anything that stopped the command.
Errors are one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .model import RISK_TYPES, ScanError

EPILOG = """sources:
  docker-archive:PATH     a `docker save` tar (legacy or OCI-style), plain, gzip or zstd
  oci:DIR[:REF]           an OCI image layout (directory or tar); without REF, every image in it
  registry:HOST/REPO:TAG  an OCI distribution registry
  docker:REF              an image in the local Docker engine
"""


def _add_db(p):
    p.add_argument("--db", default=os.environ.get("STOWAWAY_DB", "stowaway.db"),
                   help="SQLite database (default: $STOWAWAY_DB or ./stowaway.db)")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"stowaway: error: {message}", file=sys.stderr)
        raise SystemExit(2)


_COMMANDS: list = []


def command(fn):
    """Lets other modules (vulnerabilities, exports, tasks, ...) add subcommands without editing main()."""
    _COMMANDS.append(fn)
    return fn


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="stowaway", description="Scan container images for what should not ship in them;"
                 " every finding lands in one SQLite database.", epilog=EPILOG,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version="stowaway 0.1.0")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("scan", help="scan images into the database", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="*", metavar="SOURCE")
    _add_db(p)
    p.add_argument("--config", metavar="FILE", help="policy file (TOML); see README")
    p.add_argument("--risk", action="append", choices=RISK_TYPES, metavar="TYPE",
                   help="risk type to check, repeatable (default: all): " + ", ".join(RISK_TYPES))
    p.add_argument("--analyzer", action="append", metavar="NAME", help="run only these analyzers (repeatable)")
    p.add_argument("--approved-base", action="append", default=[], metavar="REF",
                   help="an image already in the database whose layers count as an approved base (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="analyze sources in N local worker processes (default: policy [scan] jobs, or 1)")
    p.add_argument("--dask", metavar="ADDRESS", help="analyze on this Dask scheduler (default: policy [scan] dask)")
    from .commands.sync import add_scan_scopes

    add_scan_scopes(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a policy value, e.g. limits.max_ratio=500 (repeatable)")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("report", help="print an image's report")
    p.add_argument("ref", metavar="REF", help="image reference as scanned, or a manifest digest")
    _add_db(p)
    p.add_argument("--format", choices=["json"], default="json")
    p.add_argument("--platform", default="", help="for a multi-platform image, e.g. linux/arm64")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("images", help="list the images in the database")
    _add_db(p)
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("scans", help="list scans, newest first, with failures and their reasons")
    _add_db(p)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_scans)

    for add in _COMMANDS:
        add(sub)
    return ap


def load_policy(args, database=None) -> dict:
    """The policy file with --set overrides and approved bases, plus the settings edited in Datasette
    (exclusions, weak passwords) stored in `database`."""
    from .policy import load, with_database_settings

    policy = load(getattr(args, "config", None), overrides=getattr(args, "set", []),
                  approved_bases=getattr(args, "approved_base", []))
    return with_database_settings(policy, database) if database is not None else policy


def cmd_scan(args) -> int:
    from .db import connect

    database = connect(args.db)
    policy = load_policy(args, database)
    from .tasks import manual_scan

    outcomes = manual_scan(database, policy, args)  # one task: scopes, concurrency, limits, retries
    failed = 0
    for o in outcomes:
        if o.status == "failed":
            failed += 1
            print(f"stowaway: scan of {o.reference} failed: {o.error}", file=sys.stderr)
        else:
            print(f"scanned {o.reference} (scan {o.scan_id}: {o.layers_read} layers read, {o.layers_cached} cached"
                  + (f", {len(o.warnings)} warnings" if o.warnings else "") + ")", file=sys.stderr)
    return 1 if failed else 0


def cmd_report(args) -> int:
    from .db import connect
    from .report import build

    if not os.path.exists(args.db):
        raise ScanError(f"{args.db}: no such database")
    report = build(connect(args.db), args.ref, args.platform)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    return 0


def cmd_images(args) -> int:
    from .db import connect

    if not os.path.exists(args.db):
        raise ScanError(f"{args.db}: no such database")
    database = connect(args.db)
    rows = database.execute(
        "SELECT i.reference, i.platform, i.os_family || ' ' || i.os_version, i.size, s.finished_at,"
        " (SELECT COUNT(*) FROM findings f WHERE f.scan_id = s.id AND f.status = 'fail'),"
        " i.manifest_digest FROM images i LEFT JOIN latest_scans s ON s.image_id = i.id ORDER BY i.reference").fetchall()
    if args.json:
        for r in rows:
            print(json.dumps(dict(zip(["reference", "platform", "os", "size", "last_scan", "findings", "digest"], r))))
        return 0
    header = ("REFERENCE", "PLATFORM", "OS", "SIZE", "LAST SCAN", "FINDINGS", "DIGEST")
    table = [header] + [(r[0], r[1] or "", (r[2] or "").strip(), _human(r[3]), r[4] or "-", str(r[5]), (r[6] or "")[:19])
                        for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def cmd_scans(args) -> int:
    from .db import connect

    database = connect(args.db)
    for r in database.execute("SELECT id, status, reference, started_at, seconds, error FROM scans ORDER BY id DESC"
                              " LIMIT ?", [args.limit]):
        print(f"{r[0]:>5}  {r[1]:<8} {r[2]}  {r[3]}  {r[4] or '':>6}  {r[5] or ''}")
    return 0


def _human(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _load_command_modules() -> None:
    """Modules that add subcommands register them with @command on import."""
    import importlib
    import pkgutil

    import stowaway.ingest.commands as pkg

    for mod in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(mod.name)


def main(argv=None) -> int:
    _load_command_modules()
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    try:
        return args.func(args)
    except ScanError as exc:
        print(f"stowaway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stowaway: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    # run the imported module, not __main__: command modules register with stowaway.ingest.cli
    from stowaway.ingest.cli import main as _main

    sys.exit(_main())
