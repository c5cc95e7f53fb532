"""dpkg: real status files against dpkg-query, distroless status.d, layer attribution, file ownership,
licences, bad input, and the corpus image from both of its layouts."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time

import pytest
from conftest import CORPUS, SHARED, corpus, report_of
from imagebuilder import ImageBuilder, Symlink
from ospkg_harness import inspect
from packageurl import PackageURL

from stowaway.analyzers.inventory.dpkg import parse_status

SAMPLES = SHARED / "samples" / "dpkg"
samples = pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\nVERSION="11 (bullseye)"\n'


def stanza(name, version, arch="amd64", status="install ok installed", source=None, extra=""):
    lines = [f"Package: {name}", f"Status: {status}" if status else "", "Priority: optional",
             f"Architecture: {arch}", f"Source: {source}" if source else "", f"Version: {version}",
             "Description: a test package", " with a continuation line", " .", " and more", extra]
    return "\n".join(line for line in lines if line) + "\n"


def status(*stanzas):
    return "\n".join(stanzas)


@samples
@pytest.mark.parametrize("sample", ["debian-12-bookworm-minbase", "ubuntu-18.04", "ubuntu-18.04-texlive"])
def test_each_sample_yields_exactly_what_dpkg_query_lists(sample):
    text = (SAMPLES / sample / "status").read_text(encoding="utf-8", errors="replace")
    packages, warnings = parse_status(text)
    rows = list(csv.DictReader((SAMPLES / sample / "dpkg-query.expected.tsv").open(encoding="utf-8"), delimiter="\t"))
    # dpkg-query -W lists removed packages whose conffiles remain ('rc'); they are not installed
    want = {(r["package"], r["version"], r["architecture"], r["source"]) for r in rows if r["status"][1] not in "nc"}
    assert warnings == []
    assert {(p["name"], p["version"], p["arch"], p["source"]) for p in packages} == want
    assert len(packages) == len(want)


@samples
def test_config_files_only_package_is_not_installed():
    packages, _ = parse_status((SAMPLES / "ubuntu-18.04" / "status").read_text())
    assert "git" not in {p["name"] for p in packages}
    assert "Package: git\n" in (SAMPLES / "ubuntu-18.04" / "status").read_text()


@samples
def test_source_with_its_own_version():
    packages, _ = parse_status((SAMPLES / "debian-10-postgresql" / "status").read_text())
    pg = {p["name"]: p for p in packages}["postgresql-client"]
    assert (pg["version"], pg["source"], pg["source_version"]) == ("11+200+deb10u5", "postgresql-common", "200+deb10u5")
    keyring, _ = parse_status((SAMPLES / "debian-10-archive-keyring" / "status").read_text())
    assert [(p["name"], p["version"]) for p in keyring] == [("debian-archive-keyring", "2019.1")]


@samples
def test_distroless_status_d_with_md5sums():
    d = SAMPLES / "distroless-status.d"
    layer = {f"var/lib/dpkg/status.d/{f.name}": f.read_bytes() for f in d.iterdir()}
    layer["etc/os-release"] = (SHARED / "samples" / "os-release" / "distroless-debian-11" / "os-release").read_bytes()
    got = inspect([layer])
    pkgs = got.by_name("deb")
    assert set(pkgs) == {"dash", "libsqlite3-0", "netbase"}
    assert pkgs["dash"].version == "0.5.8-2.4" and pkgs["dash"].path == "/var/lib/dpkg/status.d/dash"
    assert pkgs["dash"].purl == "pkg:deb/debian/dash@0.5.8-2.4?arch=amd64&distro=debian-11"
    assert "/usr/lib/aarch64-linux-gnu/libsqlite3.so.0.8.6" in got.ctx.owned_files
    assert got.ctx.warnings == []


def test_layer_is_where_the_version_first_appeared():
    layer0 = {
        "etc/os-release": DEBIAN,
        "var/lib/dpkg/status": status(stanza("libc6", "2.31-13"), stanza("bsdutils", "1:2.36.1-8", source="util-linux"),
                                      stanza("old", "1.0")),
    }
    layer1 = {"var/lib/dpkg/status": status(stanza("libc6", "2.31-13"), stanza("bsdutils", "1:2.36.1-8+deb11u2",
                                                                                source="util-linux (2.36.1-8+deb11u2)"),
                                            stanza("nmap", "7.91+dfsg1+really7.80+dfsg1-2"))}
    layer2 = {"etc/motd": "no database change here"}
    layer3 = {"var/lib/dpkg/status": layer1["var/lib/dpkg/status"] + "\n" + stanza("curl", "7.74.0-1.3+deb11u7")}
    got = inspect([layer0, layer1, layer2, layer3]).by_name("deb")
    assert {n: (p.version, p.layer_index) for n, p in got.items()} == {
        "libc6": ("2.31-13", 0), "bsdutils": ("1:2.36.1-8+deb11u2", 1), "nmap": ("7.91+dfsg1+really7.80+dfsg1-2", 1),
        "curl": ("7.74.0-1.3+deb11u7", 3)}
    b = got["bsdutils"]
    assert (b.source_name, b.source_version, b.path) == ("util-linux", "2.36.1-8+deb11u2", "/var/lib/dpkg/status")
    assert b.purl == ("pkg:deb/debian/bsdutils@1:2.36.1-8%2Bdeb11u2?arch=amd64&distro=debian-11"
                      "&upstream=util-linux%402.36.1-8%2Bdeb11u2")


def test_removed_then_reinstalled_package_belongs_to_the_reinstalling_layer():
    pkg = stanza("nmap", "7.80-1")
    got = inspect([{"var/lib/dpkg/status": pkg}, {"var/lib/dpkg/status": stanza("bash", "5.1-2")},
                   {"var/lib/dpkg/status": status(stanza("bash", "5.1-2"), pkg)}]).by_name("deb")
    assert got["nmap"].layer_index == 2 and got["bash"].layer_index == 1


def test_deleted_status_file_means_no_packages():
    got = inspect([{"var/lib/dpkg/status": stanza("bash", "5.1-2")}, {"var/lib/dpkg/.wh.status": b""}])
    assert got.packages == []


def test_statuses_that_mean_not_installed():
    text = status(stanza("a", "1", status="deinstall ok config-files"), stanza("b", "1", status="purge ok not-installed"),
                  stanza("c", "1", status="install ok unpacked"), stanza("d", "1", status="install ok half-configured"),
                  stanza("e", "1", status="hold ok installed"))
    assert [p["name"] for p in parse_status(text)[0]] == ["c", "d", "e"]


def test_owned_files_from_lists_and_md5sums_of_the_final_image():
    got = inspect([
        {"var/lib/dpkg/status": status(stanza("bash", "5.1-2"), stanza("libc6", "2.31-13")),
         "var/lib/dpkg/info/bash.list": "/.\n/bin\n/bin/bash\n/usr/share/doc/bash\n",
         "var/lib/dpkg/info/libc6:amd64.md5sums": "0123456789abcdef0123456789abcdef  lib/x86_64-linux-gnu/libc.so.6\n",
         "var/lib/dpkg/info/gone.list": "/usr/bin/gone\n"},
        {"var/lib/dpkg/info/.wh.gone.list": b""},
    ], names=("dpkg",))
    assert {"/bin/bash", "/lib/x86_64-linux-gnu/libc.so.6"} <= got.ctx.owned_files
    assert "/usr/bin/gone" not in got.ctx.owned_files and "/." not in got.ctx.owned_files


def test_licences_from_machine_readable_copyright_files():
    dep5 = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\n"
            "Copyright: 2020 Someone\nLicense: GPL-2+\n\nFiles: debian/*\nLicense: BSD-3-clause\n text\n\n"
            "License: GPL-2+\n full text\n")
    got = inspect([{"var/lib/dpkg/status": status(stanza("nmap", "7.80-1"), stanza("bash", "5.1-2"),
                                                   stanza("libfoo-dev", "1.0")),
                    "usr/share/doc/nmap/copyright": dep5,
                    "usr/share/doc/bash/copyright": "This is Debian's prepackaged version of bash. GPL.\n",
                    "usr/share/doc/libfoo1/copyright": "Format: x\n\nFiles: *\nLicense: MIT\n"},
                   {"usr/share/doc/libfoo-dev": Symlink("libfoo1")}],
                  names=("dpkg",)).by_name("deb")
    assert got["nmap"].licenses == ("GPL-2+", "BSD-3-clause")
    assert got["bash"].licenses == ()
    assert got["libfoo-dev"].licenses == ("MIT",)


def test_malformed_status_is_a_warning_and_the_rest_is_intact(scan, tmp_path):
    broken = status(stanza("bash", "5.1-2"), "Package: noversion\nStatus: install ok installed\n",
                    "this line is junk\nPackage: tar\nVersion: 1.34-1\nArchitecture: amd64\n",
                    "\x00\xff\xfe garbage \x01\n", stanza("curl", "7.74.0-1"))
    img = ImageBuilder().layer({"etc/os-release": DEBIAN, "var/lib/dpkg/status": broken.encode("utf-8", "surrogateescape")})
    db, (outcome,) = scan(f"oci:{img.write_oci_layout(tmp_path / 'o', ref='t/broken:1')}")
    assert outcome.status == "done"
    names = {s["name"] for s in report_of(db, "t/broken:1")["software"]}
    assert names == {"bash", "tar", "curl"}
    assert any("dpkg" in w and "noversion" in w for w in outcome.warnings)
    assert any("dpkg" in w and "malformed" in w for w in outcome.warnings)


def test_binary_junk_as_status_does_not_crash(scan, tmp_path):
    img = ImageBuilder().layer({"var/lib/dpkg/status": bytes(range(256)) * 100})
    db, (outcome,) = scan(f"oci:{img.write_oci_layout(tmp_path / 'o', ref='t/junk:1')}")
    assert outcome.status == "done"
    assert report_of(db, "t/junk:1")["software"] == []


@samples
def test_a_large_status_parses():
    text = (SAMPLES / "ubuntu-18.04-texlive" / "status").read_text()
    t0 = time.perf_counter()
    packages, _ = parse_status(text)
    seconds = time.perf_counter() - t0
    assert len(packages) == 357, f"{seconds:.3f}s"


def _corpus_expected():
    return json.loads((CORPUS / "expected.json").read_text())["images"]["corpus/shop:1.0"]


@corpus
@pytest.mark.parametrize("source", ["docker-archive:{c}/shop-1.0.docker.tar.gz", "oci:{c}/oci:corpus/shop:1.0"])
def test_corpus_shop_every_dpkg_package_with_its_layer(scan, tmp_path, source):
    db, outcomes = scan(source.format(c=CORPUS), risks=["software"])
    assert [o.status for o in outcomes] == ["done"]
    report = report_of(db, "corpus/shop:1.0")
    debs = {(s["name"], s["version"]): s for s in report["software"] if s["ecosystem"] == "deb"}
    expected = _corpus_expected()
    want = {(p["name"], p["version"]) for p in expected["os_packages"]}
    assert len(want) == 134 and set(debs) == want
    for forbidden in expected["forbidden_software_installed"]:
        if "layer_index" in forbidden:
            assert debs[(forbidden["name"], forbidden["version"])]["layer_index"] == forbidden["layer_index"]
    assert debs[("bash", "5.1-2+deb11u1")]["layer_index"] == 0
    for s in debs.values():
        purl = PackageURL.from_string(s["purl"])
        assert (purl.type, purl.namespace, purl.name, purl.version, purl.qualifiers["distro"]) == \
            ("deb", "debian", s["name"], s["version"], "debian-11")
        assert s["path"] == "/var/lib/dpkg/status"
    out = tmp_path / "r.json"
    out.write_text(json.dumps(report))
    check = subprocess.run([sys.executable, str(CORPUS / "check_report.py"), str(out), "--only", "os"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
