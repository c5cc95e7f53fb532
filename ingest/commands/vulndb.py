"""`stowaway db import|update|status` (the advisory store) and `stowaway rematch` (re-evaluation).

    stowaway db import ../feeds/osv PyPI-all.zip debian-tracker.json --db DB [--rematch]
    stowaway db update --ecosystem PyPI --ecosystem Debian [--url BASE] [--rematch]
    stowaway rematch --db DB [--image REF]... [--ignore-file FILE]
"""
from __future__ import annotations

import os
import sys

from stowaway.analyzers.vulnerabilities import store  # registers the schema part before connect()
from stowaway.ingest.cli import _add_db, command
from stowaway.ingest.model import ScanError


def _connect(path: str, must_exist: bool = False):
    from stowaway.ingest.cli import open_db

    if must_exist and not os.path.exists(path):
        raise ScanError(f"{path}: no such database")
    database = open_db(path, write=True)
    store.ensure(database)
    return database


def _rematch(database, args) -> None:
    from stowaway.analyzers.vulnerabilities.rematch import rematch

    result = rematch(database, getattr(args, "image", None) or None, getattr(args, "ignore_file", None),
                     progress=not getattr(args, "no_progress", False) and sys.stderr.isatty(),
                     all_images=getattr(args, "all", False))
    print(result.summary(), file=sys.stderr)


def cmd_import(args) -> int:
    from stowaway.analyzers.vulnerabilities.importer import Importer
    from stowaway.ingest.output import RecordProgress

    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        raise ScanError(f"{missing[0]}: no such file or directory")
    database = _connect(args.db)
    importer = Importer(database, source=" ".join(args.paths))
    with RecordProgress(lambda: importer.result.records, "import", False if args.no_progress else None):
        for path in args.paths:
            importer.add_path(path)
        result = importer.finish()
    print(f"imported {result.summary()}", file=sys.stderr)
    for example in result.examples[:5]:
        print(f"  e.g. {example}", file=sys.stderr)
    if args.rematch:
        _rematch(database, args)
    return 0


def _update_vendor(database, args) -> int:
    """A vendor's own feed (feeds/sources.py): fetch what changed into the cache, import it."""
    from stowaway.analyzers.vulnerabilities import download
    from stowaway.analyzers.vulnerabilities.feeds import sources
    from stowaway.analyzers.vulnerabilities.importer import Importer

    cache = args.cache_dir or os.path.join(os.path.dirname(os.path.abspath(args.db)), "vendor-feeds")
    show = not args.no_progress and sys.stderr.isatty()
    try:
        got = sources.update(args.source, cache, verify=download.ca_verify(args.ca_bundle), base_url=args.url,
                             limit=args.limit, progress=(lambda t: print(t, file=sys.stderr)) if show else None)
    except sources.SourceError as exc:
        print(f"stowaway: {exc}", file=sys.stderr)
        return 1
    print(got.summary(), file=sys.stderr)
    for line in got.failed[:5]:
        print(f"  e.g. {line}", file=sys.stderr)
    paths = got.changed
    if args.force_import and not paths:
        paths = [os.path.join(cache, args.source)]
    if paths:
        importer = Importer(database, source=args.url or sources.SOURCES[args.source].url, kind=args.source)
        for path in paths:
            importer.add_path(path)
        result = importer.finish()
        print(f"imported {result.summary()}", file=sys.stderr)
        if args.rematch and result.changed:
            _rematch(database, args)
    return 1 if got.failed else 0


def _update_nvd(database, args) -> int:
    from stowaway.analyzers.vulnerabilities import nvd

    cache = args.cache_dir or os.path.join(os.path.dirname(os.path.abspath(args.db)), "nvd-feed")
    key = args.api_key or os.environ.get("NVD_API_KEY") or None
    show = not args.no_progress and sys.stderr.isatty()
    conn = database.conn if hasattr(database, "conn") else database
    try:
        counts = nvd.update(conn, cache, url=args.url or nvd.API_URL, api_key=key,
                            progress=(lambda text: print(text, file=sys.stderr)) if show else None)
    except nvd.NvdError as exc:
        print(f"stowaway: {exc}", file=sys.stderr)
        return 1
    print(f"NVD: {counts['cves']:,} CVE records in {counts['pages']} pages", file=sys.stderr)
    if args.rematch and counts["cves"]:
        _rematch(database, args)
    return 0


