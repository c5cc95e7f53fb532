"""rpm databases in all three formats: real samples against rpm's own listing, databases built in code
for layer attribution, ownership, damaged headers and speed."""
from __future__ import annotations

import csv
import json
import time

import pytest
from conftest import SHARED, report_of
from imagebuilder import ImageBuilder
from ospkg_harness import bdb_file, inspect, ndb_file, rpm_header, sqlite_file

from stowaway.analyzers.inventory.rpm import evr, split_source_rpm
from stowaway.analyzers.inventory.rpmdb import RpmDBError, header, read_packages

SAMPLES = SHARED / "samples" / "rpmdb"
samples = pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
DATABASES = {"rhel8-libuuid": "Packages", "sle15-bci": "Packages.db", "amazonlinux2023-plain": "rpmdb.sqlite",
             "cbl-mariner-2.0": "rpmdb.sqlite"}
OS_RELEASE = 'NAME="Rocky Linux"\nID="rocky"\nVERSION_ID="9.3"\nVERSION="9.3 (Blue Onyx)"\n'


def _none(value: str) -> str:
    return "" if value == "(none)" else value  # rpm -qa prints a missing tag as '(none)'


def expected_rows(sample: str) -> set[tuple]:
    """(name, epoch, version, release, arch, sourcerpm) from the listings beside each sample."""
    rows: set[tuple] = set()
    tsv = SAMPLES / sample / "rpm-qa.expected.tsv"
    if tsv.exists():
        for r in csv.DictReader(tsv.open(encoding="utf-8"), delimiter="\t"):
            rows.add((r["name"], _none(r["epoch"]), r["version"], r["release"], _none(r["arch"]), _none(r["sourcerpm"])))
    packages_csv = SAMPLES / sample / "packages.csv"
    if packages_csv.exists():  # EPOCH¶NAME¶VERSION¶RELEASE¶ARCH¶SOURCERPM¶...
        from_csv = set()
        for line in packages_csv.open(encoding="utf-8"):
            c = line.rstrip("\n").split("¶")
            from_csv.add((c[1], _none(c[0]), c[2], c[3], _none(c[4]), _none(c[5])))
        assert not rows or rows == from_csv, "the two listings of one sample disagree"
        rows = from_csv
    return rows


def as_rows(packages: list[dict]) -> set[tuple]:
    return {(p["name"], "" if p["epoch"] is None else str(p["epoch"]), p["version"], p["release"], p["arch"],
             p["sourcerpm"]) for p in packages}


@samples
@pytest.mark.parametrize("sample", sorted(DATABASES))
def test_each_sample_yields_exactly_rpms_own_package_list(sample):
    data = (SAMPLES / sample / DATABASES[sample]).read_bytes()
    fmt, packages, problems = read_packages(data)
    assert fmt == {"Packages": "bdb", "Packages.db": "ndb", "rpmdb.sqlite": "sqlite"}[DATABASES[sample]]
    assert problems == []
    want = expected_rows(sample)
    assert want and as_rows(packages) == want
    assert len(packages) == len(want)  # no duplicates hiding behind the set


@samples
def test_sle15_licences_and_vendor_match_rpm():
    data = (SAMPLES / "sle15-bci" / "Packages.db").read_bytes()
    got = {p["name"]: p for p in read_packages(data)[1]}
    for line in (SAMPLES / "sle15-bci" / "packages.csv").open(encoding="utf-8"):
        c = line.rstrip("\n").split("¶")
        assert (got[c[1]]["license"], got[c[1]]["vendor"], got[c[1]]["size"], got[c[1]]["sigmd5"]) == \
            (c[7], c[8], int(c[6]), c[10])


