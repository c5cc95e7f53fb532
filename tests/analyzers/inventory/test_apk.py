"""apk: the real installed databases, attribution across layers, ownership, purls and bad input."""
from __future__ import annotations

import pytest
from conftest import SHARED, report_of
from imagebuilder import ImageBuilder
from ospkg_harness import inspect

from stowaway.analyzers.inventory.apk import parse_installed

SAMPLES = SHARED / "samples" / "apk"
samples = pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
ALPINE = 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME="Alpine Linux v3.18"\n'


def entry(name, version, origin=None, license="MIT", files=()):
    lines = ["C:Q1abcdefghijklmnopqrstuvwxyz0=", f"P:{name}", f"V:{version}", "A:x86_64", "S:1000", "I:4096",
             "T:test package", f"L:{license}", f"o:{origin or name}", "m:Someone <a@b.c>", "t:1700000000",
             "c:0123456789abcdef"]
    current = None
    for path in files:
        d, _, b = path.rpartition("/")
        if d != current:
            lines.append(f"F:{d}")
            current = d
        lines += [f"R:{b}", "Z:Q1xxxxxxxxxxxxxxxxxxxxxxxxxxx="]
    return "\n".join(lines) + "\n"


def installed(*entries):
    return "\n".join(entries) + "\n"


# the package counts and versions that ../shared/SOURCES.tsv records for each sample
SAMPLE_FACTS = {
    "alpine-3.16": (14, {"musl": "1.2.3-r0", "busybox": "1.35.0-r17"}),
    "alpine-3.18": (15, {"alpine-baselayout": "3.4.3-r1"}),
    "syft-multiple-1": (4, {"bash": "5.2.21-r0", "musl": "1.2.4_git20230717-r4", "busybox-binsh": "1.36.1-r15"}),
}


@samples
@pytest.mark.parametrize("sample", sorted(SAMPLE_FACTS))
def test_each_sample_yields_its_packages(sample):
    text = (SAMPLES / sample / "installed").read_text()
    packages, warnings = parse_installed(text)
    count, versions = SAMPLE_FACTS[sample]
    assert warnings == [] and len(packages) == count
    got = {p["name"]: p["version"] for p in packages}
    assert len(got) == count and all(got[n] == v for n, v in versions.items())
    # every stanza's P:/V: pair, in file order
    pairs = [(a[2:], b[2:]) for a, b in zip(text.splitlines(), text.splitlines()[1:])
             if a.startswith("P:") and b.startswith("V:")]
    assert [(p["name"], p["version"]) for p in packages] == pairs


@samples
def test_sample_in_an_image_with_owned_files_and_origin():
    got = inspect([{"etc/os-release": ALPINE, "lib/apk/db/installed": (SAMPLES / "alpine-3.18" / "installed").read_bytes()}])
    pkgs = got.by_name("apk")
    base = pkgs["alpine-baselayout-data"]
    assert (base.source_name, base.version, base.path, base.layer_index) == \
        ("alpine-baselayout", "3.4.3-r1", "/lib/apk/db/installed", 0)
    assert base.purl == ("pkg:apk/alpine/alpine-baselayout-data@3.4.3-r1?arch=x86_64&distro=alpine-3.18"
                         "&upstream=alpine-baselayout")
    assert "/etc/motd" in got.ctx.owned_files  # F:etc + R:motd of alpine-baselayout
    assert pkgs["alpine-baselayout"].licenses == ("GPL-2.0-only",)


def test_layers_and_upgrades():
    musl = entry("musl", "1.2.4-r1", files=["lib/ld-musl-x86_64.so.1"])
    got = inspect([
        {"etc/os-release": ALPINE, "lib/apk/db/installed": installed(musl, entry("busybox", "1.36.1-r2"))},
        {"lib/apk/db/installed": installed(musl, entry("busybox", "1.36.1-r5"), entry("curl", "8.5.0-r0"))},
        {"etc/motd": "untouched database"},
    ]).by_name("apk")
    assert {n: (p.version, p.layer_index) for n, p in got.items()} == {
        "musl": ("1.2.4-r1", 0), "busybox": ("1.36.1-r5", 1), "curl": ("8.5.0-r0", 1)}


def test_owned_files_follow_f_and_r_lines():
    got = inspect([{"lib/apk/db/installed": installed(entry("curl", "8.5.0-r0",
                                                            files=["usr/bin/curl", "usr/share/man/man1/curl.1.gz"]))}],
                  names=("apk",))
    assert {"/usr/bin/curl", "/usr/share/man/man1/curl.1.gz", "/usr/bin"} <= got.ctx.owned_files


def test_malformed_stanzas_warn_and_the_rest_stays(scan, tmp_path):
    text = installed(entry("musl", "1.2.4-r1"), "P:noversion\nA:x86_64\n", "garbage line without colon\n" + entry("zlib", "1.3-r2"))
    img = ImageBuilder().layer({"etc/os-release": ALPINE, "lib/apk/db/installed": text})
    db, (outcome,) = scan(f"oci:{img.write_oci_layout(tmp_path / 'o', ref='t/apk:1')}")
    assert outcome.status == "done"
    assert {s["name"] for s in report_of(db, "t/apk:1")["software"]} == {"musl", "zlib"}
    assert any("apk" in w and "noversion" in w for w in outcome.warnings)
    assert any("apk" in w and "malformed line" in w for w in outcome.warnings)
