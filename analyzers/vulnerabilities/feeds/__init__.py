"""Vendor advisory formats, turned into the OSV-shaped records the importer already stores.

Each vendor format is read by its own module and yields plain OSV dicts (`id`, `modified`, `aliases`,
`affected[].package.ecosystem` in osv.dev's spelling, `ranges` with `introduced`/`fixed`), so that
every source lands in the same `advisories` / `advisory_affected` rows and is matched by the same code.
The vendor's own rating is kept where the OSV importer reads it: the document's in
`database_specific.severity` (-> advisories.database_severity) and the per-product one in
`affected[].ecosystem_specific.severity` (-> advisory_affected.severity).

| format | module | sniffed by |
| --- | --- | --- |
| Red Hat CSAF 2.0 VEX and advisories (RHSA) | redhat_csaf | JSON `document.category` csaf_vex / csaf_security_advisory |
| SUSE and openEuler CVRF 1.1/1.2 | cvrf | XML root `cvrfdoc` |
| Debian security tracker JSON (streamed) | debian_tracker | `{"<package>": {"CVE-…": {…"releases"…` |

Ubuntu's OSV (UBUNTU-CVE-*, USN-*), Alpine's secdb and the OSV exports of every other distribution are
read by the OSV importer itself.
"""
from __future__ import annotations

import bz2
import gzip
import io
import re
from typing import IO, Any, Iterator

# what a vendor feed file may hold before it is read at all (the largest real ones: Red Hat's
# rhel-8-including-unpatched OVAL is ~ 400 MB uncompressed; the Debian tracker JSON ~ 80 MB, streamed)
MAX_UNCOMPRESSED = 1 << 30
MAX_DOCUMENT = 128 << 20  # one CSAF or CVRF document is parsed whole: the largest real ones (kernel VEX) ~ 30 MB
SNIFF = 4096
SNIFF_FIRST = 1 << 20  # a .json file larger than this is sniffed before it is read (it may be streamed)
EXTENSIONS = (".xml", ".xml.gz", ".xml.bz2", ".json.gz", ".json.bz2")

_TRACKER_HEAD = re.compile(rb'^\s*\{\s*"[^"\\]{1,200}"\s*:\s*\{\s*"(?:CVE|TEMP)-')
_CSAF_HEAD = re.compile(rb'"category"\s*:\s*"csaf_(?:vex|security_advisory)"')


class FeedError(ValueError):
    """A vendor file that cannot be read; the message is one sentence."""


class _Capped(io.RawIOBase):
    """A decompressing stream that stops with FeedError past MAX_UNCOMPRESSED (a bomb is not read out)."""

    def __init__(self, inner: Any, name: str, cap: int = MAX_UNCOMPRESSED):  # a binary file object
        self.inner, self.name, self.cap, self.seen = inner, name, cap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.inner.read(len(b))
        self.seen += len(data)
        if self.seen > self.cap:
            raise FeedError(f"{self.name}: more than {self.cap >> 20} MB uncompressed; not read")
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def open_feed(path: str, cap: int = MAX_UNCOMPRESSED) -> IO[bytes]:
    """A binary stream of the file, decompressed (.gz, .bz2) and capped at `cap` bytes."""
    if path.endswith(".gz"):
        return io.BufferedReader(_Capped(gzip.open(path, "rb"), path, cap))
    if path.endswith(".bz2"):
        return io.BufferedReader(_Capped(bz2.open(path, "rb"), path, cap))
    return io.BufferedReader(_Capped(open(path, "rb"), path, cap))


def sniff(path: str, head: bytes | None = None) -> str | None:
    """Which vendor format a file holds, from its first bytes (`head`, else read); None for OSV and
    everything else."""
    base = re.sub(r"\.(gz|bz2)$", "", path)
    if not base.endswith((".json", ".xml")):
        return None
    if head is None:
        try:
            with open_feed(path) as fh:
                head = fh.read(SNIFF)
        except (OSError, EOFError, FeedError, ValueError):
            return None  # the OSV reader names the problem
    if base.endswith(".xml"):
        if b"<cvrfdoc" in head:
            return "cvrf"
        if b"<oval_definitions" in head:
            return "oval"  # recognised to say why it is not read
        return None
    if _TRACKER_HEAD.match(head):
        return "debian-tracker"
    if _CSAF_HEAD.search(head):
        return "redhat-csaf"
    return None


