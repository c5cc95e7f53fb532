"""Vendor advisory formats (analyzers/vulnerabilities/feeds): each importer on real records from
../shared/feeds/os-advisories (skipped when absent) and on documents built in code in the vendor's
format (vendor_docs.py); each distribution's release mapping; a CentOS 7 image built in code with an
rpm database matched end to end against Red Hat data."""
from __future__ import annotations

import json
import sys

import pytest
from conftest import ROOT, SHARED, report_of
from imagebuilder import File, ImageBuilder
from vendor_docs import openeuler_cvrf, rhsa, suse_cvrf

from stowaway.analyzers.inventory.os_release import normalize, parse_os_release
from stowaway.analyzers.vulnerabilities import feeds
from stowaway.analyzers.vulnerabilities.ecosystems import image_release
from stowaway.analyzers.vulnerabilities.feeds.status import feed_status
from stowaway.analyzers.vulnerabilities.importer import debian_tracker_records, import_paths

sys.path.insert(0, str(ROOT / "tests" / "analyzers" / "inventory"))
from ospkg_harness import bdb_file, rpm_header  # noqa: E402

ADVISORIES = SHARED / "feeds" / "os-advisories"
real = pytest.mark.skipif(not ADVISORIES.is_dir(), reason="../shared/feeds not present")


def _rows(db, advisory_id):
    return sorted(db.conn.execute("SELECT ecosystem, release, name, ranges, severity FROM advisory_affected"
                                  " WHERE advisory_id = ?", [advisory_id]).fetchall())


def _advisory(db, advisory_id):
    return db.conn.execute("SELECT database_severity, severity, cves, source_kind, modified FROM advisories"
                           " WHERE id = ?", [advisory_id]).fetchone()


def _fixed(ranges):
    events = json.loads(ranges)[0]["events"]
    return next((e["fixed"] for e in events if "fixed" in e), None)


# --- Red Hat CSAF --------------------------------------------------------------------------------------

@real
def test_red_hat_vex_fixed_and_unfixed_per_release(db):
    result = import_paths(db, [str(ADVISORIES / "redhat" / "csaf-vex" / "cve-2024-10041.json")])
    assert result.inserted == 1
    rows = _rows(db, "REDHAT-CVE-2024-10041")
    assert [(e, r, n, _fixed(rg), s) for e, r, n, rg, s in rows] == [
        ("Red Hat", "7", "pam", None, "medium"),            # no_fix_planned: affected, no fixed version
        ("Red Hat", "9", "pam", "0:1.5.1-21.el9_5", "medium"),
    ]
    assert _advisory(db, "REDHAT-CVE-2024-10041")[:4] == ("medium", "medium", '["CVE-2024-10041"]', "redhat-csaf")


@real
def test_red_hat_vex_with_only_not_affected_products_records_nothing(db):
    result = import_paths(db, [str(ADVISORIES / "redhat" / "csaf-vex" / "cve-2023-42670.json")])
    assert result.inserted == 0 and result.warnings["redhat csaf: no RHEL package affected or fixed"] == 1


@real
def test_red_hat_advisory_binaries_are_keyed_by_their_source_rpm(db):
    import_paths(db, [str(ADVISORIES / "redhat" / "csaf")])
    # RHSA-2025:23414 lists bind's binaries as fixed and its source rpm as known_not_affected
    assert [(r, n, _fixed(rg), s) for _e, r, n, rg, s in _rows(db, "RHSA-2025:23414")] == \
        [("6", "bind", "32:9.8.2-0.68.rc1.el6_10.17", "medium")]
    assert _advisory(db, "RHSA-2025:23414")[0] == "high"  # aggregate 'Important'
    assert [(r, n, _fixed(rg)) for _e, r, n, rg, _s in _rows(db, "RHSA-2024:6163")] == \
        [("9", "python3.9", "0:3.9.18-3.el9_4.5")]


