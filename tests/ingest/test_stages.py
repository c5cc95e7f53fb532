"""The three stages and the one run loop (issue 12): index and apply where the layers are read, evaluate
and write in the writer with the database; the task runner drives every scan; duration, interruption
and the read/cached message tell the truth."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import zstandard
from imagebuilder import File, ImageBuilder

SECRET = "ghp_" + "Zq7Xr2Lm9Vb4Nc8Kd1Fg6Hj3Tw5Ys0Pa1Qe2"  # a GitHub token shape the secret rules know

OS_RELEASE = 'ID=debian\nVERSION_ID="11"\nPRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\n'
STATUS = ("Package: curl\nStatus: install ok installed\nVersion: 7.74.0-1.3+deb11u1\nArchitecture: amd64\n\n"
          "Package: libssl1.1\nStatus: install ok installed\nSource: openssl\nVersion: 1.1.1n-0+deb11u3\n"
          "Architecture: amd64\n\n")
ADVISORIES = [
    {"id": "DEBIAN-CVE-2023-0002", "modified": "2024-01-01T00:00:00Z", "aliases": ["CVE-2023-0002"],
     "affected": [{"package": {"ecosystem": "Debian:11", "name": "curl"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
    {"id": "DEBIAN-CVE-2023-0001", "modified": "2024-01-01T00:00:00Z", "aliases": ["CVE-2023-0001"],
     "affected": [{"package": {"ecosystem": "Debian:11", "name": "openssl"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1.1n-0+deb11u4"}]}]}]},
    {"id": "GHSA-jjjj", "modified": "2024-01-01T00:00:00Z", "aliases": ["CVE-2019-10906"],
     "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.10.1"}]}]}]},
]


def base_image():
    return ImageBuilder().layer({"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": STATUS,
                                 "bin/sh": File(b"\x7fELF" + b"s" * 300, mode=0o755)}, created_by="ADD rootfs /")


def app_image(i: int):
    img = base_image()
    img.layer({"usr/local/lib/python3.9/site-packages/Jinja2-2.10.dist-info/METADATA":
               "Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n", f"app/{i}.txt": "x" * (10 + i)},
              created_by="RUN pip install Jinja2==2.10")
    return img


def every_cell(database):
    """Every value of every table, zstd-compressed blobs decompressed, as one text."""
    out = []
    for (table,) in database.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
        for row in database.execute(f"SELECT * FROM [{table}]").fetchall():
            for cell in row:
                if isinstance(cell, bytes):
                    try:
                        cell = zstandard.ZstdDecompressor().decompress(cell)
                    except zstandard.ZstdError:
                        pass
                    cell = cell.decode("utf-8", "replace")
                out.append(str(cell))
    return "\n".join(out)


# --- evaluate: redaction -----------------------------------------------------------------------------

def test_a_redaction_failure_fails_the_scan_and_stores_nothing_raw(tmp_path, scan, monkeypatch):
    from stowaway.analyzers.secrets import redaction

    img = base_image()
    img.env = img.env + [f"GITHUB_TOKEN={SECRET}"]
    img.write_oci_layout(tmp_path / "oci", ref="demo/leaky:1")

    def broken(spec, scanner):  # its message quotes the value, as a parser's error might
        raise ValueError(f"cannot mask {SECRET}")

    monkeypatch.setattr(redaction, "redact", broken)
    database, out = scan(f"oci:{tmp_path / 'oci'}")
    assert [o.status for o in out] == ["failed"]
    assert "could not be redacted" in out[0].error
    assert database.execute("SELECT status FROM scans").fetchall() == [("failed",)]
    assert database.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0
    assert SECRET not in every_cell(database)

    monkeypatch.undo()  # and with a working redaction the same image is stored, masked
    database, out = scan(f"oci:{tmp_path / 'oci'}")
    assert out[0].status == "done"
    env = json.loads(database.execute("SELECT env FROM images").fetchone()[0])
    assert any(e.startswith("GITHUB_TOKEN=") for e in env) and SECRET not in every_cell(database)


# --- evaluate in the writer: the Dask path needs no database -------------------------------------

IDS = {"id", "scan_id", "image_id", "package_id", "finding_id", "layer_id", "last_scan_id", "task_id"}


def _rows(database, table, key_sql, join=""):
    """Every row of `table` without its ids, keyed by what identifies it across databases, sorted."""
    cols = [r[1] for r in database.execute(f"PRAGMA table_info([{table}])") if r[1] not in IDS]
    sql = f"SELECT {key_sql}, {', '.join(f't.[{c}]' for c in cols)} FROM [{table}] t {join}"
    return sorted((tuple(str(v) for v in row) for row in database.execute(sql).fetchall()))


def _contents(database):
    """Everything the scans stored about the images, ids and times aside: packages, findings and every
    detail table in full, the image rows, what each scan recorded."""
    by_scan = "JOIN scans s ON s.id = t.scan_id"
    out = {
        "images": database.execute("SELECT reference, manifest_digest, os_family, os_version, size, env, labels,"
                                   " history FROM images ORDER BY reference").fetchall(),
        "packages": _rows(database, "packages", "s.reference", by_scan),
        "findings": _rows(database, "findings", "s.reference", by_scan),
        "scans": database.execute("SELECT reference, status, layers_read + layers_cached, analyzers, risk_types"
                                  " FROM scans ORDER BY reference").fetchall(),
    }
    for (table,) in database.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%_details'"):
        out[table] = _rows(database, table, "s.reference, f.fingerprint",
                           "JOIN findings f ON f.id = t.finding_id JOIN scans s ON s.id = f.scan_id")
    return out


def database_rows(database, sql):
    return database.execute(sql).fetchall()


def _scan_into(tmp_path, name, sources, **kw):
    from stowaway.analyzers.vulnerabilities.importer import import_records
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner

    database = connect(str(tmp_path / f"{name}.db"))
    import_records(database, ADVISORIES)
    policy = {"base_images": {"approved": ["demo/base:1"]}}
    Scanner(database, policy, progress=False).run([sources[0]])  # the approved base, scanned first
    out = Scanner(database, policy, progress=False, **kw).run(sources[1:])
    return database, out


def test_dask_workers_that_cannot_open_the_database_store_what_the_local_scan_stores(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    base_image().write_oci_layout(tmp_path / "base", ref="demo/base:1")
    sources = [f"oci:{tmp_path / 'base'}"]
    for i in range(2):
        app_image(i).write_oci_layout(tmp_path / f"app{i}", ref=f"demo/app:{i}")
        sources.append(f"oci:{tmp_path / f'app{i}'}")
    local, _ = _scan_into(tmp_path, "local", sources)
    assert _contents(local)["vulnerability_details"]  # something to compare

    # Dask workers here are threads of this process: any database they try to open is refused
    attempts = []
    real_connect = sqlite3.connect

    def guarded(*args, **kw):
        if threading.current_thread() is not threading.main_thread():
            attempts.append(args[0] if args else kw.get("database"))
            raise sqlite3.OperationalError("unable to open database file (a worker has no database)")
        return real_connect(*args, **kw)

    monkeypatch.setattr(sqlite3, "connect", guarded)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        remote, out = _scan_into(tmp_path, "dask", sources, dask=client)
        assert "run_job" in cl.scheduler.task_prefixes  # the analysis ran on the cluster
    monkeypatch.undo()
    assert attempts, "the workers were meant to try the database and fail"
    assert sorted(o.reference for o in out) == ["demo/app:0", "demo/app:1"]
    assert [o.status for o in out] == ["done", "done"]
    got, want = _contents(remote), _contents(local)
    assert got.keys() == want.keys()
    for table in want:
        assert got[table] == want[table], table
    verdicts = dict(database_rows(remote, "SELECT i.reference, f.status FROM findings f JOIN images i ON"
                                          " i.id = f.image_id WHERE f.kind = 'base_image'"))
    assert verdicts["demo/app:1"] == "pass"  # built on the approved base, which only the writer's database holds
    assert database_rows(remote, "SELECT COUNT(*) FROM findings WHERE kind = 'vulnerability'")[0][0] >= 6


# --- duration ----------------------------------------------------------------------------------------

def test_the_recorded_duration_includes_reading_the_layers(tmp_path, scan, monkeypatch):
    from stowaway.ingest.streams import LayerStream

    app_image(1).write_oci_layout(tmp_path / "oci", ref="demo/app:1")
    slept = []
    finish = LayerStream.finish

    def slow_finish(self, *a, **kw):  # reading a layer takes at least 0.4 s
        time.sleep(0.4)
        slept.append(0.4)
        return finish(self, *a, **kw)

    monkeypatch.setattr(LayerStream, "finish", slow_finish)
    database, out = scan(f"oci:{tmp_path / 'oci'}", risks=["files"])
    assert out[0].status == "done" and len(slept) == 2
    seconds = database.execute("SELECT seconds FROM scans").fetchone()[0]
    assert seconds >= sum(slept)


# --- one run loop --------------------------------------------------------------------------------

def test_the_library_scanner_runs_through_the_task_runner(tmp_path, scan):
    app_image(1).write_oci_layout(tmp_path / "oci", ref="demo/app:1")
    database, out = scan(f"oci:{tmp_path / 'oci'}", risks=["files"])
    tasks = database.execute("SELECT id, kind, state, total, done FROM tasks").fetchall()
    assert len(tasks) == 1 and tasks[0][1:] == ("manual", "done", 1, 1)
    assert database.execute("SELECT task_id FROM scans").fetchall() == [(tasks[0][0],)]
    items = database.execute("SELECT source, state, scan_ids FROM task_items").fetchall()
    assert items == [(f"oci:{tmp_path / 'oci'}", "done", json.dumps([out[0].scan_id]))]


# --- the read/cached message -------------------------------------------------------------------------

def test_a_second_scan_of_a_compressed_docker_save_reuses_the_analysis_and_says_so(tmp_path):
    archive = app_image(1).write_docker_archive(tmp_path / "app.tar.gz", ref="demo/app:1", compress_with="gzip")
    db = str(tmp_path / "cli.db")
    cli = [sys.executable, "-m", "stowaway.ingest.cli", "scan", f"docker-archive:{archive}", "--db", db,
           "--risk", "files", "--no-progress"]
    first = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "2 layers read, 0 cached)" in first.stderr  # nothing was in the database: nothing more to say
    # the archive names its layers at its end: a first pass learns their digests, the cached ones are not read
    second = subprocess.run(cli + ["--set", "scan.reuse=false"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "0 layers read, 2 cached)" in second.stderr
    # unchanged archive, analyzers, policy and database: not even opened, the results copied forward
    third = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert "0 layers read, 2 cached; unchanged since scan 2 (archive unchanged" in third.stderr
    from stowaway.ingest.db import connect

    database = connect(db)
    assert database.execute("SELECT layers_read, layers_cached FROM scans ORDER BY id").fetchall() == [
        (2, 0), (0, 2), (0, 2)]
    database.conn.close()


def test_layers_read_although_cached_are_named_in_the_message(tmp_path, scan):
    archive = app_image(1).write_docker_archive(tmp_path / "app.tar.gz", ref="demo/app:1", compress_with="gzip")
    database, first = scan(f"docker-archive:{archive}", risks=["files"])
    # without the digest pass (a stream such as the engine's `docker save`) the layers pass by before the
    # manifest: they are read again, and the message says why
    # (and no copying forward of the unchanged image's results: the layers are what this test is about)
    database, again = scan(f"docker-archive:{archive}", risks=["files"],
                           policy={"source_options": {"prescan": False}, "scan": {"reuse": False}})
    assert (again[0].layers_read, again[0].layers_cached, again[0].layers_known) == (2, 0, 2)
    assert again[0].layers_text().startswith("2 layers read, 0 cached; 2 of the layers read were already in the"
                                             " database")
    assert first[0].layers_text() == "2 layers read, 0 cached"


# --- interruption ----------------------------------------------------------------------------------

SLOW_SCAN = textwrap.dedent("""
    import signal, sys, time
    from stowaway.ingest.streams import LayerStream

    # Ctrl-C as a terminal's user has it: an ignored SIGINT is inherited across exec, and the test process's
    # own may have been left ignored by an earlier test (Python keeps an inherited SIG_IGN for SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from stowaway.ingest import cli

    finish = LayerStream.finish

    def stuck(self, *a, **kw):
        print("READING", flush=True)
        time.sleep(120)
        return finish(self, *a, **kw)

    LayerStream.finish = stuck
    sys.exit(cli.main(sys.argv[1:]))
