"""What the command line prints: listing tables, the `-q` filter, colour rules.

Listings (`images`, `scans`, `tasks`, `synced`, `schedule list`, `db status`, ...) print through
`print_listing`: `--format table` (headers, aligned columns) or `--format json` (one JSON object a
line, the same keys as the table's columns, lower-case), so every listing reads the same way.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

LISTING_FORMATS = ("table", "json")


def add_listing_format(p, default: str = "table") -> None:
    """`--format table|json` on a listing command, and the older `--json` shorthand."""
    p.add_argument("--format", dest="format", choices=LISTING_FORMATS, default=default,
                   help="table (with headers, the default) or json (one object a line)")
    p.add_argument("--json", dest="format", action="store_const", const="json",
                   help="same as --format json")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def print_listing(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str = "table", out=None,
                  headers: Sequence[str] | None = None) -> int:
    """Prints rows as a table with a header line or as JSON lines; returns how many rows."""
    out = out or sys.stdout
    rows = list(rows)
    if fmt == "json":
        for r in rows:
            out.write(json.dumps(dict(zip(columns, r)), ensure_ascii=False, default=str) + "\n")
        return len(rows)
    head = [h.upper() for h in (headers or [c.replace("_", " ") for c in columns])]
    table = [head] + [[_cell(v).replace("\n", " ") for v in r] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    if not rows:
        out.write("(none)\n")
    return len(rows)


def colour_enabled(stream) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class QuietStream:
    """stderr under `-q`: only errors (`stowaway: ...` lines that are not warnings) and the gate go through."""

    def __init__(self, stream):
        self.stream = stream
        self._line = ""

    def write(self, text: str) -> int:
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            if line.startswith("stowaway: ") and not line.startswith("stowaway: warning"):
                self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:  # progress bars check this: none under -q
        return False

    def __getattr__(self, name):
        return getattr(self.stream, name)