def test_red_hat_advisory_built_in_code(db, tmp_path):
    doc = rhsa("RHSA-2020:5566", ["CVE-2020-1971"], "cpe:/o:redhat:enterprise_linux:7::server", "7Server-7.9.Z",
               "openssl-1:1.0.2k-21.el7_9.src",
               ["openssl-1:1.0.2k-21.el7_9.x86_64", "openssl-libs-1:1.0.2k-21.el7_9.x86_64"], "Important")
    eus = rhsa("RHSA-2099:0001", ["CVE-2099-0001"], "cpe:/a:redhat:rhel_eus:8.6::appstream", "AppStream-8.6.0.Z.EUS",
               "zlib-0:1.2.11-19.el8_6.src", ["zlib-0:1.2.11-19.el8_6.x86_64"], "Low")
    (tmp_path / "rhsa.json").write_text(json.dumps(doc))
    (tmp_path / "eus.json").write_text(json.dumps(eus))
    result = import_paths(db, [str(tmp_path)])
    assert [(e, r, n, _fixed(rg), s) for e, r, n, rg, s in _rows(db, "RHSA-2020:5566")] == \
        [("Red Hat", "7", "openssl", "1:1.0.2k-21.el7_9", "high")]
    # a minor-release stream (EUS) is not what a container's repositories give it
    assert _rows(db, "RHSA-2099:0001") == [] and result.warnings["redhat csaf: no RHEL package affected or fixed"] == 1


def test_unreadable_vendor_file_is_one_warning(db, tmp_path):
    (tmp_path / "broken.json").write_bytes(b'{"document": {"category": "csaf_vex", "title": ')
    (tmp_path / "broken.xml").write_bytes(b"<?xml version='1.0'?><cvrfdoc><DocumentTitle>x")
    result = import_paths(db, [str(tmp_path)])
    assert result.skipped == 2
    assert result.warnings["unreadable redhat-csaf file"] == 1 and result.warnings["unreadable cvrf file"] == 1


# --- SUSE and openEuler CVRF ---------------------------------------------------------------------------

@real
def test_suse_cvrf_real_advisories(db):
    import_paths(db, [str(ADVISORIES / "suse" / "cvrf")])
    rows = _rows(db, "SUSE-SU-2019:1608-1")
    keys = {(e, r, n, _fixed(rg), s) for e, r, n, rg, s in rows}
    assert ("SUSE", "12.4", "compat-openssl098", "0.9.8j-106.12.1", "medium") in keys
    assert ("SUSE", "12.3", "libopenssl0_9_8", "0.9.8j-106.12.1", "medium") in keys
    assert {e for e, *_ in rows} == {"SUSE"}
    leap = {(e, r, n) for e, r, n, _rg, _s in _rows(db, "openSUSE-SU-2018:1633-1")}
    assert ("openSUSE", "15.0", "glibc") in leap
    assert json.loads(_advisory(db, "openSUSE-SU-2018:1633-1")[2]) == ["CVE-2018-11237"]


def test_suse_cvrf_built_in_code_names_the_titled_source(db, tmp_path):
    (tmp_path / "cvrf-suse-su-2023-0001-1.xml").write_text(suse_cvrf(
        "SUSE-SU-2023:0001-1", "Security update for python3",
        ["SUSE Linux Enterprise Server 15 SP3", "SUSE Manager Server 4.2"],
        ["libpython3_6m1_0-3.6.15-150300.10.45.1", "python3-base-3.6.15-150300.10.45.1"], "CVE-2023-24329", "important"))
    import_paths(db, [str(tmp_path)])
    rows = {(e, r, n, _fixed(rg), s) for e, r, n, rg, s in _rows(db, "SUSE-SU-2023:0001-1")}
    # SUSE Manager is not a distribution release; the title's 'python3' is the source package
    assert rows == {("SUSE", "15.3", n, "3.6.15-150300.10.45.1", "high")
                    for n in ("libpython3_6m1_0", "python3-base", "python3")}


@real
def test_openeuler_cvrf_real_advisories(db):
    import_paths(db, [str(ADVISORIES / "openeuler" / "cvrf")])
    assert [(e, r, n, _fixed(rg), s) for e, r, n, rg, s in _rows(db, "openEuler-SA-2023-1374")] == \
        [("openEuler", "22.03-LTS-SP1", "wireshark", "3.6.14-1.oe2203sp1", "critical")]
    assert json.loads(_advisory(db, "openEuler-SA-2023-1374")[2]) == ["CVE-2023-0667", "CVE-2023-2952"]
    assert [(r, n) for _e, r, n, _rg, _s in _rows(db, "openEuler-SA-2022-1693")] == \
        [("20.03-LTS-SP3", "python-XStatic-jquery-ui")]