""")


def _start_stuck_scan(tmp_path):
    app_image(1).write_oci_layout(tmp_path / "oci", ref="demo/app:1")
    db = str(tmp_path / "stuck.db")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SCAN, "scan", f"oci:{tmp_path / 'oci'}", "--db", db,
                             "--risk", "files", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    # the layers may be read by two processes (ingest/parallel.py): both get stuck, and with unbuffered output
    # their two "READING" may share the first line
    assert line.startswith("READING"), proc.stderr.read()
    return proc, db


def test_a_scan_killed_with_sigkill_is_marked_interrupted_on_the_next_start(tmp_path):
    from stowaway.ingest.db import connect
    from stowaway.ingest.tasks import TaskRunner

    proc, db = _start_stuck_scan(tmp_path)
    database = connect(db)
    assert database.execute("SELECT state, pid FROM tasks").fetchall() == [("running", proc.pid)]
    proc.kill()
    proc.wait(timeout=30)
    assert database.execute("SELECT state FROM tasks").fetchone()[0] == "running"  # nobody could say otherwise
    TaskRunner(database, {})  # the next start
    state, error = database.execute("SELECT state, error FROM tasks").fetchone()
    assert state == "interrupted" and f"process {proc.pid}" in error
    assert database.execute("SELECT state FROM task_items").fetchall() == [("interrupted",)]
    assert database.execute("SELECT status FROM scans").fetchall() == [("interrupted",)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_during_a_scan_marks_task_and_scan_interrupted(tmp_path, sig):
    from stowaway.ingest.db import connect

    proc, db = _start_stuck_scan(tmp_path)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=240)  # generous: a loaded CI machine
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    database = connect(db)
    assert database.execute("SELECT state FROM tasks").fetchall() == [("interrupted",)]
    assert database.execute("SELECT status, task_id FROM scans").fetchall() == [("interrupted", 1)]
    assert database.execute("SELECT state FROM task_items").fetchall() == [("interrupted",)]


def test_index_analyzers_and_database_free_evaluators_see_no_database_the_others_see_the_writers(
        tmp_path, scan, monkeypatch):
    from stowaway.analyzers.base_image import BaseImage
    from stowaway.analyzers.files import FileInformation
    from stowaway.analyzers.settings.configs import SettingsFiles

    seen = {}
    for cls in (FileInformation, SettingsFiles, BaseImage):
        def spy(self, ctx, layers, _real=cls.collect, _name=cls.name):
            seen[_name] = (ctx.db, len(ctx.layer_entries), type(ctx.fs).__name__)
            return _real(self, ctx, layers)

        monkeypatch.setattr(cls, "collect", spy)
    app_image(1).write_oci_layout(tmp_path / "oci", ref="demo/app:1")
    database, out = scan(f"oci:{tmp_path / 'oci'}", risks=["files", "base_image", "unsafe_settings"])
    assert out[0].status == "done"
    assert seen["files"] == (None, 2, "Filesystem")  # the index stage: no database, wherever it runs
    # an evaluator that needs no database runs where the layers were read, on the applied image
    assert seen["settings-files"] == (None, 2, "Filesystem")
    db, layers, fs = seen["base-image"]
    # one that needs it runs in the writer with its database, on the inventory: the filesystem stayed behind
    assert db is database and (layers, fs) == (0, "NoneType")
