"""Severity from every source, in order — the record's own CVSS (v2, v3.x, v4), the vendor's rating of
an OS record, an aliased record in the store, NVD — and `severity_source` on every finding."""
import gzip
import json
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import CORPUS, SHARED, corpus, report_of
from osv_fixtures import HIGH, MEDIUM, osv

from stowaway.analyzers.vulnerabilities import nvd
from stowaway.analyzers.vulnerabilities.evaluator import Evaluation
from stowaway.analyzers.vulnerabilities.importer import import_paths, import_records
from stowaway.analyzers.vulnerabilities.matchers import Matcher
from stowaway.ingest import cli
from stowaway.ingest.model import Package

DATA = pathlib.Path(__file__).parent / "data"
V2 = "AV:N/AC:L/Au:N/C:P/I:P/A:P"  # 7.5
V4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"  # 9.3


def _one(db, pkg, family="", version=""):
    got = Evaluation(Matcher(db.conn)).evaluate([pkg], family, version)
    assert len(got) == 1, got
    d = got[0].detail
    return got[0].severity, d["severity_source"], d["cvss_score"]


def _pypi(name="lib"):
    return Package("pypi", name, "1.0", f"/{name}/METADATA", 0)


@pytest.mark.parametrize("vector,kind,level,score", [
    (HIGH, "CVSS_V3", "high", 7.5), (V2, "CVSS_V2", "high", 7.5), (V4, "CVSS_V4", "critical", 9.3)])
def test_the_records_own_cvss_of_every_version(db, vector, kind, level, score):
    rec = osv("GHSA-own", "PyPI", "lib", [{"introduced": "0"}, {"fixed": "2.0"}], aliases=["CVE-2024-1000"])
    rec["severity"] = [{"type": kind, "score": vector}]
    import_records(db, [rec])
    assert _one(db, _pypi()) == (level, "record_cvss", score)


@pytest.mark.parametrize("family,version,ecosystem,affected_extra,record_extra,level", [
    ("debian", "12", "Debian:12", {"ecosystem_specific": {"urgency": "low**"}}, {}, "low"),
    ("ubuntu", "22.04", "Ubuntu:22.04:LTS", {}, {"severity": [{"type": "Ubuntu", "score": "medium"}]}, "medium"),
    ("rhel", "9.2", "Red Hat:enterprise_linux:9::baseos", {}, {"database_specific": {"severity": "Important"}}, "high"),
    ("sles", "15.5", "SUSE:Linux Enterprise Server 15 SP5", {}, {"database_specific": {"severity": "moderate"}},
     "medium"),
    ("openeuler", "22.03", "openEuler:22.03", {}, {"database_specific": {"severity": "Critical"}}, "critical"),
])
def test_the_vendors_rating_of_os_records(db, family, version, ecosystem, affected_extra, record_extra, level):
    rec = osv("VENDOR-1", ecosystem, "openssl", [{"introduced": "0"}, {"fixed": "9:9.9-9"}], aliases=["CVE-2024-2000"])
    rec.update(record_extra)
    rec["affected"][0].update(affected_extra)
    import_records(db, [rec])
    kind = "deb" if family in ("debian", "ubuntu") else "rpm"
    pkg = Package(kind, "openssl", "1.0-1", "/var/lib/pkgs", 0, source_name="openssl")
    assert _one(db, pkg, family, version) == (level, "vendor", None)


def test_an_aliased_record_in_the_store(db):
    # PyPA's record carries no severity; GitHub's record of the same CVE (for another package line) does
    import_records(db, [osv("PYSEC-2020-96", "PyPI", "pyyaml", [{"introduced": "0"}, {"fixed": "5.4"}],
                            aliases=["CVE-2020-14343"]),
                        osv("GHSA-8q59-q68h-6hv4", "PyPI", "pyyaml-other", [{"introduced": "0"}, {"fixed": "5.4"}],
                            aliases=["CVE-2020-14343"], severity="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")])
    sev = _one(db, Package("pypi", "pyyaml", "5.3.1", "/y/METADATA", 0))
    assert sev == ("critical", "alias", 9.8)


