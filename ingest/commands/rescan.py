"""`stowaway rescan REF`: scan an image again from where it was scanned, as a task of its own."""
from __future__ import annotations

import sys

from stowaway.ingest.cli import _add_db, command


@command
def add(sub):
    p = sub.add_parser("rescan", help="scan an image again (by reference or manifest digest)")
    p.add_argument("ref", metavar="REF", help="image reference as scanned, or a manifest digest")
    _add_db(p)
    p.add_argument("--config", metavar="FILE", help="policy file (TOML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a policy value (repeatable)")
    p.add_argument("--risk", action="append", metavar="TYPE", help="risk types (repeatable; default all)")
    p.set_defaults(func=cmd_rescan)


def rescan_sources(database, ref: str) -> list[str]:
    """The source each matching image came from, narrowed to that image when the source holds several."""
    from stowaway.ingest.model import ScanError

    rows = database.execute("SELECT DISTINCT source, reference FROM images WHERE reference=? OR manifest_digest=?"
                            " OR index_digest=?", [ref, ref, ref]).fetchall()
    if not rows:
        raise ScanError(f"{ref}: no such image in the database")
    return list(dict.fromkeys(narrowed_source(source, reference) for source, reference in rows))


def narrowed_source(source: str, reference: str) -> str:
    """SOURCE narrowed to the image REFERENCE when the layout or archive holds several."""
    from stowaway.ingest.model import ScanError
    from stowaway.ingest.sources import parse_source

    try:
        transport, _, inner = parse_source(source)
    except ScanError:
        transport, inner = "", ""
    if transport in ("oci", "oci-archive", "docker-archive") and not inner and reference \
            and not reference.startswith(source):
        source = f"{source}:{reference}"
    return source


def cmd_rescan(args) -> int:
    from stowaway.ingest.cli import load_policy, open_db, print_warnings
    from stowaway.ingest.tasks import TaskRunner, create_task

    database = open_db(args.db, write=True)
    policy = load_policy(args, database)
    task_id = create_task(database, rescan_sources(database, args.ref), "rescan", args.risk)
    summary = TaskRunner(database, policy).run(task_id)
    failed = 0
    for o in summary.outcomes:
        if o.status == "failed":
            failed += 1
            print(f"stowaway: scan of {o.reference} failed: {o.error}", file=sys.stderr)
        else:
            print(f"rescanned {o.reference} (scan {o.scan_id}: {o.layers_text()})",
                  file=sys.stderr)
        print_warnings(o.reference, o.warnings)
    return 1 if failed else 0
