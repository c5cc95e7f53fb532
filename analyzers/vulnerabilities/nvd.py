"""NVD's CVE records (CVE API 2.0 JSON): severities for findings whose own records carry none.

Read from what `db import` is given — an API answer or a yearly feed file (`{"format": "NVD_CVE",
"vulnerabilities": [{"cve": {...}}, ...]}`, plain or .gz), one `{"cve": {...}}`, or one bare CVE
object — and downloaded by `db update --source nvd` from the CVE API 2.0 (`/rest/json/cves/2.0`),
page by page. The API's rules are kept: at most 5 requests per rolling 30 s without an API key and
50 with one (sent in the `apiKey` header), 2,000 results a page, `lastModStartDate`/`lastModEndDate`
windows of at most 120 days for an update. A run that stops is resumed from its last stored page.

One row per CVE in `nvd_cves`, with the score NVD publishes: CVSS v3.x first (the scale users compare
with), then v4.0, then v2; NVD's own (Primary) scoring before a CNA's (Secondary). Vectors are scored
with the `cvss` library; the published base score is the fallback when a vector cannot be read.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time
from typing import Any, Callable, Iterator

from stowaway.ingest.model import ScanError

API_URL = "https://services.nvd.nist.gov/rest/json/cves/2.0"
PAGE = 2000  # the API's maximum resultsPerPage
WINDOW_DAYS = 120  # the API's longest lastModified range
# (requests, seconds): NVD's published limits, with and without an API key
RATE_PUBLIC = (5, 30.0)
RATE_KEY = (50, 30.0)
_METRICS = (("cvssMetricV31", "3.1"), ("cvssMetricV30", "3.0"), ("cvssMetricV40", "4.0"), ("cvssMetricV2", "2.0"))


class NvdError(ScanError):
    pass


def is_nvd(doc) -> bool:
    if not isinstance(doc, dict):
        return False
    if doc.get("format") == "NVD_CVE":
        return True
    vulns = doc.get("vulnerabilities")
    if isinstance(vulns, list) and "catalogVersion" not in doc:
        return bool(vulns) and isinstance(vulns[0], dict) and isinstance(vulns[0].get("cve"), dict)
    if isinstance(doc.get("cve"), dict) and len(doc) <= 2:
        return True
    return (isinstance(doc.get("id"), str) and doc["id"].startswith("CVE-")
            and ("sourceIdentifier" in doc or "vulnStatus" in doc or "metrics" in doc) and "affected" not in doc)


def cves_of(doc) -> Iterator[dict]:
    if isinstance(doc.get("vulnerabilities"), list):
        for v in doc["vulnerabilities"]:
            if isinstance(v, dict) and isinstance(v.get("cve"), dict):
                yield v["cve"]
    elif isinstance(doc.get("cve"), dict):
        yield doc["cve"]
    else:
        yield doc


def _level(text) -> str | None:
    if not isinstance(text, str):
        return None
    level = text.strip().lower()
    if level == "none":
        return "negligible"
    return level if level in ("critical", "high", "medium", "low") else None


def best_metric(metrics) -> tuple[str, float, str, str, str] | None:
    """(level, score, vector, CVSS version, source) of the score NVD would show first, or None."""
    from .importer import cvss_of

    if not isinstance(metrics, dict):
        return None
    for key, version in _METRICS:
        entries = [m for m in metrics.get(key) or () if isinstance(m, dict) and isinstance(m.get("cvssData"), dict)]
        entries.sort(key=lambda m: m.get("type") != "Primary")
        for m in entries:
            data = m["cvssData"]
            vector = data.get("vectorString") if isinstance(data.get("vectorString"), str) else ""
            got = cvss_of(vector) if vector else None
            if got is None:
                score = data.get("baseScore")
                level = _level(data.get("baseSeverity") or m.get("baseSeverity"))
                if not isinstance(score, (int, float)) or level is None:
                    continue
                got = (float(score), level)
            return got[1], got[0], vector, version, str(m.get("source") or "")
    return None


def row_of(cve: dict, now: str) -> tuple | None:
    """The nvd_cves row of one CVE object, or None when it is not one."""
    from .importer import normalize_time
    from .store import clean_references

    cid = cve.get("id")
    if not isinstance(cid, str) or not cid.startswith("CVE-"):
        return None
    status = cve.get("vulnStatus") if isinstance(cve.get("vulnStatus"), str) else None
    best = None if status == "Rejected" else best_metric(cve.get("metrics"))
    text = next((d.get("value") for d in cve.get("descriptions") or ()
                 if isinstance(d, dict) and d.get("lang") == "en" and isinstance(d.get("value"), str)), None)
    level, score, vector, version, source = best or (None, None, None, None, None)
    refs, dropped, _ = clean_references(cve.get("references"))
    return (cid, normalize_time(cve.get("lastModified")), normalize_time(cve.get("published")) or None, status,
            level, score, vector or None, version, source, (text or "")[:1000] or None, now,
            json.dumps(refs) if refs else None, dropped or None)


UPSERT = ("INSERT INTO nvd_cves (cve, last_modified, published, status, severity, cvss_score, cvss_vector,"
          " cvss_version, source, description, imported_at, reference_urls, references_dropped)"
          " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
          " ON CONFLICT(cve) DO UPDATE SET last_modified=excluded.last_modified, published=excluded.published,"
          " status=excluded.status, severity=excluded.severity, cvss_score=excluded.cvss_score,"
          " cvss_vector=excluded.cvss_vector, cvss_version=excluded.cvss_version, source=excluded.source,"
          " description=excluded.description, imported_at=excluded.imported_at,"
          " reference_urls=excluded.reference_urls, references_dropped=excluded.references_dropped"
          " WHERE excluded.last_modified >= nvd_cves.last_modified")


def store_rows(conn, rows: list[tuple]) -> None:
    with conn:
        conn.executemany(UPSERT, rows)


# --- download --------------------------------------------------------------------------------------------

class RateLimiter:
    """At most `n` calls in any rolling `window` seconds."""

    def __init__(self, n: int, window: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.n, self.window, self.clock, self.sleep = n, window, clock, sleep
        self.calls: list[float] = []

    def wait(self) -> None:
        now = self.clock()
        self.calls = [t for t in self.calls if now - t < self.window]
        if len(self.calls) >= self.n:
            self.sleep(self.window - (now - self.calls[0]) + 0.01)
            now = self.clock()
            self.calls = [t for t in self.calls if now - t < self.window]
        self.calls.append(now)


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _api_time(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def windows(since: str | None, until: dt.datetime) -> list[tuple[str, str] | None]:
    """The lastModified windows an update asks for: None (everything) on a first run."""
    if not since:
        return [None]
    start = _utc(since)
    out: list[tuple[str, str] | None] = []
    while start < until:
        end = min(start + dt.timedelta(days=WINDOW_DAYS), until)
        out.append((_api_time(start), _api_time(end)))
        start = end
    return out


def update(conn, cache_dir: str, url: str = API_URL, api_key: str | None = None, session=None,
           limiter: RateLimiter | None = None, progress: Callable[[str], None] | None = None,
           timeout: float = 60, retries: int = 6, sleep: Callable[[float], None] = time.sleep,
           now: dt.datetime | None = None) -> dict:
    """Downloads the CVEs changed since the last complete run (all of them the first time) into
    `nvd_cves`. Returns counts. Progress is kept in cache_dir/state.json after every page, so a run
    that stops resumes from its next page. Raises NvdError with one line."""
    import requests

    from stowaway.ingest import db as dbm

    session = session or requests.Session()
    limiter = limiter or RateLimiter(*(RATE_KEY if api_key else RATE_PUBLIC))
    os.makedirs(cache_dir, exist_ok=True)
    state_path = os.path.join(cache_dir, "state.json")
    try:
        with open(state_path, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        state = {}
    until = now or dt.datetime.now(dt.timezone.utc)
    run: dict[str, Any] = state.get("run") or {}
    if not run or run.get("url") != url:
        # a new run: its windows fixed now, so that a resumed run asks the same questions
        run = {"url": url, "started": _api_time(until), "windows": windows(state.get("complete_until"), until),
               "window": 0, "start_index": 0}
    headers = {"apiKey": api_key} if api_key else {}
    counts = {"pages": 0, "cves": 0}
    stamp = dbm.now()

    def save():
        with open(state_path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump({**state, "run": run}, fh)
        os.replace(state_path + ".tmp", state_path)

    while run["window"] < len(run["windows"]):
        window = run["windows"][run["window"]]
        params = {"resultsPerPage": PAGE, "startIndex": run["start_index"]}
        if window:
            params["lastModStartDate"], params["lastModEndDate"] = window
        doc = _get(session, url, params, headers, limiter, timeout, retries, sleep)
        rows = [r for r in (row_of(c, stamp) for c in cves_of(doc)) if r is not None]
        store_rows(conn, rows)
        counts["pages"] += 1
        counts["cves"] += len(rows)
        found_total, found_page = doc.get("totalResults"), doc.get("resultsPerPage")
        total: int = found_total if isinstance(found_total, int) else 0
        got: int = found_page if isinstance(found_page, int) else len(rows)
        run["start_index"] += got
        if progress:
            progress(f"NVD: {min(run['start_index'], total):,} of {total:,} CVEs")
        if got <= 0 or run["start_index"] >= total:
            run["window"] += 1
            run["start_index"] = 0
        save()
    state = {"complete_until": run["started"]}
    run = {}
    with open(state_path, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
    return counts


def _get(session, url: str, params: dict, headers: dict, limiter: RateLimiter, timeout: float, retries: int,
         sleep: Callable[[float], None]) -> dict:
    import requests

    delay = 6.0
    for attempt in range(retries + 1):
        limiter.wait()
        try:
            resp = session.get(url, params=params, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            if attempt == retries:
                raise NvdError(f"{url}: {exc.__class__.__name__}: {exc}; run again to resume") from None
            sleep(delay)
            delay *= 2
            continue
        with resp:
            if resp.status_code == 200:
                try:
                    doc = resp.json()
                except ValueError:
                    raise NvdError(f"{url}: the answer is not JSON; run again to resume") from None
                if not isinstance(doc, dict) or not isinstance(doc.get("vulnerabilities"), list):
                    raise NvdError(f"{url}: the answer is not a CVE API 2.0 page")
                return doc
            if resp.status_code in (403, 429, 500, 502, 503, 504) and attempt < retries:
                # NVD answers 403 or 429 when the rate limit is exceeded and 503 under load
                wait = resp.headers.get("Retry-After", "")
                sleep(float(wait) if wait.replace(".", "", 1).isdigit() and float(wait) < 600 else delay)
                delay *= 2
                continue
            if resp.status_code in (401, 404) and headers.get("apiKey"):
                raise NvdError(f"{url}: HTTP {resp.status_code}: the API key was refused")
            raise NvdError(f"{url}: HTTP {resp.status_code} {resp.reason}; run again to resume")
    raise NvdError(f"{url}: no answer after {retries + 1} attempts; run again to resume")
