"""The `stowaway` command ends without the interpreter's teardown (cli.run), and loses nothing by it: the
database is closed (its WAL checkpointed), atexit handlers run, output is flushed, the exit status is
main's, and a thread that is not a daemon is waited for."""
from __future__ import annotations

import json
import subprocess
import sys

from imagebuilder import ImageBuilder


def _stowaway(*args):
    return subprocess.run([sys.executable, "-m", "stowaway.ingest.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_a_scan_ends_with_its_database_closed_and_its_output_whole(tmp_path):
    token = "GITHUB_TOKEN=ghp_" + "Ab1Cd2Ef3G" * 3 + "h4I5j6\n"
    path = ImageBuilder().layer({"app/.env": token}).write_docker_archive(tmp_path / "a.tar", ref="exit:1")
    db = tmp_path / "s.db"
    r = _stowaway("scan", f"docker-archive:{path}", "--db", str(db), "--no-progress", "--fail-on", "low")
    assert r.returncode == 3, r.stderr  # main's status: --fail-on tripped
    assert "scanned exit:1" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("s.db")) == ["s.db"]  # no -wal, -shm
    r = _stowaway("report", "exit:1", "--db", str(db), "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["image"]["reference"] == "exit:1"  # all of it, flushed


RUN = r"""
import atexit, sys, threading, time
import stowaway.ingest.cli as cli
done = sys.argv[1]

def main():
    atexit.register(lambda: open(done + ".atexit", "w").write("ran"))
    def late():
        time.sleep(0.5)
        open(done + ".thread", "w").write("ran")
    threading.Thread(target=late, daemon=sys.argv[2] == "daemon").start()
    print("x" * 100000, end="")
    return 7

cli.main = main
cli.run()
"""


def test_atexit_handlers_run_and_a_working_thread_is_waited_for(tmp_path):
    done = str(tmp_path / "done")
    r = subprocess.run([sys.executable, "-c", RUN, done, "worker"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 7 and len(r.stdout) == 100000
    assert (tmp_path / "done.atexit").read_text() == "ran"
    assert (tmp_path / "done.thread").read_text() == "ran"  # not a daemon: waited for, as at an ordinary exit
    r = subprocess.run([sys.executable, "-c", RUN, done + "2", "daemon"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 7 and len(r.stdout) == 100000
    assert (tmp_path / "done2.atexit").read_text() == "ran"
    assert not (tmp_path / "done2.thread").exists()  # a daemon thread ends with the process, as it would
