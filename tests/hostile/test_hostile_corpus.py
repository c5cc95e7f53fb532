"""Runs the installed `stowaway scan` on every case of the hostile corpus (hostile_cases.py), as a user
or a CI job would, and checks what every case must hold:

- the exit status the case expects (1 when its image failed, 0 when it scanned), and the good image
  scanned after it in the same command is stored: a bad image never takes down a batch;
- what the user is told: the failed scan's recorded error (one line) or a scan warning names the
  problem; no traceback and no Python exception name on stderr or in the database;
- bounded time (a generous timeout, for a loaded CI machine) and memory (peak RSS of the process);
- nothing written outside the database: the working directory, TMPDIR and HOME stay empty and the
  input directory is unchanged;
- the database is intact (PRAGMA integrity_check) and usable: the good image's report builds.

The cases run concurrently in a thread pool, each in its own process, once per test session; the
slowest is printed at the end of the run.
"""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile_cases import CASES, FAIL, Case

from stowaway.ingest.db import connect
from stowaway.ingest.imagebuilder import ImageBuilder
from stowaway.ingest.report import build

STOWAWAY = os.path.join(os.path.dirname(sys.executable), "stowaway")
TIMEOUT = 180
EXCEPTION_NAME = re.compile(r"Traceback|\b[A-Z][A-Za-z]*(Error|Exception)\b|internal error")
MEASURE = ("import resource, subprocess, sys\n"
           "code = subprocess.call(sys.argv[2:])\n"
           "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
           "sys.exit(code)\n")
# the tool's own state, not written by what it scans: compiled YARA rules, the empty-schema template a new
# database is copied from (db._new_from_template), the key of secret fingerprints, the weak-password verdict
# cache and its key
OWN_STATE = {".cache", ".cache/stowaway", ".cache/stowaway/yara", ".cache/stowaway/schema", ".local", ".local/share", ".local/share/stowaway"}
GOOD = ImageBuilder().layer({"etc/os-release": "ID=alpine\nVERSION_ID=3.18.4\n", "bin/true": "ok"})


@dataclass
class Run:
    case: Case
    dirs: dict
    listing: list[str]
    exit: int
    stdout: str
    stderr: str
    seconds: float
    rss_mb: float
    timed_out: bool


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def run_case(name: str, base: Path, good: str) -> Run:
    root = base / name
    dirs = {k: root / k for k in ("in", "cwd", "tmp", "home", "db")}
    for p in dirs.values():
        p.mkdir(parents=True)
    case = CASES[name](dirs["in"])
    listing = tree(dirs["in"])
    env = {**os.environ, "TMPDIR": str(dirs["tmp"]), "HOME": str(dirs["home"]), "NO_COLOR": "1"}
    env.pop("STOWAWAY_DB", None)
    # a small parent measures the scan: a child forked from this test process would count this
    # process's pages (the cases' inputs) in its own peak RSS until it execs
    rss_file = dirs["db"] / "rss"
    measure = [sys.executable, "-c", MEASURE, str(rss_file)]
    cmd = [*measure, STOWAWAY, "scan", *case.sources, good, "--db", str(dirs["db"] / "scan.db"), "--no-progress", *case.args]
    t0 = time.monotonic()
    out, err = dirs["db"] / "stdout", dirs["db"] / "stderr"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(cmd, cwd=dirs["cwd"], env=env, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        _, status, _ = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    timed_out = time.monotonic() - t0 >= TIMEOUT
    rss_mb = int(rss_file.read_text()) / 1024 if rss_file.exists() else float("inf")
    return Run(case, dirs, listing, proc.returncode, out.read_text(errors="replace"), err.read_text(errors="replace"),
               time.monotonic() - t0, rss_mb, timed_out)


@pytest.fixture(scope="session")
def corpus_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    good = "docker-archive:" + GOOD.write_docker_archive(base / "good.tar", ref="good:1")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_case, name, base, good) for name in CASES}
        runs = {name: f.result() for name, f in futures.items()}
    slowest = max(runs, key=lambda n: runs[n].seconds)
    hungriest = max(runs, key=lambda n: runs[n].rss_mb)
    print(f"\nhostile corpus: {len(runs)} cases; slowest {slowest} ({runs[slowest].seconds:.1f} s),"
          f" most memory {hungriest} ({runs[hungriest].rss_mb:.0f} MB)", file=sys.stderr)
    return runs


def test_the_corpus_has_at_least_sixty_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(corpus_runs, name):
    run = corpus_runs[name]
    case = run.case
    said = f"exit {run.exit}\nstdout: {run.stdout[-2000:]}\nstderr: {run.stderr[-2000:]}"
    assert not run.timed_out, f"{name} ran past {TIMEOUT} s"
    assert run.exit == case.expect_exit, said
    assert not EXCEPTION_NAME.search(run.stderr), said
    assert run.rss_mb < case.rss_mb, f"{name}: peak RSS {run.rss_mb:.0f} MB"

    for k in ("cwd", "tmp"):
        assert tree(run.dirs[k]) == [], f"{name} wrote into {k}: {tree(run.dirs[k])}"
    home = [p for p in tree(run.dirs["home"]) if p not in OWN_STATE and not p.startswith(
        (".cache/stowaway/yara/", ".cache/stowaway/schema/", ".local/share/stowaway/secret-fingerprint.key",
         ".cache/stowaway/password-verdicts.sqlite", ".local/share/stowaway/password-verdicts.key"))]
    assert home == [], f"{name} wrote into HOME: {home}"
    assert tree(run.dirs["in"]) == run.listing, f"{name} changed its input directory"

    db_path = run.dirs["db"] / "scan.db"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        scans = conn.execute("SELECT reference, status, error, warnings FROM scans ORDER BY id").fetchall()
        if case.check:
            case.check(conn)
    good = [s for s in scans if s[0] == "good:1"]
    assert good and good[-1][1] == "done", scans
    others = [s for s in scans if s[0] != "good:1"]
    assert others, scans
    for _, status, error, warnings in others:
        assert not EXCEPTION_NAME.search(error or ""), error
        assert not EXCEPTION_NAME.search(warnings or ""), warnings
    if case.expect_exit == FAIL:
        failed = [s for s in others if s[1] == "failed"]
        assert failed, scans
        assert all("\n" not in (s[2] or "") and s[2] for s in failed), failed
        assert any(case.says in s[2] for s in failed), (case.says, failed)
    else:
        assert all(s[1] == "done" for s in others), others
        assert any(case.says in (s[3] or "") for s in others), (case.says, others)
    assert build(connect(str(db_path)), "good:1")["image"]["reference"] == "good:1"
