"""The `stowaway` console script.

Exit status: 0 when the command ran (findings are not errors); 1 when a scan of some image failed
(recorded in the database with its reason); 2 for usage errors and anything that stopped the command
(a database that cannot be opened included); 3 (or `--exit-code N`) when `--fail-on` tripped; 130 on
Ctrl-C or SIGTERM. Errors are one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys

from .model import RISK_TYPES, ScanError

EPILOG = """sources:
  docker-archive:PATH       a `docker save` tar (legacy or OCI-style), plain, gzip or zstd
  oci:DIR[:REF]             an OCI image layout (directory or tar); without REF, every image in it
  oci-archive:PATH[:REF]    an OCI image layout packed in a tar (plain, gzip or zstd)
  registry:HOST/REPO:TAG    an OCI distribution registry (also @sha256:...); HOST may be written
                            https://HOST[:PORT] or http://HOST[:PORT] (plain HTTP)
  docker:REF                an image in the local Docker engine

exit status: 0 ran (findings are not errors), 1 a scan failed, 2 the command could not run,
3 --fail-on tripped (see --exit-code), 130 interrupted
"""


def _add_db(p):
    p.add_argument("--db", default=os.environ.get("STOWAWAY_DB", "stowaway.db"),
                   help="SQLite database (default: $STOWAWAY_DB or ./stowaway.db)")


def _add_output_options(p, scan: bool) -> None:
    from .model import FORMATS, SEVERITIES

    default = ("table on a terminal, else nothing (the results are in the database)" if scan
               else "table on a terminal, else json")
    p.add_argument("--format", action="append", metavar="FORMAT[=FILE]",
                   help=f"output: {', '.join(FORMATS)}; FORMAT=FILE writes that format to FILE (repeatable, e.g."
                        f" --format table --format sarif=out.sarif). json is REPORT.md's report. Default: {default}")
    p.add_argument("-o", "--output", metavar="FILE", help="write the (single) --format to FILE instead of stdout")
    p.add_argument("--severity", action="append", metavar="LIST",
                   help="only findings of these severities, comma-separated: " + ",".join(SEVERITIES)
                        + " (applies to table, sarif, csv and --fail-on)")
    p.add_argument("--ignore-unfixed", action="store_true",
                   help="leave out vulnerabilities that have no fixed version")
    p.add_argument("--fail-on", metavar="SEVERITY", choices=SEVERITIES,
                   help="exit 3 (see --exit-code) when an unsuppressed finding at or above SEVERITY remains after"
                        " the filters: " + ", ".join(SEVERITIES))
    p.add_argument("--exit-code", type=int, default=3, metavar="N", help="exit status when --fail-on trips (default 3)")
    if scan:
        p.add_argument("--ignore-file", metavar="FILE",
                       help="suppression rules (.trivyignore plain text, YAML/TOML or OpenVEX) added to the findings"
                            " store; suppressed findings stay, marked. Default: ./.stowawayignore or ./.trivyignore"
                            " when present")
    else:
        p.add_argument("--ignore-file", metavar="FILE",
                       help="add these suppression rules (.trivyignore, YAML/TOML or OpenVEX) to the findings store"
                            " first (the database is then opened for writing); without it report only reads")


def _db_problem(path: str, write: bool) -> str | None:
    """Why `path` cannot be opened (for writing), in words, before sqlite makes or half-makes anything."""
    if os.path.isdir(path):
        return f"{path}: is a directory, not a database"
    if not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        if not write:
            return f"{path}: no such database" + ("" if os.path.isdir(parent) else f" (directory {parent} does not exist)")
        if not os.path.isdir(parent):
            return f"{path}: cannot create the database: directory {parent} does not exist"
        if not os.access(parent, os.W_OK):
            return f"{path}: cannot create the database: directory {parent} is not writable"
        return None
    if write and not os.access(path, os.W_OK):
        return f"{path}: the database is read-only (file permissions or a read-only medium)"
    return None


def _explain(path: str, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return f"{path}: not a SQLite database ({text})"
    if "readonly" in text or "read-only" in text:
        return f"{path}: the database is read-only (file permissions or a read-only medium)"
    return f"{path}: cannot open the database ({text})"


def open_db(path: str, write: bool = True):
    """The database, or one clear ScanError. Without `write` it is opened read-only (`mode=ro`), works on
    read-only media, and nothing is ever created: commands that only read use this."""
    from .db import Database, connect

    problem = _db_problem(path, write)
    if problem:
        raise ScanError(problem)
    if write:
        try:
            return connect(path)
        except sqlite3.Error as exc:
            raise ScanError(_explain(path, exc)) from None
    uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23")
    conn = None
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        # a WAL database on a read-only medium without its -shm file only opens as immutable
        try:
            conn = sqlite3.connect(uri + query, uri=True, timeout=60)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            break
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
                conn = None
            if "not a database" in str(exc) or query.endswith("immutable=1"):
                raise ScanError(_explain(path, exc)) from None
    assert conn is not None
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'scans'").fetchone():
        conn.close()
        raise ScanError(f"{path}: not a Stowaway database (no scans table)")
    from .db import MIGRATIONS

    if conn.execute("PRAGMA user_version").fetchone()[0] < len(MIGRATIONS):
        # made by an older version: its schema (and read model) is brought up to date once, which needs
        # write access; a read-only copy gets one clear line instead of wrong answers
        conn.close()
        if not os.access(path, os.W_OK) or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            raise ScanError(f"{path}: made by an older Stowaway and read-only here; open it once where it can be"
                            " written (any stowaway command) to bring it up to date")
        connect(path).conn.close()
        return open_db(path, write=False)
    if _lapsed(conn) and os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        # a suppression expired since it was applied: a read-only command must not gate on it
        conn.close()
        connect(path).conn.close()  # connect() lapses it
        return open_db(path, write=False)
    return Database(conn)


def _lapsed(conn) -> bool:
    from .findings import lapsed_scans

    try:
        return bool(lapsed_scans(conn))
    except sqlite3.Error:  # an older layout without suppressions: nothing can have expired
        return False


def has_table(database, name: str) -> bool:
    return bool(database.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [name]).fetchone())


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


BUILTIN_COMMANDS = ("scan", "report", "images", "scans")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; with `only` (one of BUILTIN_COMMANDS), the built-in commands' alone, each the
    same as in the full parser: `stowaway scan` (what CI runs) does not pay for building thirty others."""
    ap = _Parser(prog="stowaway", description="Scan container images for what should not ship in them;"
                 " every finding lands in one SQLite database.", epilog=EPILOG,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version="stowaway 0.1.0")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("scan", help="scan images into the database", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="images to scan (see sources below)")
    _add_db(p)
    p.add_argument("--config", metavar="FILE", help="policy file (TOML); see README")
    p.add_argument("--risk", action="append", choices=RISK_TYPES, metavar="TYPE",
                   help="risk type to check, repeatable (default: all): " + ", ".join(RISK_TYPES))
    p.add_argument("--analyzer", action="append", metavar="NAME", help="run only these analyzers (repeatable)")
    p.add_argument("--approved-base", action="append", default=[], metavar="REF",
                   help="an image already in the database whose layers count as an approved base (repeatable)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="analyze sources in N local worker processes (default: policy [scan] jobs, or 1)")
    p.add_argument("--dask", metavar="ADDRESS", help="analyze on this Dask scheduler (default: policy [scan] dask)")
    from .commands.sync import add_connection_options, add_scan_scopes

    add_scan_scopes(p)
    add_connection_options(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a policy value, e.g. limits.max_ratio=500 or 'registries.\"host:5000\".insecure=true'"
                        " (repeatable)")
    _add_output_options(p, scan=True)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("report", help="print an image's report (table, JSON, SARIF, CycloneDX, SPDX or CSV)")
    p.add_argument("ref", metavar="REF", help="image reference as scanned, or a manifest digest")
    _add_db(p)
    p.add_argument("--platform", default="", help="for a multi-platform image, e.g. linux/arm64")
    p.add_argument("--risk", action="append", choices=RISK_TYPES, metavar="TYPE",
                   help="only findings of this risk type (repeatable): " + ", ".join(RISK_TYPES))
    _add_output_options(p, scan=False)
    p.set_defaults(func=cmd_report)

    from .output import add_listing_format

    p = sub.add_parser("images", help="list the images in the database")
    _add_db(p)
    add_listing_format(p)
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("scans", help="list scans, newest first, with failures and their reasons")
    _add_db(p)
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N scans (default 50)")
    add_listing_format(p)
    p.set_defaults(func=cmd_scans)

    if only is None:
        for add in _COMMANDS:
            add(sub)
    return ap


def load_policy(args, database=None) -> dict:
    """The policy file with --set overrides and approved bases, plus the settings edited in Datasette
    (exclusions, weak passwords) stored in `database`."""
    from .policy import load, with_database_settings

    policy = load(getattr(args, "config", None), overrides=getattr(args, "set", []),
                  approved_bases=getattr(args, "approved_base", []))
    if database is None:
        return policy
    ignore_file = (policy.get("vulnerabilities") or {}).get("ignore_file")
    if ignore_file:  # an ignore file feeds the findings store's suppressions (they outlive this policy)
        from .suppression_files import import_into

        for w in import_into(database.conn, ignore_file)[1]:
            print(f"stowaway: warning: {w}", file=sys.stderr)
    return with_database_settings(policy, database)


def cmd_scan(args) -> int:
    from .commands.sync import scan_connection_policy
    from .tasks import manual_scan

    outputs = _outputs(args, scan=True)
    database = open_db(args.db, write=True)
    policy = scan_connection_policy(database, load_policy(args, database), args, args.sources)
    ignore_file = _ignore_file(policy, args)
    if ignore_file:  # it feeds the findings store's suppressions, which every later scan and report keeps
        from .suppression_files import import_into

        count, warnings = import_into(database.conn, ignore_file)
        print(f"{count} suppression(s) from {ignore_file} in the findings store", file=sys.stderr)
        for w in warnings:
            print(f"stowaway: warning: {w}", file=sys.stderr)
    outcomes = manual_scan(database, policy, args)  # one task: scopes, concurrency, limits, retries
    failed = 0
    done = []
    for o in outcomes:
        if o.status == "failed":
            failed += 1
            print(f"stowaway: scan of {o.reference} failed: {o.error}", file=sys.stderr)
        else:
            done.append(o)
            print(f"scanned {o.reference} (scan {o.scan_id}: {o.layers_text()}"
                  + (f", {len(o.warnings)} warnings" if o.warnings else "") + ")", file=sys.stderr)
        print_warnings(o.reference, o.warnings)
    tripped = False
    if outputs or args.fail_on:
        from .report import build_scan

        reports = [build_scan(database, o.scan_id) for o in done]
        tripped = _emit(args, outputs, reports, database)
    if tripped:
        return args.exit_code
    return 1 if failed else 0


def _ignore_file(policy: dict, args) -> str | None:
    """--ignore-file, or ./.stowawayignore / ./.trivyignore(.yaml) when neither it nor the policy names
    one (the policy's own ignore_file was imported by load_policy)."""
    path = getattr(args, "ignore_file", None)
    found = policy.get("vulnerabilities")
    conf: dict = found if isinstance(found, dict) else {}
    if path:
        if not os.path.isfile(path):
            raise ScanError(f"--ignore-file {path}: no such file")
        return path
    if conf.get("ignore_file"):
        return None
    for name in (".stowawayignore", ".trivyignore", ".trivyignore.yaml"):
        if os.path.isfile(name):
            print(f"using the ignore rules of ./{name} (found in the working directory)", file=sys.stderr)
            return name
    return None


def _outputs(args, scan: bool) -> list[tuple[str, str | None]]:
    """[(format, file or None for stdout)] from --format / -o, with the defaults for a terminal."""
    from .model import FORMATS

    specs = list(args.format or [])
    if not specs:
        if sys.stdout.isatty():
            specs = ["table"]
        elif not scan:
            specs = ["json"]
        elif args.output:
            raise ScanError("-o FILE needs --format (table, json, sarif, cyclonedx, spdx or csv)")
    out: list[tuple[str, str | None]] = []
    for spec in specs:
        fmt, sep, path = spec.partition("=")
        fmt = fmt.strip().lower()
        if fmt not in FORMATS:
            raise ScanError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
        if sep and not path:
            raise ScanError(f"--format {spec}: missing file name after '='")
        out.append((fmt, path or None))
    to_stdout = [f for f, p in out if p is None]
    if args.output:
        if len(to_stdout) != 1:
            raise ScanError("-o FILE goes with exactly one --format without =FILE")
        out = [(f, p if p is not None else args.output) for f, p in out]
    elif len(to_stdout) > 1:
        raise ScanError(f"--format {' and '.join(to_stdout)}: only one format can go to stdout; write the others"
                        " with FORMAT=FILE")
    return out


def _emit(args, outputs, reports: list[dict], database) -> bool:
    """Writes every requested output; prints the gate's verdict; True when --fail-on tripped."""
    from . import render
    from .output import colour_enabled

    filters = render.Filters.from_args(args)
    found = filters.apply(item for r in reports for item in render.items(r))
    shown = []
    if filters.severities is not None:
        shown.append("severity " + ",".join(s for s in render.SEVERITY_RANK if s in filters.severities))
    if filters.ignore_unfixed:
        shown.append("fixed only")
    if filters.kinds is not None:
        shown.append("risk " + ",".join(args.risk))
    for fmt, path in outputs:
        if fmt == "json":
            text = render.to_json(reports)
        elif fmt == "table":
            colour = path is None and colour_enabled(sys.stdout)
            text = "\n".join(render.table(r, [i for i in found if i.image == (r.get("image") or {}).get("reference")],
                                          colour, "; ".join(shown), None if shown else _read_model_counts(database, r))
                             for r in reports)
            if not reports:
                text = "no image scanned\n"
        elif fmt == "sarif":
            text = json.dumps(render.sarif(reports, found), indent=2, ensure_ascii=False)
        elif fmt == "csv":
            text = render.to_csv(found)
        else:
            text = _sbom(database, reports, fmt)
        _write(text, path)
    bad = render.gate(found, args.fail_on)
    if args.fail_on:
        if bad:
            counts = ", ".join(f"{sum(1 for i in bad if i.severity == s)} {s}" for s in render.SEVERITY_RANK
                               if any(i.severity == s for i in bad))
            images = sorted({i.image for i in bad})
            print(f"stowaway: --fail-on {args.fail_on}: {len(bad)} unsuppressed finding(s) at or above {args.fail_on}"
                  f" ({counts}) in {', '.join(images)}", file=sys.stderr)
        else:
            print(f"no unsuppressed finding at or above {args.fail_on}", file=sys.stderr)
    return bool(bad)


def _read_model_counts(database, report: dict) -> dict | None:
    """The image's counts from the findings store's read model, when the report is of its current scan."""
    scan_id = (report.get("scan") or {}).get("id")
    try:
        row = database.execute("SELECT i.id FROM images i JOIN scans s ON s.image_id = i.id WHERE s.id = ?"
                               " AND i.last_scan_id = s.id", [scan_id]).fetchone()
        if not row:
            return None
        from .readmodel import counts

        return counts(database.conn, row[0]).get(row[0], {"failing": {}, "suppressed": {}})
    except sqlite3.Error:  # an older database without the read model: the report's own findings
        return None


def _sbom(database, reports: list[dict], fmt: str) -> str:
    from . import sbom

    if len(reports) != 1:
        raise ScanError(f"--format {fmt}: one image at a time ({len(reports)} here); use `stowaway sbom REF`")
    image = reports[0]["image"]
    ref = image.get("manifest_digest") or image["reference"]
    if fmt == "cyclonedx":
        return sbom.cyclonedx(database, ref, image.get("platform") or "")
    return sbom.export(database, ref, "spdx", image.get("platform") or "")


def _write(text: str, path: str | None) -> None:
    if not text.endswith("\n"):
        text += "\n"
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def print_warnings(reference: str, warnings) -> None:
    """Every warning in full, once, on stderr (`-q` hides them)."""
    seen = set()
    for w in warnings or []:
        if w not in seen:
            seen.add(w)
            print(f"stowaway: warning: {reference}: {w}", file=sys.stderr)


def cmd_report(args) -> int:
    from .report import build

    outputs = _outputs(args, scan=False)
    if args.ignore_file:
        if not os.path.isfile(args.ignore_file):
            raise ScanError(f"--ignore-file {args.ignore_file}: no such file")
        from .suppression_files import import_into

        count, warnings = import_into(open_db(args.db, write=True).conn, args.ignore_file)
        print(f"{count} suppression(s) from {args.ignore_file} in the findings store", file=sys.stderr)
        for w in warnings:
            print(f"stowaway: warning: {w}", file=sys.stderr)
    database = open_db(args.db, write=False)
    report = build(database, args.ref, args.platform)
    tripped = _emit(args, outputs, [report], database)
    return args.exit_code if tripped else 0


def cmd_images(args) -> int:
    """The image list of the read model (the same rows as Datasette's image list and images.json): failing,
    unsuppressed findings and suppressed ones; `--format json` adds each image's counts per kind and
    severity and the per-kind columns."""
    from .images import image_list
    from .output import print_listing

    database = open_db(args.db, write=False)
    items = image_list(database.conn)
    columns = ["reference", "platform", "os", "size", "last_scan", "findings", "suppressed", "digest"]
    if args.format == "json":
        for i in items:
            extra = {k: v for k, v in i.items() if k not in ("failing", "manifest_digest") and k not in columns}
            print(json.dumps({"reference": i["reference"], "platform": i["platform"], "os": i["os"],
                              "size": i["size"], "last_scan": i["last_scan"], "findings": i["failing"],
                              "suppressed": i["suppressed"], "digest": i["manifest_digest"], **extra},
                             ensure_ascii=False))
        return 0
    print_listing(columns, [(i["reference"], i["platform"] or "", i["os"] or "", _human(i["size"]),
                             i["last_scan"] or "-", i["failing"], i["suppressed"], (i["manifest_digest"] or "")[:19])
                            for i in items])
    return 0


def cmd_scans(args) -> int:
    from .output import print_listing

    database = open_db(args.db, write=False)
    rows = database.execute("SELECT id, status, reference, started_at, seconds, error FROM scans ORDER BY id DESC"
                            " LIMIT ?", [args.limit]).fetchall()
    print_listing(["id", "status", "reference", "started_at", "seconds", "error"], rows, args.format)
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


def _add_common_options(parser) -> None:
    """`-q` and `--no-progress` on every command and subcommand (`stowaway scan -q` as users type it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                opts = child._option_string_actions
                if "-q" not in opts and "--quiet" not in opts:
                    child.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                                       help="print only errors and the --fail-on verdict")
                if "--no-progress" not in opts:
                    child.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS,
                                       help="no progress bars (they are off anyway when stderr is not a terminal)")
                _add_common_options(child)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    import signal

    _load_command_modules()  # every module's schema parts registered, whatever the command
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")][:1]
    ap = build_parser(words[0] if words and words[0] in BUILTIN_COMMANDS else None)
    ap.add_argument("-q", "--quiet", action="store_true", help="print only errors and the --fail-on verdict")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars on any command")
    _add_common_options(ap)
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    if args.quiet:
        from .output import QuietStream

        sys.stderr = QuietStream(sys.stderr)  # type: ignore[assignment]
        args.no_progress = True
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)  # a CI job cancelled: same as Ctrl-C
    except ValueError:  # not the main thread (tests calling main())
        pass
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
    except sqlite3.Error as exc:
        hint = ""
        if "no such table" in str(exc) or "no such column" in str(exc):
            hint = " (a database of an older Stowaway: a command that writes, such as `stowaway rematch`, upgrades it)"
        print(f"stowaway: {getattr(args, 'db', 'database')}: database error: {exc}{hint}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"stowaway: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        if args.quiet:
            sys.stderr.flush()


def run() -> None:
    """The `stowaway` command: `main()`, then the process ends without the interpreter's teardown.

    Freeing every module and object one by one at exit cost 0.05-0.08 s of CPU after a scan (0.1-0.2 s of
    wall on a loaded machine), for memory the process gives back anyway. What the teardown is for is still
    done: what only a reference cycle holds is collected (an SQLite connection is one: it is closed, its
    WAL checkpointed, as at exit), atexit handlers run (logging, worker pools, temporary directories), and
    standard output and error are flushed. While a thread that is not a daemon still runs (the interpreter
    would wait for it), or `main` returned no exit status, it is an ordinary exit."""
    code = main()
    import atexit
    import gc
    import threading

    gc.collect()
    if not isinstance(code, int) or any(t.is_alive() and not t.daemon for t in threading.enumerate()
                                        if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said on it
            pass
    os._exit(code)


if __name__ == "__main__":
    # run the imported module, not __main__: command modules register with stowaway.ingest.cli
    from stowaway.ingest.cli import run as _run

    _run()