def test_openeuler_cvrf_built_in_code(db, tmp_path):
    (tmp_path / "cvrf-openEuler-SA-2024-1200.xml").write_text(openeuler_cvrf(
        "openEuler-SA-2024-1200", "22.03-LTS-SP3", "openssl-1.1.1m-30.oe2203sp3.src.rpm",
        {"CVE-2024-0727": "Low", "CVE-2023-6237": "High"}))
    import_paths(db, [str(tmp_path)])
    assert [(e, r, n, _fixed(rg), s) for e, r, n, rg, s in _rows(db, "openEuler-SA-2024-1200")] == \
        [("openEuler", "22.03-LTS-SP3", "openssl", "1.1.1m-30.oe2203sp3", "high")]
    assert _advisory(db, "openEuler-SA-2024-1200")[1] == "high"


# --- Ubuntu OSV, Alpine secdb, Debian tracker ----------------------------------------------------------

@real
def test_ubuntu_osv_records_keep_ubuntu_priority(db):
    import_paths(db, [str(ADVISORIES / "ubuntu" / "osv")])
    releases = {r for (r,) in db.conn.execute("SELECT DISTINCT release FROM advisory_affected WHERE ecosystem='Ubuntu'")}
    assert {"14.04", "16.04", "22.04"} <= releases | {r.split(":")[-1] for r in releases}
    assert any(r.startswith("pro:") for r in releases)  # ESM streams kept apart from plain images
    rows = db.conn.execute("SELECT severity FROM advisory_affected WHERE advisory_id LIKE 'UBUNTU-CVE-%'").fetchall()
    levels = {s for (s,) in rows}
    assert levels and levels <= {"critical", "high", "medium", "low", "negligible", None}
    assert db.conn.execute("SELECT COUNT(*) FROM advisories WHERE id = 'USN-5614-1'").fetchone()[0] == 1


@real
def test_alpine_secdb_yaml_and_json(db):
    import_paths(db, [str(ADVISORIES / "alpine" / "secdb")])
    releases = {r for (r,) in db.conn.execute("SELECT DISTINCT release FROM advisory_affected WHERE ecosystem='Alpine'")}
    assert {"3.10", "3.12", "3.15"} <= releases


@real
def test_debian_tracker_streamed_equals_whole_load(db):
    path = ADVISORIES / "debian" / "security-tracker" / "tracker-json-sample.json"
    assert feeds.sniff(str(path)) == "debian-tracker"
    warned = []
    streamed = list(feeds.records(str(path), "debian-tracker", "2024-01-01T00:00:00Z",
                                  lambda reason, example="": warned.append(reason)))

    class R:
        def warn(self, reason, example=""):
            pass

    whole = list(debian_tracker_records(json.loads(path.read_bytes()), "2024-01-01T00:00:00Z", R()))

    def canon(recs):
        return sorted((r["id"], json.dumps(sorted(map(json.dumps, r["affected"])))) for r in recs)

    assert streamed and canon(streamed) == canon(whole)
    result = import_paths(db, [str(path)])
    assert result.inserted == len(streamed)
    assert _advisory(db, streamed[0]["id"])[3] == "debian-tracker"


# --- release mapping -----------------------------------------------------------------------------------

