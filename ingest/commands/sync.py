"""`stowaway sync REGISTRY` records what a registry holds; `stowaway synced` lists it (or its latest
versions only). Also the scopes `stowaway scan` accepts over synced images."""
from __future__ import annotations

import json
import os
import sys

from stowaway.ingest.cli import _add_db, command


def add_scan_scopes(p) -> None:
    """Options of `stowaway scan` that pick synced images and run them as a managed task."""
    p.add_argument("--all-synced", action="store_true", help="scan every synced image present in its registry")
    p.add_argument("--registry", metavar="HOST", help="with --all-synced: only this registry")
    p.add_argument("--latest-only", action="store_true", help="with --all-synced: only each repository's newest tag")
    p.add_argument("--type", dest="repo_type", action="append", metavar="TYPE",
                   help="with --all-synced: only registries of this type (repeatable)")
    p.add_argument("--retries", type=int, default=None, metavar="N", help="retry a failed image N times")


def add_connection_options(p) -> None:
    p.add_argument("--insecure", action="store_true",
                   help="accept an unverified certificate, or plain http when the registry speaks no TLS")
    p.add_argument("--ca", metavar="FILE", help="CA bundle that signs the registry's certificate")
    p.add_argument("--username", metavar="USER", help="registry user (else environment or Docker config.json)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


def connection_options(args, policy: dict) -> dict:
    options = dict(policy.get("source_options") or {})
    options["registries"] = policy.get("registries") or {}
    if getattr(args, "insecure", False):
        options["insecure"] = True
    if getattr(args, "ca", None):
        options["ca"] = args.ca
    if getattr(args, "username", None):
        options["username"] = args.username
        options["password"] = sys.stdin.readline().rstrip("\n") if args.password_stdin else \
            os.environ.get("STOWAWAY_REGISTRY_PASSWORD", "")
    return options


@command
def add(sub):
    p = sub.add_parser("sync", help="record a registry's repositories, tags, digests, sizes (no layers downloaded)")
    p.add_argument("registry", metavar="REGISTRY", help="registry host[:port]")
    _add_db(p)
    p.add_argument("--config", metavar="FILE", help="policy file (TOML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--namespace", action="append", default=[], metavar="NS",
                   help="only repositories under NS (repeatable); names repositories when the catalog is closed")
    p.add_argument("--type", dest="repo_type", choices=["private", "shared", "enterprise", "third-party"],
                   help="label the registry (default: private, or what an earlier sync set)")
    p.add_argument("--images-per-hour", type=int, metavar="N",
                   help="scan at most N images an hour from this registry (third-party registries)")
    add_connection_options(p)
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("synced", help="list synced registry images")
    _add_db(p)
    p.add_argument("--registry", metavar="HOST")
    p.add_argument("--latest-only", action="store_true", help="each repository's newest tag only")
    p.add_argument("--removed", action="store_true", help="include tags that disappeared")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_synced)


def cmd_sync(args) -> int:
    from stowaway.ingest.cli import load_policy
    from stowaway.ingest.db import connect
    from stowaway.ingest.sources.registry import RegistryClient
    from stowaway.ingest.sync import sync

    policy = load_policy(args)
    client = RegistryClient.from_options(args.registry, connection_options(args, policy))
    result = sync(connect(args.db), client, args.namespace, args.repo_type, args.images_per_hour)
    print(f"synced {result.host}: {result.repositories} repositories, {result.tags} tags ({result.added} new,"
          f" {result.changed} changed, {result.unchanged} unchanged, {result.removed} removed)", file=sys.stderr)
    for e in result.errors:
        print(f"stowaway: {e}", file=sys.stderr)
    return 1 if result.errors else 0


def cmd_synced(args) -> int:
    from stowaway.ingest.db import connect
    from stowaway.ingest.sync import ensure

    database = connect(args.db)
    ensure(database)
    view = "registry_latest" if args.latest_only else "registry_images"
    sql = f"SELECT reference, type, digest, size, updated, platforms, removed_at FROM {view}"
    where, params = [], []
    if not args.removed:
        where.append("removed_at IS NULL")
    if args.registry:
        where.append("host = ?")
        params.append(args.registry)
    rows = database.execute(sql + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY reference",
                            params).fetchall()
    cols = ["reference", "type", "digest", "size", "updated", "platforms", "removed_at"]
    for r in rows:
        if args.json:
            print(json.dumps(dict(zip(cols, r))))
        else:
            print(f"{r[0]}  {r[1]}  {(r[2] or '')[:19]}  {r[3] or 0}  {r[4] or '-'}  {r[5] or ''}"
                  + (f"  removed {r[6]}" if r[6] else ""))
    return 0
