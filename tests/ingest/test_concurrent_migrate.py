"""Concurrent first use: many processes opening a new database at the same moment all succeed, and the
schema is built exactly once (issue 14: 2-4 of 8 used to fail with `table images already exists`)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

WORKER = r"""
import os, sys, time
from stowaway.ingest import cli
cli._load_command_modules()          # every command module: every schema part registered, as the CLI does
import stowaway.analyzers.vulnerabilities.store  # noqa
from stowaway.ingest.db import connect
go, path = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
db = connect(path)
db.execute("INSERT INTO scans (status, reference) VALUES ('failed', ?)", [str(os.getpid())])
db.conn.commit()
print(db.execute("PRAGMA user_version").fetchone()[0])
"""


@pytest.mark.parametrize("processes", [8])
def test_eight_processes_open_a_new_database_at_once(tmp_path, processes):
    path, go = tmp_path / "new.db", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(go), str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    time.sleep(3)  # let every process finish importing, so they reach connect() together
    go.write_text("")
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    failures = [(rc, err[-500:]) for out, err, rc in results if rc != 0]
    assert not failures, failures
    from stowaway.ingest.db import MIGRATIONS, connect

    db = connect(str(path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("SELECT COUNT(*) FROM scans").fetchone()[0] == processes
    parts = dict(db.execute("SELECT name, version FROM schema_parts").fetchall())
    assert "advisories" in parts


def test_a_migration_step_runs_whole_or_not_at_all(tmp_path, monkeypatch):
    """A step that fails leaves the database at its previous version, nothing half-made."""
    from stowaway.ingest import db as dbm

    path = str(tmp_path / "x.db")
    dbm.connect(path).conn.close()
    monkeypatch.setitem(dbm.SCHEMA_PARTS, "broken", ["CREATE TABLE half_made (x); SELECT no_such_function();"])
    with pytest.raises(Exception):
        dbm.connect(path)
    import sqlite3

    conn = sqlite3.connect(path)
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_made'").fetchone()
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_parts'").fetchone():
        assert not conn.execute("SELECT 1 FROM schema_parts WHERE name = 'broken'").fetchone()
    assert os.path.exists(path)
