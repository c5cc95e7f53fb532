"""Rematch's bulk mode (one transaction; the written tables' secondary indexes and counting triggers
dropped, then made again from their SQL; the kept counts taken again from the rows) leaves the database
the row-by-row path leaves: the same findings, details, report rows, kept counts and schema; an
interruption leaves it as it was."""
from __future__ import annotations

import json
import sqlite3

import pytest
from store_fixtures import CRITICAL, HIGH, REF, osv, shop, shop_db, shop_template  # noqa: F401 (fixtures)
from test_facet_counts import assert_true

from stowaway.analyzers.vulnerabilities import rematch as rematch_module
from stowaway.analyzers.vulnerabilities.importer import import_records
from stowaway.ingest import cli, readmodel
from stowaway.ingest.db import connect


def _run(*argv) -> None:
    assert cli.main([str(a) for a in argv]) == 0


def _dump(db: str) -> dict:
    """Every row a rematch writes or moves, and the schema (indexes and triggers included)."""
    conn = sqlite3.connect(db)
    try:
        out = {name: sorted(map(repr, conn.execute(f"SELECT * FROM [{name}]")))
               for name in ("findings", "vulnerability_details", "packages", *readmodel.MATERIALIZE)}
        out["report_facet_counts"] = sorted(map(repr, conn.execute(
            "SELECT tbl, filter, filter_value, facet, value, n FROM report_facet_counts WHERE n <> 0")))
        facts = []
        for scan_id, name, value in conn.execute("SELECT scan_id, name, value FROM scan_facts"):
            if name == "vulnerabilities_rematched":  # when it ran differs
                value = {k: v for k, v in json.loads(value).items() if k != "at"}
            facts.append(repr((scan_id, name, value)))
        out["scan_facts"] = sorted(facts)
        out["scans"] = sorted(map(repr, conn.execute("SELECT id, feed_version FROM scans")))
        out["schema"] = sorted(map(repr, conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                                                      " WHERE name NOT LIKE 'sqlite_stat%'")))
        return out
    finally:
        conn.close()


