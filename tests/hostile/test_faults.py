"""Faults around a scan (issue 14, item 6): many scans at once on a new database, a process killed with
SIGKILL inside the writing transaction, a disk that fills up, and Datasette reading while scans write.
Each runs the real command or the real pipeline in child processes; the database must stay intact and
usable, and what the user is told is one sentence."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from stowaway.ingest.imagebuilder import ImageBuilder

STOWAWAY = os.path.join(os.path.dirname(sys.executable), "stowaway")


def image(n: int) -> ImageBuilder:
    return ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.18.4\n", f"srv/{n}": str(n) * 100,
                                 "etc/ssh/sshd_config": "PermitRootLogin yes\n"})


def intact(db_path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return conn


def test_eight_scans_start_at_once_on_a_new_database(tmp_path):
    archives = [image(n).write_docker_archive(tmp_path / f"i{n}.tar", ref=f"img/{n}:1") for n in range(8)]
    db = tmp_path / "new.db"
    procs = [subprocess.Popen([STOWAWAY, "scan", f"docker-archive:{a}", "--db", str(db), "--no-progress", "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in archives]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), [(rc, err[-400:]) for _, err, rc in results if rc]
    assert not any("Traceback" in err for _, err, _ in results)
    conn = intact(db)
    done = conn.execute("SELECT COUNT(*) FROM scans WHERE status='done'").fetchone()[0]
    assert done == 8
    assert conn.execute("SELECT COUNT(DISTINCT reference) FROM images").fetchone()[0] == 8


KILL_IN_COMMIT = r"""
import os, signal, sys
from stowaway.ingest import findings, writer
from stowaway.ingest.db import connect
from stowaway.ingest.pipeline import Scanner

real = findings.write_results

def write_then_die(conn, *args, **kwargs):
    real(conn, *args, **kwargs)          # the scan's rows are written, inside the open transaction
    os.kill(os.getpid(), signal.SIGKILL)

findings.write_results = write_then_die
if hasattr(writer, "write_results"):
    writer.write_results = write_then_die
Scanner(connect(sys.argv[1])).run([sys.argv[2]])
"""


def test_a_process_killed_inside_the_writing_transaction_leaves_the_last_good_scan(tmp_path):
    from stowaway.ingest.db import connect
    from stowaway.ingest.pipeline import Scanner
    from stowaway.ingest.report import build

    db = tmp_path / "k.db"
    first = image(1).write_docker_archive(tmp_path / "a.tar", ref="img/k:1")
    outcomes = Scanner(connect(str(db))).run([f"docker-archive:{first}"])
    assert outcomes[0].status == "done"
    before = build(connect(str(db)), "img/k:1")
    second = image(2).write_docker_archive(tmp_path / "b.tar", ref="img/k:1")
    r = subprocess.run([sys.executable, "-c", KILL_IN_COMMIT, str(db), f"docker-archive:{second}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr[-1000:]
    conn = intact(db)
    # nothing of the killed scan's transaction is there: the report is the first scan's
    after = build(connect(str(db)), "img/k:1")
    assert after["scan"]["id"] == before["scan"]["id"]
    assert after["files"] == before["files"]
    assert conn.execute("SELECT COUNT(*) FROM scans WHERE status='done'").fetchone()[0] == 1
    # the next start finds the dead task and says so; the database takes new scans
    outcomes = Scanner(connect(str(db))).run([f"docker-archive:{second}"])
    assert outcomes[0].status == "done"
    states = [r[0] for r in connect(str(db)).execute("SELECT state FROM tasks ORDER BY id")]
    assert "interrupted" in states and "running" not in states, states


def test_a_disk_that_fills_up_fails_the_scan_with_a_sentence_and_keeps_the_database(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a small tmpfs")
    stanza = "Package: package-number-{n}\nStatus: install ok installed\nVersion: 1.{n}-1\nArchitecture: amd64\n\n"
    big = ImageBuilder().layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n",  # ~30,000 package rows
                                "var/lib/dpkg/status": "".join(stanza.format(n=n) for n in range(30000))})
    small = image(3).write_docker_archive(tmp_path / "small.tar", ref="img/small:1")
    large = big.write_docker_archive(tmp_path / "large.tar", ref="img/large:1")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o size=3m none {mnt} || exit 99\n"
              f"{STOWAWAY} scan docker-archive:{small} --db {mnt}/s.db -q --no-progress; echo \"rc=$? small\"\n"
              f"{STOWAWAY} scan docker-archive:{large} --db {mnt}/s.db -q --no-progress; echo \"rc=$? large\"\n"
              f"{sys.executable} -c \"import sqlite3; c = sqlite3.connect('{mnt}/s.db');"
              f" print('integrity', c.execute('PRAGMA integrity_check').fetchone()[0]);"
              f" print('done', c.execute(\\\"SELECT COUNT(*) FROM scans WHERE status='done'\\\").fetchone()[0])\"\n"
              f"{STOWAWAY} images --db {mnt}/s.db --format json > /dev/null; echo \"rc=$? images\"\n")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    if r.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    out = r.stdout
    assert "rc=0 small" in out and "rc=0 large" not in out, (out, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
    said = [line for line in r.stderr.splitlines() if "full" in line.lower() or "space" in line.lower()]
    assert said, r.stderr[-2000:]
    assert "integrity ok" in out and "done 1" in out and "rc=0 images" in out, (out, r.stderr[-2000:])


def test_datasette_answers_while_scans_write(tmp_path):
    from datasette.app import Datasette

    db = tmp_path / "live.db"
    first = image(0).write_docker_archive(tmp_path / "i0.tar", ref="img/0:1")
    subprocess.run([STOWAWAY, "scan", f"docker-archive:{first}", "--db", str(db), "-q", "--no-progress"], check=True)
    archives = [image(n).write_docker_archive(tmp_path / f"i{n}.tar", ref=f"img/{n}:1") for n in range(1, 7)]
    scans = [subprocess.Popen([STOWAWAY, "scan", f"docker-archive:{a}", "--db", str(db), "-q", "--no-progress"],
                              stderr=subprocess.PIPE, text=True) for a in archives]
    statuses: list[int] = []
    errors: list[str] = []

    async def read_while_scanning():
        ds = Datasette([str(db)])
        name = ds.get_database().name
        pages = ["/", f"/{name}", "/-/stowaway/images", "/-/stowaway/images.json", f"/{name}/scans.json"]
        deadline = time.monotonic() + 120
        while any(p.poll() is None for p in scans) and time.monotonic() < deadline:
            for page in pages:
                resp = await ds.client.get(page)
                statuses.append(resp.status_code)
                if resp.status_code != 200:
                    errors.append(f"{page}: {resp.status_code} {resp.text[:300]}")
            await asyncio.sleep(0.05)

    reader = threading.Thread(target=lambda: asyncio.run(read_while_scanning()))
    reader.start()
    codes = [p.wait(timeout=300) for p in scans]
    reader.join(timeout=180)
    assert codes == [0] * len(scans), [p.stderr.read()[-400:] for p in scans if p.returncode]
    assert statuses and not errors, errors[:5]
    assert intact(db).execute("SELECT COUNT(*) FROM images").fetchone()[0] == 7
