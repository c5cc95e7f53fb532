"""Binary -> source package mapping on real package databases (../shared/samples) scanned through the real
inventory, matched against real vendor advisories (../shared/feeds/os-advisories) or, where no sample
advisory covers a sample distribution, against a record written here in OSV form."""
import pytest
from conftest import SHARED, report_of
from imagebuilder import File, ImageBuilder
from osv_fixtures import osv

from stowaway.analyzers.vulnerabilities.ecosystems import image_release, package_target, split_ecosystem
from stowaway.analyzers.vulnerabilities.importer import import_paths, import_records
from stowaway.ingest.db import connect

SAMPLES = SHARED / "samples"
ADVISORIES = SHARED / "feeds" / "os-advisories"
samples = pytest.mark.skipif(not SAMPLES.is_dir() or not ADVISORIES.is_dir(), reason="../shared samples not present")


def _image(tmp_path, files, ref):
    img = ImageBuilder()
    img.layer({k: File(v) for k, v in files.items()}, created_by="ADD rootfs")
    img.write_oci_layout(tmp_path / "oci", ref=ref)


def _scan(tmp_path, scan, files, ref, records=(), paths=()):
    _image(tmp_path, files, ref)
    database = connect(str(tmp_path / "scan.db"))
    if records:
        import_records(database, list(records))
    if paths:
        import_paths(database, [str(p) for p in paths])
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", risks=["vulnerabilities"])
    assert outcomes[0].status == "done", outcomes[0].error
    return report_of(database, ref)


@samples
def test_alpine_sample_against_the_alpine_osv_sample(tmp_path, scan):
    rep = _scan(tmp_path, scan, {"etc/os-release": (SAMPLES / "os-release/alpine-3.18/os-release").read_bytes(),
                                 "lib/apk/db/installed": (SAMPLES / "apk/alpine-3.18/installed").read_bytes()},
                "sample/alpine:3.18", paths=[ADVISORIES / "alpine" / "osv"])
    assert rep["image"]["os"]["version"] == "3.18"
    musl = [v for v in rep["vulnerabilities"] if v["id"] == "CVE-2025-26519"]
    # the record names the origin package 'musl'; every binary built from it is reported
    assert {v["package"]["name"] for v in musl} >= {"musl"}
    hit = next(v for v in musl if v["package"]["name"] == "musl")
    assert hit["package"]["version"] == "1.2.4-r0" and hit["fixed_version"] == "1.2.4-r3"
    assert hit["matched_by"][0]["ecosystem"] == "Alpine:v3.18"
    assert "ALPINE-CVE-2025-26519" in hit["aliases"]


@samples
def test_debian_sample_maps_binaries_to_their_source(tmp_path, scan):
    util = osv("DEBIAN-CVE-2099-1000", "Debian:12", "util-linux",
               [{"introduced": "0"}, {"fixed": "2.38.1-5+deb12u4"}], aliases=["CVE-2099-1000"])
    binary_named = osv("DEBIAN-CVE-2099-1001", "Debian:12", "libblkid1", [{"introduced": "0"}], aliases=["CVE-2099-1001"])
    rep = _scan(tmp_path, scan, {"etc/os-release": (SAMPLES / "os-release/debian-12/os-release").read_bytes(),
                                 "var/lib/dpkg/status": (SAMPLES / "dpkg/debian-12-bookworm-minbase/status").read_bytes()},
                "sample/debian:12", records=[util, binary_named],
                paths=[ADVISORIES / "debian" / "osv", ADVISORIES / "debian" / "security-tracker"])
    hits = {v["package"]["name"] for v in rep["vulnerabilities"] if v["id"] == "CVE-2099-1000"}
    software = {s["name"]: s for s in rep["software"]}
    built_from_util_linux = {n for n, s in software.items() if s["source_name"] == "util-linux"}
    assert "libblkid1" in built_from_util_linux and hits == built_from_util_linux
    # advisories name source packages: a record keyed by a binary name matches nothing
    assert not any(v["id"] == "CVE-2099-1001" for v in rep["vulnerabilities"])
    # the sample advisories are for Debian 7 and 9 and for packages this image lacks: nothing else matches
    assert {v["id"] for v in rep["vulnerabilities"]} == {"CVE-2099-1000"}


@samples
def test_rhel_sample_matches_red_hat_records_on_the_source_rpm(tmp_path, scan):
    rec = osv("RHSA-2099:0001", "Red Hat:enterprise_linux:8::baseos", "util-linux",
              [{"introduced": "0"}, {"fixed": "0:2.32.1-43.el8"}], aliases=["CVE-2099-2000"])
    other_release = osv("RHSA-2099:0002", "Red Hat:enterprise_linux:9::baseos", "util-linux",
                        [{"introduced": "0"}], aliases=["CVE-2099-2001"])
    rep = _scan(tmp_path, scan, {"etc/os-release": (SAMPLES / "os-release/rhel-8/os-release").read_bytes(),
                                 "var/lib/rpm/Packages": (SAMPLES / "rpmdb/rhel8-libuuid/Packages").read_bytes()},
                "sample/rhel:8", records=[rec, other_release])
    assert [(v["id"], v["package"]["name"], v["fixed_version"]) for v in rep["vulnerabilities"]] == \
        [("CVE-2099-2000", "libuuid", "0:2.32.1-43.el8")]


