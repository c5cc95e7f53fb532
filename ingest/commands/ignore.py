"""`stowaway ignore add|list|remove|import|export`: the findings store's suppressions.

    stowaway ignore add --image REPO[:TAG] | --everywhere --id CVE-or-rule --reason TEXT
                        [--package NAME] [--path GLOB] [--kind KIND] [--expires YYYY-MM-DD] --db DB
    stowaway ignore list [--format table|json] [--active] --db DB
    stowaway ignore remove ID... --db DB
    stowaway ignore import FILE [--image REPO[:TAG]] --db DB     (.trivyignore, YAML/TOML, OpenVEX JSON)
    stowaway ignore export --format openvex [-o FILE] --db DB

A change applies at once to the current scans of the images it covers: counts change without a rescan.
"""
from __future__ import annotations

import getpass
import json
import os
import sys

from stowaway.ingest.cli import _add_db, command
from stowaway.ingest.model import ScanError

KINDS = ("vulnerability", "malware", "secret", "unsafe_setting", "compliance", "base_image")


def _author(args) -> str | None:
    if getattr(args, "author", None):
        return args.author
    try:
        return getpass.getuser()
    except Exception:
        return None


def _scope_args(p, required: bool):
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--image", metavar="REPO[:TAG]",
                       help="the image repository it covers (every tag), or one tag of it; globs allowed")
    group.add_argument("--everywhere", action="store_true", help="every image")


@command
def add(sub):
    ig = sub.add_parser("ignore", help="suppressions: findings accepted with a reason, kept through rescans and"
                                       " rematches (add, list, remove, import, export)")
    igsub = ig.add_subparsers(dest="ignore_command", metavar="ACTION")
    ig.set_defaults(func=lambda args: (ig.print_help(), 2)[1])

    p = igsub.add_parser("add", help="suppress a vulnerability or rule for an image repository, a tag, or everywhere")
    _scope_args(p, required=True)
    p.add_argument("--id", required=True, metavar="ID",
                   help="advisory id or alias (CVE-2021-44228, GHSA-...), or a check, secret or YARA rule id")
    p.add_argument("--reason", required=True, help="why it is accepted (shown with the finding everywhere)")
    p.add_argument("--package", default="", metavar="NAME", help="only in this package (name as findings show it)")
    p.add_argument("--path", default="", metavar="GLOB", help="only at this path (or a check's target), glob allowed")
    p.add_argument("--kind", choices=KINDS, default="", help="only findings of this kind")
    p.add_argument("--expires", metavar="YYYY-MM-DD", help="stops applying after this day")
    p.add_argument("--author", help="who accepted it (default: the current user)")
    _add_db(p)
    p.set_defaults(func=cmd_add)

    p = igsub.add_parser("list", help="list suppressions")
    p.add_argument("--format", choices=["table", "json"], default="table", help="table (default) or json")
    p.add_argument("--active", action="store_true", help="leave out expired suppressions")
    _add_db(p)
    p.set_defaults(func=cmd_list)

    p = igsub.add_parser("remove", help="remove suppressions by id (see `stowaway ignore list`)")
    p.add_argument("ids", nargs="+", type=int, metavar="ID", help="suppression ids, as `stowaway ignore list` shows them")
    _add_db(p)
    p.set_defaults(func=cmd_remove)

    p = igsub.add_parser("import", help="import a .trivyignore, a structured ignore file (YAML/TOML) or an"
                                        " OpenVEX document (not_affected statements)")
    p.add_argument("file", metavar="FILE", help=".trivyignore, ignore file (.yaml, .yml, .toml) or OpenVEX JSON")
    _scope_args(p, required=False)
    p.add_argument("--format", choices=["auto", "trivyignore", "structured", "openvex"], default="auto",
                   help="the file's format (default: from its name and content)")
    p.add_argument("--author", help="who accepted them (default: the document's author, or the current user)")
    _add_db(p)
    p.set_defaults(func=cmd_import)

    p = igsub.add_parser("export", help="write the vulnerability suppressions out as an OpenVEX document")
    p.add_argument("--format", choices=["openvex"], default="openvex", help="openvex (the only format)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--author", help="the document's author (default: the current user)")
    _add_db(p)
    p.set_defaults(func=cmd_export)


