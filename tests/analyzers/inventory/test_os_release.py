"""OS identification: every real release file in ../shared/samples/os-release, fixtures in code for the
families without a sample, and the final-image rules (symlinks, later layers, deleted files)."""
from __future__ import annotations

import pytest
from conftest import SHARED, report_of
from imagebuilder import WHITEOUT, ImageBuilder, Symlink
from ospkg_harness import inspect

from stowaway.analyzers.inventory.os_release import from_release_line, identify, normalize, parse_os_release

SAMPLES = SHARED / "samples" / "os-release"
samples = pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")

# sample directory -> (family, version) that the whole directory, as one /etc, must give
BY_DIRECTORY = {
    "alpine-3.18": ("alpine", "3.18"), "centos-7": ("centos", "7"),
    "debian-9": ("debian", "9"), "debian-10": ("debian", "10"), "debian-11": ("debian", "11"),
    "debian-12": ("debian", "12"), "debian-12-bookworm-minbase": ("debian", "12"),
    "distroless-debian-9": ("debian", "9"), "distroless-debian-10": ("debian", "10"),
    "distroless-debian-11": ("debian", "11"),
    "euleros-2.0-sp8": ("euleros", "2.0-SP8"), "euleros-2.0-sp10": ("euleros", "2.0-SP10"),
    "euleros-2.0-sp9-x86_64": ("euleros", "2.0-SP9"), "hce-2.0": ("hce", "2.0"),
    "kylin-v10-tercel": ("kylin", "V10-SP1"), "kylin-v10-sword": ("kylin", "V10-SP2"),
    "kylin-v10-lance": ("kylin", "V10-SP3"), "kylin-v10-halberd": ("kylin", "V10-SP3-2403"),
    "openeuler-20.03-lts": ("openeuler", "20.03-LTS"), "openeuler-22.03-lts-sp1": ("openeuler", "22.03-LTS-SP1"),
    "openeuler-24.03-lts": ("openeuler", "24.03-LTS"), "opensuse-leap-15.2": ("opensuse", "15.2"),
    "rhel-7": ("rhel", "7"), "rhel-8": ("rhel", "8"), "rhel-9": ("rhel", "9"),
    "sles-15.3": ("sles", "15.3"), "sles-15.6": ("sles", "15.6"),
    "ubuntu-16.04": ("ubuntu", "16.04"), "ubuntu-18.04": ("ubuntu", "18.04"), "ubuntu-20.04": ("ubuntu", "20.04"),
    "ubuntu-22.04": ("ubuntu", "22.04"),
    "uos-20-1001c-kongli": ("uos", "20"), "uos-20-fou": ("uos", "20"), "uos-20-kongzi-uelc20": ("uos", "20"),
}
# release files other than os-release, each read alone (as in an image that has only that file)
ALONE = {
    ("centos-7", "centos-release"): ("centos", "7"),
    ("hce-2.0", "hce-release"): ("hce", "2.0"),
    ("kylin-v10-sword", "system-release"): ("kylin", "V10-SP2"),
    ("kylin-v10-sword", "lsb-release"): ("kylin", "V10"),  # says only 'Kylin V10'
    ("openeuler-20.03-lts", "system-release"): ("openeuler", "20.03-LTS"),
    ("uos-20-fou", "lsb-release"): ("uos", "20"),
    ("uos-20-kongzi-uelc20", "system-release"): ("uos", "20"),
    ("uos-20-kongzi-uelc20", "lsb-release"): ("uos", "20"),
    ("ubuntu-16.04", "lsb-release"): ("ubuntu", "16.04"),
    ("ubuntu-22.04", "lsb-release"): ("ubuntu", "22.04"),
}


def _read_dir(name):
    return {f"/etc/{f.name}": f.read_text(encoding="utf-8", errors="replace") for f in (SAMPLES / name).iterdir()}


@samples
def test_every_sample_directory_is_listed():
    assert {d.name for d in SAMPLES.iterdir() if d.is_dir()} == set(BY_DIRECTORY)


@samples
@pytest.mark.parametrize("name", sorted(BY_DIRECTORY))
def test_sample_directory(name):
    files = _read_dir(name)
    info = identify(files.get)
    assert (info.family, info.version) == BY_DIRECTORY[name]
    if "/etc/os-release" in files:
        assert info.source_file == "/etc/os-release"
        assert info.raw == parse_os_release(files["/etc/os-release"])  # raw fields kept as written
        assert info.name


@samples
@pytest.mark.parametrize("name,file", sorted(ALONE))
def test_release_file_alone(name, file):
    text = (SAMPLES / name / file).read_text()
    info = identify({f"/etc/{file}": text}.get)
    assert (info.family, info.version) == ALONE[(name, file)]
    assert info.source_file == f"/etc/{file}"


@samples
def test_distroless_keeps_its_name_and_raw_fields():
    info = identify(_read_dir("distroless-debian-11").get)
    assert (info.family, info.version, info.name, info.raw["VERSION"]) == \
        ("debian", "11", "Distroless", "Debian GNU/Linux 11 (bullseye)")


