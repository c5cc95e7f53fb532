"""ClamAV as the second malware engine, against a real clamd from Debian's packages (unix and TCP
sockets, INSTREAM) and clamscan, with a small signature database made here: a hand-written .ndb body
signature and a .hsb made by `sigtool --sha256` from a file generated in the test. No download."""
from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import time

import pytest
from conftest import report_of
from imagebuilder import File, ImageBuilder, tar_of

from stowaway.analyzers.clamav import ClamAV, ClamAVError, parse_reply
from stowaway.analyzers.malware import Malware
from stowaway.ingest.model import FileInfo, LayerFile, ScanError

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
CLAMD = shutil.which("clamd", path=SBIN)
SIGTOOL = shutil.which("sigtool", path=SBIN)
needs_clamd = pytest.mark.skipif(CLAMD is None or SIGTOOL is None, reason="clamd/sigtool not installed (Debian: clamav-daemon)")

MARKER = b"stowaway-clamav-test-marker-7f3a"
HASHED = bytes(range(256)) * 3 + b"stowaway: known by its sha256 only"
MARKER_SIG = "Stowaway.Test.Marker.UNOFFICIAL"
HASHED_SIG = "hashed.bin.UNOFFICIAL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def clamd(tmp_path_factory):
    """A clamd on a unix socket and on 127.0.0.1, with the test database; stopped at the end."""
    if CLAMD is None or SIGTOOL is None:
        pytest.skip("clamd/sigtool not installed (Debian: clamav-daemon)")
    root = tmp_path_factory.mktemp("clamd")
    db = root / "db"
    db.mkdir()
    (db / "stowaway.ndb").write_text(f"Stowaway.Test.Marker:0:*:{MARKER.hex()}\n")
    (root / "hashed.bin").write_bytes(HASHED)
    hsb = subprocess.run([SIGTOOL, "--sha256", "hashed.bin"], cwd=root, capture_output=True, text=True, check=True)
    (db / "stowaway.hsb").write_text(hsb.stdout)
    port = free_port()
    sock = root / "clamd.sock"
    conf = root / "clamd.conf"
    conf.write_text(f"LocalSocket {sock}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {db}\n"
                    f"Foreground yes\nLogFile {root / 'clamd.log'}\nTemporaryDirectory {root}\n"
                    f"PidFile {root / 'clamd.pid'}\n")
    proc = subprocess.Popen([CLAMD, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = ClamAV(clamd=str(sock), timeout=5)
    deadline = time.monotonic() + 120
    while True:
        try:
            client.version()
            break
        except ClamAVError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log = (root / "clamd.log").read_text() if (root / "clamd.log").exists() else ""
                pytest.fail(f"clamd did not start: {log[-2000:]}")
            time.sleep(0.2)
    yield {"socket": str(sock), "tcp": f"127.0.0.1:{port}", "db": str(db)}
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@needs_clamd
def test_clamd_unix_and_tcp_sockets(clamd):
    for address in (clamd["socket"], f"unix:{clamd['socket']}", clamd["tcp"], f"tcp://{clamd['tcp']}"):
        client = ClamAV(clamd=address, timeout=10)
        assert client.version().startswith("ClamAV ")
        assert client.scan(b"before " + MARKER + b" after") == [MARKER_SIG]
        assert client.scan(HASHED) == [HASHED_SIG]
        assert client.scan(b"nothing to see") == []
        big = b"x" * (300 << 10) + MARKER  # several INSTREAM chunks
        assert client.scan(big) == [MARKER_SIG]
    with pytest.raises(ClamAVError, match="larger than 10 bytes"):
        ClamAV(clamd=clamd["socket"], max_bytes=10).scan(b"x" * 11)


@needs_clamd
def test_scan_reports_engine_and_signature(clamd, tmp_path, scan):
    img = ImageBuilder().layer({
        "opt/marker.bin": File(MARKER),
        "opt/hashed.bin": File(HASHED),
        "opt/bundle.tar.gz": File(tar_of({"inner/m.txt": b"x " + MARKER}, "w:gz")),  # clamd opens archives itself
        "opt/clean.txt": File(b"clean"),
    })
    img.write_oci_layout(tmp_path / "oci", ref="clam:1")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy={"malware": {"clamd": clamd["socket"]}},
                              risks=["malicious"])
    assert [o.status for o in outcomes] == ["done"]
    rep = report_of(database, "clam:1")
    hits = {(m["path"], m["rule"], m["engine"], m["namespace"]) for m in rep["malicious_files"]}
    assert hits == {("/opt/marker.bin", MARKER_SIG, "clamav", "clamav"),
                    ("/opt/hashed.bin", HASHED_SIG, "clamav", "clamav"),
                    ("/opt/bundle.tar.gz", MARKER_SIG, "clamav", "clamav")}
    assert not [w for w in rep["scan"]["warnings"] if "ClamAV" in w]


@needs_clamd
def test_clamscan_with_the_users_database(clamd, tmp_path):
    clamscan = shutil.which("clamscan", path=SBIN)
    if clamscan is None:
        pytest.skip("clamscan not installed (Debian: clamav)")
    db = tmp_path / "db"
    shutil.copytree(clamd["db"], db)
    a = Malware({"malware": {"clamscan": clamscan, "clamav_database": str(db), "default_rules": False}})
    recs = a.analyze(LayerFile(FileInfo("/x/e.gz", "file", 0), gzip.compress(MARKER), 0))
    assert [(r["path"], r["rule"], r["engine"]) for r in recs] == [("/x/e.gz", MARKER_SIG, "clamav")]
    assert a.analyze(LayerFile(FileInfo("/x/ok", "file", 0), b"fine", 0)) == []
    # new signatures re-scan the layers: the database is part of the cache key
    before = a.fingerprint()
    (db / "more.ndb").write_text(f"Stowaway.Test.More:0:*:{b'another marker'.hex()}\n")
    b = Malware({"malware": {"clamscan": clamscan, "clamav_database": str(db), "default_rules": False}})
    assert before != b.fingerprint()
    assert [r["rule"] for r in b.analyze(LayerFile(FileInfo("/m", "file", 0), b"another marker", 0))] == [
        "Stowaway.Test.More.UNOFFICIAL"]


def test_unreachable_clamd_is_a_warning_and_files_are_not_called_clean(tmp_path, scan):
    img = ImageBuilder().layer({"opt/a.bin": File(b"a"), "opt/b.bin": File(b"b")})
    img.write_oci_layout(tmp_path / "oci", ref="noclam:1")
    missing = str(tmp_path / "no-clamd.sock")
    database, outcomes = scan(f"oci:{tmp_path / 'oci'}", policy={"malware": {"clamd": missing}}, risks=["malicious"])
    assert [o.status for o in outcomes] == ["done"]
    warnings = report_of(database, "noclam:1")["scan"]["warnings"]
    assert any(w.startswith(f"malware: ClamAV (clamd at {missing}) unreachable: cannot connect") for w in warnings)
    assert any(w.startswith("malware: not checked by ClamAV: /opt/a.bin: cannot connect") for w in warnings)


def test_policy_mistakes_are_one_clear_error(tmp_path):
    with pytest.raises(ScanError, match="choose one ClamAV engine"):
        Malware({"malware": {"clamd": "/run/clamd.ctl", "clamscan": "clamscan"}})
    with pytest.raises(ScanError, match="malware.clamscan: /nowhere/clamscan: no such program"):
        Malware({"malware": {"clamscan": "/nowhere/clamscan"}})


def test_reply_parsing():
    assert parse_reply("stream: Eicar-Signature FOUND", "stream") == ["Eicar-Signature"]
    assert parse_reply("stream: OK", "stream") == []
    assert parse_reply("stdin: Win.Test.X FOUND\nstdin: OK", "stdin") == ["Win.Test.X"]
    with pytest.raises(ClamAVError, match="INSTREAM size limit exceeded"):
        parse_reply("INSTREAM size limit exceeded. ERROR", "stream")


def test_a_file_over_clamav_max_bytes_is_not_read_nor_sent(tmp_path):
    a = Malware({"malware": {"clamd": str(tmp_path / "none.sock"), "clamav_max_bytes": 4, "default_rules": False}})
    recs = a.analyze(LayerFile(FileInfo("/big", "file", 10), b"0123456789", 0))
    assert recs == [{"path": "/big", "skipped": "clamav",
                     "reason": "larger than 4 bytes (malware.clamav_max_bytes); not sent to ClamAV"}]
