"""`stowaway sync REGISTRY` records what a registry holds; `stowaway synced` lists it (or its latest
versions only). Also the scopes `stowaway scan` accepts over synced images."""
from __future__ import annotations

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


CONNECTION_KEYS = ("scheme", "insecure", "ca")  # what `sync` remembers for scans; never credentials


def connection_options(args, policy: dict) -> dict:
    options = dict(policy.get("source_options") or {})
    options["registries"] = policy.get("registries") or {}
    if getattr(args, "insecure", False):
        options["insecure"] = True
    if getattr(args, "ca", None):
        if not os.path.isfile(args.ca):
            from stowaway.ingest.model import ScanError

            raise ScanError(f"--ca {args.ca}: no such file")
        options["ca"] = os.path.abspath(args.ca)
    if getattr(args, "username", None):
        options["username"] = args.username
        options["password"] = _password(args)
    elif getattr(args, "password_stdin", False):
        from stowaway.ingest.model import ScanError

        raise ScanError("--password-stdin needs --username")
    return options


def _password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return os.environ.get("STOWAWAY_REGISTRY_PASSWORD", "")


def stored_connection(database, host: str) -> dict:
    """The scheme / insecure / ca the last `sync` of `host` used, or {}."""
    import json

    try:
        row = database.execute("SELECT connection FROM registries WHERE host = ?", [host]).fetchone()
    except Exception:  # no registry tables (nothing synced) or an older database
        return {}
    try:
        value = json.loads(row[0]) if row and row[0] else {}
    except ValueError:
        return {}
    return {k: v for k, v in value.items() if k in CONNECTION_KEYS} if isinstance(value, dict) else {}


def scan_connection_policy(database, policy: dict, args, sources: list[str]) -> dict:
    """The policy `scan` runs with: for each registry it reads, the settings stored by `sync` under the
    policy file's [registries."HOST"], and the command line's --insecure / --ca / --username over both."""
    hosts = []
    for text in sources:
        if text.startswith("registry:"):
            from stowaway.ingest.sources.registry import parse_reference  # only then (it loads the archive reader)

            try:
                hosts.append(parse_reference(text[len("registry:"):]).host)
            except Exception:  # the scan of that source fails with its own message
                continue
    if getattr(args, "all_synced", False):
        try:
            hosts += [r[0] for r in database.execute("SELECT host FROM registries")
                      if not getattr(args, "registry", None) or r[0] == args.registry]
        except Exception:  # nothing synced yet
            pass
    cli = {k: v for k, v in connection_options(args, {}).items() if k != "registries"}
    registries = dict(policy.get("registries") or {})
    for host in dict.fromkeys(hosts):
        registries[host] = {**stored_connection(database, host), **(registries.get(host) or {}), **cli}
    if not registries:
        return policy
    return {**policy, "registries": registries}


@command
def add(sub):
    p = sub.add_parser("sync", help="record a registry's repositories, tags, digests, sizes (no layers downloaded)")
    p.add_argument("registry", metavar="REGISTRY",
                   help="HOST[:PORT], https://HOST[:PORT] or http://HOST[:PORT] (plain HTTP, no TLS)")
    _add_db(p)
    p.add_argument("--config", metavar="FILE", help="policy file (TOML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a policy value (repeatable)")
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
    p.add_argument("--registry", metavar="HOST", help="only this registry")
    p.add_argument("--latest-only", action="store_true", help="each repository's newest tag only")
    p.add_argument("--removed", action="store_true", help="include tags that disappeared")
    from stowaway.ingest.output import add_listing_format

    add_listing_format(p)
    p.set_defaults(func=cmd_synced)


def cmd_sync(args) -> int:
    from stowaway.ingest.cli import load_policy, open_db
    from stowaway.ingest.sources.registry import RegistryClient, parse_registry
    from stowaway.ingest.sync import sync

    host, scheme = parse_registry(args.registry)
    policy = load_policy(args)
    options = connection_options(args, policy)
    if scheme:
        options["registries"] = {**options["registries"],
                                 host: {**(options["registries"].get(host) or {}), "scheme": scheme}}
        if scheme == "http":
            print(f"{host}: plain HTTP as asked (http://): no TLS, credentials and images travel in clear",
                  file=sys.stderr)
    database = open_db(args.db)
    client = RegistryClient.from_options(host, options)
    result = sync(database, client, args.namespace, args.repo_type, args.images_per_hour)
    _remember_connection(database, host, options, scheme)
    print(f"synced {result.host}: {result.repositories} repositories, {result.tags} tags ({result.added} new,"
          f" {result.changed} changed, {result.unchanged} unchanged, {result.removed} removed)", file=sys.stderr)
    for e in result.errors:
        print(f"stowaway: {e}", file=sys.stderr)
    return 1 if result.errors else 0


def _remember_connection(database, host: str, options: dict, scheme: str) -> None:
    import json

    from stowaway.ingest.sources.registry import registry_options

    conf = registry_options(host, options)
    stored = {k: conf[k] for k in CONNECTION_KEYS if conf.get(k)}
    if scheme:
        stored["scheme"] = scheme
    with database.conn:
        database.conn.execute("UPDATE registries SET connection = ? WHERE host = ?",
                              [json.dumps(stored) if stored else None, host])


def cmd_synced(args) -> int:
    from stowaway.ingest.cli import has_table, open_db
    from stowaway.ingest.output import print_listing

    database = open_db(args.db, write=False)
    cols = ["reference", "type", "digest", "size", "updated", "platforms", "removed_at"]
    if not has_table(database, "registry_tags"):
        print_listing(cols, [], args.format)
        return 0
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
    if args.format == "table":
        rows = [(r[0], r[1], (r[2] or "")[:19], r[3] or 0, r[4], r[5] or "", r[6]) for r in rows]
    print_listing(cols, rows, args.format)
    return 0