def test_nvd_in_each_of_its_shapes(db, tmp_path):
    import_records(db, [osv(f"PYSEC-{i}", "PyPI", f"lib{i}", [{"introduced": "0"}, {"fixed": "2.0"}],
                            aliases=[f"CVE-2024-300{i}"]) for i in range(3)])
    assert {_one(db, _pypi(f"lib{i}"))[1] for i in range(3)} == {"unknown"}

    def cve(i, vector, key="cvssMetricV31", kind="Primary"):
        return {"id": f"CVE-2024-300{i}", "sourceIdentifier": "cve@mitre.org", "vulnStatus": "Analyzed",
                "published": "2024-01-01T00:00:00.000", "lastModified": "2024-02-01T00:00:00.000",
                "metrics": {key: [{"source": "nvd@nist.gov", "type": kind,
                                   "cvssData": {"version": "3.1", "vectorString": vector}}]}}
    (tmp_path / "one.json").write_text(json.dumps({"cve": cve(0, HIGH)}))  # one API answer's entry
    (tmp_path / "bare.json").write_text(json.dumps(cve(1, MEDIUM)))  # a bare CVE object
    feed = {"resultsPerPage": 1, "startIndex": 0, "totalResults": 1, "format": "NVD_CVE", "version": "2.0",
            "vulnerabilities": [{"cve": cve(2, V2, "cvssMetricV2")}]}
    with gzip.open(tmp_path / "nvdcve-2.0-2024.json.gz", "wt") as fh:  # a yearly feed file
        json.dump(feed, fh)
    result = import_paths(db, [str(tmp_path)])
    assert result.nvd == 3 and "3 NVD CVE records" in result.summary()
    assert [_one(db, _pypi(f"lib{i}")) for i in range(3)] == [
        ("high", "nvd", 7.5), ("medium", "nvd", 5.4), ("high", "nvd", 7.5)]
    # an older copy of a record does not replace a newer one
    old = cve(0, MEDIUM)
    old["lastModified"] = "2023-01-01T00:00:00.000"
    (tmp_path / "one.json").write_text(json.dumps({"cve": old}))
    import_paths(db, [str(tmp_path / "one.json")])
    assert _one(db, _pypi("lib0")) == ("high", "nvd", 7.5)


def test_order_own_cvss_before_alias_before_nvd(db, tmp_path):
    import_records(db, [osv("GHSA-a", "PyPI", "lib", [{"introduced": "0"}, {"fixed": "2.0"}], aliases=["CVE-2024-4000"],
                            severity=MEDIUM),
                        osv("GHSA-b", "PyPI", "elsewhere", [{"introduced": "0"}], aliases=["CVE-2024-4000"],
                            severity=HIGH)])
    (tmp_path / "n.json").write_text(json.dumps({"cve": {"id": "CVE-2024-4000", "vulnStatus": "Analyzed",
                                                         "lastModified": "2024-01-01T00:00:00", "metrics": {
                                                             "cvssMetricV31": [{"type": "Primary", "cvssData": {
                                                                 "vectorString": HIGH}}]}}}))
    import_paths(db, [str(tmp_path / "n.json")])
    assert _one(db, _pypi()) == ("medium", "record_cvss", 5.4)


def test_no_source_is_unknown(db):
    import_records(db, [osv("PYSEC-x", "PyPI", "lib", [{"introduced": "0"}], aliases=["CVE-2024-5000"])])
    assert _one(db, _pypi()) == ("unknown", "unknown", None)


# --- NVD download against a local server ------------------------------------------------------------------

def _cves(n):
    return [{"cve": {"id": f"CVE-2024-{9000 + i}", "lastModified": "2024-03-01T00:00:00.000", "vulnStatus": "Analyzed",
                     "metrics": {"cvssMetricV31": [{"type": "Primary", "cvssData": {"vectorString": HIGH}}]}}}
            for i in range(n)]