def test_ecosystem_strings_of_every_vendor():
    table = {
        "Debian:11": ("Debian", "11"), "Debian:bookworm": ("Debian", "12"), "Ubuntu:22.04:LTS": ("Ubuntu", "22.04"),
        "Ubuntu:Pro:14.04:LTS": ("Ubuntu", "pro:14.04"), "Ubuntu:25.10": ("Ubuntu", "25.10"),
        "Alpine:v3.18": ("Alpine", "3.18"), "openEuler:22.03-LTS-SP1": ("openEuler", "22.03-LTS-SP1"),
        "Red Hat:enterprise_linux:8::appstream": ("Red Hat", "8"), "Red Hat:rhel_aus:8.4::appstream": ("Red Hat", "8"),
        "Rocky Linux:9": ("Rocky Linux", "9"), "AlmaLinux:8": ("AlmaLinux", "8"),
        "SUSE:Linux Enterprise Server 15 SP3": ("SUSE", "15.3"), "SUSE:Linux Enterprise Server 12": ("SUSE", "12"),
        "openSUSE:Leap 15.5": ("openSUSE", "15.5"), "openSUSE:Tumbleweed": ("openSUSE", "tumbleweed"),
        "Mariner:2.0": ("Mariner", "2.0"), "PyPI": ("PyPI", ""), "Maven": ("Maven", ""),
    }
    for text, want in table.items():
        assert split_ecosystem(text) == want, text
    images = {("debian", "11"): ("Debian", "11"), ("ubuntu", "22.04"): ("Ubuntu", "22.04"),
              ("alpine", "3.18"): ("Alpine", "3.18"), ("openeuler", "22.03-LTS-SP1"): ("openEuler", "22.03-LTS-SP1"),
              ("rhel", "8.9"): ("Red Hat", "8"), ("centos", "7"): ("Red Hat", "7"), ("sles", "15.3"): ("SUSE", "15.3"),
              ("opensuse", "15.5"): ("openSUSE", "15.5"), ("rocky", "9.3"): ("Rocky Linux", "9")}
    for (family, version), want in images.items():
        assert image_release(family, version) == want
    # EulerOS and HCE are keyed (records in OSV form match) though Huawei publishes no feed: feeds/status.py
    assert image_release("euleros", "2.0-SP10") == ("EulerOS", "2.0-SP10") and image_release("debian", "") is None


def test_package_targets():
    deb = ("Debian", "11")
    assert package_target("deb", "libssl1.1", "1.1.1n-0+deb11u3", "openssl", "1.1.1n-0+deb11u3", deb) == \
        ("Debian", "11", "openssl", "1.1.1n-0+deb11u3")
    # a binNMU: the binary's version has +b1, the source's does not
    assert package_target("deb", "libfoo1", "1.0-1+b1", "foo", "1.0-1", deb)[2:] == ("foo", "1.0-1")
    # a deb on an rpm distribution is not matched at all, nor an OS package without a known distribution
    assert package_target("deb", "x", "1", "", "", ("Red Hat", "8")) is None
    assert package_target("rpm", "x", "1-1", "", "", None) is None
    # the source rpm's file name has no epoch: it takes the binary's
    assert package_target("rpm", "openssl-libs", "1:3.0.8-1.amzn2023.0.4", "openssl", "3.0.8-1.amzn2023.0.4",
                          ("Rocky Linux", "9"))[3] == "1:3.0.8-1.amzn2023.0.4"
    assert package_target("pypi", "Jinja2", "2.10", "", "", deb) == ("PyPI", "", "jinja2", "2.10")
    assert package_target("maven", "Org.Foo:Bar", "1.0", "", "", deb) == ("Maven", "", "org.foo:bar", "1.0")
    assert package_target("go", "stdlib", "go1.20.3", "", "", deb) == ("Go", "", "stdlib", "1.20.3")
    assert package_target("go", "stdlib", "go1.21rc2", "", "", deb)[3] == "1.21.0-rc.2"
    assert package_target("go", "stdlib", "go1.22", "", "", deb)[3] == "1.22.0"
    assert package_target("go", "golang.org/x/net", "v0.17.0", "", "", deb) == ("Go", "", "golang.org/x/net", "0.17.0")
    assert package_target("unknown-eco", "x", "1", "", "", deb) is None
