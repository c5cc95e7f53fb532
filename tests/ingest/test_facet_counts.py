"""The kept facet counts (readmodel's report_facet_counts) never lie: after every kind of write they
equal the counts taken from the rows themselves, here computed in Python from the rows."""
from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest
from store_fixtures import REF, shop, shop_db, shop_template  # noqa: F401 (fixtures)

from stowaway.ingest import cli, readmodel


def _cvss(score):
    if score is None:
        return "not scored"
    if score >= 9:
        return "critical (9.0-10.0)"
    if score >= 7:
        return "high (7.0-8.9)"
    if score >= 4:
        return "medium (4.0-6.9)"
    if score > 0:
        return "low (0.1-3.9)"
    return "none (0.0)" if score == 0 else None


def _value(facet: str, row: dict):
    kind, column = facet.split(":", 1)
    if kind == "fix":
        return "yes" if (row["fixed_version"] or "") != "" else "no"
    if kind == "cvss":
        return _cvss(row["cvss_score"])
    if kind == "top":  # the dashboard's packages: name and ecosystem
        return None if row["package"] is None else json.dumps([row["package"], row["ecosystem"]], separators=(",", ":"))
    if kind == "layer":
        return None if row["layer_index"] is None else json.dumps([row["layer_index"], row["layer_created_by"]],
                                                                  separators=(",", ":"), ensure_ascii=False)
    return row[column]


def _filter_value(column: str, row: dict):
    """The value a row is counted under for a filter: a column's, or one layer's, or one CVSS bucket's."""
    if column == "layer":
        return _value("layer:layer_index", row)
    if column == "cvss":
        return _value("cvss:cvss_score", row)
    return row[column]


def expected(conn) -> Counter:
    """(table, filter, filter value, facet, value) -> rows, counted in Python from every row."""
    conn.row_factory = sqlite3.Row
    out: Counter = Counter()
    for table, facets in readmodel.COUNTED_FACETS.items():
        for row in map(dict, conn.execute(f"SELECT * FROM [{table}]")):
            for facet in facets:
                value = _value(facet, row)
                if value is None:
                    continue
                only = readmodel.COUNTED_ONLY.get(table, {}).get(facet)  # kept under these filters only
                if only is None:
                    out[(table, "", "", facet, value)] += 1
                for col in readmodel.COUNTED_FILTERS[table]:
                    if only is not None and col not in only:
                        continue
                    column, _, cond = col.partition("&")  # `severity&suppressed=0`: unsuppressed rows only
                    if cond and str(row[cond.split("=")[0]]) != cond.split("=")[1]:
                        continue
                    chosen = _filter_value(column, row)
                    if chosen is not None:
                        out[(table, col, chosen, facet, value)] += 1
    for table, facets in readmodel.COUNTED_BASE.items():
        for row in map(dict, conn.execute(f"SELECT * FROM [{table}]")):
            for facet, col in facets.items():
                if row[col] is not None:
                    out[(table, "", "", facet, row[col])] += 1
    conn.row_factory = None
    return out


def kept(conn) -> Counter:
    return Counter({tuple(r[:5]): r[5] for r in conn.execute(
        "SELECT tbl, filter, filter_value, facet, value, n FROM report_facet_counts WHERE n <> 0")})