class NvdServer:
    def __init__(self, records, page):
        self.records, self.page, self.requests = records, page, []
        self.fail_at = None  # startIndex answered with 500
        self.throttle_once = False  # answer the first request 429 with Retry-After
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                server.requests.append((q, self.headers.get("apiKey")))
                start = int(q.get("startIndex", 0))
                if server.throttle_once:
                    server.throttle_once = False
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                if server.fail_at == start:
                    self.send_error(400)
                    return
                size = min(int(q.get("resultsPerPage", 2000)), server.page)
                chunk = server.records[start:start + size]
                body = json.dumps({"resultsPerPage": len(chunk), "startIndex": start,
                                   "totalResults": len(server.records), "format": "NVD_CVE", "version": "2.0",
                                   "vulnerabilities": chunk}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rest/json/cves/2.0"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_update_from_nvd_pages_resumes_and_then_asks_only_for_changes(db, tmp_path, capsys):
    server = NvdServer(_cves(5), page=2)
    try:
        db_path = db.execute("PRAGMA database_list").fetchone()[2]
        server.fail_at = 2
        server.throttle_once = True
        args = ["db", "update", "--source", "nvd", "--url", server.url, "--db", db_path, "--api-key", "k-123",
                "--no-progress", "--cache-dir", str(tmp_path / "nvd")]
        # a page the server refuses stops the run with one line; what came before is kept
        assert cli.main(args) == 1
        err = capsys.readouterr().err
        assert "HTTP 400" in err and "run again to resume" in err and "Traceback" not in err
        assert db.execute("SELECT COUNT(*) FROM nvd_cves").fetchone()[0] == 2
        # the API key travels in its header; the 429 was waited out and retried
        assert server.requests[0][1] == "k-123" and server.requests[1][0]["startIndex"] == "0"

        server.fail_at = None
        server.requests.clear()
        assert cli.main(args) == 0
        assert [q["startIndex"] for q, _ in server.requests] == ["2", "4"]  # resumed, not restarted
        assert db.execute("SELECT COUNT(*) FROM nvd_cves").fetchone()[0] == 5

        server.requests.clear()
        assert cli.main(args) == 0
        q = server.requests[0][0]
        assert "lastModStartDate" in q and "lastModEndDate" in q and q["startIndex"] == "0"
    finally:
        server.close()


def test_rate_limiter_keeps_to_the_window():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = nvd.RateLimiter(5, 30.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == []
    limiter.wait()
    assert len(slept) == 1 and 29.9 < slept[0] <= 30.1


def test_windows_are_at_most_120_days():
    import datetime as dt

    until = dt.datetime(2024, 12, 31, tzinfo=dt.timezone.utc)
    got = nvd.windows("2024-01-01T00:00:00.000Z", until)
    assert len(got) == 4 and got[0][0] == "2024-01-01T00:00:00.000Z" and got[-1][1] == "2024-12-31T00:00:00.000Z"
    assert nvd.windows(None, until) == [None]


# --- acceptance on the corpus ------------------------------------------------------------------------------

@corpus
def test_nvd_records_leave_no_unknown_severity_in_the_shop_report(tmp_path):
    from stowaway.analyzers.vulnerabilities.rematch import rematch
    from stowaway.ingest.db import connect

    shop = "corpus/shop:1.0"
    expected = json.loads((CORPUS / "expected.json").read_text())["images"][shop]
    database = connect(str(tmp_path / "v.db"))
    import_paths(database, [str(SHARED / "feeds" / "osv")])
    conn = database.conn
    with conn:
        image_id = conn.execute("INSERT INTO images (reference, manifest_digest, platform, os_family, os_version)"
                                " VALUES (?, 'sha256:0', '', 'debian', '11')", [shop]).lastrowid
        scan_id = conn.execute("INSERT INTO scans (image_id, reference, status) VALUES (?, ?, 'done')",
                               [image_id, shop]).lastrowid
        conn.execute("UPDATE images SET last_scan_id = ? WHERE id = ?", [scan_id, image_id])
        conn.executemany("INSERT INTO packages (scan_id, image_id, ecosystem, name, version, path, layer_index)"
                         " VALUES (?,?,?,?,?,?,2)", [(scan_id, image_id, p["ecosystem"], p["name"], p["version"],
                                                      p["path"]) for p in expected["app_packages"]])
    rematch(database)
    before = report_of(database, shop)["vulnerabilities"]
    unknown = {v["id"] for v in before if v["severity"] == "unknown"}
    nvd_doc = json.loads((DATA / "nvd_corpus_pypi_cves.json").read_text())
    scored = {v["cve"]["id"] for v in nvd_doc["vulnerabilities"]}
    assert unknown and unknown <= scored  # the data file covers what the OSV records leave unrated
    db_path = str(tmp_path / "v.db")
    assert cli.main(["db", "import", str(DATA / "nvd_corpus_pypi_cves.json"), "--db", db_path, "--rematch"]) == 0
    after = report_of(connect(db_path), shop)["vulnerabilities"]
    assert [v["id"] for v in after if v["severity"] == "unknown"] == []
    assert {v["id"] for v in after if v.get("severity_source") == "nvd"} == unknown
    assert all(v.get("severity_source") for v in after)


def test_an_os_vendor_rating_wins_over_the_records_cvss_which_is_kept(db):
    rec = osv("UBUNTU-CVE-2024-6000", "Ubuntu:22.04:LTS", "openssl", [{"introduced": "0"}, {"fixed": "9.9-9"}],
              aliases=["CVE-2024-6000"])
    rec["severity"] = [{"type": "CVSS_V3", "score": HIGH}, {"type": "Ubuntu", "score": "low"}]
    import_records(db, [rec])
    pkg = Package("deb", "openssl", "1.0-1", "/var/lib/dpkg/status", 0, source_name="openssl")
    assert _one(db, pkg, "ubuntu", "22.04") == ("low", "vendor", 7.5)
