"""Subcommands beyond scan/report/images: one module each, registered with cli.command on import.

Every module in this package is imported by the CLI, so adding a command means adding a file:

    from stowaway.ingest.cli import command

    @command
    def add(sub):
        p = sub.add_parser("sbom", help="...")
        p.set_defaults(func=run)
"""
