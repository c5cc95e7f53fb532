"""Downloads osv.dev's per-ecosystem `all.zip` exports: resumable, verified, with progress.

An interrupted download leaves `<name>.part`; the next run asks only for the rest (HTTP Range, guarded
by If-Range so a file that changed meanwhile restarts from zero). What arrives is checked before it
replaces the previous copy: the size the server announced, the MD5 or SHA-256 it published
(GCS `x-goog-hash`, `Content-MD5`, `Digest`) and that it is a readable zip. An unchanged export
(same ETag) is not fetched again.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.parse
import zipfile

from stowaway.ingest.model import ScanError

DEFAULT_BASE = "https://osv-vulnerabilities.storage.googleapis.com"
DEFAULT_ECOSYSTEMS = ("Debian", "Ubuntu", "Alpine", "Red Hat", "SUSE", "openSUSE", "openEuler", "Rocky Linux",
                      "AlmaLinux", "Maven", "npm", "PyPI", "Go", "crates.io", "RubyGems", "NuGet", "Packagist")
CHUNK = 1 << 16  # an interrupted read loses at most this much of what had arrived


class DownloadError(ScanError):
    pass


def ecosystem_url(base: str, ecosystem: str) -> str:
    return f"{base.rstrip('/')}/{urllib.parse.quote(ecosystem)}/all.zip"


def _expected_hashes(headers) -> dict[str, str]:
    """{'md5': hex, 'sha256': hex} from the headers a server uses to publish an object's digest."""
    out = {}
    for part in (headers.get("x-goog-hash") or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "md5" and value:
            out["md5"] = base64.b64decode(value).hex()
    if headers.get("Content-MD5"):
        out.setdefault("md5", base64.b64decode(headers["Content-MD5"]).hex())
    m = re.search(r"sha-256=([A-Za-z0-9+/=]+)", headers.get("Digest") or "")
    if m:
        out["sha256"] = base64.b64decode(m.group(1)).hex()
    return out


def _file_hash(path: str, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _meta(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def fetch(url: str, dest: str, verify=True, progress: bool | None = None, session=None, timeout: float = 60,
          label: str = "", is_zip: bool = True) -> tuple[str, bool]:
    """Downloads url to dest; returns (dest, changed). Raises DownloadError with one clear line.
    `is_zip=False` for single-document feeds (the Debian tracker JSON), which skip the zip check."""
    import requests
    from tqdm import tqdm

    session = session or requests.Session()
    part, meta_path = dest + ".part", dest + ".meta.json"
    meta = _meta(meta_path)
    # the bytes as stored: a transfer-compressed answer would not match its Content-Length, its hash or a range
    headers = {"Accept-Encoding": "identity"}
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if have and meta.get("part_etag"):
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = meta["part_etag"]
    else:
        have = 0
        if os.path.exists(dest) and meta.get("etag"):
            headers["If-None-Match"] = meta["etag"]
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=timeout, verify=verify)
    except requests.RequestException as exc:
        raise DownloadError(f"{url}: {exc.__class__.__name__}: {exc}") from None
    with resp:
        if resp.status_code == 304:
            return dest, False
        if resp.status_code == 206 and have:
            m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise DownloadError(f"{url}: server answered an unexpected range {resp.headers.get('Content-Range')!r}")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        elif resp.status_code == 200:
            have = 0
            mode = "wb"
            total = int(resp.headers["Content-Length"]) if resp.headers.get("Content-Length", "").isdigit() else None
        else:
            raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason}")
        etag = resp.headers.get("ETag")
        expected = _expected_hashes(resp.headers)
        if resp.status_code == 206 and "x-goog-hash" not in resp.headers:
            expected.pop("md5", None)  # a partial answer's Content-MD5 covers that part only
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        with open(meta_path, "w", encoding="utf-8") as fh:
            json.dump({**meta, "url": url, "part_etag": etag}, fh)
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=label or os.path.basename(dest),
                   disable=None if progress is None else not progress, leave=False)
        try:
            with open(part, mode) as out:
                for block in resp.iter_content(CHUNK):
                    out.write(block)
                    bar.update(len(block))
        except requests.RequestException as exc:
            raise DownloadError(f"{url}: interrupted after {os.path.getsize(part)} bytes ({exc.__class__.__name__});"
                                " run again to resume") from None
        finally:
            bar.close()
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise DownloadError(f"{url}: got {size} bytes of {total}; run again to resume")
    for algo, want in expected.items():
        got = _file_hash(part, algo)
        if got != want:
            os.remove(part)
            raise DownloadError(f"{url}: {algo} mismatch (server says {want}, got {got}); the download was discarded")
    try:
        bad = None
        if is_zip:
            with zipfile.ZipFile(part) as zf:
                bad = zf.testzip()
    except zipfile.BadZipFile:
        os.remove(part)
        raise DownloadError(f"{url}: not a zip archive; the download was discarded") from None
    if bad is not None:
        os.remove(part)
        raise DownloadError(f"{url}: corrupt member {bad} in the zip; the download was discarded")
    os.replace(part, dest)
    with open(meta_path, "w", encoding="utf-8") as fh:
        json.dump({"url": url, "etag": etag, "size": size, "verified": sorted(expected) + (["zip"] if is_zip else [])}, fh)
    return dest, True


def ca_verify(ca_bundle: str | None):
    """What `verify=` gets on every request: the bundle named, else the environment's (REQUESTS_CA_BUNDLE,
    set where a TLS-inspecting proxy needs its own CA), else requests' default certifi store."""
    return ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