def assert_true(db: str) -> Counter:
    conn = sqlite3.connect(db)
    try:
        want = expected(conn)
        got = kept(conn)
        assert got == want, {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
        return got
    finally:
        conn.close()


def _run(*argv) -> None:
    assert cli.main([str(a) for a in argv]) == 0


def test_counts_hold_through_scans_suppressions_rescans_and_rematch(shop_db, tmp_path):
    db = shop_db
    got = assert_true(db)
    assert got[("vulnerabilities_view", "", "", "severity:severity", "critical")] == 1
    assert got[("findings_report", "", "", "values:suppressed", 0)] > 0
    assert got[("vulnerabilities_view", "severity", "critical", "values:image", REF)] == 1

    # a second image of the same repository (the trigger path: a new current scan)
    shop("2.15.0").write_oci_layout(tmp_path / "v2", ref="corpus/shop:2.0")
    _run("scan", f"oci:{tmp_path / 'v2'}", "--db", db, "--no-progress")
    got = assert_true(db)
    assert got[("vulnerabilities_view", "", "", "values:image", "corpus/shop:2.0")] == 1
    assert got[("vulnerabilities_view", "severity&suppressed=0", "critical", "values:image", REF)] == 1

    # a suppression moves a finding from unsuppressed to suppressed (refresh_images)
    _run("ignore", "add", "--image", REF, "--id", "CVE-2021-44228", "--reason", "accepted", "--db", db)
    got = assert_true(db)
    assert got[("findings_report", "suppressed", 1, "values:image", REF)] == 1
    # counted among the critical ones, no longer among the unsuppressed critical ones
    assert got[("vulnerabilities_view", "severity", "critical", "values:image", REF)] == 1
    assert got[("vulnerabilities_view", "severity&suppressed=0", "critical", "values:image", REF)] == 0

    # a rescan replaces the image's current scan; the suppression carries over
    _run("rescan", REF, "--db", db, "--no-progress")
    got = assert_true(db)
    assert got[("findings_report", "suppressed", 1, "values:image", REF)] == 1

    # rematch against the database's advisories, then with the suppression removed
    _run("rematch", "--db", db, "--no-progress")
    assert_true(db)
    conn = sqlite3.connect(db)
    ids = [str(r[0]) for r in conn.execute("SELECT id FROM suppressions")]
    conn.close()
    _run("ignore", "remove", *ids, "--db", db)
    got = assert_true(db)
    assert got[("findings_report", "suppressed", 1, "values:image", REF)] == 0


def test_counts_hold_when_an_image_goes_and_after_a_rebuild(shop_db):
    db = shop_db
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        image_id = conn.execute("SELECT id FROM images WHERE reference = ?", [REF]).fetchone()[0]
        conn.execute("DELETE FROM images WHERE id = ?", [image_id])  # the read_model_image_deleted trigger
    conn.close()
    got = assert_true(db)
    assert not any(k[0] in readmodel.COUNTED_FACETS for k in got)  # no rows left in the report tables
    assert got[("findings", "", "", "kind:kind", "vulnerability")] > 0  # the findings themselves remain
    conn = sqlite3.connect(db)
    with conn:  # a count out of step is repaired by rebuild_all
        conn.execute("UPDATE report_facet_counts SET n = n + 5")
        readmodel.rebuild_all(conn)
    conn.close()
    assert_true(db)


def _report_rows(db: str) -> dict:
    conn = sqlite3.connect(db)
    try:
        return {name: sorted(map(repr, conn.execute(f"SELECT * FROM [{name}]"))) for name in readmodel.MATERIALIZE}
    finally:
        conn.close()


@pytest.mark.parametrize("fan_out", [False, True])
def test_rematch_in_batches_leaves_the_report_rows_a_rebuild_would_make(shop_db, tmp_path, monkeypatch, fan_out):
    """Rematch writes a batch of images per transaction and refreshes their report rows once per batch;
    an error inside a batch takes back that batch only. Image by image, or (FAN_OUT) a batch's images
    evaluated and written together."""
    from stowaway.analyzers.vulnerabilities import rematch as rematch_module
    from stowaway.ingest import findings as store

    db = shop_db
    for n, version in enumerate(("2.15.0", "2.13.0", "2.14.0")):  # each with a vulnerability
        shop(version).write_oci_layout(tmp_path / f"v{n}", ref=f"corpus/shop:{n + 2}.0")
        _run("scan", f"oci:{tmp_path / f'v{n}'}", "--db", db, "--no-progress")
    conn = sqlite3.connect(db)
    with conn:  # every vulnerability finding gone: the rematch has them all to write again
        conn.execute("DELETE FROM vulnerability_details")
        conn.execute("DELETE FROM findings WHERE kind = 'vulnerability'")
        readmodel.rebuild_all(conn)
    conn.close()
    monkeypatch.setattr(rematch_module, "BATCH", 2)
    monkeypatch.setattr(rematch_module, "FAN_OUT", fan_out)
    calls = []
    real = store.replace_vulnerabilities
    real_run = rematch_module._FanOut.run

    def failing_fourth(*args, **kw):  # the second image of the second batch
        calls.append(args[2])
        if len(calls) == 4:
            raise RuntimeError("disk gone")
        return real(*args, **kw)

    def failing_second(self, chunk, *args):  # the second batch
        calls.extend(scan[1] for scan in chunk)
        if len(calls) == 4:
            raise RuntimeError("disk gone")
        return real_run(self, chunk, *args)

    if fan_out:
        monkeypatch.setattr(rematch_module._FanOut, "run", failing_second)
    else:
        monkeypatch.setattr(rematch_module, "replace_vulnerabilities", failing_fourth)
    from stowaway.ingest.db import connect

    database = connect(db)
    try:
        rematch_module.rematch(database)
    except RuntimeError:
        pass
    database.conn.close()
    conn = sqlite3.connect(db)
    written = {r[0] for r in conn.execute("SELECT DISTINCT image_id FROM findings WHERE kind = 'vulnerability'")}
    conn.close()
    assert len(calls) == 4 and written == set(calls[:2])  # the first batch committed, the second taken back
    before = _report_rows(db)
    assert_true(db)
    conn = sqlite3.connect(db)
    with conn:
        readmodel.rebuild_all(conn)
    conn.close()
    assert _report_rows(db) == before

    monkeypatch.setattr(rematch_module, "replace_vulnerabilities", real)
    monkeypatch.setattr(rematch_module._FanOut, "run", real_run)
    _run("rematch", "--db", db, "--no-progress")
    before = _report_rows(db)
    got = assert_true(db)
    assert got[("vulnerabilities_view", "", "", "severity:severity", "critical")] >= 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(DISTINCT image_id) FROM vulnerabilities_view").fetchone()[0] >= 3
    with conn:
        readmodel.rebuild_all(conn)
    conn.close()
    assert _report_rows(db) == before


def test_rematch_after_an_advisory_update_writes_what_changed_and_the_report_rows_follow(shop_db, tmp_path):
    """A feed update rewrites some findings of every image: the report rows, image_overview's counts,
    packages_view's vulnerability counts and the kept facet counts are brought in step with what changed
    (not rebuilt per image), and equal what a rebuild from the rows makes; a new finding that a
    suppression covers is written suppressed."""
    from store_fixtures import CRITICAL, HIGH, osv

    from stowaway.analyzers.vulnerabilities.importer import import_records
    from stowaway.analyzers.vulnerabilities.rematch import rematch
    from stowaway.ingest.db import connect

    db = shop_db
    for n, version in enumerate(("2.13.0", "2.15.0")):
        shop(version).write_oci_layout(tmp_path / f"v{n}", ref=f"corpus/shop:{n + 2}.0")
        _run("scan", f"oci:{tmp_path / f'v{n}'}", "--db", db, "--no-progress")
    _run("ignore", "add", "--image", REF, "--id", "CVE-2021-45046", "--reason", "accepted", "--db", db)
    _run("ignore", "add", "--everywhere", "--id", "CVE-2099-0001", "--reason", "not reachable", "--db", db)
    _run("rematch", "--db", db, "--no-progress")
    database = connect(db)
    before = dict(database.execute("SELECT f.id, f.image_id || ' ' || d.vulnerability_id FROM findings f"
                                   " JOIN vulnerability_details d ON d.finding_id = f.id"))
    assert len({v.split()[0] for v in before.values()}) == 3  # findings in three images
    # one record gets a later fix (its findings are rewritten), one new record (new findings, suppressed
    # everywhere by the suppression made before it existed)
    later = osv("GHSA-7rjr-3q55-vv33", "CVE-2021-45046", "2.17.0", HIGH)
    later["modified"] = "2025-01-01T00:00:00Z"
    new = osv("GHSA-new0-0000-0000", "CVE-2099-0001", "2.99.0", CRITICAL)
    import_records(database, [later, new])
    result = rematch(database)
    database.conn.close()
    assert result.current == 0 and result.changed_images == 3
    conn = sqlite3.connect(db)
    after = dict(conn.execute("SELECT f.id, f.image_id || ' ' || d.vulnerability_id FROM findings f"
                              " JOIN vulnerability_details d ON d.finding_id = f.id"))
    kept = {fid for fid in before if fid in after and before[fid] == after[fid]}
    assert {before[fid].split()[1] for fid in kept} == {"CVE-2021-44228"}  # untouched findings keep their rows
    assert sorted(v.split()[1] for v in after.values()).count("CVE-2099-0001") == 3
    suppressed = dict(conn.execute("SELECT d.vulnerability_id || ' ' || f.image_id, f.suppressed FROM findings f"
                                   " JOIN vulnerability_details d ON d.finding_id = f.id"))
    assert all(v == 1 for k, v in suppressed.items() if k.startswith("CVE-2099-0001"))
    counts = dict(conn.execute("SELECT p.id, p.vulnerability_count FROM packages p JOIN images i"
                               " ON i.last_scan_id = p.scan_id WHERE p.vulnerability_count > 0"))
    recount = dict(conn.execute("SELECT f.package_id, COUNT(*) FROM findings f JOIN images i ON i.last_scan_id ="
                                " f.scan_id WHERE f.kind = 'vulnerability' AND f.suppressed = 0 GROUP BY f.package_id"))
    conn.close()
    assert counts == recount
    rows = _report_rows(db)
    assert_true(db)
    conn = sqlite3.connect(db)
    with conn:
        readmodel.rebuild_all(conn)
    conn.close()
    assert _report_rows(db) == rows


def test_a_database_counted_before_the_unsuppressed_filters_gets_them(shop_db):
    """A database whose counts were kept before `column&suppressed=0` was counted (the first step of the
    part only) gets those counts and the triggers that keep them when it is opened again."""
    from stowaway.ingest import db as dbm

    conn = sqlite3.connect(shop_db)
    with conn:
        conn.execute("DELETE FROM report_facet_counts WHERE filter LIKE '%&%'")
        conn.execute("UPDATE schema_parts SET version = 1 WHERE name = 'report_facet_counts'")
        conn.execute("UPDATE schema_parts SET version = 3 WHERE name = 'read_model_batch'")
        conn.execute("DROP INDEX idx_vulnerabilities_view_fix_available_open")
    conn.close()
    database = dbm.connect(shop_db)  # migrates
    database.conn.close()
    got = assert_true(shop_db)
    assert got[("vulnerabilities_view", "severity&suppressed=0", "critical", "values:image", REF)] == 1
    _run("ignore", "add", "--image", REF, "--id", "CVE-2021-44228", "--reason", "accepted", "--db", shop_db)
    got = assert_true(shop_db)  # kept by the triggers and refresh_images from then on
    assert got[("vulnerabilities_view", "severity&suppressed=0", "critical", "values:image", REF)] == 0
    conn = sqlite3.connect(shop_db)
    with conn:  # the image-deleted trigger too
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("DELETE FROM images WHERE reference = ?", [REF])
    conn.close()
    got = assert_true(shop_db)
    assert not any(k[0] in readmodel.COUNTED_FACETS for k in got)
    conn = sqlite3.connect(shop_db)
    assert conn.execute("SELECT version FROM schema_parts WHERE name = 'read_model_batch'").fetchone()[0] == \
        len(readmodel.BATCH_STEPS)
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'idx_vulnerabilities_view_fix_available_open'"
                        ).fetchone()
    conn.close()


