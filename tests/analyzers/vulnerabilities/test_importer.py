import json
import zipfile

import pytest
from conftest import SHARED
from osv_fixtures import CRITICAL, HIGH, osv

from stowaway.analyzers.vulnerabilities.importer import (
    ImportResult,
    cvss_of,
    debian_tracker_records,
    import_paths,
    import_records,
    normalize_time,
)

FEEDS = SHARED / "feeds"
feeds = pytest.mark.skipif(not (FEEDS / "osv").is_dir(), reason="../shared/feeds not present")


def _write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _affected(db, aid):
    return db.execute("SELECT ecosystem, release, name, ranges, versions FROM advisory_affected WHERE advisory_id=?",
                      [aid]).fetchall()


def test_directory_zip_and_api_answers_are_imported_with_provenance(db, tmp_path):
    _write(tmp_path / "feed" / "pypi" / "PYSEC-1.json", osv("PYSEC-1", "PyPI", "Jinja2", [{"introduced": "0"}, {"fixed": "2.10.1"}]))
    _write(tmp_path / "feed" / "npm" / "bulk.json",
           {"vulns": [osv("GHSA-aaaa", "npm", "lodash", [{"introduced": "0"}, {"fixed": "4.17.21"}], aliases=["CVE-2021-23337"])]})
    zpath = tmp_path / "Debian-all.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("DSA-1.json", json.dumps(osv("DSA-1", "Debian:11", "openssl", [{"introduced": "0"}, {"fixed": "1.1.1n-0+deb11u4"}])))
        zf.writestr("README.txt", "not a record")
    result = import_paths(db, [str(tmp_path / "feed"), str(zpath)])
    assert (result.records, result.inserted, result.skipped) == (3, 3, 0)
    # names are keyed as each ecosystem compares them: PyPI by PEP 503
    assert _affected(db, "PYSEC-1")[0][:3] == ("PyPI", "", "jinja2")
    assert _affected(db, "DSA-1")[0][:3] == ("Debian", "11", "openssl")
    src, imp = db.execute("SELECT source_file, import_id FROM advisories WHERE id='DSA-1'").fetchone()
    assert src == f"{zpath}!/DSA-1.json"
    row = db.execute("SELECT records, inserted, finished_at FROM advisory_imports WHERE id=?", [imp]).fetchone()
    assert row[0] == 3 and row[1] == 3 and row[2]
    assert db.execute("SELECT advisory_id FROM advisory_aliases WHERE alias='CVE-2021-23337'").fetchone()[0] == "GHSA-aaaa"


def test_reimport_is_idempotent_and_only_newer_records_replace(db):
    old = osv("GHSA-x", "Maven", "a:b", [{"introduced": "0"}, {"fixed": "1.0"}], modified="2024-01-01T00:00:00Z")
    r1 = import_records(db, [old])
    r2 = import_records(db, [old])
    assert (r1.inserted, r2.inserted, r2.updated, r2.unchanged) == (1, 0, 0, 1)
    # an older copy (fractional seconds must not fool a text comparison) is ignored
    stale = osv("GHSA-x", "Maven", "a:b", [{"introduced": "0"}, {"fixed": "9.9"}], modified="2023-12-31T23:59:59.999Z")
    assert import_records(db, [stale]).unchanged == 1
    newer = osv("GHSA-x", "Maven", "a:b", [{"introduced": "0"}, {"fixed": "2.0"}], modified="2024-01-01T00:00:00.5Z")
    assert import_records(db, [newer]).updated == 1
    rows = _affected(db, "GHSA-x")
    assert len(rows) == 1 and json.loads(rows[0][3])[0]["events"][1] == {"fixed": "2.0"}
    assert db.execute("SELECT COUNT(*) FROM advisories").fetchone()[0] == 1


