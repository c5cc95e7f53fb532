"""`stowaway policy check [--config FILE] [--set KEY=VALUE]... [--approved-base REF]... [--show]`.

Checks a policy file and its overrides the way a scan would merge them (ingest/policy_schema.py),
before a long scan finds out. Prints one line per problem; exit 0 when there is no error, 2 when
there is one. `--show` prints the merged policy as JSON, as a scan would record it.
"""
from __future__ import annotations

import json
import sys

from stowaway.ingest.cli import command


@command
def add(sub):
    p = sub.add_parser("policy", help="check a policy file (docs/policy.md) before scanning with it")
    kinds = p.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    c = kinds.add_parser("check", help="report unknown sections (warnings) and wrong values (errors)")
    c.add_argument("--config", metavar="FILE", help="policy file (TOML)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, as for scan")
    c.add_argument("--approved-base", action="append", default=[], metavar="REF", help="as for scan")
    c.add_argument("--show", action="store_true", help="print the merged policy as JSON")
    c.set_defaults(func=run)


def run(args) -> int:
    from stowaway.ingest.policy import load
    from stowaway.ingest.policy_schema import validate

    policy = load(args.config, overrides=args.set, approved_bases=args.approved_base, check=False)
    problems = validate(policy)
    for p in problems:
        print(f"stowaway: policy: {p}", file=sys.stderr)
    if args.show:
        print(json.dumps(policy, indent=2, sort_keys=True, default=str))
    return 2 if any(p.startswith("error:") for p in problems) else 0