OS_RELEASES = {  # /etc/os-release as each distribution writes it -> (family, version) -> advisory key
    "centos7": ('NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n',
                ("centos", "7"), ("Red Hat", "7")),
    "rhel8": ('NAME="Red Hat Enterprise Linux"\nVERSION="8.9 (Ootpa)"\nID="rhel"\nVERSION_ID="8.9"\n',
              ("rhel", "8"), ("Red Hat", "8")),
    "hce2": ('NAME="Huawei Cloud EulerOS"\nVERSION="2.0 (x86_64)"\nID="hce"\nVERSION_ID="2.0"\n',
             ("hce", "2.0"), ("HCE", "2.0")),
    "euleros": ('NAME="EulerOS"\nVERSION="2.0 (SP10x86_64)"\nID="euleros"\nVERSION_ID="2.0"\n',
                ("euleros", "2.0-SP10"), ("EulerOS", "2.0-SP10")),
    "euleros-sp12": ('NAME="EulerOS"\nVERSION="2.0 (SP12)"\nID="euleros"\nVERSION_ID="2.0"\n',
                     ("euleros", "2.0-SP12"), ("EulerOS", "2.0-SP12")),
    "kylin": ('NAME="Kylin Linux Advanced Server"\nVERSION="V10 (Sword)"\nID="kylin"\nVERSION_ID="V10"\n',
              ("kylin", "V10-SP2"), None),
    "kylin-sp3": ('NAME="Kylin Linux Advanced Server"\nVERSION="V10 (Lance)"\nID="kylin"\nVERSION_ID="V10"\n',
                  ("kylin", "V10-SP3"), None),
    "openeuler": ('NAME="openEuler"\nVERSION="22.03 (LTS-SP1)"\nID="openEuler"\nVERSION_ID="22.03"\n',
                  ("openeuler", "22.03-LTS-SP1"), ("openEuler", "22.03-LTS-SP1")),
    "openeuler-sp3": ('NAME="openEuler"\nVERSION="22.03 (LTS-SP3)"\nID="openEuler"\nVERSION_ID="22.03"\n',
                      ("openeuler", "22.03-LTS-SP3"), ("openEuler", "22.03-LTS-SP3")),
    "sles": ('NAME="SLES"\nVERSION="15-SP3"\nID="sles"\nVERSION_ID="15.3"\n', ("sles", "15.3"), ("SUSE", "15.3")),
    "uos": ('NAME="UnionTech OS Server 20"\nVERSION="20"\nID="uos"\nVERSION_ID="20"\n', ("uos", "20"), None),
}


@pytest.mark.parametrize("name", sorted(OS_RELEASES))
def test_release_mapping(name):
    text, want_os, want_key = OS_RELEASES[name]
    info = normalize(parse_os_release(text))
    assert (info.family, info.version) == want_os
    assert image_release(info.family, info.version) == want_key


def test_feed_status_per_seed_distribution(db):
    assert feed_status("centos", "7") == (True, "CentOS 7: vendor feed Red Hat's CSAF VEX / advisories for the same"
                                                " RHEL release (security.access.redhat.com/data/csaf/v2/)")
    for family, version, vendor in (("euleros", "2.0-SP10", "Huawei"), ("hce", "2.0", "Huawei"),
                                    ("kylin", "V10-SP2", "KylinSoft"), ("uos", "20", "UnionTech")):
        ok, why = feed_status(family, version, db.conn)
        assert not ok and why.startswith("not checked: no ") and f" {version} advisories (" in why and vendor in why
    assert feed_status("openeuler", "22.03-LTS-SP1", db.conn) == (
        False, "not checked: no openEuler 22.03-LTS-SP1 advisories in the store; import openEuler's CVRF"
               " (repo.openeuler.org/security/data/cvrf/)")
    assert feed_status("", "") == (False, "not checked: the distribution could not be identified")


# --- end to end: CentOS 7 against Red Hat data ---------------------------------------------------------

CENTOS7 = 'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n' \
          'PRETTY_NAME="CentOS Linux 7 (Core)"\n'


def _centos7(tmp_path, packages, ref="test/centos:7"):
    blobs = [rpm_header(n, v, r, epoch=e, sourcerpm=s) for n, v, r, e, s in packages]
    img = ImageBuilder()
    img.layer({"etc/os-release": File(CENTOS7.encode()), "var/lib/rpm/Packages": File(bdb_file(blobs))},
              created_by="ADD centos-7-rootfs")
    img.write_oci_layout(tmp_path / "oci", ref=ref)
    return f"oci:{tmp_path / 'oci'}"


