"""The installed `stowaway` command and its database: every case that cannot open one is one line and
exit 2, nothing is created, and the read-only commands open it read-only (they work on a read-only
medium and never create ./stowaway.db)."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
from imagebuilder import File, ImageBuilder

STOWAWAY = str(pathlib.Path(sys.executable).parent / "stowaway")
READ_ONLY_COMMANDS = [["images"], ["scans"], ["tasks"], ["synced"], ["schedule", "list"], ["db", "status"],
                      ["report", "cli/db:1"], ["sbom", "cli/db:1"], ["export", "baseline"]]


def run(*args, cwd=None, prefix=()):
    return subprocess.run([*prefix, STOWAWAY, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def one_line_exit_2(r):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("stowaway: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    d = tmp_path_factory.mktemp("clidb")
    img = ImageBuilder().layer({"etc/os-release": "ID=ubuntu\nVERSION_ID=\"22.04\"\n", "srv/a.bin": File(b"x" * 99)})
    path = img.write_docker_archive(d / "i.tar", ref="cli/db:1")
    db = d / "s.db"
    r = run("scan", f"docker-archive:{path}", "--db", str(db), "--no-progress")
    assert r.returncode == 0, r.stderr
    return db


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_read_only_commands_never_create_a_database(tmp_path, command):
    env = {k: v for k, v in os.environ.items() if k != "STOWAWAY_DB"}
    r = subprocess.run([STOWAWAY, *command], capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    one_line_exit_2(r)
    assert "stowaway.db: no such database" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_database_that_cannot_be_opened(tmp_path):
    (tmp_path / "dir.db").mkdir()
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all" * 100)
    cases = {
        str(tmp_path / "missing" / "x.db"): "directory",
        str(tmp_path / "dir.db"): "is a directory",
        str(tmp_path / "junk.db"): "not a SQLite database",
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    for db, words in cases.items():
        for command in (["scan", "oci:/nonexistent"], ["images"], ["report", "x"], ["db", "import", str(tmp_path)],
                        ["sync", "localhost:1"]):
            r = run(*command, "--db", db)
            one_line_exit_2(r)
            assert words in r.stderr, (command, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / "missing").exists()
    assert (tmp_path / "junk.db").read_bytes() == b"this is not sqlite at all" * 100


def _as_nobody():
    if os.geteuid() != 0:
        return ()
    if not shutil.which("setpriv"):
        pytest.skip("root without setpriv cannot test file permissions")
    return ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def test_read_only_file(scanned):
    prefix = _as_nobody()
    d = pathlib.Path(tempfile.mkdtemp(prefix="stowaway-ro-"))
    try:
        os.chmod(d, 0o755)
        db = d / "ro.db"
        shutil.copy(scanned, db)
        os.chmod(db, 0o444)
        r = run("scan", "oci:/nonexistent", "--db", str(db), prefix=prefix)
        one_line_exit_2(r)
        assert "read-only" in r.stderr
        # nothing written beside it (no -wal / -shm), and the readers work
        assert sorted(p.name for p in d.iterdir()) == ["ro.db"]
        r = run("images", "--db", str(db), prefix=prefix)
        assert r.returncode == 0 and "cli/db:1" in r.stdout, r.stderr
        r = run("report", "cli/db:1", "--db", str(db), prefix=prefix)
        assert r.returncode == 0 and '"cli/db:1"' in r.stdout, r.stderr
    finally:
        shutil.rmtree(d)


def test_read_only_medium(scanned, tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a read-only tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    commands = "\n".join(f"{STOWAWAY} {' '.join(c)} --db {mnt}/s.db >/dev/null; echo \"rc=$? {' '.join(c)}\""
                         for c in READ_ONLY_COMMANDS + [["scan", "oci:/nonexistent"]])
    script = (f"mount -t tmpfs none {mnt} && cp {scanned} {mnt}/s.db && mount -o remount,ro {mnt} || exit 99\n"
              f"{commands}\n{STOWAWAY} scan oci:/x --db {mnt}/new.db; echo \"rc=$? new\"\n")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    if r.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    codes = dict(line.split(" ", 1)[::-1] for line in r.stdout.splitlines() if line.startswith("rc="))
    for c in READ_ONLY_COMMANDS:
        name = " ".join(c)
        # sbom/export of an image without packages or checks still run; all of them read the database
        assert codes[name] == "rc=0", (name, r.stderr)
    assert codes["scan oci:/nonexistent"] == "rc=2" and "read-only" in r.stderr
    assert codes["new"] == "rc=2" and "not writable" in r.stderr
    assert "Traceback" not in r.stderr