@samples
def test_mariner_curl_header_in_full():
    want = json.loads((SAMPLES / "cbl-mariner-2.0" / "curl.json").read_text())
    data = (SAMPLES / "cbl-mariner-2.0" / "rpmdb.sqlite").read_bytes()
    curl = next(p for p in read_packages(data)[1] if p["name"] == "curl")
    assert (curl["version"], curl["release"], curl["arch"], curl["sourcerpm"], curl["license"], curl["vendor"],
            curl["size"], curl["sigmd5"], curl["summary"]) == \
        (want["Version"], want["Release"], want["Arch"], want["SourceRpm"], want["License"], want["Vendor"],
         want["Size"], want["SigMD5"], want["Summary"])
    assert curl["files"] == [want["DirNames"][d] + b for d, b in zip(want["DirIndexes"], want["BaseNames"])]


@samples
def test_samples_in_an_image_become_packages_with_purls(tmp_path):
    data = (SAMPLES / "rhel8-libuuid" / "Packages").read_bytes()
    got = inspect([{"etc/os-release": 'ID="rhel"\nVERSION_ID="8.8"\n', "var/lib/rpm/Packages": data}])
    (p,) = got.packages
    assert (p.ecosystem, p.name, p.version, p.arch, p.source_name, p.source_version, p.path, p.layer_index) == \
        ("rpm", "libuuid", "2.32.1-42.el8_8", "x86_64", "util-linux", "2.32.1-42.el8_8", "/var/lib/rpm/Packages", 0)
    assert p.purl == ("pkg:rpm/rhel/libuuid@2.32.1-42.el8_8?arch=x86_64&distro=rhel-8"
                      "&upstream=util-linux-2.32.1-42.el8_8.src.rpm")
    assert p.metadata["sourcerpm"] == "util-linux-2.32.1-42.el8_8.src.rpm"
    assert {"/usr/lib64/libuuid.so.1", "/usr/lib64/libuuid.so.1.3.0", "/usr/share/licenses/libuuid/COPYING"} \
        <= got.ctx.owned_files


def test_version_strings_and_source_rpm_names():
    assert evr({"epoch": 2, "version": "1.0", "release": "3.el9"}) == "2:1.0-3.el9"
    assert evr({"epoch": None, "version": "1.0", "release": "3.el9"}) == "1.0-3.el9"
    assert split_source_rpm("util-linux-2.32.1-42.el8_8.src.rpm") == ("util-linux", "2.32.1-42.el8_8")
    assert split_source_rpm("kernel-5.14.0-1.nosrc.rpm") == ("kernel", "5.14.0-1")
    assert split_source_rpm("(none)") == ("", "")


@pytest.mark.parametrize("build", [
    lambda b: ("var/lib/rpm/Packages", bdb_file(b)),
    lambda b: ("var/lib/rpm/Packages", bdb_file(b, big_endian=True, page_size=8192)),
    lambda b: ("var/lib/rpm/Packages", bdb_file(b, inline_below=2000)),
    lambda b: ("usr/lib/sysimage/rpm/Packages.db", ndb_file(b)),
    lambda b: ("var/lib/rpm/rpmdb.sqlite", sqlite_file(b)),
], ids=["bdb", "bdb-big-endian", "bdb-on-page", "ndb", "sqlite"])
def test_every_format_built_in_code(build):
    blobs = [rpm_header("bash", "5.1.8", "6.el9", epoch=None, files=["/usr/bin/bash", "/etc/skel/.bashrc"]),
             rpm_header("openssl-libs", "3.0.7", "24.el9", epoch=1, sourcerpm="openssl-3.0.7-24.el9.src.rpm",
                        license="ASL 2.0", padding=9000)]
    path, data = build(blobs)
    got = inspect([{"etc/os-release": OS_RELEASE, path: data}]).by_name("rpm")
    assert set(got) == {"bash", "openssl-libs"}
    ssl = got["openssl-libs"]
    assert (ssl.version, ssl.source_name, ssl.source_version, ssl.licenses, ssl.path) == \
        ("1:3.0.7-24.el9", "openssl", "1:3.0.7-24.el9", ("ASL 2.0",), "/" + path)
    assert ssl.purl == ("pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?arch=x86_64&distro=rocky-9&epoch=1"
                        "&upstream=openssl-3.0.7-24.el9.src.rpm")
    assert ssl.metadata["epoch"] == 1