def test_centos7_image_gets_vulnerabilities_from_imported_red_hat_data(tmp_path, scan):
    doc = rhsa("RHSA-2020:5566", ["CVE-2020-1971"], "cpe:/o:redhat:enterprise_linux:7::server", "7Server-7.9.Z",
               "openssl-1:1.0.2k-21.el7_9.src",
               ["openssl-1:1.0.2k-21.el7_9.x86_64", "openssl-libs-1:1.0.2k-21.el7_9.x86_64"], "Important")
    other = rhsa("RHSA-2099:0002", ["CVE-2099-0002"], "cpe:/o:redhat:enterprise_linux:8::baseos", "BaseOS-8.9.0.Z.MAIN",
                 "zlib-0:1.2.11-99.el8.src", ["zlib-0:1.2.11-99.el8.x86_64"], "Critical")
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "rhsa-2020_5566.json").write_text(json.dumps(doc))
    (feed / "rhsa-2099_0002.json").write_text(json.dumps(other))
    source = _centos7(tmp_path, [
        ("openssl-libs", "1.0.2k", "19.el7", 1, "openssl-1.0.2k-19.el7.src.rpm"),   # older than the fix
        ("openssl", "1.0.2k", "21.el7_9", 1, "openssl-1.0.2k-21.el7_9.src.rpm"),     # at the fix
        ("zlib", "1.2.7", "18.el7", None, "zlib-1.2.7-18.el7.src.rpm"),              # only a RHEL 8 record names it
    ])
    from stowaway.ingest.db import connect
    database = connect(str(tmp_path / "scan.db"))
    import_paths(database, [str(feed)])
    database, outcomes = scan(source, risks=["vulnerabilities"])
    assert outcomes[0].status == "done", outcomes[0].error
    rep = report_of(database, "test/centos:7")
    assert (rep["image"]["os"]["family"], rep["image"]["os"]["version"]) == ("centos", "7")
    got = [(v["id"], v["package"]["name"], v["package"]["version"], v["fixed_version"], v["severity"])
           for v in rep["vulnerabilities"]]
    assert got == [("CVE-2020-1971", "openssl-libs", "1:1.0.2k-19.el7", "1:1.0.2k-21.el7_9", "high")]
    hit = rep["vulnerabilities"][0]
    assert hit["matched_by"][0]["record"] == "RHSA-2020:5566"
    assert hit["matched_by"][0]["ecosystem"] == "Red Hat:enterprise_linux:7"
    assert [(c["ecosystem"], c["checked"]) for c in rep["coverage"]["vulnerabilities"]] == [("Red Hat:7", True)]
    assert not any("not checked" in w for w in rep["scan"]["warnings"])


@real
def test_centos7_image_against_the_real_red_hat_vex(tmp_path, scan):
    source = _centos7(tmp_path, [("pam", "1.1.8", "23.el7", None, "pam-1.1.8-23.el7.src.rpm")])
    from stowaway.ingest.db import connect
    database = connect(str(tmp_path / "scan.db"))
    import_paths(database, [str(ADVISORIES / "redhat" / "csaf-vex")])
    database, outcomes = scan(source, risks=["vulnerabilities"])
    rep = report_of(database, "test/centos:7")
    # Red Hat will not fix CVE-2024-10041 in RHEL 7: affected, no fixed version, Red Hat's 'Moderate'
    assert [(v["id"], v["package"]["name"], v["fixed_version"], v["severity"]) for v in rep["vulnerabilities"]] == \
        [("CVE-2024-10041", "pam", None, "medium")]


def test_euleros_image_says_why_it_is_not_checked(tmp_path, scan):
    img = ImageBuilder()
    blobs = [rpm_header("openssl-libs", "1.1.1f", "15.h36.eulerosv2r10", epoch=1,
                        sourcerpm="openssl-1.1.1f-15.h36.eulerosv2r10.src.rpm")]
    img.layer({"etc/os-release": File(b'NAME="EulerOS"\nVERSION="2.0 (SP10x86_64)"\nID="euleros"\nVERSION_ID="2.0"\n'),
               "var/lib/rpm/Packages": File(bdb_file(blobs))}, created_by="ADD euleros")
    img.write_oci_layout(tmp_path / "oci", ref="test/euleros:2.0sp10")
    from stowaway.ingest.db import connect
    database = connect(str(tmp_path / "scan.db"))
    (tmp_path / "f.json").write_text(json.dumps(rhsa(
        "RHSA-2020:5566", ["CVE-2020-1971"], "cpe:/o:redhat:enterprise_linux:7::server", "7Server-7.9.Z",
        "openssl-1:1.0.2k-21.el7_9.src", ["openssl-libs-1:1.0.2k-21.el7_9.x86_64"], "Important")))
    import_paths(database, [str(tmp_path / "f.json")])
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", risks=["vulnerabilities"])
    rep = report_of(database, "test/euleros:2.0sp10")
    assert rep["vulnerabilities"] == []
    assert any("1 OS packages not checked: no EulerOS 2.0-SP10 advisories (Huawei publishes" in w
               for w in rep["scan"]["warnings"]), rep["scan"]["warnings"]
    cov = rep["coverage"]["vulnerabilities"]
    assert [(c["packages"], c["checked"]) for c in cov] == [(1, False)], cov
    assert cov[0]["reason"].startswith("not checked: no EulerOS 2.0-SP10 advisories (Huawei publishes")


