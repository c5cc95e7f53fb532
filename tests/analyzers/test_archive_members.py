"""Every content check sees archive members (issue 18): malware, secrets and Java inventory on one image
built in code, scanned once, with archives of every kind, nested, and bombs that must cost only warnings."""
from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
import random
import subprocess
import sys
import tarfile
import zlib

import pytest
from conftest import report_of
from imagebuilder import File, ImageBuilder, tar_of, zip_of

# built backwards so that this test file is never itself taken for the EICAR test file
EICAR = b"*H+H$!ELIF-TSET-SURIVITNA-DRADNATS-RACIE$}7)CC7)^P(45XZP\\4[PA@%P!O5X"[::-1]
JSP_SHELL = b'<% Runtime.getRuntime().exec(request.getParameter("cmd")); %>'
# one generator for all 36 characters: 'ghp_LLLL…' would be a filler, which the scanner rightly ignores
GHP = "ghp_" + "".join(random.Random(18).choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                                                 k=36))
POM = b"version=2.14.1\ngroupId=org.apache.logging.log4j\nartifactId=log4j-core\n"




def sevenz_of(members: dict) -> bytes:
    import py7zr

    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(data, name)
    return buf.getvalue()


def zip_of_zips(levels: int) -> bytes:
    layer = zip_of({"z": b"\0" * (1 << 20)})
    for i in range(levels):
        layer = zip_of({f"a{i}.zip": layer, f"b{i}.zip": layer})
    return layer


@pytest.fixture(scope="session")
def archives_report(tmp_path_factory):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    tmp = tmp_path_factory.mktemp("archives")
    log4j = zip_of({"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties": POM})
    files = {
        "opt/drop.tar.gz": tar_of({"bin/e.com": EICAR}, "w:gz"),
        "opt/drop.tar.xz": tar_of({"www/cmd.jsp": JSP_SHELL}, "w:xz"),
        "opt/bundle.tar": tar_of({"lib/inner.zip": zip_of({"deep/e.com": EICAR})}),
        "opt/drop.7z": sevenz_of({"e.com": EICAR}),
        "opt/e.com.gz": gzip.compress(EICAR),
        "opt/e.zip": zip_of({"e.com": EICAR}),
        "opt/app.jar": zip_of({"config/.env": f"GITHUB_TOKEN={GHP}\n".encode()}),
        "srv/backup.tgz": tar_of({"home/app/.env": f"GITHUB_TOKEN={GHP}\n".encode()}, "w:gz"),
        "opt/dist.tar.gz": tar_of({"app/lib/log4j-core-2.14.1.jar": log4j}, "w:gz"),
        # bombs: a gzip bomb member and a zip of zips, each a few KB
        "opt/logs.tar": tar_of({"bomb.gz": gzip.compress(b"\0" * (300 << 20))}),
        "opt/42.zip": zip_of_zips(10),
        # over the walker's in-memory limit: spooled, and read in place by the resolver
        "opt/big.tar": tar_of({"blob.bin": random.Random(1).randbytes(17 << 20), "e.com": EICAR,
                               "conf/.env": f"GITHUB_TOKEN={GHP}\n".encode(), "lib/log4j-core-2.14.1.jar": log4j}),
    }
    from archive_vectors import cpio_of, rpm_of

    # made by rpmbuild and GNU cpio (absent tools leave them out; the tests that need them skip)
    rpm = rpm_of({"/opt/demo/conf/.env": f"GITHUB_TOKEN={GHP}\n".encode(), "/opt/demo/e.com": EICAR,
                  "/opt/demo/lib/log4j-core-2.14.1.jar": log4j}, "xz")
    cpio = cpio_of({"init/e.com": EICAR})
    if rpm is not None:
        files["var/cache/demo-1.0-1.noarch.rpm"] = rpm
    if cpio is not None:
        files["boot/initrd.img"] = gzip.compress(cpio)
    files["opt/old.rar"] = b"Rar!\x1a\x07\x00" + bytes(64)  # RAR 4 signature: recognised, no reader
    img = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n"})
    img.layer({k: File(v) for k, v in files.items()})
    img.write_oci_layout(tmp / "oci", ref="archives:1")
    database = connect(str(tmp / "scan.db"))
    outcomes = Scanner(database, {}, risks=["malicious", "secrets", "software"], progress=False).run(
        [f"oci:{tmp / 'oci'}"])
    return outcomes, report_of(database, "archives:1")


def test_scan_completes_with_bombs_reported(archives_report):
    outcomes, rep = archives_report
    assert [o.status for o in outcomes] == ["done"]
    warnings = rep["scan"]["warnings"]
    assert any(w.startswith("malware: /opt/logs.tar!/bomb.gz: compression ratio over 200:1 (archives.max_ratio")
               for w in warnings), warnings
    assert any(w.startswith("malware: /opt/42.zip") and "(archives." in w for w in warnings), warnings


