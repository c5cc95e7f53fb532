"""`db update --source <vendor>`: downloads a vendor's own advisory feed into a cache beside the database
and imports what changed.

| source | what is fetched | how changes are found |
| --- | --- | --- |
| debian-tracker | security-tracker.debian.org/tracker/data/json (one ~80 MB JSON, streamed on import) | ETag; resumable |
| redhat-csaf | security.access.redhat.com/data/csaf/v2/advisories/ (RHSA-…, one JSON each) | changes.csv (path, time) |
| redhat-vex | security.access.redhat.com/data/csaf/v2/vex/ (one JSON per CVE) | changes.csv (path, time) |
| openeuler-cvrf | repo.openeuler.org/security/data/cvrf/ (one XML per openEuler-SA) | index.txt (paths) |
| suse-cvrf | ftp.suse.com/pub/projects/security/cvrf/ (one XML per SUSE-SU / openSUSE-SU) | the directory listing |

Red Hat's sources offer a full archive (`archive_latest.txt` -> `csaf_vex_<date>.tar.zst`): a first run
downloads it (resumable) and extracts it instead of asking for every document, then fetches what
changes.csv says changed after the archive's date.

Indexed sources keep `state.json` (path -> the index's time, or the size for index.txt and listings)
in their cache directory: a run fetches only documents that are new or changed since the last run, so an
interrupted run resumes where it stopped. Every document is capped in size (MAX_DOCUMENT) and a run in
number of documents (`limit`); what the caps skipped is reported, and fetched again on the next run.
Paths from an index are accepted only as plain relative file names (no '..', no absolute paths), so a
hostile index cannot write outside the cache.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field

MAX_DOCUMENT = 64 << 20  # the largest Red Hat VEX (kernel) is ~ 30 MB
MAX_INDEX = 256 << 20
DEFAULT_LIMIT = 200_000
_SAFE = re.compile(r"^(?:[A-Za-z0-9_.+-]+/)*[A-Za-z0-9_.+-]+\.(?:json|xml)$")
_HREF = re.compile(r'href="([^"?#]+\.xml)"', re.I)


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    kind: str  # file | csv | index | listing
    index: str = ""
    help: str = ""
    archive: str = ""  # a file naming the latest full archive (tar.zst), used on a first run


SOURCES = {s.name: s for s in (
    Source("debian-tracker", "https://security-tracker.debian.org/tracker/data/json", "file",
           help="Debian security tracker JSON (per source package, CVE and release; urgency)"),
    Source("redhat-csaf", "https://security.access.redhat.com/data/csaf/v2/advisories/", "csv", "changes.csv",
           help="Red Hat CSAF advisories (RHSA; CentOS and RHEL)", archive="archive_latest.txt"),
    Source("redhat-vex", "https://security.access.redhat.com/data/csaf/v2/vex/", "csv", "changes.csv",
           help="Red Hat CSAF VEX, one file per CVE, with unfixed ('Will not fix') components",
           archive="archive_latest.txt"),
    Source("openeuler-cvrf", "https://repo.openeuler.org/security/data/cvrf/", "index", "index.txt",
           help="openEuler CVRF advisories (openEuler-SA)"),
    Source("suse-cvrf", "https://ftp.suse.com/pub/projects/security/cvrf/", "listing",
           help="SUSE and openSUSE CVRF advisories (SUSE-SU, openSUSE-SU)"),
)}


class SourceError(Exception):
    """A source that could not be updated at all; one sentence."""


@dataclass
class UpdateResult:
    source: str
    changed: list[str] = field(default_factory=list)  # local paths of new or changed documents
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)  # one sentence each
    skipped_by_limit: int = 0

    def summary(self) -> str:
        text = f"{self.source}: {len(self.changed)} new or changed, {self.unchanged} unchanged"
        if self.failed:
            text += f", {len(self.failed)} failed (fetched again next run)"
        if self.skipped_by_limit:
            text += f", {self.skipped_by_limit} left for the next run (limit per run reached)"
        return text


def _get(session, url: str, verify, timeout: float, cap: int) -> bytes:
    import requests

    try:
        with session.get(url, stream=True, timeout=timeout, verify=verify) as resp:
            if resp.status_code != 200:
                raise SourceError(f"{url}: HTTP {resp.status_code} {resp.reason}")
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > cap:
                raise SourceError(f"{url}: {int(length):,} bytes, more than the {cap >> 20} MB cap; not fetched")
            out = bytearray()
            for block in resp.iter_content(1 << 16):
                out += block
                if len(out) > cap:
                    raise SourceError(f"{url}: more than the {cap >> 20} MB cap; not fetched")
            return bytes(out)
    except requests.RequestException as exc:
        raise SourceError(f"{url}: {exc.__class__.__name__}: {exc}") from None


def _entries(src: Source, base: str, data: bytes) -> list[tuple[str, str]]:
    """(relative path, change stamp) of every document the index names."""
    text = data.decode("utf-8", "replace")
    if src.kind == "csv":  # "2024/rhsa-2024_6163.json","2024-09-05T02:20:17+00:00"
        return [(row[0].strip(), row[1].strip() if len(row) > 1 else "") for row in csv.reader(io.StringIO(text)) if row]
    if src.kind == "index":
        return [(line.strip(), "") for line in text.splitlines() if line.strip()]
    # an HTML directory listing: hrefs to .xml files, relative to the listing
    out = []
    for href in _HREF.findall(text):
        absolute = urllib.parse.urljoin(base, href)
        if absolute.startswith(base):
            out.append((urllib.parse.unquote(absolute[len(base):]), ""))
    return out


def update(name: str, cache_dir: str, verify=True, base_url: str | None = None, limit: int = DEFAULT_LIMIT,
           progress=None, session=None, timeout: float = 60) -> UpdateResult:
    """Brings the cache of one vendor source up to date; the changed documents are in `.changed`.
    Raises SourceError when the source cannot be read at all (its index, or its one file)."""
    import requests

    from .. import download

    src = SOURCES[name]
    session = session or requests.Session()
    result = UpdateResult(name)
    folder = os.path.join(cache_dir, name)
    os.makedirs(folder, exist_ok=True)
    if src.kind == "file":
        dest = os.path.join(folder, f"{name}.json")
        try:
            path, changed = download.fetch(base_url or src.url, dest, verify=verify, progress=progress,
                                           session=session, timeout=timeout, label=name, is_zip=False)
        except download.DownloadError as exc:
            raise SourceError(str(exc)) from None
        if changed:
            result.changed.append(path)
        else:
            result.unchanged += 1
        return result
    base = (base_url or src.url).rstrip("/") + "/"
    index = _get(session, base + src.index if src.index else base, verify, timeout, MAX_INDEX)
    state_path = os.path.join(folder, "state.json")
    try:
        with open(state_path, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        state = {}
    entries = _entries(src, base, index)
    if src.archive and not state:
        # a first run: the full archive in one download instead of a request per document
        if not _from_archive(src, base, folder, entries, state, session, verify, timeout, progress, result):
            return result  # an interrupted archive download resumes on the next run
        _save(state_path, state)
    todo = []
    for rel, stamp in entries:
        if not _SAFE.match(rel) or ".." in rel.split("/"):
            result.failed.append(f"{rel[:120]!r}: not a plain relative document path; ignored")
            continue
        local = os.path.join(folder, *rel.split("/"))
        if rel in state and state[rel] == stamp and os.path.exists(local):
            result.unchanged += 1
            continue
        todo.append((rel, stamp, local))
    if len(todo) > limit:
        result.skipped_by_limit = len(todo) - limit
        todo = todo[:limit]
    try:
        for i, (rel, stamp, local) in enumerate(todo, 1):
            try:
                body = _get(session, base + urllib.parse.quote(rel), verify, timeout, MAX_DOCUMENT)
            except SourceError as exc:
                result.failed.append(str(exc))
                continue
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local + ".part", "wb") as fh:
                fh.write(body)
            os.replace(local + ".part", local)
            state[rel] = stamp
            result.changed.append(local)
            if progress and i % 500 == 0:
                progress(f"{name}: {i:,} of {len(todo):,} documents")
            if i % 1000 == 0:  # an interrupted run keeps what it fetched
                _save(state_path, state)
    finally:
        _save(state_path, state)
    return result


def _save(path: str, state: dict) -> None:
    with open(path + ".part", "w", encoding="utf-8") as fh:
        json.dump(state, fh)
    os.replace(path + ".part", path)


MAX_ARCHIVE_MEMBERS = 2_000_000


def _from_archive(src: Source, base: str, folder: str, entries: list[tuple[str, str]], state: dict, session,
                  verify, timeout: float, progress, result: UpdateResult) -> bool:
    """Red Hat's archive_latest.txt names 'csaf_vex_2024-11-10.tar.zst': every document as of that date.
    Its documents are extracted into the cache (plain relative .json paths only, each capped) and marked
    current when changes.csv's time for them is not after the archive's date; the rest is fetched one by
    one as usual. False when the archive's download failed (the next run resumes it); an archive that
    is not offered, or cannot be read, leaves the run to fetch every document."""
    import tarfile

    import zstandard

    from .. import download

    try:
        name = _get(session, base + src.archive, verify, timeout, 4096).decode("utf-8", "replace").strip()
    except SourceError:
        return True  # no archive offered: documents one by one
    m = re.fullmatch(r"[A-Za-z0-9_.-]+?(\d{4}-\d\d-\d\d)[A-Za-z0-9_.-]*\.tar\.zst", name)
    if not m:
        result.failed.append(f"{base + src.archive}: names no .tar.zst archive ({name[:80]!r}); documents fetched one by one")
        return True
    dest = os.path.join(folder, ".archive", name)
    try:
        download.fetch(base + name, dest, verify=verify, progress=progress is not None, timeout=timeout,
                       label=f"{src.name} archive", is_zip=False)
    except download.DownloadError as exc:
        result.failed.append(str(exc))
        return False
    extracted = set()
    try:
        with open(dest, "rb") as raw:
            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for n, member in enumerate(tar):
                    if n >= MAX_ARCHIVE_MEMBERS:
                        result.failed.append(f"{name}: more than {MAX_ARCHIVE_MEMBERS:,} members; the rest not read")
                        break
                    rel = member.name[2:] if member.name.startswith("./") else member.name
                    if not member.isfile() or not _SAFE.match(rel) or ".." in rel.split("/") or member.size > MAX_DOCUMENT:
                        continue
                    fh = tar.extractfile(member)
                    if fh is None:
                        continue
                    local = os.path.join(folder, *rel.split("/"))
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    with open(local + ".part", "wb") as out:
                        out.write(fh.read())
                    os.replace(local + ".part", local)
                    extracted.add(rel)
                    result.changed.append(local)
    except (tarfile.TarError, zstandard.ZstdError, OSError, EOFError) as exc:
        result.failed.append(f"{name}: unreadable archive ({exc.__class__.__name__}: {exc}); the rest fetched one by one")
    day = m.group(1)
    for rel, stamp in entries:
        if rel in extracted and stamp[:10] <= day:
            state[rel] = stamp
    return True