# --- end to end: SUSE, openEuler, Kylin ----------------------------------------------------------------

SAMPLES = SHARED / "samples"


@pytest.mark.skipif(not (SAMPLES / "rpmdb" / "sle15-bci").is_dir(), reason="../shared/samples not present")
def test_sles_15_sp3_sample_against_suse_cvrf(tmp_path, scan):
    """The real SLES 15 SP3 BCI rpm database (libz1 1.2.11-150000.3.36.1 from source zlib) against a CVRF
    built in code in SUSE's format: the binaries it names are zlib-devel and libz1, the title names zlib."""
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "cvrf-suse-su-2099-0001-1.xml").write_text(suse_cvrf(
        "SUSE-SU-2099:0001-1", "Security update for zlib",
        ["SUSE Linux Enterprise Server 15 SP3", "SUSE Linux Enterprise Module for Basic System 15 SP3",
         "SUSE Linux Enterprise Server 12 SP5"],
        ["zlib-devel-1.2.11-150000.3.40.1", "libz1-1.2.11-150000.3.40.1"], "CVE-2099-3000", "moderate"))
    img = ImageBuilder()
    img.layer({"etc/os-release": File((SAMPLES / "os-release/sles-15.3/os-release").read_bytes()),
               "var/lib/rpm/Packages.db": File((SAMPLES / "rpmdb/sle15-bci/Packages.db").read_bytes())},
              created_by="ADD sles")
    img.write_oci_layout(tmp_path / "oci", ref="sample/sles:15.3")
    from stowaway.ingest.db import connect
    import_paths(connect(str(tmp_path / "scan.db")), [str(feed)])
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", risks=["vulnerabilities"])
    rep = report_of(database, "sample/sles:15.3")
    assert (rep["image"]["os"]["family"], rep["image"]["os"]["version"]) == ("sles", "15.3")
    assert [(v["id"], v["package"]["name"], v["fixed_version"], v["severity"]) for v in rep["vulnerabilities"]] == \
        [("CVE-2099-3000", "libz1", "1.2.11-150000.3.40.1", "medium")]


def _rpm_image(tmp_path, os_release: str, packages, ref: str):
    from ospkg_harness import sqlite_file

    blobs = [rpm_header(n, v, r, epoch=e, sourcerpm=s) for n, v, r, e, s in packages]
    img = ImageBuilder()
    img.layer({"etc/os-release": File(os_release.encode()), "var/lib/rpm/rpmdb.sqlite": File(sqlite_file(blobs))},
              created_by="ADD rootfs")
    img.write_oci_layout(tmp_path / "oci", ref=ref)
    return f"oci:{tmp_path / 'oci'}"