def test_bad_records_are_skipped_and_counted(db, tmp_path):
    _write(tmp_path / "bad" / "broken.json", {"id": "X"}).write_text("{not json")
    _write(tmp_path / "bad" / "list.json", [
        {"summary": "no id"},
        "not an object",
        osv("GHSA-unknown", "Hackage2000", "pkg", [{"introduced": "0"}]),
        osv("GHSA-noevents", "npm", "x", []),
        osv("GHSA-badevent", "npm", "y", [{"introduced": "0"}, {"fixed": 3}]),
        osv("GHSA-ok", "npm", "z", [{"introduced": "0"}, {"fixed": "1.0.0"}]),
        {"id": "GHSA-nopkg", "modified": "2024-01-01T00:00:00Z", "affected": [{"ranges": []}]},
    ])
    result = import_paths(db, [str(tmp_path / "bad")])
    assert result.inserted == 1 and result.records == 8
    assert result.skipped == 7
    w = result.warnings
    assert w["unreadable file"] == 1 and w["not an OSV record (no id)"] == 1 and w["record is not an object"] == 1
    assert w["unsupported ecosystem Hackage2000"] == 1
    assert w["range with malformed events"] == 1
    assert db.execute("SELECT id FROM advisories").fetchall() == [("GHSA-ok",)]
    assert "unsupported ecosystem Hackage2000" in result.summary()


def test_withdrawn_records_keep_no_affected_rows(db):
    rec = osv("GHSA-w", "npm", "x", [{"introduced": "0"}], withdrawn="2024-02-01T00:00:00Z")
    import_records(db, [rec])
    assert db.execute("SELECT withdrawn FROM advisories").fetchone()[0].startswith("2024-02-01")
    assert _affected(db, "GHSA-w") == []


def test_severity_is_computed_at_import():
    assert cvss_of(CRITICAL) == (10.0, "critical")
    assert cvss_of(HIGH) == (7.5, "high")
    assert cvss_of("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N") == (9.3, "critical")
    assert cvss_of("AV:N/AC:L/Au:N/C:P/I:P/A:P") == (7.5, "high")
    assert cvss_of("CVSS:3.1/garbage") is None


def test_ghsa_database_severity_and_missing_cvss(db):
    import_records(db, [osv("GHSA-m", "npm", "a", [{"introduced": "0"}], database_severity="MODERATE"),
                        osv("GHSA-c", "npm", "b", [{"introduced": "0"}], severity=CRITICAL, database_severity="LOW")])
    rows = dict(((r[0]), r[1:]) for r in db.execute("SELECT id, severity, cvss_score, database_severity FROM advisories"))
    assert rows["GHSA-m"] == ("medium", None, "medium")
    assert rows["GHSA-c"] == ("critical", 10.0, "low")


TRACKER = {
    "openssl": {
        "CVE-2022-0001": {"description": "open in bullseye", "releases": {
            "bullseye": {"status": "open", "repositories": {"bullseye": "1.1.1n-0+deb11u3"}, "urgency": "high"},
            "bookworm": {"status": "resolved", "fixed_version": "3.0.5-1", "urgency": "high"}}},
        "CVE-2022-0002": {"releases": {
            "bullseye": {"status": "resolved", "fixed_version": "0", "urgency": "unimportant"}}},
        "CVE-2022-0003": {"releases": {"bullseye": {"status": "undetermined"}}},
    },
    "curl": {"CVE-2022-0001": {"releases": {"bullseye": {"status": "resolved", "fixed_version": "7.74.0-1.3+deb11u2",
                                                         "urgency": "low**"}}}},
    "broken": {"CVE-2022-0009": {"releases": []}},
}