def test_malware_inside_every_archive_kind(archives_report):
    _, rep = archives_report
    got = {(m["path"], m["rule"], m["engine"]) for m in rep["malicious_files"]}
    assert {("/opt/drop.tar.gz!/bin/e.com", "EICAR_Test_File", "yara"),
            ("/opt/drop.tar.xz!/www/cmd.jsp", "Webshell_JSP_Exec_Request", "yara"),
            ("/opt/bundle.tar!/lib/inner.zip!/deep/e.com", "EICAR_Test_File", "yara"),
            ("/opt/drop.7z!/e.com", "EICAR_Test_File", "yara"),
            ("/opt/e.com.gz!/e.com", "EICAR_Test_File", "yara"),
            ("/opt/e.zip!/e.com", "EICAR_Test_File", "yara"),
            ("/opt/big.tar!/e.com", "EICAR_Test_File", "yara")} <= got
    assert all(m["visible"] and m["layer_index"] == 1 for m in rep["malicious_files"])


def test_secrets_inside_a_jar_and_a_tarball(archives_report):
    _, rep = archives_report
    got = {(s["path"], s["rule"]) for s in rep["sensitive_information"]}
    assert got - {("/var/cache/demo-1.0-1.noarch.rpm!/opt/demo/conf/.env", "github-pat")} == {
        ("/opt/app.jar!/config/.env", "github-pat"), ("/srv/backup.tgz!/home/app/.env", "github-pat"),
        ("/opt/big.tar!/conf/.env", "github-pat")}
    assert all(GHP not in s["masked"] and s["visible"] for s in rep["sensitive_information"])


def test_inventory_of_a_jar_inside_a_tar_gz(archives_report):
    _, rep = archives_report
    maven = [(s["name"], s["version"], s["path"]) for s in rep["software"] if s["ecosystem"] == "maven"
             and ".rpm!/" not in s["path"]]
    assert sorted(maven) == [("org.apache.logging.log4j:log4j-core", "2.14.1", "/opt/big.tar!/lib/log4j-core-2.14.1.jar"),
                             ("org.apache.logging.log4j:log4j-core", "2.14.1",
                              "/opt/dist.tar.gz!/app/lib/log4j-core-2.14.1.jar")]


def test_bomb_image_scan_memory_is_bounded(tmp_path):
    """A real `stowaway scan` process over a 256 MiB gzip bomb in a tar, a 2^16-copy zip of zips, a
    tar.xz of 128 MiB of zeros and 200 nested zips: it finishes, says why it cut, and stays small."""
    deep = b"x"
    for _ in range(200):
        deep = zip_of({"n.zip": deep})
    # made in pieces: neither this process nor the scan (which inherits its peak) holds a gigabyte
    zeros = bytes(1 << 20)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    bomb = b"".join(squeeze.compress(zeros) for _ in range(256)) + squeeze.flush()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tf:
        for i in range(8):
            ti = tarfile.TarInfo(f"f{i}")
            ti.size = 16 << 20
            tf.addfile(ti, io.BufferedReader(io.BytesIO(bytes(16 << 20))))
    files = {"opt/logs.tar": tar_of({"bomb.gz": bomb}), "opt/42.zip": zip_of_zips(16),
             "opt/xz.tar.xz": buf.getvalue(), "opt/deep.zip": deep}
    ImageBuilder().layer({k: File(v) for k, v in files.items()}).write_oci_layout(tmp_path / "oci", ref="bombs:1")
    stowaway = str(pathlib.Path(sys.executable).with_name("stowaway"))
    db = str(tmp_path / "b.db")
    # a fresh, small launcher forks the scan and reports its peak: a child forked straight from this
    # test process would start from (and report) the test process's own resident size
    launcher = ("import os, sys\n"
                "pid = os.fork()\n"
                "if pid == 0:\n"
                "    os.execv(sys.argv[1], sys.argv[1:])\n"
                "_, status, usage = os.wait4(pid, 0)\n"
                "print(usage.ru_maxrss, flush=True)\n"
                "sys.exit(os.waitstatus_to_exitcode(status))\n")
    run = subprocess.run([sys.executable, "-c", launcher, stowaway, "scan", f"oci:{tmp_path / 'oci'}", "--db", db,
                          "--risk", "malicious", "--risk", "secrets", "--risk", "software", "--no-progress"],
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, STOWAWAY_CACHE_DIR=str(tmp_path / "cache"),
                                  STOWAWAY_DATA_DIR=str(tmp_path / "data")))
    stderr = run.stderr
    assert run.returncode == 0, stderr
    peak_mib = int(run.stdout.split()[-1]) / 1024
    assert "Traceback" not in stderr and "Warning" not in stderr
    assert peak_mib < 300, f"peak RSS {peak_mib:.0f} MiB"
    print(f"bomb image scan: peak RSS {peak_mib:.0f} MiB")
    rep = json.loads(subprocess.run([stowaway, "report", "bombs:1", "--db", db], capture_output=True, text=True,
                                    check=True).stdout)
    warnings = rep["scan"]["warnings"]
    for path in ("/opt/logs.tar!/bomb.gz", "/opt/42.zip", "/opt/xz.tar.xz", "/opt/deep.zip"):
        assert any(w.startswith(f"malware: {path}") for w in warnings), (path, warnings)