def test_openeuler_22_03_sp3_image_against_openeuler_cvrf(tmp_path, scan):
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "cvrf-openEuler-SA-2024-1200.xml").write_text(openeuler_cvrf(
        "openEuler-SA-2024-1200", "22.03-LTS-SP3", "openssl-1.1.1m-30.oe2203sp3.src.rpm", {"CVE-2024-0727": "Low"}))
    (feed / "cvrf-openEuler-SA-2024-1201.xml").write_text(openeuler_cvrf(
        "openEuler-SA-2024-1201", "22.03-LTS-SP1", "zlib-1.2.11-99.oe2203sp1.src.rpm", {"CVE-2099-0003": "High"}))
    source = _rpm_image(tmp_path, 'NAME="openEuler"\nVERSION="22.03 (LTS-SP3)"\nID="openEuler"\nVERSION_ID="22.03"\n',
                        [("openssl-libs", "1.1.1m", "22.oe2203sp3", 1, "openssl-1.1.1m-22.oe2203sp3.src.rpm"),
                         ("zlib", "1.2.11", "23.oe2203sp3", None, "zlib-1.2.11-23.oe2203sp3.src.rpm")],
                        "test/openeuler:22.03-lts-sp3")
    from stowaway.ingest.db import connect
    import_paths(connect(str(tmp_path / "scan.db")), [str(feed)])
    database, outcomes = scan(source, risks=["vulnerabilities"])
    rep = report_of(database, "test/openeuler:22.03-lts-sp3")
    # openEuler's versions come from source rpm file names, without the epoch openssl carries (1:); the
    # SP1 record does not reach an SP3 image
    assert [(v["id"], v["package"]["name"], v["package"]["version"], v["fixed_version"], v["severity"])
            for v in rep["vulnerabilities"]] == \
        [("CVE-2024-0727", "openssl-libs", "1:1.1.1m-22.oe2203sp3", "1.1.1m-30.oe2203sp3", "low")]


def test_kylin_image_says_no_public_feed(tmp_path, scan):
    source = _rpm_image(tmp_path, 'NAME="Kylin Linux Advanced Server"\nVERSION="V10 (Sword)"\nID="kylin"\n'
                        'VERSION_ID="V10"\n', [("openssl-libs", "1.1.1f", "15.ky10", 1, "openssl-1.1.1f-15.ky10.src.rpm")],
                        "test/kylin:v10sp2")
    database, outcomes = scan(source, risks=["vulnerabilities"])
    rep = report_of(database, "test/kylin:v10sp2")
    assert rep["vulnerabilities"] == []
    assert any("1 OS packages not checked: no Kylin V10-SP2 advisories (KylinSoft publishes" in w
               for w in rep["scan"]["warnings"]), rep["scan"]["warnings"]
    cov = rep["coverage"]["vulnerabilities"]
    assert [(c["packages"], c["checked"]) for c in cov] == [(1, False)], cov
    assert cov[0]["reason"].startswith("not checked: no Kylin V10-SP2 advisories (KylinSoft publishes")


# --- hostile vendor files: one counted warning each, never a traceback, the rest imported ------------

def test_hostile_vendor_files_cost_only_themselves(db, tmp_path, monkeypatch):
    import bz2
    import gzip

    good = rhsa("RHSA-2020:5566", ["CVE-2020-1971"], "cpe:/o:redhat:enterprise_linux:7::server", "7Server-7.9.Z",
                "openssl-1:1.0.2k-21.el7_9.src", ["openssl-libs-1:1.0.2k-21.el7_9.x86_64"], "Important")
    (tmp_path / "good.json").write_text(json.dumps(good))
    shapes = dict(good, vulnerabilities=[{"cve": "CVE-1", "product_status": {"fixed": 7},
                                          "remediations": [{"category": "vendor_fix", "product_ids": 3}]}])
    (tmp_path / "shapes.json").write_text(json.dumps(shapes))
    nested = '{"document": {"category": "csaf_vex"}, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (tmp_path / "nested.json").write_text(nested)
    laughs = ('<?xml version="1.0"?><!DOCTYPE cvrfdoc [<!ENTITY a "aaaaaaaaaa">'
              + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
              + ']><cvrfdoc><DocumentTitle>&j;</DocumentTitle></cvrfdoc>')
    (tmp_path / "laughs.xml").write_text(laughs)
    monkeypatch.setattr(feeds, "MAX_DOCUMENT", 1 << 20)
    from stowaway.analyzers.vulnerabilities.feeds import cvrf
    monkeypatch.setattr(cvrf, "MAX_DOCUMENT", 1 << 20)
    with gzip.open(tmp_path / "bomb.xml.gz", "wb") as fh:  # 2 MB of XML behind a few KB, over the 1 MB cap
        fh.write(b"<?xml version='1.0'?><cvrfdoc>" + b" " * (2 << 20) + b"</cvrfdoc>")
    (tmp_path / "trunc.xml.bz2").write_bytes(bz2.compress(b"<?xml version='1.0'?><cvrfdoc><Doc")[:20])
    result = import_paths(db, [str(tmp_path)])
    assert _rows(db, "RHSA-2020:5566"), "the good file is imported beside the bad ones"
    assert result.warnings["malformed redhat-csaf file"] == 1  # shapes.json
    assert result.warnings["unreadable redhat-csaf file"] == 1  # nested.json
    assert result.warnings["unreadable cvrf file"] == 2, result.warnings  # laughs (expat refuses), bomb (capped)
    assert result.warnings["unreadable file"] == 1  # the truncated .bz2 cannot even be sniffed
    assert any("more than 1 MB uncompressed" in e for e in result.examples)


