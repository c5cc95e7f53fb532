"""`stowaway sbom REF --db DB --format cyclonedx|spdx [-o FILE]`: an image's inventory as an SBOM."""
from __future__ import annotations

from stowaway.ingest.cli import _add_db, command


@command
def add(sub):
    p = sub.add_parser("sbom", help="export an image's software inventory as CycloneDX or SPDX 2.3 JSON")
    p.add_argument("ref", metavar="REF", help="image reference as scanned, or a manifest digest")
    _add_db(p)
    p.add_argument("--format", choices=["cyclonedx", "spdx"], default="cyclonedx",
                   help="CycloneDX JSON (default) or SPDX 2.3 JSON")
    p.add_argument("--spec-version", default="1.6", choices=["1.5", "1.6"], help="CycloneDX version (default 1.6)")
    p.add_argument("--platform", default="", help="for a multi-platform image, e.g. linux/arm64")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    from stowaway.ingest import sbom
    from stowaway.ingest.cli import open_db

    database = open_db(args.db, write=False)
    if args.format == "cyclonedx":
        text = sbom.cyclonedx(database, args.ref, args.platform, spec_version=args.spec_version)
    else:
        text = sbom.export(database, args.ref, "spdx", args.platform)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    return 0