def test_rpm_and_cpio_members_reach_every_check(archives_report):
    _, rep = archives_report
    rpm = "/var/cache/demo-1.0-1.noarch.rpm"
    if not any(s["path"].startswith(rpm) for s in rep["software"] + rep["malicious_files"]):
        pytest.skip("rpmbuild or cpio is not installed")
    assert {(m["path"], m["rule"]) for m in rep["malicious_files"]} >= {
        (f"{rpm}!/opt/demo/e.com", "EICAR_Test_File"), ("/boot/initrd.img!/init/e.com", "EICAR_Test_File")}
    assert (f"{rpm}!/opt/demo/conf/.env", "github-pat") in {(s["path"], s["rule"]) for s in rep["sensitive_information"]}
    assert ("org.apache.logging.log4j:log4j-core", "2.14.1", f"{rpm}!/opt/demo/lib/log4j-core-2.14.1.jar") in {
        (s["name"], s["version"], s["path"]) for s in rep["software"]}


def test_an_archive_no_reader_opens_is_in_the_coverage(archives_report):
    _, rep = archives_report
    assert {(a["path"], a["format"]) for a in rep["coverage"]["archives"]} == {("/opt/old.rar", "rar archive")}
    assert rep["coverage"]["archives"][0]["reason"].startswith("not opened: rar archive")


def test_one_resolver_pass_per_archive_feeds_every_content_check(monkeypatch, tmp_path):
    """The layer walker opens an archive once for malware, secrets and Java inventory together: one
    resolver pass, each member decompressed once, every analyzer fed (ingest/archives.feed)."""
    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STOWAWAY_DATA_DIR", str(tmp_path / "data"))
    from stowaway.analyzers.inventory.java import JavaArchives
    from stowaway.analyzers.malware import Malware
    from stowaway.analyzers.secrets.analyzer import Secrets
    from stowaway.ingest import archives
    from stowaway.ingest.layers import walk
    from stowaway.ingest.streams import Limits

    log4j = zip_of({"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties": POM})
    bundle = tar_of({"lib/log4j-core-2.14.1.jar": log4j, "bin/e.com": EICAR,
                     "conf/.env": f"GITHUB_TOKEN={GHP}\n".encode()}, "w:gz")
    layer = tar_of({"opt/bundle.tar.gz": bundle, "opt/plain.txt": b"nothing here"})
    passes, reads = [], []
    real_iter, real_read = archives.iter_members, archives.Member.read

    def counting_iter(name, *a, **kw):
        passes.append(name)
        return real_iter(name, *a, **kw)

    def counting_read(self):
        if not self._done:
            reads.append(self.path)
        return real_read(self)

    monkeypatch.setattr(archives, "iter_members", counting_iter)
    monkeypatch.setattr(archives.Member, "read", counting_read)
    analyzers = [Malware({}), Secrets({}), JavaArchives({})]
    result = walk(io.BytesIO(layer), 0, analyzers, Limits(), "test")
    assert passes == ["/opt/bundle.tar.gz"]
    assert sorted(reads) == sorted(set(reads))  # no member decompressed twice
    assert ("/opt/bundle.tar.gz!/bin/e.com", "EICAR_Test_File") in {
        (r["path"], r.get("rule")) for r in result.records["malware"]}
    assert ("/opt/bundle.tar.gz!/conf/.env", "github-pat") in {
        (r["path"], r.get("rule")) for r in result.records["secrets"]}
    assert ("org.apache.logging.log4j:log4j-core", "/opt/bundle.tar.gz!/lib/log4j-core-2.14.1.jar",
            "/opt/bundle.tar.gz") in {(r.get("name"), r.get("path"), r.get("file")) for r in result.records["java-archive"]}


def test_a_consumer_held_to_a_shallower_depth_says_so(monkeypatch, tmp_path):
    """One pass serves the widest depth (Java inventory's 5); malware's own archive_depth = 1 still holds,
    and the members it leaves out are named in its warnings."""
    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(tmp_path / "cache"))
    from stowaway.analyzers.inventory.java import JavaArchives
    from stowaway.analyzers.malware import Malware
    from stowaway.ingest.layers import walk
    from stowaway.ingest.streams import Limits

    log4j = zip_of({"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties": POM})
    outer = zip_of({"lib/log4j-core-2.14.1.jar": log4j, "lib/inner.zip": zip_of({"e.com": EICAR})})
    layer = tar_of({"opt/app.jar": outer})
    result = walk(io.BytesIO(layer), 0, [Malware({"malware": {"archive_depth": 1}}), JavaArchives({})], Limits(),
                  "test")
    assert not any(r.get("rule") for r in result.records["malware"])
    assert "/opt/app.jar!/lib/inner.zip: archive nested deeper than 1 levels (archives.max_depth for malware);" \
           " not opened" in [r.get("warning") for r in result.records["malware"]]
    assert any(r.get("path") == "/opt/app.jar!/lib/log4j-core-2.14.1.jar" for r in result.records["java-archive"])