def _open(args, must_exist: bool = True):
    from stowaway.ingest.db import connect

    if must_exist and not os.path.exists(args.db):
        raise ScanError(f"{args.db}: no such database")
    return connect(args.db)


def _scope(args) -> tuple[str, str]:
    from stowaway.ingest.findings import scope_of

    return scope_of(args.image) if getattr(args, "image", None) else ("", "")


def _changed(conn, before: dict) -> str:
    from stowaway.ingest import readmodel

    after = readmodel.counts(conn)
    n = sum(1 for k in set(before) | set(after) if before.get(k) != after.get(k))
    return f"{n} image(s) changed"


def cmd_add(args) -> int:
    from stowaway.ingest import findings, readmodel

    database = _open(args, must_exist=False)
    conn = database.conn
    repo, tag = _scope(args)
    s = findings.Suppression(rule=args.id.strip(), reason=args.reason, kind=args.kind or "", package=args.package,
                             path=args.path, repository=repo, tag=tag, author=_author(args), expires=args.expires,
                             source="cli")
    before = readmodel.counts(conn)
    try:
        with conn:
            sid = findings.add_suppression(conn, s)
    except ValueError as exc:
        raise ScanError(str(exc)) from None
    print(f"suppression {sid}: {s.rule} {s.scope}" + (f" package {s.package}" if s.package else "")
          + (f" path {s.path}" if s.path else "") + (f" until {s.expires}" if s.expires else "")
          + f"; {_changed(conn, before)}", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    from stowaway.ingest import findings

    database = _open(args)
    with database.conn:
        findings.apply_suppressions(database.conn)  # expired ones stop applying
    items = findings.list_suppressions(database.conn, include_expired=not args.active)
    today = findings._today()
    if args.format == "json":
        print(json.dumps([{**s.as_dict(), "active": s.active(today)} for s in items], indent=2, ensure_ascii=False))
        return 0
    header = ("ID", "RULE", "SCOPE", "KIND", "PACKAGE", "PATH", "EXPIRES", "AUTHOR", "REASON")
    rows = [header] + [(str(s.id), s.rule, s.scope, s.kind or "any", s.package or "-", s.path or "-",
                        (s.expires or "never") + ("" if s.active(today) else " (expired)"), s.author or "-",
                        s.reason.replace("\n", " ")[:80]) for s in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_remove(args) -> int:
    from stowaway.ingest import findings, readmodel

    database = _open(args)
    conn = database.conn
    known = {s.id for s in findings.list_suppressions(conn)}
    missing = [i for i in args.ids if i not in known]
    if missing:
        raise ScanError(f"no suppression {', '.join(map(str, missing))} (see `stowaway ignore list`)")
    before = readmodel.counts(conn)
    with conn:
        n = findings.remove_suppressions(conn, args.ids)
    print(f"removed {n} suppression(s); {_changed(conn, before)}", file=sys.stderr)
    return 0


def cmd_import(args) -> int:
    from stowaway.ingest import readmodel, suppression_files

    database = _open(args, must_exist=False)
    repo, tag = _scope(args)
    before = readmodel.counts(database.conn)
    n, warnings = suppression_files.import_into(database.conn, args.file, repo, tag, args.author or None, args.format)
    for w in warnings:
        print(f"stowaway: warning: {w}", file=sys.stderr)
    print(f"imported {n} suppression(s) from {args.file}; {_changed(database.conn, before)}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from stowaway.ingest import db as dbm
    from stowaway.ingest import findings, suppression_files

    database = _open(args)
    doc, left_out = suppression_files.to_openvex(findings.list_suppressions(database.conn, include_expired=False),
                                                 _author(args) or "stowaway", dbm.now())
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    if left_out:
        print(f"stowaway: {left_out} suppression(s) of other kinds than vulnerabilities left out (OpenVEX is about"
              " vulnerabilities)", file=sys.stderr)
    return 0