def test_layer_of_each_package_survives_rewrites_and_a_backend_change():
    base = [rpm_header("glibc", "2.34", "60.el9"), rpm_header("curl", "7.76.1", "26.el9")]
    updated = [rpm_header("glibc", "2.34", "60.el9"), rpm_header("curl", "7.76.1", "29.el9"),
               rpm_header("nmap", "7.92", "1.el9", epoch=3)]
    later = updated + [rpm_header("tar", "1.34", "6.el9")]
    got = inspect([
        {"var/lib/rpm/Packages": bdb_file(base)},
        {"var/lib/rpm/rpmdb.sqlite": sqlite_file(updated), "var/lib/rpm/.wh.Packages": b""},
        {"etc/motd": "hello"},  # touches no database: claims nothing
        {"var/lib/rpm/rpmdb.sqlite": sqlite_file(later)},
    ]).by_name("rpm")
    assert {n: (p.version, p.layer_index) for n, p in got.items()} == {
        "glibc": ("2.34-60.el9", 0), "curl": ("7.76.1-29.el9", 1), "nmap": ("3:7.92-1.el9", 1),
        "tar": ("1.34-6.el9", 3)}
    assert all(p.path == "/var/lib/rpm/rpmdb.sqlite" for p in got.values())


def test_owned_files_come_from_the_header_file_lists():
    blobs = [rpm_header("bash", "5.1.8", "6.el9", files=["/usr/bin/bash", "/usr/share/man/man1/bash.1.gz"])]
    got = inspect([{"var/lib/rpm/rpmdb.sqlite": sqlite_file(blobs)}])
    assert {"/usr/bin/bash", "/usr/share/man/man1/bash.1.gz"} <= got.ctx.owned_files
    assert "/usr/bin/zsh" not in got.ctx.owned_files