def test_a_database_counted_before_the_layer_and_cvss_filters_gets_them(shop_db, tmp_path):
    """A database whose counts were kept before one layer's rows and one CVSS bucket were counted (two steps
    of the part) gets those counts, the indexes their pages read, and triggers that keep them (the writer's
    deferring one again), when it is opened again; a scan and a suppression keep them from then on."""
    from stowaway.ingest import db as dbm

    conn = sqlite3.connect(shop_db)
    with conn:
        conn.execute("DELETE FROM report_facet_counts WHERE filter IN ('layer', 'cvss')")
        conn.execute("UPDATE schema_parts SET version = 2 WHERE name = 'report_facet_counts'")
        conn.execute("UPDATE schema_parts SET version = 4 WHERE name = 'read_model_batch'")
        conn.execute("DROP INDEX idx_vulnerabilities_view_layer_order")
        conn.execute("CREATE INDEX idx_vulnerabilities_view_layer ON vulnerabilities_view(layer_index, layer_created_by)")
    conn.close()
    database = dbm.connect(shop_db)  # migrates
    database.conn.close()
    got = assert_true(shop_db)
    assert any(k[1] == "layer" and k[0] == "vulnerabilities_view" for k in got)
    assert got[("vulnerabilities_view", "cvss", "critical (9.0-10.0)", "values:image", REF)] == 1
    shop("2.15.0").write_oci_layout(tmp_path / "v2", ref="corpus/shop:2.0")
    _run("scan", f"oci:{tmp_path / 'v2'}", "--db", shop_db, "--no-progress")  # the writer's steps
    _run("ignore", "add", "--image", REF, "--id", "CVE-2021-44228", "--reason", "accepted", "--db", shop_db)
    got = assert_true(shop_db)
    assert got[("vulnerabilities_view", "cvss", "high (7.0-8.9)", "values:image", "corpus/shop:2.0")] == 1
    assert sum(n for k, n in got.items() if k[:2] == ("findings_report", "layer") and k[3:] == ("values:suppressed", 1)) == 1
    conn = sqlite3.connect(shop_db)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_vulnerabilities_view_layer_order", "idx_vulnerabilities_view_rank_cvss"} <= names
    assert "idx_vulnerabilities_view_layer" not in names
    trigger = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'read_model_current_scan'").fetchone()[0]
    assert "read_model_deferred" in trigger and "'cvss'" in trigger
    conn.close()