def cmd_update(args) -> int:
    from stowaway.analyzers.vulnerabilities import download
    from stowaway.analyzers.vulnerabilities.importer import Importer
    from stowaway.ingest.output import RecordProgress

    database = _connect(args.db)
    if args.source == "nvd":
        return _update_nvd(database, args)
    if args.source != "osv":
        return _update_vendor(database, args)
    args.url = args.url or download.DEFAULT_BASE
    cache = args.cache_dir or os.path.join(os.path.dirname(os.path.abspath(args.db)), "osv-feeds")
    verify = download.ca_verify(args.ca_bundle)
    ecosystems = args.ecosystem or list(download.DEFAULT_ECOSYSTEMS)
    importer = None
    failed = 0
    for eco in ecosystems:
        url = download.ecosystem_url(args.url, eco)
        dest = os.path.join(cache, eco.replace("/", "_").replace(" ", "_"), "all.zip")
        try:
            path, changed = download.fetch(url, dest, verify=verify, progress=False if args.no_progress else None,
                                           label=eco)
        except download.DownloadError as exc:
            failed += 1
            print(f"stowaway: {exc}", file=sys.stderr)
            continue
        if not changed and not args.force_import:
            print(f"{eco}: unchanged", file=sys.stderr)
            continue
        importer = importer or Importer(database, source=args.url, kind="osv-download")
        imp = importer
        with RecordProgress(lambda: imp.result.records, f"import {eco}", False if args.no_progress else None):
            importer.add_path(path)
        print(f"{eco}: downloaded {os.path.getsize(path):,} bytes", file=sys.stderr)
    if importer:
        result = importer.finish()
        print(f"imported {result.summary()}", file=sys.stderr)
        if args.rematch and result.changed:
            _rematch(database, args)
    return 1 if failed else 0


def cmd_status(args) -> int:
    from stowaway.analyzers.vulnerabilities.store import coverage_by_release, enrichment_counts
    from stowaway.ingest.cli import has_table, open_db
    from stowaway.ingest.output import print_listing

    database = open_db(args.db, write=False)  # read-only: works on a read-only medium, creates nothing
    present = has_table(database, "advisory_affected") and has_table(database, "advisories")
    rows = coverage_by_release(database.conn) if present else []
    imports = database.execute("SELECT id, kind, source, finished_at, records, inserted, updated, skipped FROM"
                               " advisory_imports ORDER BY id DESC LIMIT 5").fetchall() \
        if has_table(database, "advisory_imports") else []
    if args.format == "json":
        print_listing(["ecosystem", "release", "advisories", "entries", "newest_modified"],
                      [tuple(r.values()) for r in rows], "json")
        return 0
    if not rows:
        print("no advisories in the store: nothing is checked; run `stowaway db import` or `stowaway db update`")
    else:
        print_listing(["ecosystem", "advisories", "entries", "newest modified"],
                      [(r["ecosystem"] + (":" + r["release"] if r["release"] else ""), r["advisories"], r["entries"],
                        r["newest_modified"] or "unknown") for r in rows])
    if present:
        counts = enrichment_counts(database.conn)
        print(f"withdrawn records (stored, never matched): {counts['withdrawn']}")
        for name in ("nvd", "kev", "epss"):
            n = counts[name]
            print(f"{name.upper()}: {n} entries" if n else f"{name.upper()}: none imported (its flags read 'unknown')")
    if imports:
        print()
        print_listing(["import", "kind", "finished", "records", "new", "updated", "skipped", "source"],
                      [(r[0], r[1], r[3] or "unfinished", r[4], r[5], r[6], r[7], r[2]) for r in imports])
    return 0


def cmd_rematch(args) -> int:
    database = _connect(args.db, must_exist=True)
    _rematch(database, args)
    return 0