def test_debian_tracker_becomes_per_cve_records(db, tmp_path):
    path = _write(tmp_path / "tracker.json", TRACKER)
    result = import_paths(db, [str(path)])
    ids = sorted(r[0] for r in db.execute("SELECT id FROM advisories"))
    # one record per CVE with a package in an affected state; 'fixed_version 0' = never affected
    assert ids == ["DEBIAN-CVE-2022-0001"]
    rows = sorted(_affected(db, "DEBIAN-CVE-2022-0001"))
    assert [(r[0], r[1], r[2]) for r in rows] == [("Debian", "11", "curl"), ("Debian", "11", "openssl"),
                                                  ("Debian", "12", "openssl")]
    unfixed = next(r for r in rows if r[2] == "openssl" and r[1] == "11")
    assert json.loads(unfixed[3]) == [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]
    sev = dict(((r[0], r[1]), r[2]) for r in db.execute("SELECT name, release, severity FROM advisory_affected"))
    assert sev[("curl", "11")] == "low" and sev[("openssl", "11")] == "high"
    assert result.warnings["debian tracker: entry without releases"] == 1
    assert result.warnings["debian tracker: status 'undetermined' not matched"] == 1
    assert db.execute("SELECT source_kind FROM advisories").fetchone()[0] == "debian-tracker"


def test_kev_and_epss_enrichment(db, tmp_path):
    kev = _write(tmp_path / "known_exploited_vulnerabilities.json", {
        "catalogVersion": "2024.01.01", "vulnerabilities": [
            {"cveID": "CVE-2021-44228", "vendorProject": "Apache", "product": "Log4j", "dateAdded": "2021-12-10",
             "dueDate": "2021-12-24", "knownRansomwareCampaignUse": "Known", "requiredAction": "patch"}]})
    epss = tmp_path / "epss_scores.csv"
    epss.write_text("#model_version:v2023.03.01,score_date:2024-01-01T00:00:00+0000\ncve,epss,percentile\n"
                    "CVE-2021-44228,0.97565,0.99996\nCVE-2020-0001,0.001,0.2\nCVE-bad,x,y\n")
    result = import_paths(db, [str(kev), str(epss)])
    assert (result.kev, result.epss) == (1, 2) and result.warnings["malformed EPSS row"] == 1
    assert db.execute("SELECT epss, score_date FROM epss WHERE cve='CVE-2021-44228'").fetchone() == \
        (0.97565, "2024-01-01T00:00:00+0000")
    assert db.execute("SELECT known_ransomware FROM kev").fetchone()[0] == "Known"


def test_time_normalization_orders_as_text():
    a, b = normalize_time("2022-03-25T20:56:18Z"), normalize_time("2022-03-25T20:56:18.5Z")
    assert a < b and normalize_time("garbage") == "" and normalize_time(None) == ""


def test_tracker_conversion_counts_unknown_releases():
    result = ImportResult()
    recs = list(debian_tracker_records({"p": {"CVE-1": {"releases": {"hamm2": {"status": "open"}}}}}, "", result))
    assert recs == [] and result.warnings["debian tracker: unknown release"] == 1


@feeds
def test_shared_osv_feed_imports_cleanly_and_twice_is_a_no_op(db):
    first = import_paths(db, [str(FEEDS / "osv")])
    assert first.inserted > 500 and first.skipped == 0
    # the only warning: one GHSA names a SwiftURL package, an ecosystem no matcher covers (and the
    # reference-URL caps: records with more than 20 links, a reference that names a repository, not a URL)
    assert set(first.warnings) <= {"unsupported ecosystem SwiftURL", "more than 20 references (the rest not stored)",
                                   "reference that is not an http(s) URL (not stored)"}
    again = import_paths(db, [str(FEEDS / "osv")])
    assert again.inserted == 0 and again.updated == 0 and again.unchanged == again.records


@feeds
def test_shared_os_advisory_samples(db):
    base = FEEDS / "os-advisories"
    result = import_paths(db, [str(base / "debian"), str(base / "ubuntu" / "osv"), str(base / "alpine" / "osv")])
    rows = set(db.execute("SELECT advisory_id, ecosystem, release, name FROM advisory_affected"))
    assert ("DLA-3008-1", "Debian", "9", "openssl") in rows
    # the tracker: chromium CVE-2022-0456 is open (unfixed) in buster and stretch, fixed in bullseye
    assert {("DEBIAN-CVE-2022-0456", "Debian", r, "chromium") for r in ("9", "10", "11", "12", "sid")} <= rows
    rels = {r[2] for r in rows if r[1] == "Ubuntu"}
    assert {"22.04", "pro:14.04"} <= rels and not any("LTS" in r for r in rels)
    assert ("ALPINE-CVE-2025-26519", "Alpine", "3.18", "musl") in rows
    assert result.inserted >= 20


