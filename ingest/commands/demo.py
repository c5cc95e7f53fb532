"""`stowaway demo`: build sample images in code, scan them into a database, open it in Datasette.

Works with no Docker and no network: the images, the advisory feed and the database are all made here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from stowaway.ingest.cli import command


@command
def add(sub):
    p = sub.add_parser("demo", help="build sample images, scan them, and browse the findings in Datasette",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="demo", help="where the sample images, feed and database go (default ./demo)")
    p.add_argument("--no-serve", action="store_true", help="stop after scanning (for CI)")
    p.add_argument("--port", type=int, default=8001, help="Datasette port (default 8001)")
    p.set_defaults(func=run)


def run(args) -> int:
    from stowaway.analyzers.vulnerabilities.importer import import_paths
    from stowaway.ingest import demo
    from stowaway.ingest.cli import main as cli_main
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner
    from stowaway.ingest.report import build as build_report

    paths = demo.build(args.dir)
    db_path = os.path.join(args.dir, "stowaway.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db_path + suffix):
            os.remove(db_path + suffix)
    database = connect(db_path)
    print(f"built sample images in {args.dir}/", file=sys.stderr)
    result = import_paths(database, [paths["feed"]])
    print(f"imported the demo advisory feed ({result.records} records)", file=sys.stderr)
    # the base first: the other images are checked against it as the approved base
    Scanner(database, {}, progress=None).run([f"oci:{paths['oci']}:demo/base:1"])
    policy = {"base_images": {"approved": ["demo/base:1"]}}
    outcomes = Scanner(database, policy, progress=None).run(
        [f"docker-archive:{paths['archive']}", f"oci:{paths['oci']}:demo/tools:1"])
    failed = [o for o in outcomes if o.status != "done"]
    for o in failed:
        print(f"stowaway: scan of {o.reference} failed: {o.error}", file=sys.stderr)
    report_path = os.path.join(args.dir, "demo-shop-report.json")
    with open(report_path, "w") as fh:
        json.dump(build_report(database, "demo/shop:1.0"), fh, indent=2)
    database.conn.close()
    cli_main(["images", "--db", db_path])
    print(f"\ndatabase: {db_path}\nreport:   {report_path}", file=sys.stderr)
    if failed:
        return 1
    if args.no_serve:
        return 0
    print(f"serving on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    return cli_main(["serve", db_path, "--port", str(args.port)])