@pytest.fixture
def fleet(shop_db, tmp_path) -> str:
    """The shop and three more images (log4j versions with one, two or no findings), a suppression, and
    every vulnerability finding gone: the next rematch writes them all again."""
    db = shop_db
    for n, version in enumerate(("2.15.0", "2.13.0", "2.17.0")):
        shop(version).write_oci_layout(tmp_path / f"v{n}", ref=f"corpus/shop:{n + 2}.0")
        _run("scan", f"oci:{tmp_path / f'v{n}'}", "--db", db, "--no-progress")
    _run("ignore", "add", "--image", REF, "--id", "CVE-2021-45046", "--reason", "accepted", "--db", db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM vulnerability_details")
        conn.execute("DELETE FROM findings WHERE kind = 'vulnerability'")
        conn.execute("UPDATE scans SET feed_version = NULL")
        readmodel.rebuild_all(conn)
    conn.close()
    return db


def _copy(db: str, to: str) -> str:
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    src.backup(dst)
    src.close()
    dst.close()
    return to


def _rematch(db: str, **kw):
    database = connect(db)
    try:
        return rematch_module.rematch(database, **kw)
    finally:
        database.conn.close()


def test_bulk_mode_writes_what_the_row_by_row_path_writes(fleet, tmp_path, monkeypatch):
    rows_db = _copy(fleet, str(tmp_path / "rows.db"))
    monkeypatch.setattr(rematch_module, "BATCH", 2)  # the row path commits in batches, bulk mode once
    bulk = _rematch(fleet, bulk=True)
    rows = _rematch(rows_db, bulk=False)
    assert (bulk.inserted, bulk.deleted, bulk.findings, bulk.ignored) == \
        (rows.inserted, rows.deleted, rows.findings, rows.ignored)
    assert bulk.inserted == 5 and bulk.ignored == 1  # 2.14.1: 2, 2.15.0: 1, 2.13.0: 2, 2.17.0: 0
    got = _dump(fleet)
    assert got == _dump(rows_db)
    conn = sqlite3.connect(fleet)  # written without checking foreign keys row by row: they hold
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    database = connect(_copy(fleet, str(tmp_path / "again.db")))
    assert database.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # as connect() sets it
    assert rematch_module.rematch(database, bulk=True, all_images=True).inserted == 0
    assert database.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # and as it was after a rematch
    database.conn.close()
    assert any("CREATE INDEX" in s and "vulnerabilities_view" in s for s in got["schema"])  # made again
    assert any("facet_counts_findings_insert" in s for s in got["schema"])
    assert_true(fleet)
    conn = sqlite3.connect(fleet)  # the indexes made again have the planner's statistics, at the sizes written
    assert readmodel.stale_statistics(conn) == []
    conn.close()

    # an advisory update: findings go and come (the rows of the findings deleted leave the report tables)
    later = osv("GHSA-7rjr-3q55-vv33", "CVE-2021-45046", "2.17.0", HIGH)
    later["modified"] = "2025-01-01T00:00:00Z"
    new = osv("GHSA-new0-0000-0000", "CVE-2099-0001", "2.99.0", CRITICAL)
    for db in (fleet, rows_db):
        database = connect(db)
        import_records(database, [later, new])
        database.conn.close()
    bulk = _rematch(fleet, bulk=True, all_images=True)
    rows = _rematch(rows_db, bulk=False, all_images=True)
    assert bulk.deleted > 0 and (bulk.inserted, bulk.deleted) == (rows.inserted, rows.deleted)
    assert _dump(fleet) == _dump(rows_db)
    assert_true(fleet)


def test_bulk_mode_is_chosen_when_most_images_are_evaluated_in_full(fleet, monkeypatch):
    chosen = []
    real = rematch_module._bulk_drop
    monkeypatch.setattr(rematch_module, "_bulk_drop", lambda conn: chosen.append(1) or real(conn))
    monkeypatch.setattr(rematch_module, "BULK_IMAGES", 3)
    _rematch(fleet)  # four images in full, of four
    assert chosen == [1]
    _rematch(fleet)  # none: every image was matched against this store
    assert chosen == [1]
    monkeypatch.setattr(rematch_module, "BULK_IMAGES", 5)
    _rematch(fleet, all_images=True)  # four in full, fewer than BULK_IMAGES
    assert chosen == [1]


@pytest.mark.parametrize("fan_out", [False, True])
def test_an_interrupted_bulk_rematch_leaves_the_database_as_it_was(fleet, monkeypatch, fan_out):
    before = _dump(fleet)
    calls = []
    # image by image, or a run of images at a time (one image a run here)
    name = "_FanOut.run" if fan_out else "replace_vulnerabilities"
    monkeypatch.setattr(rematch_module, "FAN_OUT", fan_out)
    monkeypatch.setattr(rematch_module, "FAN_CHUNK", 1)
    owner = rematch_module._FanOut if fan_out else rematch_module
    real = getattr(owner, name.rpartition(".")[2])

    def failing_third(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(owner, name.rpartition(".")[2], failing_third)
    with pytest.raises(KeyboardInterrupt):
        _rematch(fleet, bulk=True)
    assert len(calls) == 3
    assert _dump(fleet) == before  # no finding, no dropped index or trigger, no count moved
    monkeypatch.setattr(owner, name.rpartition(".")[2], real)
    assert _rematch(fleet, bulk=True).inserted == 5
    assert_true(fleet)
    conn = sqlite3.connect(fleet)
    assert conn.execute("SELECT COUNT(*) FROM findings WHERE suppressed = 1").fetchone()[0] == 1  # kept
    conn.close()


@pytest.mark.parametrize("bulk", [True, False])
def test_fan_out_writes_what_the_image_by_image_path_writes(fleet, tmp_path, monkeypatch, bulk):
    """Images with no stored findings are evaluated once per distinct package and written together
    (_FanOut); the images that have findings to compare with, image by image. Both leave the same rows,
    ids in the same order included, whichever path each image takes."""
    conn = sqlite3.connect(fleet)
    with conn:  # a package twice in an image (the first row gets the count), a count left from before
        scan, pid = conn.execute("SELECT scan_id, MIN(id) FROM packages WHERE name LIKE '%log4j-core'").fetchone()
        conn.execute("INSERT INTO packages (scan_id, image_id, ecosystem, name, version, source_name, source_version,"
                     " path, layer_index, purl, os_owned) SELECT scan_id, image_id, ecosystem, name, version,"
                     " source_name, source_version, path, layer_index, purl, os_owned FROM packages WHERE id = ?",
                     [pid])
        conn.execute("UPDATE packages SET vulnerability_count = 7 WHERE id = (SELECT MAX(id) FROM packages"
                     " WHERE scan_id = ? AND name NOT LIKE '%log4j-core')", [scan])
    conn.close()
    image_by_image = _copy(fleet, str(tmp_path / "image.db"))
    monkeypatch.setattr(rematch_module, "BATCH", 2)
    monkeypatch.setattr(rematch_module, "FAN_CHUNK", 2)
    results = []
    for db, fan_out in ((fleet, True), (image_by_image, False)):
        monkeypatch.setattr(rematch_module, "FAN_OUT", fan_out)
        # the report rows of consecutive new finding ids read as a range, or the ids one by one
        monkeypatch.setattr(readmodel, "RANGE_IDS", 2 if fan_out else 10 ** 9)
        got = _rematch(db, bulk=bulk)
        results.append((got.images, got.packages, got.findings, got.inserted, got.deleted, got.ignored,
                        got.changed_images, dict(got.warnings)))
    assert results[0] == results[1]
    assert results[0][3] == 5 and results[0][7]  # the OS packages no feed covers: warned per image
    assert _dump(fleet) == _dump(image_by_image)
    assert_true(fleet)

    # the images of scans 1 and 3 keep their findings, the others have none: the paths alternate
    for db in (fleet, image_by_image):
        conn = sqlite3.connect(db)
        with conn:
            gone = "(SELECT id FROM findings WHERE kind = 'vulnerability' AND scan_id NOT IN (1, 3))"
            conn.execute(f"DELETE FROM vulnerability_details WHERE finding_id IN {gone}")
            conn.execute(f"DELETE FROM findings WHERE id IN {gone}")
            conn.execute("UPDATE scans SET feed_version = NULL")
            readmodel.rebuild_all(conn)
        conn.close()
    calls: list = []
    real = rematch_module._FanOut.run
    monkeypatch.setattr(rematch_module._FanOut, "run", lambda self, chunk, *a: calls.append(
        [s[0] for s in chunk]) or real(self, chunk, *a))
    for db, fan_out in ((fleet, True), (image_by_image, False)):
        monkeypatch.setattr(rematch_module, "FAN_OUT", fan_out)
        _rematch(db, bulk=bulk)
    assert calls == [[2], [4]]
    assert _dump(fleet) == _dump(image_by_image)
    assert_true(fleet)