def test_alpine_secdb_becomes_per_release_records(db, tmp_path):
    path = _write(tmp_path / "v3.15-main.json", {
        "distroversion": "v3.15", "reponame": "main", "packages": [
            {"pkg": {"name": "zlib", "secfixes": {"1.2.12-r0": ["CVE-2018-25032"], "1.2.12-r2": ["CVE-2022-37434"],
                                                  "0": ["CVE-2000-0001"]}}},
            {"pkg": {"name": "ansible", "secfixes": {"2.8.0-r0": {}}}},
            {"pkg": "broken"}]})
    result = import_paths(db, [str(path)])
    rows = sorted(db.execute("SELECT advisory_id, ecosystem, release, name, ranges FROM advisory_affected"))
    assert [r[:4] for r in rows] == [("ALPINE-SECDB-v3.15-CVE-2018-25032", "Alpine", "3.15", "zlib"),
                                     ("ALPINE-SECDB-v3.15-CVE-2022-37434", "Alpine", "3.15", "zlib")]
    assert json.loads(rows[1][4])[0]["events"] == [{"introduced": "0"}, {"fixed": "1.2.12-r2"}]
    assert result.warnings["alpine secdb: malformed package entry"] == 1


@feeds
def test_shared_alpine_secdb_samples(db):
    result = import_paths(db, [str(FEEDS / "os-advisories" / "alpine" / "secdb")])
    assert result.skipped == 0 and result.inserted > 10
    rels = {r[0] for r in db.execute("SELECT DISTINCT release FROM advisory_affected")}
    assert rels == {"3.10", "3.12", "3.15"}  # the edge sample lists no package


def test_import_while_findings_are_being_read(tmp_path):
    """WAL and short batch transactions: a reader mid-query neither blocks an import nor sees half of it."""
    import sqlite3

    from stowaway.ingest.db import connect

    path = str(tmp_path / "live.db")
    writer = connect(path)
    import_records(writer, [osv("GHSA-0", "npm", "a", [{"introduced": "0"}])])
    reader = sqlite3.connect(path, timeout=0.1)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM advisories").fetchone()[0] == 1
    result = import_records(writer, [osv(f"GHSA-{i}", "npm", "a", [{"introduced": "0"}]) for i in range(1, 5001)])
    assert result.inserted == 5000
    assert reader.execute("SELECT COUNT(*) FROM advisories").fetchone()[0] == 1  # its snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT COUNT(*) FROM advisories").fetchone()[0] == 5001


def test_the_feed_summary_is_kept_while_the_store_is_unchanged_and_follows_every_import(db):
    from stowaway.analyzers.vulnerabilities import store

    import_records(db, [osv("GHSA-1", "npm", "a", [{"introduced": "0"}, {"fixed": "1.0"}])])
    first = store.feed_summary(db.conn)
    assert first["advisories"] == 1
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    assert store.feed_summary(db.conn) == first  # the writer asks for every image: no COUNT over the store again
    db.conn.set_trace_callback(None)
    assert not [s for s in statements if "COUNT(" in s.upper()], statements
    import_records(db, [osv("GHSA-2", "npm", "b", [{"introduced": "0"}, {"fixed": "1.0"}], modified="2025-01-01T00:00:00Z")])
    second = store.feed_summary(db.conn)
    assert second["advisories"] == 2 and second["import_id"] > first["import_id"]
    second["advisories"] = -1  # what a caller does with its copy does not change what is kept
    assert store.feed_summary(db.conn)["advisories"] == 2