@pytest.mark.parametrize("text,want", [
    ('ID="rocky"\nVERSION_ID="9.3"\nVERSION="9.3 (Blue Onyx)"\n', ("rocky", "9")),
    ('ID="almalinux"\nVERSION_ID="8.9"\n', ("almalinux", "8")),
    ('ID="ol"\nVERSION_ID="8.9"\nNAME="Oracle Linux Server"\n', ("oracle", "8")),
    ('ID="amzn"\nVERSION_ID="2023"\n', ("amazon", "2023")),
    ('ID="amzn"\nVERSION_ID="2"\n', ("amazon", "2")),
    ('ID=alpine\nVERSION_ID=3.20.0_alpha20240329\n', ("alpine", "edge")),
    ('ID="opensuse-tumbleweed"\nVERSION_ID="20240101"\n', ("opensuse-tumbleweed", "20240101")),
    ('ID="sles"\nVERSION_ID="12.5"\nVERSION="12-SP5"\n', ("sles", "12.5")),
    ('ID=debian\nVERSION_CODENAME=trixie\nPRETTY_NAME="Debian GNU/Linux trixie/sid"\n', ("debian", "trixie")),
    ('ID="hce"\nVERSION_ID="1.1"\nVERSION="1.1 (x86_64)"\n', ("hce", "1.1")),
    ('ID="euleros"\nVERSION_ID="2.0"\nVERSION="2.0 (SP12)"\n', ("euleros", "2.0-SP12")),
    ('ID="openEuler"\nVERSION_ID="22.03"\nVERSION="22.03 (LTS-SP3)"\n', ("openeuler", "22.03-LTS-SP3")),
    ('ID=kylin\nVERSION_ID="4.0.2"\nVERSION="4.0.2 (juniper)"\nID_LIKE=debian\n', ("kylin", "4.0.2")),
    ('ID="kylin"\nVERSION_ID="V10"\nVERSION="V10 (Sword)"\n', ("kylin", "V10-SP2")),
    ('ID=ubuntu\nVERSION_ID="24.04"\n', ("ubuntu", "24.04")),
    ('ID=debian\nVERSION_ID="13"\n', ("debian", "13")),
])
def test_families_built_in_code(text, want):
    info = normalize(parse_os_release(text))
    assert (info.family, info.version) == want


@pytest.mark.parametrize("path,text,want", [
    ("/etc/redhat-release", "Red Hat Enterprise Linux Server release 7.9 (Maipo)\n", ("rhel", "7")),
    ("/etc/centos-release", "CentOS Linux release 7.9.2009 (Core)\n", ("centos", "7")),
    ("/etc/rocky-release", "Rocky Linux release 9.3 (Blue Onyx)\n", ("rocky", "9")),
    ("/etc/euleros-release", "EulerOS release 2.0 (SP5)\n", ("euleros", "2.0-SP5")),
    ("/etc/kylin-release", "Kylin Linux Advanced Server release V10 (Lance)\n", ("kylin", "V10-SP3")),
    ("/etc/system-release", "UnionTech OS Server release 20 (kongzi)\n", ("uos", "20")),
    ("/etc/alpine-release", "3.19.1\n", ("alpine", "3.19")),
    ("/etc/debian_version", "11.7\n", ("debian", "11")),
    ("/etc/SuSE-release", "SUSE Linux Enterprise Server 12 (x86_64)\nVERSION = 12\nPATCHLEVEL = 5\n", ("sles", "12.5")),
    ("/etc/SuSE-release", "openSUSE 13.2 (x86_64)\nVERSION = 13.2\nCODENAME = Harlequin\n", ("opensuse", "13.2")),
])
def test_release_lines_built_in_code(path, text, want):
    info = from_release_line(path, text)
    assert (info.family, info.version) == want


def test_unknown_text_is_no_os():
    assert from_release_line("/etc/system-release", "hello world\n") is None
    assert identify({"/etc/os-release": "NAME=nothing\n"}.get) is None


def test_final_image_wins_and_symlinks_are_followed():
    got = inspect([
        {"etc/os-release": "ID=debian\nVERSION_ID=10\n"},
        {"usr/lib/os-release": "ID=ubuntu\nVERSION_ID=\"22.04\"\n", "etc/os-release": Symlink("../usr/lib/os-release")},
    ], names=("os-release",))
    assert (got.ctx.os.family, got.ctx.os.version, got.ctx.os.source_file) == ("ubuntu", "22.04", "/etc/os-release")


def test_deleted_os_release_falls_back_to_older_files():
    got = inspect([
        {"etc/os-release": "ID=debian\nVERSION_ID=10\n", "etc/centos-release": "CentOS Linux release 7.9.2009 (Core)\n"},
        {"etc/.wh.os-release": WHITEOUT},
    ], names=("os-release",))
    assert (got.ctx.os.family, got.ctx.os.version, got.ctx.os.source_file) == ("centos", "7", "/etc/centos-release")


def test_no_release_file_no_os(scan, tmp_path):
    img = ImageBuilder().layer({"bin/busybox": b"\x7fELF"})
    db, (outcome,) = scan(f"oci:{img.write_oci_layout(tmp_path / 'o', ref='t/none:1')}")
    assert outcome.status == "done"
    assert not (report_of(db, "t/none:1")["image"]["os"] or {}).get("family")


def test_os_reaches_the_report_and_package_urls(scan, tmp_path):
    img = ImageBuilder().layer({
        "etc/os-release": 'NAME="openEuler"\nVERSION="22.03 (LTS-SP1)"\nID="openEuler"\nVERSION_ID="22.03"\n',
        "var/lib/dpkg/status": "Package: x\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"})
    db, (outcome,) = scan(f"oci:{img.write_oci_layout(tmp_path / 'o', ref='t/oe:1')}")
    report = report_of(db, "t/oe:1")
    assert (report["image"]["os"]["family"], report["image"]["os"]["version"]) == ("openeuler", "22.03-LTS-SP1")
    assert "distro=openeuler-22.03-LTS-SP1" in report["software"][0]["purl"]
