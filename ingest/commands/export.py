"""`stowaway export vulnerabilities|baseline [--image REF]... [--repository R] [--latest-only]
--format csv|xlsx [-o FILE]`: the vulnerability report and the baseline (unsafe-settings) report with
the Datasette exports' columns, from each image's current scan (ingest/exports.py, one implementation
for both)."""
from __future__ import annotations

import os
import sys

from stowaway.ingest.cli import _add_db, command
from stowaway.ingest.model import ScanError


def export_group(sub):
    """The `export` command's KIND subparsers, created by the first module that exports something."""
    parser = sub.choices.get("export")
    if parser is None:
        parser = sub.add_parser("export", help="export the vulnerability or baseline report as CSV or XLSX")
        parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
        parser.kinds = parser.add_subparsers(dest="export_kind", metavar="KIND", parser_class=type(parser))
    return parser.kinds


@command
def add(sub):
    kinds = export_group(sub)
    for name, helptext in (("vulnerabilities", "vulnerabilities of each image's current scan, one row per finding"),
                           ("baseline", "unsafe-settings check results (baseline, SSH, weak passwords, password"
                                        " policy), one row per check per image")):
        p = kinds.add_parser(name, help=helptext)
        _add_db(p)
        p.add_argument("--format", choices=["csv", "xlsx"], default="csv", help="csv (default) or xlsx")
        p.add_argument("--image", action="append", metavar="REF",
                       help="only this image (reference or digest; repeatable); default: every image")
        p.add_argument("--repository", metavar="NAME", help="only images of this repository (e.g. corpus/shop)")
        p.add_argument("--latest-only", action="store_true", help="only each repository's newest image")
        p.add_argument("-o", "--output", metavar="FILE",
                       help="write to FILE; default: stdout for csv, stowaway-KIND[-IMAGE].xlsx for xlsx")
        p.set_defaults(func=run, report=name)


def run(args) -> int:
    from stowaway.ingest import exports
    from stowaway.ingest.cli import open_db
    from stowaway.ingest.report import find_image

    database = open_db(args.db, write=False)
    image_ids = None
    if args.image:
        image_ids = [find_image(database, ref)[0] for ref in args.image]
    columns, rows = exports.rows(database, args.report, image_ids, args.repository, args.latest_only)
    output = args.output
    if args.format == "xlsx" and not output:
        output = exports.default_file_name(args.report, args.image or ([args.repository] if args.repository else []),
                                           "xlsx")
    body = exports.render(args.report, args.format, columns, rows)
    if output:
        if os.path.isdir(output):
            raise ScanError(f"-o {output}: is a directory")
        with open(output, "wb") as fh:
            fh.write(body)
        print(f"{len(rows)} rows written to {output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    return 0