def records(path: str, kind: str, modified: str, warn) -> Iterator[dict]:
    """The OSV-shaped records of a vendor file. `warn(reason, example)` counts what is skipped; a file
    that cannot be read raises FeedError."""
    if kind == "redhat-csaf":
        from . import redhat_csaf
        yield from redhat_csaf.records(path, warn)
    elif kind == "cvrf":
        from . import cvrf
        yield from cvrf.records(path, warn)
    elif kind == "debian-tracker":
        from . import debian_tracker
        yield from debian_tracker.records(path, modified, warn)
    elif kind == "oval":
        raise FeedError(f"{path}: OVAL is not read (it names binary rpms only); import the vendor's CSAF"
                        " (Red Hat) or CVRF (SUSE) instead")
    else:
        raise FeedError(f"{path}: unknown feed kind {kind}")


# --- shared helpers --------------------------------------------------------------------------------------

_RPM_FILE = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)-(?P<release>[^-]+)\.(?P<arch>[^.]+)\.rpm$")
_NEVRA = re.compile(r"^(?P<name>.+)-(?:(?P<epoch>\d+):)?(?P<version>[^-:]+)-(?P<release>[^-]+)\.(?P<arch>[^.-]+)$")


def split_rpm_filename(text: str) -> tuple[str, str, str] | None:
    """'wireshark-3.6.14-1.oe2203sp1.src.rpm' -> ('wireshark', '3.6.14-1.oe2203sp1', 'src')."""
    m = _RPM_FILE.match(text.strip())
    return (m.group("name"), f"{m.group('version')}-{m.group('release')}", m.group("arch")) if m else None


def split_nevra(text: str) -> tuple[str, str, str] | None:
    """'pam-0:1.5.1-21.el9_5.x86_64' -> ('pam', '0:1.5.1-21.el9_5', 'x86_64')."""
    m = _NEVRA.match(text.strip())
    if not m:
        return None
    evr = f"{m.group('version')}-{m.group('release')}"
    # a module's component may carry its stream ('nodejs:18:8080020230613:63b34585:nodejs-1:18.16.1-1…')
    name = m.group("name").rsplit(":", 1)[-1]
    return name, (f"{m.group('epoch')}:{evr}" if m.group("epoch") else evr), m.group("arch")


def cvss_entry(vector: str) -> dict | None:
    """An OSV `severity` entry for a CVSS vector as vendors write it (with or without the 'CVSS:3.x/' prefix)."""
    vector = (vector or "").strip()
    if not vector:
        return None
    if vector.startswith("CVSS:4"):
        return {"type": "CVSS_V4", "score": vector}
    if vector.startswith("CVSS:3"):
        return {"type": "CVSS_V3", "score": vector}
    if "/S:" in vector and "/PR:" in vector:  # a v3 vector without its prefix (openEuler)
        return {"type": "CVSS_V3", "score": "CVSS:3.1/" + vector}
    if "Au:" in vector:
        return {"type": "CVSS_V2", "score": vector}
    return None


_ORDER = {"critical": 0, "important": 1, "high": 1, "moderate": 2, "medium": 2, "low": 3, "negligible": 4,
          "unimportant": 4, "none": 5}


def worst(levels) -> str | None:
    """The most severe of vendor ratings as written ('Important', 'moderate', ...)."""
    known = [x for x in levels if isinstance(x, str) and x.strip().lower() in _ORDER]
    return min(known, key=lambda x: _ORDER[x.strip().lower()]) if known else None


def add_file(importer, path: str, kind: str) -> None:
    """Feeds one vendor file into an importer.Importer; a file that cannot be read is one counted warning."""
    import datetime as dt
    import os

    # snapshot formats carry no per-record time: the file's is the records'
    modified = dt.datetime.fromtimestamp(os.path.getmtime(path), dt.timezone.utc).isoformat()
    try:
        for rec in records(path, kind, modified, importer.result.warn):
            importer.add_record(rec, path, kind)
    except FeedError as exc:
        importer.result.records += 1
        importer.result.skipped += 1
        importer.result.warn(f"unreadable {kind} file", str(exc))
    except RecursionError:
        importer.result.records += 1
        importer.result.skipped += 1
        importer.result.warn(f"unreadable {kind} file", f"{path}: nested too deeply")
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        # a document whose fields have the wrong shapes (a number where a list belongs): this file only
        importer.result.records += 1
        importer.result.skipped += 1
        importer.result.warn(f"malformed {kind} file", f"{path}: {exc.__class__.__name__}: {str(exc)[:120]}")