@real
def test_ubuntu_22_04_image_against_real_ubuntu_osv_and_usn(tmp_path, scan):
    status = "".join(
        f"Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nSource: {src}\nVersion: {ver}\n\n"
        for name, src, ver in (("libwayland-client0", "wayland", "1.20.0-1"),
                               ("libnetty-java", "netty", "1:4.1.48-4+deb11u1")))
    img = ImageBuilder()
    img.layer({"etc/os-release": File((SAMPLES / "os-release/ubuntu-22.04/os-release").read_bytes()),
               "var/lib/dpkg/status": File(status.encode())}, created_by="ADD ubuntu")
    img.write_oci_layout(tmp_path / "oci", ref="sample/ubuntu:22.04")
    from stowaway.ingest.db import connect
    import_paths(connect(str(tmp_path / "scan.db")), [str(ADVISORIES / "ubuntu" / "osv")])
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", risks=["vulnerabilities"])
    rep = report_of(database, "sample/ubuntu:22.04")
    # netty's fixes for 22.04 are Ubuntu Pro (ESM) only: a plain image is not matched against them
    assert [(v["id"], v["package"]["name"], v["fixed_version"], v["severity"]) for v in rep["vulnerabilities"]] == \
        [("CVE-2021-3782", "libwayland-client0", "1.20.0-1ubuntu0.1", "medium")]
    assert {m["record"] for m in rep["vulnerabilities"][0]["matched_by"]} == {"UBUNTU-CVE-2021-3782", "USN-5614-1"}


def test_red_hat_module_stream_components_are_keyed_by_package_name(db, tmp_path):
    """RHEL 8 module builds name their components with the stream ('nodejs:18:…:nodejs-1:18.16.1-…') and
    carry an rpm purl with the epoch as a qualifier; either gives the package name and epoch:version."""
    stream = "nodejs:18:8080020230613094537:63b34585"
    src = f"{stream}:nodejs-1:18.16.1-1.module+el8.8.0+19049+1ac5a4c1.src"
    binary = f"{stream}:nodejs-1:18.16.1-1.module+el8.8.0+19049+1ac5a4c1.x86_64"
    doc = rhsa("RHSA-2023:4537", ["CVE-2023-30581"], "cpe:/a:redhat:enterprise_linux:8::appstream",
               "AppStream-8.8.0.Z.MAIN", src, [binary], "Important")
    (tmp_path / "plain.json").write_text(json.dumps(doc))
    with_purls = json.loads(json.dumps(doc).replace("RHSA-2023:4537", "RHSA-2023:4538"))
    for product in with_purls["product_tree"]["branches"][0]["branches"][1]["branches"]:
        arch = product["name"].rsplit(".", 1)[1]
        product["product"]["product_identification_helper"] = {
            "purl": f"pkg:rpm/redhat/nodejs@18.16.1-1.module%2Bel8.8.0%2B19049%2B1ac5a4c1?arch={arch}&epoch=1"
                    f"&rpmmod={stream}"}
    (tmp_path / "purls.json").write_text(json.dumps(with_purls))
    import_paths(db, [str(tmp_path)])
    for rid in ("RHSA-2023:4537", "RHSA-2023:4538"):
        assert [(r, n, _fixed(rg)) for _e, r, n, rg, _s in _rows(db, rid)] == \
            [("8", "nodejs", "1:18.16.1-1.module+el8.8.0+19049+1ac5a4c1")], rid


@real
def test_oval_is_recognised_and_refused_with_a_reason(db):
    result = import_paths(db, [str(ADVISORIES / "redhat" / "oval"), str(ADVISORIES / "suse" / "oval")])
    assert result.warnings["unreadable oval file"] == 3 and result.inserted == 0
    assert any("OVAL is not read" in e and "CSAF" in e for e in result.examples)
