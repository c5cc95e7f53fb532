"""`stowaway serve DB`: Datasette on 127.0.0.1 with the Stowaway plugin.

The plugin brings its own configuration (titles, facets, sort orders, hidden tables) through
Datasette's hooks, so this command only migrates the database and starts Datasette; plain
`datasette DB` shows the same pages.
"""
from __future__ import annotations

import os

from stowaway.ingest.cli import command
from stowaway.ingest.model import ScanError


@command
def add(sub):
    p = sub.add_parser("serve", help="browse a database in Datasette (repository images, reports, exports)")
    p.add_argument("db", metavar="DB", help="the SQLite database written by `stowaway scan`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes the findings to the network)")
    p.add_argument("--port", type=int, default=8001, help="port (default 8001; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open Datasette in a web browser")
    p.add_argument("--root", action="store_true",
                   help="print a link that signs you in as root (root may scan again and edit settings)")
    p.add_argument("--suggest-facets", action="store_true",
                   help="let Datasette suggest facets (off by default: it queries every column of a table on every"
                        " page view, seconds on a large database; the configured facets and each column's menu remain)")
    p.add_argument("--config", metavar="FILE",
                   help="policy file (TOML) that 'Scan again' uses (default: the policy the image's last scan recorded)")
    p.add_argument("-m", "--metadata", metavar="FILE",
                   help="Datasette metadata (JSON/YAML) overriding the plugin's defaults")
    p.set_defaults(func=run)


def datasette_args(args) -> list[str]:
    argv = ["serve", args.db, "--host", args.host, "--port", str(args.port)]
    if not args.suggest_facets:
        argv += ["--setting", "suggest_facets", "off"]
    if args.metadata:
        argv += ["--metadata", args.metadata]

    if args.root:
        argv.append("--root")
    if args.open:
        argv.append("--open")
    return argv


def run(args) -> int:
    if not os.path.exists(args.db):
        raise ScanError(f"{args.db}: no such database")
    from datasette.cli import cli

    from stowaway.ingest.db import connect

    connect(args.db).conn.close()  # brings an older database up to the current schema (and read model)
    if args.config:
        if not os.path.exists(args.config):
            raise ScanError(f"{args.config}: no such policy file")
        os.environ["STOWAWAY_POLICY"] = os.path.abspath(args.config)  # the plugin's default policy_file
    cli.main(datasette_args(args), prog_name="stowaway serve", standalone_mode=False)
    return 0