@pytest.mark.parametrize("damage", ["truncated", "index-past-data", "garbage"])
def test_a_damaged_header_costs_that_package_and_a_warning(damage):
    good = [rpm_header(f"pkg{i}", "1.0", "1") for i in range(5)]
    bad = rpm_header("broken", "1.0", "1", files=["/usr/bin/broken"])
    bad = {"truncated": bad[: len(bad) // 2],
           "index-past-data": bad[:8] + bad[8:12] + bad[12:16] + (10 ** 6).to_bytes(4, "big") + bad[20:],
           "garbage": b"\xff" * 40}[damage]
    for path, data in (("var/lib/rpm/rpmdb.sqlite", sqlite_file(good[:2] + [bad] + good[2:])),
                       ("var/lib/rpm/Packages", bdb_file(good[:2] + [bad] + good[2:])),
                       ("var/lib/rpm/Packages.db", ndb_file(good[:2] + [bad] + good[2:]))):
        got = inspect([{path: data}])
        assert sorted(got.by_name("rpm")) == [f"pkg{i}" for i in range(5)], path
        assert any("rpm" in w and "header 3" in w for w in got.ctx.warnings), (path, got.ctx.warnings)


def test_header_parser_refuses_what_rpm_would():
    blob = rpm_header("x", "1", "1")
    with pytest.raises(header.HeaderError, match="truncated"):
        header.parse(blob[:-3])
    with pytest.raises(header.HeaderError):
        header.parse(b"\x00\x01\x00\x00\xff\xff\xff\xff")  # 65536 entries, 4 GiB of data
    with pytest.raises(header.HeaderError):
        header.parse(b"")


def test_a_file_that_is_no_rpm_database_is_one_warning(scan, tmp_path):
    img = ImageBuilder().layer({"var/lib/rpm/Packages": b"\0" * 8192, "var/lib/rpm/rpmdb.sqlite": b"not sqlite"})
    db, (outcome,) = scan(f"oci:{img.write_oci_layout(tmp_path / 'o')}")
    assert outcome.status == "done"
    assert any("rpm" in w and "not an rpm database" in w for w in outcome.warnings)
    with pytest.raises(RpmDBError):
        read_packages(b"SQLite format 3\0" + b"\0" * 200)


def test_a_cut_short_berkeley_db_keeps_what_is_there():
    blobs = [rpm_header(f"pkg{i}", "1.0", "1", padding=3000) for i in range(30)]
    data = bdb_file(blobs, per_page=10)  # three hash pages first, overflow chains after
    fmt, packages, problems = read_packages(data[: len(data) * 2 // 3])
    assert fmt == "bdb" and 0 < len(packages) < 30
    assert any("cut short" in p for p in problems) and any("overflow chain" in p for p in problems)


def test_end_to_end_through_the_pipeline(scan, tmp_path):
    blobs = [rpm_header("nmap", "7.92", "1.el9", epoch=3), rpm_header("bash", "5.1.8", "6.el9")]
    img = (ImageBuilder()
           .layer({"etc/os-release": OS_RELEASE, "var/lib/rpm/rpmdb.sqlite": sqlite_file(blobs[1:])})
           .layer({"var/lib/rpm/rpmdb.sqlite": sqlite_file(blobs)}))
    db, (outcome,) = scan(f"docker-archive:{img.write_docker_archive(tmp_path / 'a.tar', ref='t/rpm:1')}")
    assert outcome.status == "done", outcome.error
    report = report_of(db, "t/rpm:1")
    soft = {s["name"]: s for s in report["software"]}
    assert (soft["nmap"]["version"], soft["nmap"]["layer_index"]) == ("3:7.92-1.el9", 1)
    assert (soft["bash"]["version"], soft["bash"]["layer_index"]) == ("5.1.8-6.el9", 0)
    assert report["image"]["os"]["family"] == "rocky"


def test_hundreds_of_packages_parse_in_every_format():
    blobs = [rpm_header(f"pkg{i}", "1.0", f"{i}.el7", files=[f"/usr/lib64/lib{i}.so.{j}" for j in range(40)],
                        padding=6000) for i in range(500)]
    for data in (bdb_file(blobs), ndb_file(blobs), sqlite_file(blobs)):
        t0 = time.perf_counter()
        fmt, packages, _ = read_packages(data)
        seconds = time.perf_counter() - t0
        assert len(packages) == 500, f"{fmt}: {seconds:.3f}s"


def test_cached_layers_give_the_same_inventory(scan, tmp_path):
    blobs = [rpm_header("nmap", "7.92", "1.el9", epoch=3, files=["/usr/bin/nmap"]), rpm_header("bash", "5.1.8", "6.el9")]
    img = ImageBuilder().layer({"etc/os-release": OS_RELEASE, "var/lib/rpm/Packages": bdb_file(blobs)})
    source = f"oci:{img.write_oci_layout(tmp_path / 'o', ref='t/cache:1')}"
    db, (first,) = scan(source)
    fresh = report_of(db, "t/cache:1")["software"]
    db, (second,) = scan(source)
    assert (first.layers_read, second.layers_read, second.layers_cached) == (1, 0, 1)
    assert report_of(db, "t/cache:1")["software"] == fresh and len(fresh) == 2


def test_no_database_still_leaves_an_empty_ownership_set():
    got = inspect([{"etc/motd": "hi"}], names=("rpm",))
    assert got.packages == [] and got.ctx.owned_files == set()


@pytest.mark.parametrize("fmt", ["bdb", "ndb", "sqlite"])
def test_corrupted_databases_give_packages_or_one_clear_error(fmt):
    import random

    blobs = [rpm_header(f"pkg{i}", "1.0", str(i), files=[f"/opt/f{i}"], padding=(i * 911) % 7000) for i in range(30)]
    base = {"bdb": lambda: bdb_file(blobs, inline_below=600), "ndb": lambda: ndb_file(blobs),
            "sqlite": lambda: sqlite_file(blobs)}[fmt]()
    rng = random.Random(fmt)
    for _ in range(60):
        data = bytearray(base)
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        t0 = time.perf_counter()
        try:
            _, packages, _ = read_packages(bytes(data))
            assert len(packages) <= 30
        except RpmDBError:
            pass
        # a guard against a parser that loops on a damaged page (it would never end), not a speed claim:
        # speed is measured by tests/bench/test_os_inventory_speed.py
        assert time.perf_counter() - t0 < 30.0
