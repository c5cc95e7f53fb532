"""Rescans of unchanged images (issue 16): the current scan's results are copied forward in SQL
(ingest/reuse.py) and report exactly what a full rescan reports; a changed input is never taken for an
unchanged one; the message says what was read and what was reused."""
import gzip
import os
import time

import pytest
from imagebuilder import File, ImageBuilder

SECRET = "ghp_" + "Zq7Xr2Lm9Vb4Nc8Kd1Fg6Hj3Tw5Ys0Pa1Qe2"  # a GitHub token shape the secret rules know
OS_RELEASE = 'ID=debian\nVERSION_ID="11"\nPRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\n'
STATUS = ("Package: curl\nStatus: install ok installed\nVersion: 7.74.0-1.3+deb11u1\nArchitecture: amd64\n\n"
          "Package: libssl1.1\nStatus: install ok installed\nSource: openssl\nVersion: 1.1.1n-0+deb11u3\n"
          "Architecture: amd64\n\n")
SHADOW = "root:*:19000:0:99999:7:::\nbob::19000:0:99999:7:::\n"  # bob: an empty password field
ADVISORIES = [
    {"id": "DEBIAN-CVE-2023-0002", "modified": "2024-01-01T00:00:00Z", "aliases": ["CVE-2023-0002"],
     "affected": [{"package": {"ecosystem": "Debian:11", "name": "curl"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
    {"id": "GHSA-jjjj", "modified": "2024-01-01T00:00:00Z", "aliases": ["CVE-2019-10906"],
     "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.10.1"}]}]}]},
]
LATER = {"id": "DEBIAN-CVE-2023-0001", "modified": "2024-02-01T00:00:00Z", "aliases": ["CVE-2023-0001"],
         "affected": [{"package": {"ecosystem": "Debian:11", "name": "openssl"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}
POLICY = {"passwords": {"verdict_cache": False}}


def app_image(padding: int = 0) -> ImageBuilder:
    img = ImageBuilder().layer({"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": STATUS, "etc/shadow": SHADOW,
                                "bin/sh": File(b"\x7fELF" + b"s" * 300, mode=0o755)}, created_by="ADD rootfs /")
    files = {"usr/local/lib/python3.9/site-packages/Jinja2-2.10.dist-info/METADATA":
             "Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n", "app/config.env": f"GITHUB_TOKEN={SECRET}\n"}
    if padding:
        files["app/data.bin"] = File(b"MIDDLE" * (padding // 6))
    return img.layer(files, created_by="COPY app /app")


@pytest.fixture
def store(tmp_path):
    from stowaway.analyzers.vulnerabilities.importer import import_records
    from stowaway.ingest.db import connect

    database = connect(str(tmp_path / "reuse.db"))
    import_records(database, ADVISORIES)
    return database


def scan(database, source, **policy):
    from stowaway.ingest.pipeline import Scanner

    return Scanner(database, {**POLICY, **policy}, progress=False).run([source])[0]


def settled(path):
    """A file's times are trusted only once they lie outside the filesystem's clock tick of the moment
    they are recorded (ingest/reuse.py): a test that scans a file it just wrote waits that long."""
    time.sleep(0.1)
    return path


VOLATILE = {("scan", "id"), ("scan", "started_at"), ("scan", "finished_at"), ("scan", "seconds"),
            ("scan", "layers_read"), ("scan", "layers_cached")}


def comparable(report: dict) -> dict:
    """The report without what differs between two scans by definition: the scan's id, times and what it read."""
    out = {k: v for k, v in report.items()}
    out["scan"] = {k: v for k, v in report["scan"].items() if ("scan", k) not in VOLATILE}
    return out


def report(database, scan_id):
    from stowaway.ingest.report import build_scan

    return build_scan(database, scan_id)


def test_a_copied_forward_rescan_reports_exactly_what_a_full_rescan_reports(tmp_path, store):
    archive = settled(app_image().write_docker_archive(tmp_path / "app.tar.gz", ref="demo/app:1",
                                                       compress_with="gzip"))
    first = scan(store, f"docker-archive:{archive}")
    assert first.status == "done" and first.layers_read == 2 and not first.reused
    again = scan(store, f"docker-archive:{archive}")
    assert again.status == "done" and (again.layers_read, again.layers_cached) == (0, 2)
    assert again.layers_text() == (f"0 layers read, 2 cached; unchanged since scan {first.scan_id} (archive unchanged:"
                                   " inode, size, mtime, ctime and first/last MiB as recorded, nothing read), its"
                                   " results copied forward")
    full = scan(store, f"docker-archive:{archive}", scan={"reuse": False})
    assert full.status == "done" and not full.reused

    one, two, three = (report(store, o.scan_id) for o in (first, again, full))
    kinds = {k: len(one[k]) for k in ("vulnerabilities", "software", "unsafe_settings", "sensitive_information")}
    assert all(kinds.values()), kinds  # something of every kind to compare
    assert comparable(two) == comparable(one)
    assert comparable(three) == comparable(one)
    assert two["scan"]["id"] == again.scan_id and (two["scan"]["layers_read"], two["scan"]["layers_cached"]) == (0, 2)
    # copies, not the same rows: the first scan's results are still its own
    rows = dict(store.execute("SELECT scan_id, COUNT(*) FROM findings GROUP BY scan_id").fetchall())
    assert rows[first.scan_id] == rows[again.scan_id] == rows[full.scan_id] > 0
    assert store.execute("SELECT copied_from FROM scan_reuse WHERE scan_id = ?", [again.scan_id]).fetchone()[0] \
        == first.scan_id
    # the image's current scan is the last one, on every surface
    assert store.execute("SELECT last_scan_id FROM images").fetchall() == [(full.scan_id,)]


def test_suppressions_are_applied_again_to_the_copied_scan(tmp_path, store):
    from stowaway.ingest.findings import Suppression, add_suppression

    archive = settled(app_image().write_oci_layout(tmp_path / "oci", ref="demo/app:1"))
    first = scan(store, f"oci:{archive}")
    with store.conn:  # in force from now on, not yet applied to the stored scan: the rescan must apply it
        add_suppression(store.conn, Suppression(rule="CVE-2023-0002", reason="not reachable"), apply=False)
    again = scan(store, f"oci:{archive}")
    assert again.reused and "manifest and config read" in again.reused
    full = scan(store, f"oci:{archive}", scan={"reuse": False})
    suppressed = [(v["id"], v.get("suppressed")) for v in report(store, again.scan_id)["vulnerabilities"]]
    assert ("CVE-2023-0002", True) in suppressed
    assert ("CVE-2023-0002", False) in [(v["id"], v.get("suppressed")) for v in report(store, first.scan_id)[
        "vulnerabilities"]]
    assert comparable(report(store, again.scan_id)) == comparable(report(store, full.scan_id))
    assert comparable(report(store, again.scan_id)) != comparable(report(store, first.scan_id))


def test_new_advisories_or_another_policy_mean_a_full_scan(tmp_path, store):
    from stowaway.analyzers.vulnerabilities.importer import import_records

    archive = settled(app_image().write_docker_archive(tmp_path / "app.tar", ref="demo/app:1"))
    scan(store, f"docker-archive:{archive}")
    assert scan(store, f"docker-archive:{archive}").reused
    import_records(store, [LATER])
    after = scan(store, f"docker-archive:{archive}")
    assert after.status == "done" and not after.reused
    assert "CVE-2023-0001" in {v["id"] for v in report(store, after.scan_id)["vulnerabilities"]}
    assert scan(store, f"docker-archive:{archive}").reused
    other = scan(store, f"docker-archive:{archive}", secrets={"exclude_paths": ["/app/**"]})
    assert other.status == "done" and not other.reused
    assert not report(store, other.scan_id)["sensitive_information"]


def _rewrite_one_byte(path, marker: bytes, packing: str):
    """Changes one byte of a layer's content in the middle of MARKER's run, rewriting the file in place (a
    gzip one with its checksum made again): same inode and size, mtime put back."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        data = fh.read()
        tar = gzip.decompress(data) if packing == "gzip" else data
        at = tar.index(marker, len(tar) // 3)
        tar = tar[:at] + b"N" + tar[at + 1:]
        fh.seek(0)
        fh.write(gzip.compress(tar, compresslevel=0, mtime=0) if packing == "gzip" else tar)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("packing", ["plain", "gzip"])
def test_a_layer_changed_in_place_with_size_and_mtime_restored_is_not_reused(tmp_path, store, packing):
    path = tmp_path / f"app.{packing}.tar"
    app_image(padding=5 << 20).write_docker_archive(path, ref="demo/app:1")
    if packing == "gzip":  # stored blocks: a changed byte keeps the file's size
        data = path.read_bytes()
        path.write_bytes(gzip.compress(data, compresslevel=0, mtime=0))
    settled(path)
    first = scan(store, f"docker-archive:{path}")
    assert first.status == "done"
    assert scan(store, f"docker-archive:{path}").reused
    _rewrite_one_byte(path, b"MIDDLEMIDDLE", packing)
    again = scan(store, f"docker-archive:{path}")
    assert not again.reused
    assert again.status == "failed" and "does not match its digest" in again.error, again


def test_an_unchanged_rescan_makes_no_analyzer_and_a_new_secret_key_means_a_full_scan(tmp_path, store, monkeypatch):
    import stowaway.analyzers.base as base

    key = tmp_path / "secret.key"
    key.write_bytes(b"A" * 32)
    monkeypatch.setenv("STOWAWAY_SECRET_KEY_FILE", str(key))
    archive = settled(app_image().write_docker_archive(tmp_path / "app.tar", ref="demo/app:1"))
    first = scan(store, f"docker-archive:{archive}")
    assert first.status == "done"
    made = []
    real = base.select
    monkeypatch.setattr(base, "select", lambda *a, **k: made.append(a) or real(*a, **k))
    import stowaway.ingest.analysis as analysis

    monkeypatch.setattr(analysis, "select", base.select)
    again = scan(store, f"docker-archive:{archive}")
    assert again.reused and made == []  # the analysis key as the first scan recorded it for the same inputs
    # another key gives every secret another fingerprint: the inputs differ, the analyzers are asked, the
    # key they give differs from the stored scan's, and the image is scanned in full
    time.sleep(0.05)
    key.write_bytes(b"B" * 32)
    full = scan(store, f"docker-archive:{archive}")
    assert full.status == "done" and not full.reused and made
    fingerprints = [r[0] for r in store.execute("SELECT d.fingerprint FROM secret_details d JOIN findings f"
                                                 " ON f.id = d.finding_id WHERE f.scan_id IN (?, ?) ORDER BY f.scan_id",
                                                 [first.scan_id, full.scan_id])]
    assert len(fingerprints) == 2 and fingerprints[0] != fingerprints[1]


def test_the_store_is_not_counted_on_a_rescan_yet_an_import_in_progress_is_seen(tmp_path, store):
    """The evaluate key's store state is read in a few index steps (no COUNT over the advisories, which grows
    with the store): an import's start, each batch of advisories it writes (a record replaced included)
    and its end each change it."""
    from stowaway.analyzers.vulnerabilities.importer import Importer

    archive = settled(app_image().write_docker_archive(tmp_path / "app.tar", ref="demo/app:1"))
    scan(store, f"docker-archive:{archive}")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    assert scan(store, f"docker-archive:{archive}").reused
    store.conn.set_trace_callback(None)
    assert not [s for s in statements if "FROM advisories" in s and "COUNT(" in s], statements
    running = Importer(store, source="test")  # an import that has begun: its row is unfinished
    assert not scan(store, f"docker-archive:{archive}").reused
    assert scan(store, f"docker-archive:{archive}").reused
    running.add_record({**ADVISORIES[1], "modified": "2024-03-01T00:00:00Z", "affected": [
        {"package": {"ecosystem": "PyPI", "name": "jinja2"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.11.3"}]}]}]}, "update.json")
    running.flush()  # a batch written (GHSA-jjjj replaced), the import not finished
    during = scan(store, f"docker-archive:{archive}")
    assert not during.reused
    assert "2.11.3" in {v.get("fixed_version") for v in report(store, during.scan_id)["vulnerabilities"]}
    assert scan(store, f"docker-archive:{archive}").reused
    running.finish()
    assert not scan(store, f"docker-archive:{archive}").reused
    assert scan(store, f"docker-archive:{archive}").reused
