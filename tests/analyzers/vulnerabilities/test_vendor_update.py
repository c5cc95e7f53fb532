"""`db update --source <vendor>` against a local HTTP server (127.0.0.1) serving vendor feeds built in
code in each vendor's layout: the Debian tracker JSON (one file), Red Hat's changes.csv + CSAF files,
openEuler's index.txt + CVRF files and SUSE's directory listing + CVRF files."""
import json

import pytest
from test_download import Feed, serve  # noqa: F401  (the server of the osv.dev download tests)
from vendor_docs import openeuler_cvrf, rhsa, suse_cvrf

from stowaway.ingest import cli
from stowaway.ingest.db import connect


@pytest.fixture
def feed():
    f = Feed()
    server = serve(f)
    f.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield f
    server.shutdown()
    server.server_close()


def _ids(db_path):
    return sorted(r[0] for r in connect(db_path).conn.execute("SELECT id FROM advisories"))


def _update(feed, db, source, path, *extra):
    return cli.main(["db", "update", "--source", source, "--url", feed.base + path, "--db", db, "--no-progress",
                     *extra])


def test_redhat_csaf_fetches_only_what_changes_csv_says_changed(feed, tmp_path, capsys):
    one = rhsa("RHSA-2020:5566", ["CVE-2020-1971"], "cpe:/o:redhat:enterprise_linux:7::server", "7Server-7.9.Z",
               "openssl-1:1.0.2k-21.el7_9.src", ["openssl-libs-1:1.0.2k-21.el7_9.x86_64"], "Important")
    two = rhsa("RHSA-2021:0001", ["CVE-2021-0001"], "cpe:/o:redhat:enterprise_linux:8::baseos", "BaseOS-8.3.0.Z",
               "zlib-0:1.2.11-17.el8.src", ["zlib-0:1.2.11-17.el8.x86_64"], "Low")
    feed.files["/csaf/2020/rhsa-2020_5566.json"] = json.dumps(one).encode()
    feed.files["/csaf/2021/rhsa-2021_0001.json"] = json.dumps(two).encode()
    feed.files["/csaf/changes.csv"] = (b'"2021/rhsa-2021_0001.json","2021-01-05T00:00:00+00:00"\n'
                                       b'"2020/rhsa-2020_5566.json","2020-12-16T13:36:00+00:00"\n')
    db = str(tmp_path / "s.db")
    assert _update(feed, db, "redhat-csaf", "/csaf/") == 0
    assert _ids(db) == ["RHSA-2020:5566", "RHSA-2021:0001"]
    assert "redhat-csaf: 2 new or changed, 0 unchanged" in capsys.readouterr().err
    # a second run asks for the index only; a document whose time changed is fetched again
    feed.requests.clear()
    two["document"]["tracking"]["current_release_date"] = "2021-02-01T00:00:00+00:00"
    two["vulnerabilities"][0]["threats"][0]["details"] = "Critical"
    feed.files["/csaf/2021/rhsa-2021_0001.json"] = json.dumps(two).encode()
    feed.files["/csaf/changes.csv"] = feed.files["/csaf/changes.csv"].replace(b"2021-01-05", b"2021-02-01")
    assert _update(feed, db, "redhat-csaf", "/csaf/") == 0
    assert [p for p, _h in feed.requests] == ["/csaf/changes.csv", "/csaf/2021/rhsa-2021_0001.json"]
    row = connect(db).conn.execute("SELECT severity FROM advisory_affected WHERE advisory_id = 'RHSA-2021:0001'").fetchone()
    assert row == ("critical",)


def test_openeuler_index_and_a_hostile_path(feed, tmp_path, capsys):
    feed.files["/oe/2024/cvrf-openEuler-SA-2024-1200.xml"] = openeuler_cvrf(
        "openEuler-SA-2024-1200", "22.03-LTS-SP3", "openssl-1.1.1m-30.oe2203sp3.src.rpm", {"CVE-2024-0727": "Low"}).encode()
    feed.files["/oe/index.txt"] = b"2024/cvrf-openEuler-SA-2024-1200.xml\n../../etc/passwd.xml\n2024/missing.xml\n"
    db = str(tmp_path / "s.db")
    assert _update(feed, db, "openeuler-cvrf", "/oe/") == 1  # one document failed: the exit status says so
    err = capsys.readouterr().err
    assert "openeuler-cvrf: 1 new or changed, 0 unchanged, 2 failed" in err and "HTTP 404" in err
    assert _ids(db) == ["openEuler-SA-2024-1200"]
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "etc" / "passwd.xml").exists()


def test_suse_directory_listing(feed, tmp_path):
    doc = suse_cvrf("SUSE-SU-2023:0001-1", "Security update for python3", ["SUSE Linux Enterprise Server 15 SP3"],
                    ["python3-base-3.6.15-150300.10.45.1"], "CVE-2023-24329", "important")
    feed.files["/cvrf/cvrf-suse-su-2023-0001-1.xml"] = doc.encode()
    feed.files["/cvrf/"] = (b'<html><body><a href="../">../</a>\n<a href="cvrf-suse-su-2023-0001-1.xml">'
                            b'cvrf-suse-su-2023-0001-1.xml</a> 01-May-2023 10:00 4096\n'
                            b'<a href="http://elsewhere.example/x.xml">x.xml</a></body></html>')
    db = str(tmp_path / "s.db")
    assert _update(feed, db, "suse-cvrf", "/cvrf/") == 0
    assert _ids(db) == ["SUSE-SU-2023:0001-1"]


