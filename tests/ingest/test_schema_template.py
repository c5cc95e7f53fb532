"""A new database starts as a copy of the schema template (db.py `_new_from_template`): the same database
that executing the schema makes, made once per schema, never written over an existing file."""
from __future__ import annotations

import os
import sqlite3

import pytest

from stowaway.ingest import db as dbm


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("STOWAWAY_SCHEMA_TEMPLATE", raising=False)
    return tmp_path / "cache" / "schema"


def _everything(path) -> dict:
    """The schema, the database settings that persist and every table's rows."""
    conn = sqlite3.connect(path)
    out: dict = {"master": sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(),
                                  key=repr)}
    for pragma in ("user_version", "page_size", "auto_vacuum", "encoding", "journal_mode", "application_id"):
        out[pragma] = conn.execute(f"PRAGMA {pragma}").fetchone()
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        out[table] = sorted(conn.execute(f"SELECT * FROM [{table}]").fetchall(), key=repr)
    conn.close()
    return out


def _migrations(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = dbm._migrate_locked

    def counted(conn):
        calls.append(1)
        real(conn)

    monkeypatch.setattr(dbm, "_migrate_locked", counted)
    return calls


def test_a_new_database_from_the_template_is_the_one_migrate_makes(tmp_path, cache, monkeypatch):
    migrations = _migrations(monkeypatch)
    dbm.connect(str(tmp_path / "first.db")).conn.close()  # makes the template (migrated once, in the cache)
    assert len(list(cache.glob("*.sqlite"))) == 1
    made = len(migrations)
    copied = dbm.connect(str(tmp_path / "copied.db"))
    assert len(migrations) == made  # a copy: nothing left to migrate
    assert copied.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    copied.execute("INSERT INTO scans (status, reference) VALUES ('failed', 'x')")
    copied.conn.commit()
    copied.conn.close()
    monkeypatch.setenv("STOWAWAY_SCHEMA_TEMPLATE", "0")
    dbm.connect(str(tmp_path / "executed.db")).conn.close()
    assert len(migrations) == made + 1
    want = _everything(str(tmp_path / "executed.db"))
    assert _everything(str(tmp_path / "first.db")) == want
    got = _everything(str(tmp_path / "copied.db"))
    assert got.pop("scans") != want.pop("scans")  # the copy is a database of its own, written to
    got.pop("sqlite_sequence", None), want.pop("sqlite_sequence", None)
    assert got == want
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".new")]  # nothing left beside it


def test_a_schema_part_registered_later_gets_a_template_of_its_own(tmp_path, cache, monkeypatch):
    dbm.connect(str(tmp_path / "a.db")).conn.close()
    monkeypatch.setitem(dbm.SCHEMA_PARTS, "test_extra", ["CREATE TABLE test_extra (x INTEGER);"])
    database = dbm.connect(str(tmp_path / "b.db"))
    assert database.execute("SELECT version FROM schema_parts WHERE name = 'test_extra'").fetchone() == (1,)
    assert database.execute("SELECT COUNT(*) FROM test_extra").fetchone() == (0,)
    assert len(list(cache.glob("*.sqlite"))) == 2


def test_an_existing_file_is_never_replaced(tmp_path, cache):
    dbm.connect(str(tmp_path / "a.db")).conn.close()
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE mine (x)")
    conn.execute("INSERT INTO mine VALUES (42)")
    conn.commit()
    conn.close()
    database = dbm.connect(str(old))  # migrated in place, as before
    assert database.execute("SELECT x FROM mine").fetchall() == [(42,)]
    assert database.execute("PRAGMA user_version").fetchone()[0] == len(dbm.MIGRATIONS)


def test_a_damaged_template_is_made_again(tmp_path, cache):
    dbm.connect(str(tmp_path / "a.db")).conn.close()
    (template,) = cache.glob("*.sqlite")
    data = template.read_bytes()
    template.write_bytes(data[: len(data) // 2])  # cut short
    database = dbm.connect(str(tmp_path / "b.db"))
    assert database.execute("PRAGMA user_version").fetchone()[0] == len(dbm.MIGRATIONS)
    assert database.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert dbm._whole_database(template) and len(template.read_bytes()) == len(data)
    template.write_bytes(b"not a database" * 100)
    database = dbm.connect(str(tmp_path / "c.db"))
    assert database.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert _everything(str(tmp_path / "c.db")) == _everything(str(tmp_path / "a.db"))


def test_a_failing_migration_step_fails_the_new_database_as_before(tmp_path, cache, monkeypatch):
    monkeypatch.setitem(dbm.SCHEMA_PARTS, "broken", ["CREATE TABLE half_made (x); SELECT no_such_function();"])
    with pytest.raises(sqlite3.OperationalError, match="no_such_function"):
        dbm.connect(str(tmp_path / "new.db"))
    assert not list(cache.glob("*.sqlite"))
    assert not list(cache.glob(".building-*"))


def test_without_a_cache_directory_the_database_is_made_as_before(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")  # the cache directory's place is taken by a file: no template can be kept
    monkeypatch.setenv("STOWAWAY_CACHE_DIR", str(blocked / "cache"))
    database = dbm.connect(str(tmp_path / "new.db"))
    assert database.execute("PRAGMA user_version").fetchone()[0] == len(dbm.MIGRATIONS)


def test_a_name_the_os_cannot_take_fails_as_before(tmp_path, cache, monkeypatch):
    with pytest.raises(ValueError) as copied:
        dbm.connect(str(tmp_path / "a\0b.db"))
    monkeypatch.setenv("STOWAWAY_SCHEMA_TEMPLATE", "0")
    with pytest.raises(ValueError) as executed:
        dbm.connect(str(tmp_path / "a\0b.db"))
    assert str(copied.value) == str(executed.value)
    assert not [p for p in os.listdir(tmp_path) if p != "cache"]