@command
def add(sub):
    db = sub.add_parser("db", help="the vulnerability database: import, update, status")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION")
    db.set_defaults(func=lambda args: (db.print_help(), 2)[1])

    p = dbsub.add_parser("import", help="import OSV records (files, directories, all.zip), the Debian security"
                                        " tracker JSON, NVD CVE API 2.0 JSON (records or yearly feeds, .json.gz"
                                        " too), Red Hat CSAF/VEX JSON, SUSE and openEuler CVRF XML (.gz/.bz2 too),"
                                        " CISA KEV JSON or EPSS CSV")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, directories or all.zip exports to import")
    _add_db(p)
    p.add_argument("--rematch", action="store_true", help="re-evaluate every stored image afterwards")
    p.add_argument("--ignore-file", metavar="FILE", help="ignore rules applied when re-evaluating")
    p.set_defaults(func=cmd_import)

    p = dbsub.add_parser("update", help="download osv.dev ecosystem exports (all.zip), a vendor's own feed or NVD's"
                                        " CVE records (--source), and import them")
    _add_db(p)
    from stowaway.analyzers.vulnerabilities.feeds.sources import DEFAULT_LIMIT, SOURCES

    p.add_argument("--source", choices=("osv", "nvd", *SOURCES), default="osv",
                   help="osv: osv.dev's per-ecosystem exports (default); nvd: NVD's CVE API 2.0, for the severity of"
                        " findings whose records carry none (first run downloads every CVE, later runs what changed;"
                        " an interrupted run resumes); "
                        + "; ".join(f"{s.name}: {s.help}" for s in SOURCES.values())
                        + ". Vendor feeds are fetched incrementally (only new or changed documents)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                   help=f"vendor feeds: at most N documents fetched per run, the rest next run (default {DEFAULT_LIMIT:,})")
    p.add_argument("--api-key", metavar="KEY",
                   help="NVD API key (default: $NVD_API_KEY); optional, it raises NVD's rate limit from 5 to 50"
                        " requests per 30 s")
    p.add_argument("--ecosystem", action="append", metavar="NAME",
                   help="OSV ecosystem, repeatable (default: the OS and language ecosystems Stowaway matches)")
    from stowaway.analyzers.vulnerabilities.download import DEFAULT_BASE
    from stowaway.analyzers.vulnerabilities.nvd import API_URL

    p.add_argument("--url", help=f"base URL of the exports (default: {DEFAULT_BASE}), of NVD's CVE API (default:"
                                 f" {API_URL}) or of the vendor feed named by --source (default: the vendor's own,"
                                 " see docs/VULNERABILITIES.md)")
    p.add_argument("--cache-dir", metavar="DIR", help="where the zips, vendor documents or NVD's resume state are kept"
                                                      " (default: osv-feeds/, vendor-feeds/ or nvd-feed/ beside the"
                                                      " database)")
    p.add_argument("--ca-bundle", metavar="FILE", help="CA bundle for HTTPS (default: $REQUESTS_CA_BUNDLE or certifi)")
    p.add_argument("--force-import", action="store_true", help="import even when the export did not change")
    p.add_argument("--rematch", action="store_true", help="re-evaluate every stored image when anything changed")
    p.add_argument("--ignore-file", metavar="FILE", help="ignore rules applied when re-evaluating")
    p.set_defaults(func=cmd_update)

    p = dbsub.add_parser("status", help="what the advisory store holds")
    _add_db(p)
    from stowaway.ingest.output import add_listing_format

    add_listing_format(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("rematch", help="re-evaluate stored images against the current advisories, without reading"
                                       " any image")
    _add_db(p)
    p.add_argument("--image", action="append", metavar="REF", help="only these images (reference or digest)")
    p.add_argument("--ignore-file", metavar="FILE",
                   help="ignore rules (.trivyignore plain, YAML or TOML); ignored findings stay, marked")
    p.add_argument("--all", action="store_true",
                   help="re-evaluate every image, also those already matched against the advisory store as it is"
                        " now (by default they are kept as they are: the same store gives the same findings)")
    p.set_defaults(func=cmd_rematch)
