"""The Debian security tracker JSON (security-tracker.debian.org/tracker/data/json), streamed.

The file is {source package: {CVE: {description, releases: {codename: {status, fixed_version,
urgency, …}}}}}, ~80 MB and growing. It is read one package at a time (ijson) and each (CVE, package)
entry is staged in a temporary SQLite file beside nothing else, then read back in CVE order so each
CVE becomes one record (DEBIAN-CVE-…, as osv.dev names them) with every package and release it
touches: memory holds one package's entries and one CVE's record, never the file.

What a release's status means is the importer's rule (importer.debian_tracker_records): `open` is
affected with no fix, `resolved` is fixed in `fixed_version`, `resolved` with version '0' was never
affected; `urgency` (unimportant, low, medium, high, with '**' when guessed) is Debian's rating.
"""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from typing import Any, Iterator

from . import FeedError, open_feed

STAGE_BATCH = 5000


class _Warner:
    def __init__(self, warn):
        self.warn = warn


def records(path: str, modified: str, warn) -> Iterator[dict]:
    import ijson

    from ..importer import debian_tracker_records

    shim: Any = _Warner(warn)  # what debian_tracker_records asks of an ImportResult: .warn()
    with tempfile.TemporaryDirectory(prefix="stowaway-tracker-") as tmp:
        stage = sqlite3.connect(os.path.join(tmp, "stage.db"))
        try:
            stage.execute("PRAGMA journal_mode=OFF")
            stage.execute("PRAGMA synchronous=OFF")
            stage.execute("CREATE TABLE stage (cve TEXT, package TEXT, entry TEXT)")
            rows: list[tuple] = []
            try:
                with open_feed(path) as fh:
                    for package, cves in ijson.kvitems(fh, "", use_float=True):
                        if not isinstance(cves, dict):
                            warn("debian tracker: malformed package entry", str(package))
                            continue
                        for cve, entry in cves.items():
                            rows.append((cve, package, json.dumps(entry, separators=(",", ":"))))
                        if len(rows) >= STAGE_BATCH:
                            stage.executemany("INSERT INTO stage VALUES (?,?,?)", rows)
                            rows = []
            except ijson.JSONError as exc:
                raise FeedError(f"{path}: not readable tracker JSON ({exc})") from None
            except (OSError, EOFError) as exc:
                raise FeedError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None
            stage.executemany("INSERT INTO stage VALUES (?,?,?)", rows)
            rows = []
            group: dict[str, dict] = {}
            current = None
            for cve, package, entry in stage.execute("SELECT cve, package, entry FROM stage ORDER BY cve, package"):
                if cve != current and group:
                    yield from debian_tracker_records(group, modified, shim)
                    group = {}
                current = cve
                group[package] = {cve: json.loads(entry)}
            if group:
                yield from debian_tracker_records(group, modified, shim)
        finally:
            stage.close()