def test_debian_tracker_single_file_with_etag(feed, tmp_path, capsys):
    tracker = {"openssl": {"CVE-2024-0727": {"description": "d", "releases": {
        "bookworm": {"status": "resolved", "fixed_version": "3.0.13-1~deb12u1", "urgency": "low",
                     "repositories": {"bookworm": "3.0.11-1~deb12u2"}}}}}}
    feed.files["/tracker/data/json"] = json.dumps(tracker).encode()
    db = str(tmp_path / "s.db")
    assert _update(feed, db, "debian-tracker", "/tracker/data/json") == 0
    assert _ids(db) == ["DEBIAN-CVE-2024-0727"]
    # asked as stored: a gzip transfer encoding would not match the length, hash or a resumed range
    assert feed.requests[0][1].get("Accept-Encoding") == "identity"
    capsys.readouterr()
    assert _update(feed, db, "debian-tracker", "/tracker/data/json") == 0
    assert "debian-tracker: 0 new or changed, 1 unchanged" in capsys.readouterr().err


def test_an_unreachable_source_is_one_line(tmp_path, capsys):
    db = str(tmp_path / "s.db")
    assert cli.main(["db", "update", "--source", "redhat-vex", "--url", "http://127.0.0.1:9/vex/", "--db", db,
                     "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stowaway: http://127.0.0.1:9/vex/changes.csv: ConnectionError")


def _tar_zst(members: dict) -> bytes:
    import io
    import tarfile

    import zstandard

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return zstandard.ZstdCompressor().compress(buf.getvalue())


def test_redhat_first_run_takes_the_archive_then_what_changed_after_it(feed, tmp_path, capsys):
    def doc(rid, cve, fixed, when):
        d = rhsa(rid, [cve], "cpe:/o:redhat:enterprise_linux:9::baseos", "BaseOS-9.4.0.Z.MAIN",
                 f"zlib-0:{fixed}.src", [f"zlib-0:{fixed}.x86_64"], "Moderate", modified=when)
        return json.dumps(d).encode()

    old = doc("RHSA-2024:0001", "CVE-2024-0001", "1.2.11-40.el9", "2024-01-02T00:00:00+00:00")
    stale = doc("RHSA-2024:0002", "CVE-2024-0002", "1.2.11-41.el9", "2024-02-01T00:00:00+00:00")
    fresh = doc("RHSA-2024:0002", "CVE-2024-0002", "1.2.11-42.el9", "2024-12-01T00:00:00+00:00")
    feed.files["/rh/archive_latest.txt"] = b"csaf_advisories_2024-11-10.tar.zst\n"
    feed.files["/rh/csaf_advisories_2024-11-10.tar.zst"] = _tar_zst({
        "2024/rhsa-2024_0001.json": old, "2024/rhsa-2024_0002.json": stale, "../escape.json": b"{}"})
    feed.files["/rh/2024/rhsa-2024_0002.json"] = fresh
    feed.files["/rh/changes.csv"] = (b'"2024/rhsa-2024_0002.json","2024-12-01T00:00:00+00:00"\n'
                                     b'"2024/rhsa-2024_0001.json","2024-01-02T00:00:00+00:00"\n')
    db = str(tmp_path / "s.db")
    assert _update(feed, db, "redhat-csaf", "/rh/") == 0
    fetched = [p for p, _h in feed.requests]
    # one archive, then only the document changed after its date; nothing outside the cache
    assert fetched == ["/rh/changes.csv", "/rh/archive_latest.txt", "/rh/csaf_advisories_2024-11-10.tar.zst",
                       "/rh/2024/rhsa-2024_0002.json"]
    cache = tmp_path / "vendor-feeds" / "redhat-csaf"
    assert sorted(p.name for p in cache.rglob("*.json") if p.parent.name == "2024") == \
        ["rhsa-2024_0001.json", "rhsa-2024_0002.json"]
    assert not any(p.name == "escape.json" for p in tmp_path.rglob("*"))  # '../escape.json' is not extracted
    rows = connect(db).conn.execute("SELECT advisory_id, ranges FROM advisory_affected ORDER BY 1").fetchall()
    assert [(a, json.loads(r)[0]["events"][1]["fixed"]) for a, r in rows] == \
        [("RHSA-2024:0001", "0:1.2.11-40.el9"), ("RHSA-2024:0002", "0:1.2.11-42.el9")]
    feed.requests.clear()
    assert _update(feed, db, "redhat-csaf", "/rh/") == 0  # later runs: the index only
    assert [p for p, _h in feed.requests] == ["/rh/changes.csv"]
