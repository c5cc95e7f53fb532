"""What the command line prints: listing tables, the `-q` filter, colour rules.

Listings (`images`, `scans`, `tasks`, `synced`, `schedule list`, `db status`, ...) print through
`print_listing`: `--format table` (headers, aligned columns) or `--format json` (one JSON object a
line, the same keys as the table's columns, lower-case), so every listing reads the same way.
"""
from __future__ import annotations

import functools
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


# --- progress ------------------------------------------------------------------------------------------
# Bars go to stderr and only to a terminal (tqdm's disable=None), never with --no-progress or -q.

def _bar(enabled: bool | None, **kw):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=None if enabled is None else not enabled, leave=False,
                dynamic_ncols=True, **kw)


def _counting(opener, bar):
    return _CountingReader(opener(), bar)


class _CountingReader:
    """A layer blob's reader that moves the scan's byte bar as the walker reads it."""

    def __init__(self, raw, bar):
        self.raw = raw
        self.bar = bar

    def read(self, n=-1):
        data = self.raw.read() if n is None or n < 0 else self.raw.read(n)
        if data:
            self.bar.update(len(data))
        return data

    def __getattr__(self, name):
        return getattr(self.raw, name)


def scan_progress(events, enabled: bool | None, label: str, bar=None):
    """The source's events, with one bar per source: bytes read (with their rate) and the layer count,
    `scan docker-archive:shop.tar  38.2MB [00:01, 31.0MB/s, layer 3 of 10 read, 2 cached]`."""
    if enabled is False:
        yield from events
        return
    import dataclasses

    from .sources import LayerBlob

    bar = bar if bar is not None else _bar(enabled, desc=f"scan {label[-50:]}", unit="B", unit_scale=True, unit_divisor=1024)
    seen = 0
    try:
        for ev in events:
            if isinstance(ev, LayerBlob):
                seen += 1
                bar.set_postfix_str(f"layer {seen}", refresh=False)
                if ev.open is not None:
                    ev = dataclasses.replace(ev, open=functools.partial(_counting, ev.open, bar))
                elif ev.stream is not None:
                    ev = dataclasses.replace(ev, stream=_CountingReader(ev.stream, bar))
            yield ev
    finally:
        bar.close()


class RecordProgress:
    """A bar that counts records (`db import`, `db update`) by polling a counter from a thread, so the
    importer needs no callback: `with RecordProgress(lambda: imp.result.records, "import"): ...`."""

    def __init__(self, count, label: str, enabled: bool | None = None, interval: float = 0.2):
        self.count = count
        self.label = label
        self.enabled = enabled
        self.interval = interval

    def __enter__(self):
        import threading

        self.bar = _bar(self.enabled, desc=self.label, unit=" records", unit_scale=True)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if not self.bar.disable:
            self.thread.start()
        return self

    def _run(self):
        while not self.stop.wait(self.interval):
            self._sync()

    def _sync(self):
        n = self.count()
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
            self._sync()
        self.bar.close()
        return False
